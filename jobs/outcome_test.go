// What an attempt's result does to its job: completion, retry after backoff,
// discard, panic, cancel, snooze; and the order and limit of claims.
package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

func TestWorkerSuccessCompletesJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		seen := make(chan jobs.Job, 1)
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			calls.Add(1)
			seen <- *j // the engine updates *j once the attempt is recorded
			return nil
		}})

		id := b.insert(t, testArgs{Name: "hello"}, jobs.InsertOpts{})
		j := b.waitState(t, id, jobs.StateCompleted)

		if j.Attempt != 1 {
			t.Errorf("attempt = %d, want 1", j.Attempt)
		}
		if !sameTime(j.CompletedAt, t0) {
			t.Errorf("completed_at = %v, want %v", j.CompletedAt, t0)
		}
		if !sameTime(j.AttemptedAt, t0) {
			t.Errorf("attempted_at = %v, want %v", j.AttemptedAt, t0)
		}
		if j.DiscardedAt != nil || j.CancelledAt != nil {
			t.Errorf("discarded_at %v, cancelled_at %v: want both unset", j.DiscardedAt, j.CancelledAt)
		}
		if len(j.Errors) != 0 {
			t.Errorf("errors = %+v, want none", j.Errors)
		}
		if j.Queue != "default" || j.Kind != "test" || j.MaxAttempts != jobs.DefaultMaxAttempts || j.Priority != 0 {
			t.Errorf("queue %q kind %q max_attempts %d priority %d: want default defaults", j.Queue, j.Kind, j.MaxAttempts, j.Priority)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("worker ran %d times, want 1", n)
		}
		if by := b.count(t, "SELECT count(*) FROM jobs WHERE id = ? AND attempted_by = 'test-node'", id); by != 1 {
			t.Errorf("attempted_by is not the configured node")
		}

		w := <-seen
		var args testArgs
		if err := w.UnmarshalArgs(&args); err != nil || args.Name != "hello" {
			t.Errorf("worker got args %+v (err %v), want name hello", args, err)
		}
		if w.State != jobs.StateExecuting || w.Attempt != 1 {
			t.Errorf("worker saw state %s attempt %d, want executing attempt 1", w.State, w.Attempt)
		}
	})
}

func TestFailedAttemptRetriesAfterBackoff(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{queues: map[string]int{"default": 2}, backoff: jobs.FixedBackoff(time.Minute)},
			funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
				if calls.Add(1) == 1 {
					return errors.New("flaky: first attempt fails")
				}
				return nil
			}})

		id := b.insert(t, testArgs{Name: "flaky"}, jobs.InsertOpts{})
		// The attempt finished at t0 on the fake clock: due 1 m later.
		due := t0.Add(time.Minute)
		j := b.waitDue(t, id, jobs.StateRetryable, 1, due)
		want := []jobs.AttemptError{{Attempt: 1, At: t0, Error: "flaky: first attempt fails"}}
		if !slices.EqualFunc(j.Errors, want, equalAttemptError) {
			t.Errorf("errors = %+v, want %+v", j.Errors, want)
		}
		if j.CompletedAt != nil {
			t.Errorf("completed_at = %v on a retryable job", j.CompletedAt)
		}

		// One millisecond before it is due, the queue claims other work but
		// leaves the job alone.
		b.clock.Advance(time.Minute - time.Millisecond)
		b.probePolls(t, "default", 3)
		if n := calls.Load(); n != 1 {
			t.Fatalf("worker ran %d times before the backoff passed, want 1", n)
		}
		if j := b.get(t, id); j.State != jobs.StateRetryable {
			t.Fatalf("state = %s before the backoff passed, want retryable", j.State)
		}

		b.clock.Advance(time.Millisecond)
		b.eng.Wake()
		j = b.waitState(t, id, jobs.StateCompleted)
		if j.Attempt != 2 {
			t.Errorf("attempt = %d, want 2", j.Attempt)
		}
		if !sameTime(j.CompletedAt, due) {
			t.Errorf("completed_at = %v, want %v", j.CompletedAt, due)
		}
		if len(j.Errors) != 1 {
			t.Errorf("errors = %+v, want only the first attempt's", j.Errors)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("worker ran %d times, want 2", n)
		}
	})
}

func equalAttemptError(a, b jobs.AttemptError) bool {
	return a.Attempt == b.Attempt && a.At.Equal(b.At) && a.Error == b.Error
}

func TestJobDiscardedAfterMaxAttempts(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			calls.Add(1)
			return fmt.Errorf("always fails (attempt %d)", j.Attempt)
		}})

		id := b.insert(t, testArgs{Name: "doomed"}, jobs.InsertOpts{MaxAttempts: 5})
		j := b.waitState(t, id, jobs.StateDiscarded)

		if j.Attempt != 5 {
			t.Errorf("attempt = %d, want 5", j.Attempt)
		}
		if !sameTime(j.DiscardedAt, t0) {
			t.Errorf("discarded_at = %v, want %v", j.DiscardedAt, t0)
		}
		if j.CompletedAt != nil {
			t.Errorf("completed_at = %v on a discarded job", j.CompletedAt)
		}
		if len(j.Errors) != 5 {
			t.Fatalf("errors = %+v, want 5", j.Errors)
		}
		for i, e := range j.Errors {
			if want := fmt.Sprintf("always fails (attempt %d)", i+1); e.Attempt != i+1 || e.Error != want {
				t.Errorf("errors[%d] = %+v, want attempt %d %q", i, e, i+1, want)
			}
		}
		// Discarded is final: the queue keeps polling without running it again.
		b.probePolls(t, "default", 2)
		if n := calls.Load(); n != 5 {
			t.Errorf("worker ran %d times, want 5", n)
		}
	})
}

func TestWorkerPanicFailsAttempt(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name    string
			doPanic func()
			want    string
		}{
			{name: "string", doPanic: func() { panic("kaboom-42") }, want: "panic: kaboom-42"},
			{name: "error", doPanic: func() { panic(errors.New("wrapped boom")) }, want: "panic: wrapped boom"},
			{name: "runtime error", doPanic: func() {
				var m map[string]int
				m["x"] = 1
			}, want: "panic: assignment to entry in nil map"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, be, options{backoff: jobs.FixedBackoff(time.Hour)},
					funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
						tt.doPanic()
						return nil
					}},
					funcWorker{kind: "ok", fn: func(context.Context, *jobs.Job) error { return nil }})

				id := b.insert(t, testArgs{Name: "panics"}, jobs.InsertOpts{MaxAttempts: 3})
				j := b.waitState(t, id, jobs.StateRetryable)
				if j.Attempt != 1 || len(j.Errors) != 1 || j.Errors[0].Attempt != 1 {
					t.Fatalf("attempt %d errors %+v: want one failed attempt 1", j.Attempt, j.Errors)
				}
				msg := j.Errors[0].Error
				for _, want := range []string{tt.want, "goroutine", "TestWorkerPanicFailsAttempt"} {
					if !strings.Contains(msg, want) {
						t.Errorf("error text lacks %q:\n%s", want, msg)
					}
				}

				// The engine survived the panic.
				later := b.insert(t, testArgs{kind: "ok", Name: "after the panic"}, jobs.InsertOpts{})
				b.waitState(t, later, jobs.StateCompleted)
			})
		}
	})
}

func TestWorkerCancel(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name     string
			err      error
			wantText string
		}{
			{name: "with reason", err: jobs.Cancel(errors.New("customer left")), wantText: "cancelled: customer left"},
			{name: "nil reason", err: jobs.Cancel(nil), wantText: "cancelled: cancelled by worker"},
			{name: "wrapped", err: fmt.Errorf("giving up: %w", jobs.Cancel(errors.New("gone"))), wantText: "giving up: cancelled: gone"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				var calls atomic.Int32
				b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
					calls.Add(1)
					return tt.err
				}})
				id := b.insert(t, testArgs{Name: "cancel me"}, jobs.InsertOpts{})
				j := b.waitState(t, id, jobs.StateCancelled)
				if !sameTime(j.CancelledAt, t0) {
					t.Errorf("cancelled_at = %v, want %v", j.CancelledAt, t0)
				}
				if j.Attempt != 1 || j.CompletedAt != nil || j.DiscardedAt != nil {
					t.Errorf("attempt %d completed_at %v discarded_at %v: want attempt 1, neither set", j.Attempt, j.CompletedAt, j.DiscardedAt)
				}
				want := []jobs.AttemptError{{Attempt: 1, At: t0, Error: tt.wantText}}
				if !slices.EqualFunc(j.Errors, want, equalAttemptError) {
					t.Errorf("errors = %+v, want %+v", j.Errors, want)
				}
				b.probePolls(t, "default", 2)
				if n := calls.Load(); n != 1 {
					t.Errorf("cancelled job ran %d times, want 1", n)
				}
			})
		}
	})
}

func TestWorkerSnooze(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			if calls.Add(1) == 1 {
				return jobs.Snooze(time.Minute)
			}
			return nil
		}})

		id := b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{MaxAttempts: 1})
		due := t0.Add(time.Minute)
		j := b.waitDue(t, id, jobs.StateScheduled, 0, due) // a snooze uses no attempt
		if len(j.Errors) != 0 {
			t.Errorf("errors = %+v, want none for a snooze", j.Errors)
		}

		b.clock.Advance(time.Minute - time.Millisecond)
		b.probePolls(t, "default", 3)
		if n := calls.Load(); n != 1 {
			t.Fatalf("snoozed job ran %d times before it was due, want 1", n)
		}

		b.clock.Advance(time.Millisecond)
		b.eng.Wake()
		// MaxAttempts 1: the snooze did not use the only attempt.
		j = b.waitState(t, id, jobs.StateCompleted)
		if j.Attempt != 1 || !sameTime(j.CompletedAt, due) {
			t.Errorf("attempt %d completed_at %v, want attempt 1 at %v", j.Attempt, j.CompletedAt, due)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("worker ran %d times, want 2", n)
		}
	})
}

func TestUnregisteredKindFails(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{})
		id := b.insert(t, testArgs{kind: "nobody", Name: "orphan"}, jobs.InsertOpts{MaxAttempts: 1})
		j := b.waitState(t, id, jobs.StateDiscarded)
		if len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, `no worker registered for kind "nobody"`) {
			t.Errorf("errors = %+v, want no worker registered", j.Errors)
		}
	})
}

func TestQueueConcurrencyLimit(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		const limit, total = 3, 10
		release := make(chan struct{})
		var started, running, maxRunning atomic.Int32
		b := setup(t, be, options{queues: map[string]int{"limited": limit, "other": 2}},
			funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
				started.Add(1)
				n := running.Add(1)
				defer running.Add(-1)
				for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
				}
				return released(ctx, release)
			}})

		params := make([]jobs.InsertParams, total)
		for i := range params {
			params[i] = jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(i)}, Opts: jobs.InsertOpts{Queue: "limited"}}
		}
		if n, err := b.eng.InsertMany(b.ctx, params); err != nil || n != total {
			t.Fatalf("insert many: n=%d err=%v", n, err)
		}

		waitFor(t, waitTimeout, func() bool { return started.Load() >= limit })
		executing := "SELECT count(*) FROM jobs WHERE queue = 'limited' AND state = 'executing'"
		if n := b.count(t, executing); n != limit {
			t.Errorf("%d jobs executing, want %d", n, limit)
		}
		// Give the engine every chance to overfill: wake it and let it poll.
		b.eng.Wake()
		b.probePolls(t, "other", 3)
		if n := started.Load(); n != limit {
			t.Errorf("%d jobs started while %d slots were busy", n, limit)
		}
		if n := b.count(t, executing); n != limit {
			t.Errorf("%d jobs executing after more polls, want %d", n, limit)
		}
		if n := b.count(t, "SELECT count(*) FROM jobs WHERE queue = 'limited' AND state = 'available'"); n != total-limit {
			t.Errorf("%d jobs available, want %d", n, total-limit)
		}

		close(release)
		waitFor(t, waitTimeout, func() bool {
			return b.count(t, "SELECT count(*) FROM jobs WHERE queue = 'limited' AND state = 'completed'") == total
		})
		if n := maxRunning.Load(); n != limit {
			t.Errorf("at most %d jobs ran at once, want %d", n, limit)
		}
		if n := started.Load(); n != total {
			t.Errorf("%d attempts, want %d", n, total)
		}
	})
}

func TestClaimOrder(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var mu sync.Mutex
		var order []string
		b := setup(t, be, options{queues: map[string]int{"default": 1}, noStart: true},
			funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
				var args testArgs
				if err := j.UnmarshalArgs(&args); err != nil {
					return err
				}
				mu.Lock()
				order = append(order, args.Name)
				mu.Unlock()
				return nil
			}})

		insert := func(name string, opts jobs.InsertOpts) int64 { return b.insert(t, testArgs{Name: name}, opts) }
		last := insert("A prio 5", jobs.InsertOpts{Priority: 5})
		insert("B prio 0", jobs.InsertOpts{})
		scheduled := insert("C prio 0 at +2s", jobs.InsertOpts{ScheduledAt: t0.Add(2 * time.Second)})
		insert("D prio 0 at +1s", jobs.InsertOpts{ScheduledAt: t0.Add(time.Second)})
		insert("E prio 0", jobs.InsertOpts{})
		if j := b.get(t, scheduled); j.State != jobs.StateScheduled {
			t.Errorf("a job inserted for later is %s, want scheduled", j.State)
		}
		b.clock.Advance(3 * time.Second)

		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		b.waitState(t, last, jobs.StateCompleted)
		mu.Lock()
		defer mu.Unlock()
		want := []string{"B prio 0", "E prio 0", "D prio 0 at +1s", "C prio 0 at +2s", "A prio 5"}
		if !slices.Equal(order, want) {
			t.Errorf("ran in order %q, want %q", order, want)
		}
	})
}
