package jobs_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// gateWorker runs kind "test": each attempt signals started and waits for
// release or its context.
type gateWorker struct {
	started chan int64
	release chan struct{}
	ctxErr  chan error
}

func newGateWorker() *gateWorker {
	return &gateWorker{started: make(chan int64, 100), release: make(chan struct{}), ctxErr: make(chan error, 100)}
}

func (w *gateWorker) Kind() string { return "test" }

func (w *gateWorker) Work(ctx context.Context, j *jobs.Job) error {
	w.started <- j.ID
	select {
	case <-w.release:
		return nil
	case <-ctx.Done():
		w.ctxErr <- ctx.Err()
		return ctx.Err()
	}
}

// probeOnce runs one probe job through queue: once it completes, the
// queue had a free slot and claimed every due job it had room for.
func (b *bundle) probeOnce(t *testing.T, queue string) {
	t.Helper()
	id := b.insert(t, probeArgs{N: b.probe.Add(1)}, jobs.InsertOpts{Queue: queue})
	b.waitState(t, id, jobs.StateCompleted)
}

// changeLog collects OnChange calls.
type changeLog struct {
	mu    sync.Mutex
	calls [][]int64
}

func (c *changeLog) record(ids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, slices.Clone(ids))
}

// saw reports whether some call included id.
func (c *changeLog) saw(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, call := range c.calls {
		if slices.Contains(call, id) {
			return true
		}
	}
	return false
}

func (c *changeLog) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

func TestCancelJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		var changes changeLog
		var events eventLog
		b := setup(t, be, options{poll: time.Hour, configure: func(c *jobs.Config) {
			c.OnChange = changes.record
			c.OnEvent = events.record
		}}, w)

		// Scheduled: cancelled at once, never runs.
		later := b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		j, err := b.eng.CancelJob(b.ctx, later)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != jobs.StateCancelled || !sameTime(j.CancelledAt, t0) {
			t.Errorf("cancelled scheduled job: state %s cancelled_at %v, want cancelled at %v", j.State, j.CancelledAt, t0)
		}
		if !changes.saw(later) {
			t.Error("OnChange did not hear of the cancelled job")
		}

		// Executing: its context is cancelled and it ends cancelled, not
		// retryable, although the worker returned an error.
		running := b.insert(t, testArgs{Name: "running"}, jobs.InsertOpts{})
		<-w.started
		j, err = b.eng.CancelJob(b.ctx, running)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != jobs.StateCancelled {
			t.Errorf("CancelJob returned state %s, want cancelled", j.State)
		}
		if err := <-w.ctxErr; !errors.Is(err, context.Canceled) {
			t.Errorf("worker's ctx ended with %v, want context.Canceled", err)
		}
		waitFor(t, waitTimeout, func() bool { return events.has(running, jobs.EventCancel) })
		j = b.get(t, running)
		if j.State != jobs.StateCancelled || j.Attempt != 1 || len(j.Errors) != 0 || j.CompletedAt != nil {
			t.Errorf("after the worker returned: state %s attempt %d errors %+v, want cancelled attempt 1 without errors", j.State, j.Attempt, j.Errors)
		}
		// The slot is free again.
		b.probeOnce(t, "default")

		// Finished: a conflict; unknown: not found.
		if _, err := b.eng.CancelJob(b.ctx, running); !errors.Is(err, jobs.ErrStateConflict) {
			t.Errorf("cancel a cancelled job: %v, want ErrStateConflict", err)
		}
		if _, err := b.eng.CancelJob(b.ctx, 999999); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("cancel an unknown job: %v, want ErrNotFound", err)
		}
	})
}

func TestRetryJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		b := setup(t, be, options{poll: time.Hour, queues: map[string]int{"default": 5}}, w,
			funcWorker{kind: "fails", fn: func(context.Context, *jobs.Job) error { return errors.New("nope") }})

		// Discarded after its only attempt: retried with one more attempt.
		failed := b.insert(t, testArgs{kind: "fails"}, jobs.InsertOpts{MaxAttempts: 1})
		b.waitState(t, failed, jobs.StateDiscarded)
		b.clock.Advance(time.Second)
		j, err := b.eng.RetryJob(b.ctx, failed)
		if err != nil {
			t.Fatal(err)
		}
		if j.MaxAttempts != 2 || j.DiscardedAt != nil {
			t.Errorf("retried discarded job: max_attempts %d discarded_at %v, want 2 and unset", j.MaxAttempts, j.DiscardedAt)
		}
		j = b.waitState(t, failed, jobs.StateDiscarded)
		if j.Attempt != 2 || len(j.Errors) != 2 {
			t.Errorf("after the retry: attempt %d errors %d, want 2 and 2", j.Attempt, len(j.Errors))
		}

		// Scheduled: runs now.
		later := b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		if j, err := b.eng.RetryJob(b.ctx, later); err != nil || !j.ScheduledAt.Equal(b.clock.Now()) {
			t.Fatalf("retry scheduled job: %+v, %v; want due now", j, err)
		}
		<-w.started
		b.waitState(t, later, jobs.StateExecuting)
		// Executing and available: conflicts.
		if _, err := b.eng.RetryJob(b.ctx, later); !errors.Is(err, jobs.ErrStateConflict) {
			t.Errorf("retry an executing job: %v, want ErrStateConflict", err)
		}
		b.eng.PauseQueue(b.ctx, "default")
		waiting := b.insert(t, testArgs{Name: "waiting"}, jobs.InsertOpts{})
		if _, err := b.eng.RetryJob(b.ctx, waiting); !errors.Is(err, jobs.ErrStateConflict) {
			t.Errorf("retry an available job: %v, want ErrStateConflict", err)
		}
		// Cancelled while running, worker not returned yet: still a conflict,
		// so it never runs twice at once.
		b.eng.DeleteJob(b.ctx, waiting)
		if _, err := b.eng.CancelJob(b.ctx, later); err != nil {
			t.Fatal(err)
		}
		if _, err := b.eng.RetryJob(b.ctx, 999999); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("retry an unknown job: %v, want ErrNotFound", err)
		}
		<-w.ctxErr
		// Once its outcome is recorded, it can be retried.
		waitFor(t, waitTimeout, func() bool {
			_, err := b.eng.RetryJob(b.ctx, later)
			return err == nil
		})
		b.eng.ResumeQueue(b.ctx, "default")
		<-w.started
		close(w.release)
		j = b.waitState(t, later, jobs.StateCompleted)
		if j.Attempt != 2 || j.CancelledAt != nil {
			t.Errorf("retried cancelled job: attempt %d cancelled_at %v, want 2 and unset", j.Attempt, j.CancelledAt)
		}

		// Completed: runs again.
		if _, err := b.eng.RetryJob(b.ctx, later); err != nil {
			t.Fatal(err)
		}
		j = b.waitState(t, later, jobs.StateCompleted)
		if j.Attempt != 3 {
			t.Errorf("retried completed job: attempt %d, want 3", j.Attempt)
		}
	})
}

func TestRetryCancelledJobWhileWorkerRuns(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		release := make(chan struct{})
		started := make(chan struct{}, 1)
		b := setup(t, be, options{poll: time.Hour}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			started <- struct{}{}
			<-release // ignores its context
			return nil
		}})
		id := b.insert(t, testArgs{Name: "deaf"}, jobs.InsertOpts{})
		<-started
		if _, err := b.eng.CancelJob(b.ctx, id); err != nil {
			t.Fatal(err)
		}
		_, err := b.eng.RetryJob(b.ctx, id)
		if !errors.Is(err, jobs.ErrStateConflict) {
			t.Fatalf("retry while the cancelled worker runs: %v, want ErrStateConflict", err)
		}
		if n, err := b.eng.RetryJobs(b.ctx, []int64{id}); err != nil || n != 0 {
			t.Errorf("bulk retry while the cancelled worker runs: n=%d err=%v, want 0", n, err)
		}
		close(release)
		// Its success is not recorded over the cancellation.
		b.probeOnce(t, "default")
		if j := b.get(t, id); j.State != jobs.StateCancelled || j.CompletedAt != nil {
			t.Errorf("state %s completed_at %v, want cancelled", j.State, j.CompletedAt)
		}
	})
}

func TestDeleteJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		var changes changeLog
		b := setup(t, be, options{poll: time.Hour, configure: func(c *jobs.Config) { c.OnChange = changes.record }}, w)
		running := b.insert(t, testArgs{Name: "running"}, jobs.InsertOpts{})
		<-w.started
		if err := b.eng.DeleteJob(b.ctx, running); !errors.Is(err, jobs.ErrStateConflict) {
			t.Errorf("delete an executing job: %v, want ErrStateConflict", err)
		}
		later := b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		changes.reset()
		if err := b.eng.DeleteJob(b.ctx, later); err != nil {
			t.Fatal(err)
		}
		if _, err := jobs.Get(b.ctx, b.st.Reader, later); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("get deleted job: %v, want ErrNotFound", err)
		}
		if !changes.saw(later) {
			t.Error("OnChange did not hear of the deleted job")
		}
		if err := b.eng.DeleteJob(b.ctx, later); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("delete it again: %v, want ErrNotFound", err)
		}
		close(w.release)
		b.waitState(t, running, jobs.StateCompleted)
		if err := b.eng.DeleteJob(b.ctx, running); err != nil {
			t.Errorf("delete a completed job: %v", err)
		}
	})
}

func TestBulkActions(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		var changes changeLog
		b := setup(t, be, options{poll: time.Hour, queues: map[string]int{"default": 1}, configure: func(c *jobs.Config) { c.OnChange = changes.record }}, w)
		running := b.insert(t, testArgs{Name: "running"}, jobs.InsertOpts{})
		<-w.started
		var waiting []int64
		for range 3 {
			waiting = append(waiting, b.insert(t, testArgs{Name: "waiting"}, jobs.InsertOpts{}))
		}

		changes.reset()
		all := append([]int64{running, 424242}, waiting...)
		if n, err := b.eng.CancelJobs(b.ctx, all); err != nil || n != 4 {
			t.Fatalf("cancel jobs: n=%d err=%v, want 4 (the unknown id skipped)", n, err)
		}
		if len(changes.calls) != 1 || len(changes.calls[0]) != 4 {
			t.Errorf("OnChange calls %v, want one call with the 4 ids", changes.calls)
		}
		if err := <-w.ctxErr; !errors.Is(err, context.Canceled) {
			t.Errorf("running job's ctx: %v", err)
		}
		// Its worker has returned; wait for the outcome to be dropped.
		b.probeOnce(t, "default")
		if n, err := b.eng.CancelJobs(b.ctx, all); err != nil || n != 0 {
			t.Errorf("cancel them again: n=%d err=%v, want 0", n, err)
		}

		b.eng.PauseQueue(b.ctx, "default")
		if n, err := b.eng.RetryJobs(b.ctx, all); err != nil || n != 4 {
			t.Fatalf("retry jobs: n=%d err=%v, want 4", n, err)
		}
		if n := b.count(t, "SELECT count(*) FROM jobs WHERE state = 'available' AND kind = 'test'"); n != 4 {
			t.Errorf("%d available after the retry, want 4", n)
		}
		if n, err := b.eng.DeleteJobs(b.ctx, all[:3]); err != nil || n != 2 {
			t.Fatalf("delete jobs: n=%d err=%v, want 2", n, err)
		}
		if n := b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'test'"); n != 2 {
			t.Errorf("%d jobs left, want 2", n)
		}
		if n, err := b.eng.DeleteJobs(b.ctx, nil); err != nil || n != 0 {
			t.Errorf("delete no jobs: n=%d err=%v", n, err)
		}
	})
}

func TestRetryUniqueJobWhileACopyIsInFlight(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{poll: time.Hour}, funcWorker{kind: "unique", fn: func(context.Context, *jobs.Job) error { return nil }})
		first := b.insert(t, uniqueArgs{Key: "k"}, jobs.InsertOpts{})
		b.waitState(t, first, jobs.StateCompleted)
		second := b.insert(t, uniqueArgs{Key: "k"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		if _, err := b.eng.RetryJob(b.ctx, first); !errors.Is(err, jobs.ErrStateConflict) {
			t.Fatalf("retry a completed unique job while a copy is scheduled: %v, want ErrStateConflict", err)
		}
		if n, err := b.eng.RetryJobs(b.ctx, []int64{first}); err != nil || n != 0 {
			t.Errorf("bulk retry: n=%d err=%v, want 0", n, err)
		}
		// The scheduled copy itself may be retried (run now).
		if _, err := b.eng.RetryJob(b.ctx, second); err != nil {
			t.Fatalf("retry the scheduled copy: %v", err)
		}
		b.waitState(t, second, jobs.StateCompleted)
		if _, err := b.eng.RetryJob(b.ctx, first); err != nil {
			t.Errorf("retry once no copy is in flight: %v", err)
		}
	})
}

// TestRetryTwoFinishedCopiesOfAUniqueJob: two campaigns that ended with no
// answer leave two discarded copies of one unique job. Retrying both at
// once retries one (the newest) and leaves the other, instead of failing
// the whole statement on the unique-in-flight index; retrying the other on
// its own then is a state conflict, not a database error.
func TestRetryTwoFinishedCopiesOfAUniqueJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{poll: time.Hour}, funcWorker{kind: "unique", fn: func(context.Context, *jobs.Job) error {
			return errors.New("no answer")
		}})
		older := b.insert(t, uniqueArgs{Key: "k"}, jobs.InsertOpts{MaxAttempts: 1})
		b.waitState(t, older, jobs.StateDiscarded)
		newer := b.insert(t, uniqueArgs{Key: "k"}, jobs.InsertOpts{MaxAttempts: 1})
		b.waitState(t, newer, jobs.StateDiscarded)
		plain := b.insert(t, testArgs{Name: "plain"}, jobs.InsertOpts{ScheduleIn: time.Hour})

		n, err := b.eng.RetryJobs(b.ctx, []int64{older, newer, plain})
		if err != nil || n != 2 {
			t.Fatalf("bulk retry: n=%d err=%v, want 2 (one copy and the plain job)", n, err)
		}
		// The newer copy runs once more (and fails again); the older stays.
		waitFor(t, waitTimeout, func() bool {
			j := b.get(t, newer)
			return j.State == jobs.StateDiscarded && j.Attempt == 2
		})
		if j := b.get(t, older); j.State != jobs.StateDiscarded || j.Attempt != 1 {
			t.Errorf("older copy %s attempt %d, want left discarded after attempt 1", j.State, j.Attempt)
		}
		// With a third copy waiting, retrying a finished one alone conflicts.
		b.insert(t, uniqueArgs{Key: "k"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		if _, err := b.eng.RetryJob(b.ctx, older); !errors.Is(err, jobs.ErrStateConflict) {
			t.Errorf("retry the older copy while another is in flight: %v, want ErrStateConflict", err)
		}
		if n, err := b.eng.RetryJobs(b.ctx, []int64{older, newer}); err != nil || n != 0 {
			t.Errorf("bulk retry while another copy is in flight: n=%d err=%v, want 0", n, err)
		}
	})
}
