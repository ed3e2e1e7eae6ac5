package jobs

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramQuantiles: the p50 and p95 of the histogram are within one
// bucket (12.5 %) of the exact ones, from microseconds to hours.
func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	for i := 0; i < histBuckets; i++ {
		if got := histIndex(histValue(i)); got != i {
			t.Fatalf("bucket %d's middle %v falls in bucket %d", i, histValue(i), got)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, scale := range []time.Duration{time.Microsecond, time.Millisecond, time.Second, time.Minute} {
		var h histogram
		var vals []time.Duration
		for range 5000 {
			d := time.Duration(r.ExpFloat64() * float64(50*scale))
			vals = append(vals, d)
			h[histIndex(d)]++
		}
		slices.Sort(vals)
		for _, q := range []float64{.5, .95} {
			exact := vals[int(q*float64(len(vals)))-1]
			got := h.quantile(len(vals), q)
			if exact > 8*time.Microsecond && (float64(got) < float64(exact)*0.87 || float64(got) > float64(exact)*1.13) {
				t.Errorf("scale %v: p%.0f = %v, exact %v", scale, q*100, got, exact)
			}
		}
	}
}

// TestTimingsRingForgetsOldMinutes: a minute's slot is reused 30 minutes
// later, starting from zero; more than maxTimingKeys kinds fold into
// TimingsOther.
func TestTimingsRingForgetsOldMinutes(t *testing.T) {
	t.Parallel()
	var tm timings
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	tm.add("q", "k", t0, time.Millisecond, time.Second, true)
	tm.add("q", "k", t0.Add(TimingsWindow*time.Minute), time.Millisecond, time.Second, false)
	sl := tm.queues["q"].slots[(t0.Unix()/60)%TimingsWindow]
	if sl.count != 1 || sl.failed != 0 {
		t.Fatalf("the reused slot holds %d attempts, %d failed; want the new minute's 1, 0", sl.count, sl.failed)
	}
	for i := range maxTimingKeys + 10 {
		tm.add("q", "kind-"+string(rune('A'+i)), t0, 0, 0, false)
	}
	if len(tm.kinds) != maxTimingKeys+1 || tm.kinds[TimingsOther] == nil {
		t.Fatalf("%d kinds kept, want %d and %q", len(tm.kinds), maxTimingKeys+1, TimingsOther)
	}
}

func BenchmarkTimingsAdd(b *testing.B) {
	var tm timings
	at := time.Now()
	for i := 0; b.Loop(); i++ {
		tm.add("default", "send_email", at, time.Duration(i)*time.Microsecond, 3*time.Millisecond, i%10 == 0)
	}
}
