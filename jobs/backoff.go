package jobs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Backoff returns how long to wait before retrying a job whose attempt
// number attempt has just failed.
type Backoff func(attempt int) time.Duration

// ObanBackoff is Oban's default: 15 s + 2^attempt s, plus a random 0–10 %
// jitter (retries about 17, 19, 23, 31 s apart). rng may be nil.
func ObanBackoff(rng *rand.Rand) Backoff {
	var mu sync.Mutex
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return func(attempt int) time.Duration {
		base := 15 + math.Pow(2, float64(min(attempt, 20)))
		mu.Lock()
		jitter := rng.Float64() * 0.10
		mu.Unlock()
		return time.Duration(base * (1 + jitter) * float64(time.Second))
	}
}

// FixedBackoff retries every failed attempt after d.
func FixedBackoff(d time.Duration) Backoff {
	return func(int) time.Duration { return d }
}

// ParseBackoff reads the -backoff flag: "oban" or a non-negative Go duration.
func ParseBackoff(s string) (Backoff, error) {
	if strings.EqualFold(s, "oban") {
		return ObanBackoff(nil), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return nil, fmt.Errorf("invalid backoff %q: want \"oban\" or a duration such as 0s, 200ms or 30s", s)
	}
	return FixedBackoff(d), nil
}
