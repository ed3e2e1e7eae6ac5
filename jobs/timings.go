package jobs

// Timings: per queue and per kind, the wait (due → started) and run times
// of the last minutes as p50/p95, and the failures per minute, from the
// engine's own telemetry (observeOutcome), kept in memory. Nothing reads
// the jobs table, so they cost the same at any table size: each finished
// attempt adds to two fixed-size histograms (one for its queue, one for its
// kind) of the current minute, and a chart reads at most timingsWindow
// minutes of each.

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"
)

// TimingsWindow is how many minutes the timings reach back.
const TimingsWindow = 30

// maxTimingKeys bounds how many queues and how many kinds are kept apart;
// beyond it, the rest are counted under TimingsOther, so memory stays
// bounded whatever kinds a program invents.
const maxTimingKeys = 64

// TimingsOther names the series of the queues or kinds beyond the first
// maxTimingKeys seen.
const TimingsOther = "(other)"

// histogram buckets: durations in microseconds, histSub buckets per power
// of two (a quantile is off by at most 1/histSub, 12.5 %), up to 2^histPow
// µs (about 19 hours); longer ones land in the last bucket.
const (
	histSub     = 8
	histPow     = 36
	histBuckets = histPow * histSub
)

type histogram [histBuckets]uint32

func histIndex(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < histSub {
		return int(us) // one bucket per microsecond below 8 µs
	}
	// 2^p <= us < 2^(p+1), p >= 3: the bucket is the 3 bits below the top.
	p := bits.Len64(us) - 1
	sub := int((us >> (p - 3)) & (histSub - 1))
	return min((p-2)*histSub+sub, histBuckets-1)
}

// histValue is a bucket's middle, the value a quantile reports.
func histValue(i int) time.Duration {
	if i < histSub {
		return time.Duration(i) * time.Microsecond
	}
	p, sub := i/histSub+2, i%histSub
	lo := float64(uint64(histSub+sub) << (p - 3))
	width := float64(uint64(1) << (p - 3))
	return time.Duration((lo + width/2) * float64(time.Microsecond))
}

// quantile is the q-th quantile (0…1) of h's n values.
func (h *histogram) quantile(n int, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint32(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint32
	for i, c := range h {
		seen += c
		if seen >= rank {
			return histValue(i)
		}
	}
	return histValue(histBuckets - 1)
}

// timingSlot is one minute of one queue or kind.
type timingSlot struct {
	minute        int64
	count, failed int
	wait, run     histogram
}

type timingSeries struct {
	slots [TimingsWindow]*timingSlot
}

// timingIndex is minute's place in a series' ring.
func timingIndex(minute int64) int {
	return int(((minute % TimingsWindow) + TimingsWindow) % TimingsWindow)
}

// at is the slot of minute, nil when the ring holds none of it.
func (s *timingSeries) at(minute int64) *timingSlot {
	if sl := s.slots[timingIndex(minute)]; sl != nil && sl.minute == minute {
		return sl
	}
	return nil
}

// slot is the slot of minute, made (or recycled from an older minute)
// when the ring holds none of it.
func (s *timingSeries) slot(minute int64) *timingSlot {
	i := timingIndex(minute)
	sl := s.slots[i]
	if sl == nil {
		sl = &timingSlot{}
		s.slots[i] = sl
	}
	if sl.minute != minute {
		*sl = timingSlot{minute: minute}
	}
	return sl
}

// timings holds the series of every queue and kind; the zero value is ready.
type timings struct {
	mu     sync.Mutex
	queues map[string]*timingSeries
	kinds  map[string]*timingSeries
}

func seriesOf(m *map[string]*timingSeries, name string) *timingSeries {
	if *m == nil {
		*m = map[string]*timingSeries{}
	}
	s := (*m)[name]
	if s == nil {
		if len(*m) >= maxTimingKeys {
			name = TimingsOther
			if s = (*m)[name]; s != nil {
				return s
			}
		}
		s = &timingSeries{}
		(*m)[name] = s
	}
	return s
}

// add records one finished attempt.
func (t *timings) add(queue, kind string, at time.Time, wait, run time.Duration, failed bool) {
	minute := at.Unix() / 60
	wi, ri := histIndex(wait), histIndex(run)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range []*timingSeries{seriesOf(&t.queues, queue), seriesOf(&t.kinds, kind)} {
		sl := s.slot(minute)
		sl.count++
		if failed {
			sl.failed++
		}
		sl.wait[wi]++
		sl.run[ri]++
	}
}

// TimingPoint is one minute of a series (or, as a series' Total, its
// whole window).
type TimingPoint struct {
	// At is the start of the minute (UTC).
	At time.Time `json:"at"`
	// Count is how many attempts finished (completed, failed, cancelled or
	// snoozed); Failed how many of them failed.
	Count  int `json:"count"`
	Failed int `json:"failed"`
	// WaitP50 and WaitP95: how long the attempts waited from when they
	// were due to when they started; RunP50 and RunP95: how long they ran.
	WaitP50 time.Duration `json:"-"`
	WaitP95 time.Duration `json:"-"`
	RunP50  time.Duration `json:"-"`
	RunP95  time.Duration `json:"-"`
}

// TimingSeries is one queue's or kind's minutes, oldest first, one point
// for every minute of the window up to the current one.
type TimingSeries struct {
	Name   string
	Points []TimingPoint
	// Total merges the window's minutes (its At is the window's start).
	Total TimingPoint
}

// Timings is what Engine.Timings reports.
type Timings struct {
	// Minutes is the window's length; Now the minute it ends with.
	Minutes int
	Now     time.Time
	// Queues and Kinds are sorted by name; only those with an attempt in
	// the window are listed.
	Queues []TimingSeries
	Kinds  []TimingSeries
}

// Timings reports the wait and run times and failures of the attempts
// over the last minutes (1…TimingsWindow; out of range is the whole
// window), per queue and per kind, from memory: this engine's since it
// started and, on PostgreSQL, every other node's (as read at most
// ShareTelemetryEvery ago; telemetry_shared.go).
func (e *Engine) Timings(minutes int) Timings {
	if minutes < 1 || minutes > TimingsWindow {
		minutes = TimingsWindow
	}
	now := e.now().Unix() / 60
	first := now - int64(minutes) + 1
	queues, kinds := e.throughput.timings.slotsOf(first, now)
	e.throughput.shared.addTimings(first, now, queues, kinds)
	return Timings{Minutes: minutes, Now: time.Unix(now*60, 0).UTC(),
		Queues: timingSeriesOf(queues, first, now), Kinds: timingSeriesOf(kinds, first, now)}
}

// slotsOf copies the slots of the minutes from first to last of every
// queue and kind (name → minute → slot).
func (t *timings) slotsOf(first, last int64) (queues, kinds map[string]map[int64]*timingSlot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	copyOf := func(m map[string]*timingSeries) map[string]map[int64]*timingSlot {
		out := map[string]map[int64]*timingSlot{}
		for name, s := range m {
			for minute := first; minute <= last; minute++ {
				sl := s.at(minute)
				if sl == nil {
					continue
				}
				if out[name] == nil {
					out[name] = map[int64]*timingSlot{}
				}
				c := *sl
				out[name][minute] = &c
			}
		}
		return out
	}
	return copyOf(t.queues), copyOf(t.kinds)
}

// timingSeriesOf turns slots (name → minute → slot) into the series of
// the minutes from first to last, sorted by name; a name without an
// attempt in them is left out.
func timingSeriesOf(slots map[string]map[int64]*timingSlot, first, last int64) []TimingSeries {
	var list []TimingSeries
	for name, minutes := range slots {
		ts := TimingSeries{Name: name, Points: make([]TimingPoint, last-first+1)}
		var wait, run histogram
		ts.Total.At = time.Unix(first*60, 0).UTC()
		for i := range ts.Points {
			minute := first + int64(i)
			p := &ts.Points[i]
			p.At = time.Unix(minute*60, 0).UTC()
			sl := minutes[minute]
			if sl == nil || sl.count == 0 {
				continue
			}
			p.Count, p.Failed = sl.count, sl.failed
			p.WaitP50, p.WaitP95 = sl.wait.quantile(sl.count, .5), sl.wait.quantile(sl.count, .95)
			p.RunP50, p.RunP95 = sl.run.quantile(sl.count, .5), sl.run.quantile(sl.count, .95)
			ts.Total.Count += sl.count
			ts.Total.Failed += sl.failed
			for b := range wait {
				wait[b] += sl.wait[b]
				run[b] += sl.run[b]
			}
		}
		if ts.Total.Count == 0 {
			continue
		}
		ts.Total.WaitP50, ts.Total.WaitP95 = wait.quantile(ts.Total.Count, .5), wait.quantile(ts.Total.Count, .95)
		ts.Total.RunP50, ts.Total.RunP95 = run.quantile(ts.Total.Count, .5), run.quantile(ts.Total.Count, .95)
		list = append(list, ts)
	}
	slices.SortFunc(list, func(a, b TimingSeries) int { return strings.Compare(a.Name, b.Name) })
	return list
}
