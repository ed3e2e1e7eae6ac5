package jobs_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// eventLog collects OnEvent calls.
type eventLog struct {
	mu     sync.Mutex
	events []jobs.Event
}

func (l *eventLog) record(ev jobs.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) of(id int64) []jobs.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []jobs.Event
	for _, ev := range l.events {
		if ev.Job.ID == id {
			out = append(out, ev)
		}
	}
	return out
}

func (l *eventLog) has(id int64, kind jobs.EventKind) bool {
	for _, ev := range l.of(id) {
		if ev.Kind == kind {
			return true
		}
	}
	return false
}

func TestTelemetryEvents(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var events eventLog
		b := setup(t, be, options{noStart: true, backoff: jobs.FixedBackoff(time.Hour), configure: func(c *jobs.Config) { c.OnEvent = events.record }},
			funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
				var a testArgs
				j.UnmarshalArgs(&a)
				switch a.Name {
				case "fail":
					return errors.New("failed on purpose")
				case "discard":
					return errors.New("last attempt failed")
				case "cancel":
					return jobs.Cancel(errors.New("not wanted"))
				case "snooze":
					return jobs.Snooze(time.Hour)
				case "panic":
					panic("telemetry panic")
				}
				return nil
			}})
		tests := []struct {
			name      string
			opts      jobs.InsertOpts
			wantKind  jobs.EventKind
			wantState jobs.State
			wantErr   bool
		}{
			{name: "ok", wantKind: jobs.EventStop, wantState: jobs.StateCompleted},
			{name: "fail", wantKind: jobs.EventException, wantState: jobs.StateRetryable, wantErr: true},
			{name: "panic", wantKind: jobs.EventException, wantState: jobs.StateRetryable, wantErr: true},
			{name: "discard", opts: jobs.InsertOpts{MaxAttempts: 1}, wantKind: jobs.EventException, wantState: jobs.StateDiscarded, wantErr: true},
			{name: "cancel", wantKind: jobs.EventCancel, wantState: jobs.StateCancelled, wantErr: true},
			{name: "snooze", wantKind: jobs.EventSnooze, wantState: jobs.StateScheduled, wantErr: true},
		}
		ids := map[string]int64{}
		for _, tt := range tests {
			ids[tt.name] = b.insert(t, testArgs{Name: tt.name}, tt.opts)
		}
		// They wait 3 s in the queue before the engine starts.
		b.clock.Advance(3 * time.Second)
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id := ids[tt.name]
				b.waitState(t, id, tt.wantState)
				waitFor(t, waitTimeout, func() bool { return len(events.of(id)) == 2 })
				evs := events.of(id)
				start, end := evs[0], evs[1]
				if start.Kind != jobs.EventStart || start.QueueTime != 3*time.Second || start.Job.State != jobs.StateExecuting || start.Duration != 0 {
					t.Errorf("first event %s queue time %s state %s duration %s, want start 3s executing 0",
						start.Kind, start.QueueTime, start.Job.State, start.Duration)
				}
				if end.Kind != tt.wantKind || end.Job.State != tt.wantState || end.QueueTime != 3*time.Second {
					t.Errorf("second event %s state %s queue time %s, want %s %s 3s", end.Kind, end.Job.State, end.QueueTime, tt.wantKind, tt.wantState)
				}
				if (end.Err != nil) != tt.wantErr {
					t.Errorf("event error %v, want error: %v", end.Err, tt.wantErr)
				}
				if end.Duration < 0 || !end.At.Equal(t0.Add(3*time.Second)) {
					t.Errorf("duration %s at %v", end.Duration, end.At)
				}
			})
		}

		// The throughput ring counted this second: ok completed; fail, panic
		// and discard failed (cancel and snooze are neither).
		points := b.eng.Throughput()
		if len(points) != 15*60 {
			t.Fatalf("%d points, want 900", len(points))
		}
		last := points[len(points)-1]
		if !last.At.Equal(t0.Add(3*time.Second)) || last.Completed != 1 || last.Failed != 3 {
			t.Errorf("last point %+v, want at %v 1 completed 3 failed", last, t0.Add(3*time.Second))
		}
		for i := 1; i < len(points); i++ {
			if points[i].At.Sub(points[i-1].At) != time.Second {
				t.Fatalf("points %d and %d are not a second apart", i-1, i)
			}
		}
		// 10 minutes later, the same second is still there; after 15 it is gone.
		b.clock.Advance(10 * time.Minute)
		points = b.eng.Throughput()
		if p := points[len(points)-1-600]; !p.At.Equal(t0.Add(3*time.Second)) || p.Completed != 1 {
			t.Errorf("10 minutes on, the point %+v, want 1 completed at %v", p, t0.Add(3*time.Second))
		}
		b.clock.Advance(5 * time.Minute)
		for _, p := range b.eng.Throughput() {
			if p.Completed != 0 || p.Failed != 0 {
				t.Fatalf("15 minutes on, point %+v is not zero", p)
			}
		}
	})
}

func TestOnChangeReportsEveryCommit(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var changes changeLog
		w := newGateWorker()
		b := setup(t, be, options{poll: time.Hour, configure: func(c *jobs.Config) { c.OnChange = changes.record }}, w)

		// Insert through the engine: reported after the commit.
		id := b.insert(t, testArgs{Name: "reported"}, jobs.InsertOpts{ScheduleIn: time.Minute})
		if !changes.saw(id) {
			t.Error("Insert not reported")
		}
		// InsertTx: reported at the Wake after the caller's commit.
		tx, err := b.st.Writer.BeginTxx(b.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.eng.InsertTx(b.ctx, tx, testArgs{Name: "in the caller's tx"}, jobs.InsertOpts{ScheduleIn: time.Minute})
		if err != nil {
			tx.Rollback()
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if changes.saw(res.ID) {
			t.Error("InsertTx reported before Wake")
		}
		b.eng.Wake()
		if !changes.saw(res.ID) {
			t.Error("InsertTx not reported at Wake")
		}

		// Claim and outcome: each reported.
		changes.reset()
		run := b.insert(t, testArgs{Name: "runs"}, jobs.InsertOpts{})
		<-w.started
		waitFor(t, waitTimeout, func() bool {
			changes.mu.Lock()
			defer changes.mu.Unlock()
			return len(changes.calls) >= 2 // insert, claim
		})
		changes.reset()
		close(w.release)
		b.waitState(t, run, jobs.StateCompleted)
		waitFor(t, waitTimeout, func() bool { return changes.saw(run) })
	})
}

// TestCallbacksMayCallTheEngine: OnChange and OnEvent run without engine
// locks, so they may ask the engine for counts and change queues.
func TestCallbacksMayCallTheEngine(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var eng atomic.Pointer[jobs.Engine]
		var calls atomic.Int32
		use := func() {
			if e := eng.Load(); e != nil {
				if _, err := e.Queues(context.Background()); err != nil {
					t.Error(err)
				}
				if err := e.ScaleQueue(context.Background(), "default", 4); err != nil {
					t.Error(err)
				}
				calls.Add(1)
			}
		}
		b := setup(t, be, options{noStart: true, configure: func(c *jobs.Config) {
			c.OnChange = func([]int64) { use() }
			c.OnEvent = func(jobs.Event) { use() }
		}}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		eng.Store(b.eng)
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			b.waitState(t, b.insert(t, testArgs{Name: "x"}, jobs.InsertOpts{}), jobs.StateCompleted)
		}
		// insert, claim, start, stop and outcome for each.
		waitFor(t, waitTimeout, func() bool { return calls.Load() >= 25 })
	})
}
