package live

import (
	"sync/atomic"
	"time"
)

// histogram records latencies in 100 µs buckets up to 20 s.
type histogram struct {
	buckets [200_001]atomic.Int64
	n       atomic.Int64
	max     atomic.Int64
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := min(int(d/(100*time.Microsecond)), len(h.buckets)-1)
	h.buckets[i].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	target := int64(float64(n)*q + 0.5)
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= target {
			return time.Duration(i+1) * 100 * time.Microsecond
		}
	}
	return time.Duration(h.max.Load())
}

func (h *histogram) summary() Latency {
	return Latency{N: h.n.Load(), P50: h.quantile(0.50), P99: h.quantile(0.99), Max: time.Duration(h.max.Load())}
}
