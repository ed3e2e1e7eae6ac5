package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

type timedArgs struct {
	RunMS int  `json:"run_ms"`
	Fail  bool `json:"fail"`
}

func (timedArgs) Kind() string { return "timed" }

// TestEngineTimings: the engine's own telemetry fills the per-minute wait
// and run times of each queue and kind, and counts the failures. The
// timings live in memory, so one database (SQLite) is enough.
func TestEngineTimings(t *testing.T) {
	t.Parallel()
	var b *bundle
	w := funcWorker{kind: "timed", fn: func(ctx context.Context, j *jobs.Job) error {
		var a timedArgs
		if err := j.UnmarshalArgs(&a); err != nil {
			return err
		}
		// The run time is the wall clock's; the wait is the engine's
		// clock's, so each job waits a second longer than the one before.
		time.Sleep(time.Duration(a.RunMS) * time.Millisecond)
		b.clock.Advance(time.Second)
		if a.Fail {
			return errors.New("failed on purpose")
		}
		return nil
	}}
	b = setup(t, storetest.Backend{Dialect: store.SQLite}, options{queues: map[string]int{"default": 1, "calls": 1}, noStart: true}, w)
	var ids []int64
	for i := range 20 {
		// Sleeps never end early but may end late on a loaded machine:
		// the two run times are far apart, and only their order and
		// lower bounds are checked tightly.
		run := 2
		if i%2 == 0 {
			run = 200
		}
		ids = append(ids, b.insert(t, timedArgs{RunMS: run, Fail: i < 3}, jobs.InsertOpts{Queue: "calls", MaxAttempts: 1}))
	}
	if err := b.eng.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		b.waitStateWithin(t, id, map[bool]jobs.State{true: jobs.StateDiscarded, false: jobs.StateCompleted}[id <= ids[2]], 10*time.Second)
	}
	tm := b.eng.Timings(5)
	if tm.Minutes != 5 || len(tm.Queues) != 1 || tm.Queues[0].Name != "calls" || len(tm.Kinds) != 1 || tm.Kinds[0].Name != "timed" {
		t.Fatalf("timings %+v: want the queue calls and the kind timed", tm)
	}
	for _, s := range []jobs.TimingSeries{tm.Queues[0], tm.Kinds[0]} {
		tot := s.Total
		if tot.Count != 20 || tot.Failed != 3 {
			t.Errorf("%s: %d attempts, %d failed; want 20, 3", s.Name, tot.Count, tot.Failed)
		}
		if tot.RunP50 < time.Millisecond || tot.RunP50 >= 150*time.Millisecond || tot.RunP95 < 180*time.Millisecond || tot.RunP95 > 2*time.Second {
			t.Errorf("%s: run p50 %v, p95 %v; want about 2 ms and 200 ms", s.Name, tot.RunP50, tot.RunP95)
		}
		// Each job waited for those before it in the one-slot queue.
		if tot.WaitP95 < 5*time.Second {
			t.Errorf("%s: wait p95 %v; the last jobs waited about 10 s", s.Name, tot.WaitP95)
		}
		if len(s.Points) != 5 {
			t.Fatalf("%s: %d points, want 5", s.Name, len(s.Points))
		}
		sum := 0
		for _, p := range s.Points {
			sum += p.Count
		}
		if sum != 20 {
			t.Errorf("%s: the minutes hold %d attempts, want 20", s.Name, sum)
		}
	}
}
