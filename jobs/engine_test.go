package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// waitTimeout bounds every wait for a condition; a healthy engine meets
// each one in milliseconds.
const waitTimeout = 10 * time.Second

// t0 is where every fake clock starts: whole milliseconds, as stored.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is Config.Now for tests: it moves only when Advance is called,
// and counts how often the engine reads it (each claim reads it once).
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	reads int
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func (c *fakeClock) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// testArgs are the args of most test jobs. kind is not encoded; empty means
// "test".
type testArgs struct {
	kind string
	Name string `json:"name"`
}

func (a testArgs) Kind() string {
	if a.kind == "" {
		return "test"
	}
	return a.kind
}

// uniqueArgs carry their own insert defaults, like a worker's options.
type uniqueArgs struct {
	Key string `json:"key"`
}

func (uniqueArgs) Kind() string { return "unique" }

func (uniqueArgs) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Unique: true, MaxAttempts: 3}
}

// probeArgs are quick jobs that prove a queue has claimed due jobs.
type probeArgs struct {
	N int64 `json:"n"`
}

func (probeArgs) Kind() string { return "probe" }

// probeWorker completes every probe job at once. Every engine built by
// newEngine registers it.
type probeWorker struct{}

func (probeWorker) Kind() string                              { return "probe" }
func (probeWorker) Work(_ context.Context, _ *jobs.Job) error { return nil }

// funcWorker runs the jobs of kind with fn.
type funcWorker struct {
	kind string
	fn   func(ctx context.Context, job *jobs.Job) error
}

func (w funcWorker) Kind() string { return w.kind }

func (w funcWorker) Work(ctx context.Context, job *jobs.Job) error { return w.fn(ctx, job) }

// options shape the engine of one test; zero fields take the defaults.
type options struct {
	queues  map[string]int // {"default": 5}
	backoff jobs.Backoff   // FixedBackoff(0)
	poll    time.Duration  // 5 ms
	noStart bool           // register the workers but do not Start
	// configure, when set, changes the engine's Config last (node name,
	// maintenance intervals, callbacks, periodic jobs…).
	configure func(*jobs.Config)
}

// bundle is what a test works with.
type bundle struct {
	ctx   context.Context
	st    *store.Store
	eng   *jobs.Engine
	clock *fakeClock
	probe atomic.Int64
}

// setup opens a fresh database of backend be and starts an engine over it
// with workers.
func setup(t *testing.T, be storetest.Backend, opts options, workers ...jobs.Worker) *bundle {
	t.Helper()
	st := be.Open(t)
	clock := newFakeClock()
	return &bundle{ctx: t.Context(), st: st, clock: clock, eng: newEngine(t, st, clock, opts, workers...)}
}

func openStore(t testing.TB) *store.Store { return storetest.Open(t, "") }

// newEngine builds an engine over st, registers workers (and the probe
// worker), starts it unless opts.noStart, and stops it when the test ends.
func newEngine(t *testing.T, st *store.Store, clock *fakeClock, opts options, workers ...jobs.Worker) *jobs.Engine {
	t.Helper()
	if opts.queues == nil {
		opts.queues = map[string]int{"default": 5}
	}
	if opts.backoff == nil {
		opts.backoff = jobs.FixedBackoff(0)
	}
	if opts.poll == 0 {
		opts.poll = 5 * time.Millisecond
	}
	cfg := jobs.Config{
		Queues:       opts.queues,
		PollInterval: opts.poll,
		Backoff:      opts.backoff,
		Now:          clock.Now,
		Logger:       slog.New(slog.DiscardHandler),
		Node:         "test-node",
	}
	if opts.configure != nil {
		opts.configure(&cfg)
	}
	eng, err := jobs.New(st.Writer, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range append([]jobs.Worker{probeWorker{}}, workers...) {
		if err := eng.Register(w); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			t.Errorf("stop engine: %v", err)
		}
	})
	if !opts.noStart {
		if err := eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return eng
}

// waitFor polls cond every few milliseconds and fails the test when it is
// still false after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition still false after %s", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (b *bundle) insert(t *testing.T, args jobs.Args, opts jobs.InsertOpts) int64 {
	t.Helper()
	res, err := b.eng.Insert(b.ctx, args, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate {
		t.Fatalf("insert %+v: unexpected duplicate of job %d", args, res.ID)
	}
	return res.ID
}

func (b *bundle) get(t *testing.T, id int64) *jobs.Job {
	t.Helper()
	j, err := jobs.Get(b.ctx, b.st.Reader, id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitState waits until job id is in state want and returns it.
func (b *bundle) waitState(t *testing.T, id int64, want jobs.State) *jobs.Job {
	t.Helper()
	return b.waitStateWithin(t, id, want, waitTimeout)
}

func (b *bundle) waitStateWithin(t *testing.T, id int64, want jobs.State, timeout time.Duration) *jobs.Job {
	t.Helper()
	var last *jobs.Job
	var lastErr error
	defer func() {
		if lastErr != nil || last == nil || last.State != want {
			t.Logf("job %d never reached %s; last seen: %+v (err %v)", id, want, last, lastErr)
		}
	}()
	waitFor(t, timeout, func() bool {
		last, lastErr = jobs.Get(b.ctx, b.st.Reader, id)
		return lastErr == nil && last.State == want
	})
	return last
}

// probePolls runs n quick probe jobs through queue, one after another, and
// returns once all completed. Each completed probe proves that the queue
// claimed due jobs at the current fake time (with a free slot beside the
// probe, a claim takes every due job up to the free slots), so a job that
// is not due must still be waiting afterwards.
func (b *bundle) probePolls(t *testing.T, queue string, n int) {
	t.Helper()
	for range n {
		id := b.insert(t, probeArgs{N: b.probe.Add(1)}, jobs.InsertOpts{Queue: queue})
		b.waitState(t, id, jobs.StateCompleted)
	}
	// And let the poll ticker run a few idle claims too (each reads the
	// clock once).
	reads := b.clock.Reads()
	waitFor(t, waitTimeout, func() bool { return b.clock.Reads() >= reads+3 })
}

// waitStopping returns once a Stop running in another goroutine has stopped
// the queue loops, seen as the clock no longer being read by polls for many
// poll intervals, or once that Stop has returned. Either way the caller then
// checks, without timing, whether Stop returned too early.
func (b *bundle) waitStopping(t *testing.T, stopReturned *atomic.Bool) {
	t.Helper()
	const quiet = 100 * time.Millisecond // 20 poll intervals
	last, changed := b.clock.Reads(), time.Now()
	waitFor(t, waitTimeout, func() bool {
		if r := b.clock.Reads(); r != last {
			last, changed = r, time.Now()
		}
		return stopReturned.Load() || time.Since(changed) > quiet
	})
}

func (b *bundle) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := b.st.Reader.GetContext(b.ctx, &n, b.st.Rebind(query), args...); err != nil {
		t.Fatal(err)
	}
	return n
}

// idColumn is an auto-numbered integer primary key column in st's dialect,
// for the tables tests create beside the schema.
func idColumn(st *store.Store) string {
	if st.Dialect == store.Postgres {
		return "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
	}
	return "id INTEGER PRIMARY KEY"
}

func sameTime(got *time.Time, want time.Time) bool { return got != nil && got.Equal(want) }

func TestWorkerSuccessCompletesJob(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{queues: map[string]int{"default": 2}, backoff: jobs.FixedBackoff(time.Minute)},
			funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
				if calls.Add(1) == 1 {
					return errors.New("flaky: first attempt fails")
				}
				return nil
			}})

		id := b.insert(t, testArgs{Name: "flaky"}, jobs.InsertOpts{})
		j := b.waitState(t, id, jobs.StateRetryable)

		// The attempt finished at t0 on the fake clock.
		due := t0.Add(time.Minute)
		if j.Attempt != 1 {
			t.Errorf("attempt = %d, want 1", j.Attempt)
		}
		if !j.ScheduledAt.Equal(due) {
			t.Errorf("scheduled_at = %v, want finish time + 1m = %v", j.ScheduledAt, due)
		}
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
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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

func TestRescueAfterCrash(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		crashed := newEngine(t, st, clock, options{noStart: true})
		res, err := crashed.Insert(t.Context(), testArgs{Name: "interrupted"}, jobs.InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		// What a claim does, in a process that then dies.
		if _, err := st.Writer.ExecContext(t.Context(),
			st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = 1, attempted_at = ?, attempted_by = 'crashed-node/1' WHERE id = ?"),
			t0.UnixMilli(), res.ID); err != nil {
			t.Fatal(err)
		}

		seen := make(chan int, 10)
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			seen <- j.Attempt
			return nil
		}})

		j := b.waitState(t, res.ID, jobs.StateCompleted)
		if got := <-seen; got != 1 {
			t.Errorf("the rescued job ran as attempt %d, want 1 (the interrupted attempt is not counted)", got)
		}
		if j.Attempt != 1 {
			t.Errorf("attempt = %d, want 1", j.Attempt)
		}
		if len(j.Errors) != 1 {
			t.Fatalf("errors = %+v, want one interruption", j.Errors)
		}
		if e := j.Errors[0]; e.Attempt != 1 || !strings.Contains(e.Error, "interrupted") || !strings.Contains(e.Error, "crashed-node/1") {
			t.Errorf("errors[0] = %+v, want attempt 1 interrupted on crashed-node/1", e)
		}
		if n := b.count(t, "SELECT rescues FROM jobs WHERE id = ?", res.ID); n != 1 {
			t.Errorf("rescues = %d, want 1", n)
		}
	})
}

func TestRescueDiscardsAfterMaxRescues(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{noStart: true}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			calls.Add(1)
			return nil
		}})
		id := b.insert(t, testArgs{Name: "crashes the process"}, jobs.InsertOpts{})

		for i := 1; i <= jobs.MaxRescues; i++ {
			if _, err := b.st.Writer.ExecContext(b.ctx,
				b.st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = attempt + 1, attempted_by = 'crashed' WHERE id = ?"), id); err != nil {
				t.Fatal(err)
			}
			n, err := b.eng.Rescue(b.ctx)
			if err != nil || n != 1 {
				t.Fatalf("rescue %d: n=%d err=%v, want 1 job", i, n, err)
			}
			j := b.get(t, id)
			if got := b.count(t, "SELECT rescues FROM jobs WHERE id = ?", id); got != i {
				t.Errorf("rescue %d: rescues = %d", i, got)
			}
			if len(j.Errors) != i || !strings.Contains(j.Errors[i-1].Error, "interrupted") {
				t.Errorf("rescue %d: errors = %+v, want %d interruptions", i, j.Errors, i)
			}
			if i < jobs.MaxRescues {
				if j.State != jobs.StateRetryable || j.Attempt != 0 || j.DiscardedAt != nil || !j.ScheduledAt.Equal(t0) {
					t.Errorf("rescue %d: state %s attempt %d discarded_at %v scheduled_at %v, want retryable attempt 0 due now",
						i, j.State, j.Attempt, j.DiscardedAt, j.ScheduledAt)
				}
				continue
			}
			if j.State != jobs.StateDiscarded || !sameTime(j.DiscardedAt, t0) || j.Attempt != 1 {
				t.Errorf("rescue %d: state %s attempt %d discarded_at %v, want discarded at %v keeping attempt 1",
					i, j.State, j.Attempt, j.DiscardedAt, t0)
			}
		}
		if n, err := b.eng.Rescue(b.ctx); err != nil || n != 0 {
			t.Errorf("rescue with nothing executing: n=%d err=%v", n, err)
		}

		// Started now, the engine does not run the discarded job.
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		b.probePolls(t, "default", 2)
		if n := calls.Load(); n != 0 {
			t.Errorf("the discarded job ran %d times", n)
		}
	})
}

func TestQueueConcurrencyLimit(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
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

func TestUniqueInsert(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		gate := make(chan struct{})
		b := setup(t, be, options{}, funcWorker{kind: "unique", fn: func(ctx context.Context, _ *jobs.Job) error {
			select {
			case <-gate:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})

		first, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "a"}, jobs.InsertOpts{})
		if err != nil || first.Duplicate {
			t.Fatalf("first insert: %+v, %v", first, err)
		}
		if j := b.get(t, first.ID); j.MaxAttempts != 3 {
			t.Errorf("max_attempts = %d, want the args' default 3", j.MaxAttempts)
		}
		// Executing is still in flight.
		b.waitState(t, first.ID, jobs.StateExecuting)

		second, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "a"}, jobs.InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if !second.Duplicate || second.ID != first.ID {
			t.Errorf("second insert = %+v, want duplicate of %d", second, first.ID)
		}
		other, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "b"}, jobs.InsertOpts{})
		if err != nil || other.Duplicate || other.ID == first.ID {
			t.Errorf("insert with other args = %+v, %v: want a new job", other, err)
		}
		if n := b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'unique'"); n != 2 {
			t.Errorf("%d unique jobs stored, want 2", n)
		}

		// Without Unique, equal args make two jobs.
		for range 2 {
			b.insert(t, testArgs{Name: "same"}, jobs.InsertOpts{})
		}
		// Unique in the insert options works for any args.
		optsUnique, err := b.eng.Insert(b.ctx, testArgs{kind: "unique", Name: "via opts"}, jobs.InsertOpts{Unique: true, Queue: "elsewhere"})
		if err != nil || optsUnique.Duplicate {
			t.Fatalf("insert unique by opts: %+v, %v", optsUnique, err)
		}
		again, err := b.eng.Insert(b.ctx, testArgs{kind: "unique", Name: "via opts"}, jobs.InsertOpts{Unique: true, Queue: "elsewhere"})
		if err != nil || !again.Duplicate || again.ID != optsUnique.ID {
			t.Errorf("second unique-by-opts insert = %+v, %v: want duplicate of %d", again, err, optsUnique.ID)
		}

		close(gate)
		b.waitState(t, first.ID, jobs.StateCompleted)
		third, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "a"}, jobs.InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if third.Duplicate || third.ID == first.ID {
			t.Errorf("insert after completion = %+v, want a new job", third)
		}
		b.waitState(t, third.ID, jobs.StateCompleted)
	})
}

func TestInsertManySkipsDuplicates(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		n, err := b.eng.InsertMany(b.ctx, []jobs.InsertParams{
			{Args: uniqueArgs{Key: "x"}},
			{Args: uniqueArgs{Key: "x"}},
			{Args: uniqueArgs{Key: "y"}},
			{Args: testArgs{Name: "plain"}},
			{Args: testArgs{Name: "plain"}},
		})
		if err != nil || n != 4 {
			t.Fatalf("insert many: n=%d err=%v, want 4", n, err)
		}
		n, err = b.eng.InsertMany(b.ctx, []jobs.InsertParams{
			{Args: uniqueArgs{Key: "x"}},
			{Args: uniqueArgs{Key: "z"}},
		})
		if err != nil || n != 1 {
			t.Fatalf("second insert many: n=%d err=%v, want 1", n, err)
		}
		if got := b.count(t, "SELECT count(*) FROM jobs"); got != 5 {
			t.Errorf("%d jobs stored, want 5", got)
		}
		if got := b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'unique' AND args = '{\"key\":\"x\"}'"); got != 1 {
			t.Errorf("%d copies of unique x, want 1", got)
		}
	})
}

func TestInsertValidation(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		tests := []struct {
			name string
			args jobs.Args
			opts jobs.InsertOpts
		}{
			{name: "nil args", args: nil},
			{name: "empty kind", args: emptyKindArgs{}},
			{name: "priority above 9", args: testArgs{}, opts: jobs.InsertOpts{Priority: 10}},
			{name: "negative priority", args: testArgs{}, opts: jobs.InsertOpts{Priority: -1}},
			{name: "negative max attempts", args: testArgs{}, opts: jobs.InsertOpts{MaxAttempts: -1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if res, err := b.eng.Insert(b.ctx, tt.args, tt.opts); err == nil {
					t.Errorf("insert succeeded with %+v, want an error", res)
				}
			})
		}
		if n := b.count(t, "SELECT count(*) FROM jobs"); n != 0 {
			t.Errorf("%d jobs stored by invalid inserts", n)
		}
	})
}

type emptyKindArgs struct{}

func (emptyKindArgs) Kind() string { return "" }

func TestInsertTxFollowsCallersTransaction(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name   string
			commit bool
		}{
			{name: "rolled back", commit: false},
			{name: "committed", commit: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				// An hour between polls: only Wake starts the job promptly.
				b := setup(t, be, options{poll: time.Hour}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
				if _, err := b.st.Writer.ExecContext(b.ctx, "CREATE TABLE notes ("+idColumn(b.st)+", body TEXT NOT NULL)"); err != nil {
					t.Fatal(err)
				}

				tx, err := b.st.Writer.BeginTxx(b.ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(b.ctx, "INSERT INTO notes (body) VALUES ('the change')"); err != nil {
					tx.Rollback()
					t.Fatal(err)
				}
				res, err := b.eng.InsertTx(b.ctx, tx, testArgs{Name: "with the change"}, jobs.InsertOpts{})
				if err != nil {
					tx.Rollback()
					t.Fatal(err)
				}
				if !tt.commit {
					if err := tx.Rollback(); err != nil {
						t.Fatal(err)
					}
					if _, err := jobs.Get(b.ctx, b.st.Reader, res.ID); !errors.Is(err, jobs.ErrNotFound) {
						t.Errorf("get rolled-back job: err %v, want ErrNotFound", err)
					}
					if n := b.count(t, "SELECT count(*) FROM jobs"); n != 0 {
						t.Errorf("%d jobs after rollback", n)
					}
					if n := b.count(t, "SELECT count(*) FROM notes"); n != 0 {
						t.Errorf("%d notes after rollback", n)
					}
					return
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if _, err := jobs.Get(b.ctx, b.st.Reader, res.ID); err != nil {
					t.Fatalf("get committed job: %v", err)
				}
				if n := b.count(t, "SELECT count(*) FROM notes"); n != 1 {
					t.Errorf("%d notes after commit, want 1", n)
				}
				b.eng.Wake()
				b.waitState(t, res.ID, jobs.StateCompleted)
			})
		}
	})
}

func TestRecordTxCommitsWithOutcome(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name        string
			maxAttempts int
			workErr     error
			hookErr     error
			wantState   jobs.State
			wantRows    int
			wantAfter   bool
			wantErrText []string
		}{
			{name: "success commits write and completion", maxAttempts: 3,
				wantState: jobs.StateCompleted, wantRows: 2, wantAfter: true},
			{name: "failed work still commits its write", maxAttempts: 3, workErr: errors.New("work failed"),
				wantState: jobs.StateRetryable, wantRows: 2, wantAfter: true, wantErrText: []string{"work failed"}},
			{name: "hook error rolls back and fails the attempt", maxAttempts: 3, hookErr: errors.New("hook boom"),
				wantState: jobs.StateRetryable, wantRows: 0, wantErrText: []string{"record outcome", "hook boom"}},
			{name: "hook error on the last attempt discards", maxAttempts: 1, hookErr: errors.New("hook boom"),
				wantState: jobs.StateDiscarded, wantRows: 0, wantErrText: []string{"record outcome", "hook boom"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				st := be.Open(t)
				if _, err := st.Writer.ExecContext(t.Context(),
					"CREATE TABLE outbox ("+idColumn(st)+", job_id INTEGER NOT NULL, note TEXT NOT NULL)"); err != nil {
					t.Fatal(err)
				}

				type afterSeen struct {
					rows  int
					state jobs.State
					err   error
				}
				after := make(chan afterSeen, 10)
				worker := funcWorker{kind: "test", fn: func(_ context.Context, job *jobs.Job) error {
					// Two hooks: when the second fails, the first one's write
					// must be rolled back too.
					job.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
						_, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO outbox (job_id, note) VALUES (?, 'first')"), job.ID)
						return err
					})
					job.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
						if _, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO outbox (job_id, note) VALUES (?, 'second')"), job.ID); err != nil {
							return err
						}
						return tt.hookErr
					})
					job.AfterRecord(func() {
						var s afterSeen
						s.err = st.Reader.Get(&s.rows, st.Reader.Rebind("SELECT count(*) FROM outbox WHERE job_id = ?"), job.ID)
						if j, err := jobs.Get(context.Background(), st.Reader, job.ID); err != nil {
							s.err = errors.Join(s.err, err)
						} else {
							s.state = j.State
						}
						after <- s
					})
					return tt.workErr
				}}
				clock := newFakeClock()
				// Limit 1: the probe below runs only after the job's
				// AfterRecord phase has ended.
				b := &bundle{ctx: t.Context(), st: st, clock: clock}
				b.eng = newEngine(t, st, clock, options{queues: map[string]int{"default": 1}, backoff: jobs.FixedBackoff(time.Hour)}, worker)

				id := b.insert(t, testArgs{Name: "with writes"}, jobs.InsertOpts{MaxAttempts: tt.maxAttempts})
				j := b.waitState(t, id, tt.wantState)
				b.probePolls(t, "default", 1)

				if n := b.count(t, "SELECT count(*) FROM outbox WHERE job_id = ?", id); n != tt.wantRows {
					t.Errorf("%d outbox rows, want %d", n, tt.wantRows)
				}
				if j.Attempt != 1 {
					t.Errorf("attempt = %d, want 1", j.Attempt)
				}
				if len(tt.wantErrText) == 0 && len(j.Errors) != 0 {
					t.Errorf("errors = %+v, want none", j.Errors)
				}
				if len(tt.wantErrText) > 0 {
					if len(j.Errors) != 1 {
						t.Fatalf("errors = %+v, want one", j.Errors)
					}
					for _, want := range tt.wantErrText {
						if !strings.Contains(j.Errors[0].Error, want) {
							t.Errorf("error %q lacks %q", j.Errors[0].Error, want)
						}
					}
				}

				select {
				case s := <-after:
					if !tt.wantAfter {
						t.Errorf("AfterRecord ran (saw %+v) although recording the outcome failed", s)
						break
					}
					if s.err != nil || s.rows != tt.wantRows || s.state != tt.wantState {
						t.Errorf("inside AfterRecord: %d rows, state %s, err %v; want the committed %d rows and state %s",
							s.rows, s.state, s.err, tt.wantRows, tt.wantState)
					}
				default:
					if tt.wantAfter {
						t.Errorf("AfterRecord did not run")
					}
				}
			})
		}
	})
}

func TestWorkerCancel(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			if calls.Add(1) == 1 {
				return jobs.Snooze(time.Minute)
			}
			return nil
		}})

		id := b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{MaxAttempts: 1})
		j := b.waitState(t, id, jobs.StateScheduled)
		due := t0.Add(time.Minute)
		if j.Attempt != 0 {
			t.Errorf("attempt = %d after a snooze, want 0", j.Attempt)
		}
		if !j.ScheduledAt.Equal(due) {
			t.Errorf("scheduled_at = %v, want %v", j.ScheduledAt, due)
		}
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

func TestStopWaitsForRunningJob(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		started := make(chan struct{})
		release := make(chan struct{})
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
			close(started)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
		id := b.insert(t, testArgs{Name: "slow"}, jobs.InsertOpts{})
		<-started

		stopped := make(chan error, 1)
		var stopReturned atomic.Bool
		go func() {
			err := b.eng.Stop(context.Background())
			stopReturned.Store(true)
			stopped <- err
		}()
		b.waitStopping(t, &stopReturned)
		if stopReturned.Load() {
			t.Fatalf("Stop returned (%v) while a job was still running", <-stopped)
		}
		// Released from another goroutine while Stop waits.
		go close(release)

		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("stop: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Stop did not return after the running job finished")
		}
		// Stop has returned, so the outcome must already be committed.
		j := b.get(t, id)
		if j.State != jobs.StateCompleted || j.Attempt != 1 || len(j.Errors) != 0 {
			t.Errorf("after Stop: state %s attempt %d errors %+v, want completed attempt 1", j.State, j.Attempt, j.Errors)
		}
	})
}

// TestStopCancelsJobsWhenContextEnds: when Stop's ctx ends, running jobs'
// contexts are cancelled; a worker that honours that returns, and its
// attempt, cut short by our own stop, is given back: the job is available
// again with its attempt not counted (not discarded, though it was its
// last), the interruption noted, and no "context canceled" failure.
func TestStopCancelsJobsWhenContextEnds(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		started := make(chan struct{})
		var ctxErr atomic.Value
		first := newEngine(t, st, clock, options{backoff: jobs.FixedBackoff(time.Hour)}, funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
			close(started)
			<-ctx.Done()
			ctxErr.Store(ctx.Err())
			return fmt.Errorf("call dropped: %w", ctx.Err())
		}})
		b := &bundle{ctx: t.Context(), st: st, clock: clock, eng: first}
		id := b.insert(t, testArgs{Name: "stubborn but polite"}, jobs.InsertOpts{MaxAttempts: 1})
		<-started

		stopCtx, expire := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		var stopReturned atomic.Bool
		go func() {
			err := b.eng.Stop(stopCtx)
			stopReturned.Store(true)
			stopped <- err
		}()
		// The job cannot return before its context ends, and that needs
		// stopCtx to end: Stop must still be waiting.
		b.waitStopping(t, &stopReturned)
		if stopReturned.Load() {
			t.Fatalf("Stop returned (%v) while a job was running and its context was live", <-stopped)
		}
		expire()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("stop: %v, want nil (the job honoured cancellation)", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Stop did not return after its context ended")
		}
		if err, _ := ctxErr.Load().(error); !errors.Is(err, context.Canceled) {
			t.Errorf("the job's context ended with %v, want context.Canceled", err)
		}
		j := b.get(t, id)
		if j.State != jobs.StateAvailable || j.Attempt != 0 || len(j.Errors) != 1 ||
			!strings.Contains(j.Errors[0].Error, "interrupted") || strings.Contains(j.Errors[0].Error, context.Canceled.Error()) {
			t.Fatalf("after hard stop: state %s attempt %d errors %+v, want available, attempt given back, the interruption noted",
				j.State, j.Attempt, j.Errors)
		}
		if n := b.count(t, "SELECT n FROM job_counts WHERE queue = 'default' AND state = 'available'"); n != 1 {
			t.Errorf("job_counts: %d available, want 1", n)
		}
		// Its only attempt is still there: the next engine runs it.
		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		if j := b.waitState(t, id, jobs.StateCompleted); j.Attempt != 1 {
			t.Errorf("attempt %d, want 1", j.Attempt)
		}
	})
}

// TestStopGraceOverrun: Stop's ctx (the grace period) ends while a worker
// still runs. One that honours cancellation only slowly, but within the
// short wait after it, has its attempt given back and Stop returns nil; one
// that overruns that wait too is left executing, Stop returns an error in
// time, and the next start rescues it with its attempt given back.
func TestStopGraceOverrun(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		var started sync.WaitGroup
		started.Add(2)
		release := make(chan struct{})
		returned := make(chan string, 2)
		first := newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(ctx context.Context, j *jobs.Job) error {
			var args testArgs
			j.UnmarshalArgs(&args)
			started.Done()
			defer func() { returned <- args.Name }()
			switch args.Name {
			case "slow to stop":
				<-ctx.Done()
				time.Sleep(200 * time.Millisecond) // winding down
				return ctx.Err()
			default: // "overrun": ignores ctx
				<-release
				return nil
			}
		}})
		b := &bundle{ctx: t.Context(), st: st, clock: clock, eng: first}
		slow := b.insert(t, testArgs{Name: "slow to stop"}, jobs.InsertOpts{MaxAttempts: 1})
		overrun := b.insert(t, testArgs{Name: "overrun"}, jobs.InsertOpts{MaxAttempts: 1})
		started.Wait()

		const grace = 100 * time.Millisecond
		stopCtx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		begun := time.Now()
		err := first.Stop(stopCtx)
		took := time.Since(begun)
		t.Logf("Stop returned after %s", took)
		if err == nil || !strings.Contains(err.Error(), "left executing") {
			t.Errorf("Stop = %v, want an error naming the job left executing", err)
		}
		// The grace, then at most the engine's 2 s wait for cancelled jobs.
		if limit := grace + 2*time.Second + time.Second; took > limit {
			t.Errorf("Stop took %s, want under %s", took, limit)
		}
		if name := <-returned; name != "slow to stop" {
			t.Errorf("%q returned first", name)
		}
		if j := b.get(t, slow); j.State != jobs.StateAvailable || j.Attempt != 0 {
			t.Errorf("slow to stop: state %s attempt %d errors %+v, want available with its attempt given back", j.State, j.Attempt, j.Errors)
		}
		if j := b.get(t, overrun); j.State != jobs.StateExecuting || j.Attempt != 1 {
			t.Errorf("overrun: state %s attempt %d, want left executing on attempt 1", j.State, j.Attempt)
		}
		if n := b.count(t, "SELECT count(*) FROM job_nodes WHERE name = 'test-node'"); n != 1 {
			t.Errorf("%d node rows, want ours kept (a job is left executing)", n)
		}
		close(release)
		<-returned
		// The outcome of the overrun came after the recorder stopped: it is
		// not recorded; the next start rescues the job and gives the attempt
		// back (MaxAttempts 1: not discarded).
		if j := b.get(t, overrun); j.State != jobs.StateExecuting {
			t.Errorf("overrun after it returned: state %s, want still executing", j.State)
		}
		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		for _, id := range []int64{slow, overrun} {
			if j := b.waitState(t, id, jobs.StateCompleted); j.Attempt != 1 {
				t.Errorf("job %d: attempt %d, want 1 (the interrupted one given back)", id, j.Attempt)
			}
		}
	})
}

func TestStopLeavesJobThatIgnoresCancellation(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		started := make(chan struct{})
		release := make(chan struct{})
		first := newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			close(started)
			<-release // ignores ctx
			return nil
		}})
		b := &bundle{ctx: t.Context(), st: st, clock: clock, eng: first}
		id := b.insert(t, testArgs{Name: "deaf"}, jobs.InsertOpts{})
		<-started

		stopCtx, expire := context.WithCancel(context.Background())
		expire()
		if err := first.Stop(stopCtx); err == nil {
			t.Error("Stop returned nil although a job ignored cancellation")
		}
		close(release)
		if j := b.get(t, id); j.State != jobs.StateExecuting {
			t.Fatalf("state = %s, want executing (left for the next start to rescue)", j.State)
		}

		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		j := b.waitState(t, id, jobs.StateCompleted)
		if j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "interrupted") {
			t.Errorf("attempt %d errors %+v, want attempt 1 after one interruption", j.Attempt, j.Errors)
		}
	})
}

func TestClaimOrder(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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

func TestUnregisteredKindFails(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{})
		id := b.insert(t, testArgs{kind: "nobody", Name: "orphan"}, jobs.InsertOpts{MaxAttempts: 1})
		j := b.waitState(t, id, jobs.StateDiscarded)
		if len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, `no worker registered for kind "nobody"`) {
			t.Errorf("errors = %+v, want no worker registered", j.Errors)
		}
	})
}

func TestRegister(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		eng, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 1}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Stop(context.Background()) })
		noop := func(context.Context, *jobs.Job) error { return nil }

		if err := eng.Register(funcWorker{kind: "a", fn: noop}); err != nil {
			t.Fatalf("first registration: %v", err)
		}
		if err := eng.Register(funcWorker{kind: "a", fn: noop}); err == nil {
			t.Error("registering kind a twice succeeded, want an error")
		}
		if err := eng.Register(funcWorker{kind: "b", fn: noop}); err != nil {
			t.Errorf("registering kind b: %v", err)
		}
		if err := eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := eng.Register(funcWorker{kind: "c", fn: noop}); err == nil {
			t.Error("registering after Start succeeded, want an error")
		}
	})
}

func TestNewRejectsBadQueues(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		tests := []struct {
			name   string
			queues map[string]int
		}{
			{name: "zero limit", queues: map[string]int{"q": 0}},
			{name: "negative limit", queues: map[string]int{"q": -1}},
			{name: "empty name", queues: map[string]int{"": 1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := jobs.New(st.Writer, jobs.Config{Queues: tt.queues}); err == nil {
					t.Errorf("New accepted queues %v", tt.queues)
				}
			})
		}
	})
}

// TestStartAfterFailedStart: Start documents that it rescues and then runs
// the queues; a Start that failed (here: its rescue, with an ended context)
// must not make a later Start report success while doing neither.
func TestStartAfterFailedStart(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		id := b.insert(t, testArgs{Name: "left executing"}, jobs.InsertOpts{})
		if _, err := b.st.Writer.ExecContext(b.ctx, b.st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = 1 WHERE id = ?"), id); err != nil {
			t.Fatal(err)
		}

		ended, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.eng.Start(ended); err == nil {
			t.Fatal("Start with an ended context succeeded, want the rescue's error")
		}
		// The job being executing right after Start proves nothing (a queue
		// may have claimed it again at once); completing proves both the
		// rescue and a running queue.
		if err := b.eng.Start(b.ctx); err == nil {
			b.waitState(t, id, jobs.StateCompleted)
		}
	})
}

func TestParseBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantErr bool
		fixed   time.Duration // when not oban
		oban    bool
	}{
		{name: "oban", in: "oban", oban: true},
		{name: "oban any case", in: "Oban", oban: true},
		{name: "zero", in: "0s", fixed: 0},
		{name: "milliseconds", in: "200ms", fixed: 200 * time.Millisecond},
		{name: "seconds", in: "30s", fixed: 30 * time.Second},
		{name: "negative", in: "-1s", wantErr: true},
		{name: "word", in: "soon", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bo, err := jobs.ParseBackoff(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Errorf("ParseBackoff(%q) succeeded, want an error", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBackoff(%q): %v", tt.in, err)
			}
			for attempt := 1; attempt <= 8; attempt++ {
				got := bo(attempt)
				if tt.oban {
					checkObanRange(t, attempt, got)
				} else if got != tt.fixed {
					t.Errorf("attempt %d: backoff %s, want %s", attempt, got, tt.fixed)
				}
			}
		})
	}
}

// checkObanRange checks 15 s + 2^attempt s, plus at most 10 %.
func checkObanRange(t *testing.T, attempt int, got time.Duration) {
	t.Helper()
	base := time.Duration(15+1<<min(attempt, 20)) * time.Second
	if got < base || float64(got) > 1.1*float64(base) {
		t.Errorf("attempt %d: backoff %s outside [%s, %s]", attempt, got, base, time.Duration(1.1*float64(base)))
	}
}

func TestObanBackoff(t *testing.T) {
	t.Parallel()
	a := jobs.ObanBackoff(rand.New(rand.NewPCG(1, 2)))
	b := jobs.ObanBackoff(rand.New(rand.NewPCG(1, 2)))
	jittered := false
	for _, attempt := range []int{1, 2, 3, 4, 5, 10, 20, 25, 100} {
		got := a(attempt)
		checkObanRange(t, attempt, got)
		if again := b(attempt); again != got {
			t.Errorf("attempt %d: same seed gave %s and %s", attempt, got, again)
		}
		if got != time.Duration(15+1<<min(attempt, 20))*time.Second {
			jittered = true
		}
	}
	if !jittered {
		t.Error("no jitter in any backoff")
	}
	// The first retries are about 17, 19, 23 and 31 s apart.
	for attempt, want := range map[int]time.Duration{1: 17 * time.Second, 2: 19 * time.Second, 3: 23 * time.Second, 4: 31 * time.Second} {
		if got := a(attempt); got < want || float64(got) > 1.1*float64(want) {
			t.Errorf("attempt %d: %s, want about %s", attempt, got, want)
		}
	}
}

// wedgeTimeout is the shorter deadline of the tests that catch the engine
// wedged: a healthy engine needs milliseconds, and a wedged one then takes up
// to 5 s more (its retry delay) to recover once cured.
const wedgeTimeout = 4 * time.Second

// poisonSchema creates a child table whose foreign key the database checks
// only at COMMIT, so a RecordTx hook that writes an orphan child succeeds but makes
// the outcome's transaction fail to commit. cure adds the missing parent,
// after which that transaction commits.
func poisonSchema(t *testing.T, st *store.Store) (cure func()) {
	t.Helper()
	if _, err := st.Writer.ExecContext(t.Context(), `
		CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (`+idColumn(st)+`,
			parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := st.Writer.ExecContext(context.Background(), "INSERT INTO parent (id) VALUES (42) ON CONFLICT DO NOTHING"); err != nil {
			t.Errorf("cure: %v", err)
		}
	}
}

// poisonWorker's outcome cannot commit while parent 42 is missing.
func poisonWorker(returned *atomic.Bool) funcWorker {
	return funcWorker{kind: "poison", fn: func(_ context.Context, j *jobs.Job) error {
		defer returned.Store(true)
		j.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO child (parent_id) VALUES (42)")
			return err
		})
		return nil
	}}
}

// TestCommitFailureDoesNotWedgeRecorder: one attempt whose outcome the
// database rejects for good must fail that attempt (as a failing RecordTx
// does), not stop every other job's outcome from being recorded.
func TestCommitFailureDoesNotWedgeRecorder(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		cure := poisonSchema(t, st)
		clock := newFakeClock()
		var returned atomic.Bool
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		b.eng = newEngine(t, st, clock, options{queues: map[string]int{"default": 2}, backoff: jobs.FixedBackoff(time.Hour)},
			poisonWorker(&returned), funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		t.Cleanup(cure) // runs before the engine's Stop, so a wedged recorder can finish

		poison := b.insert(t, testArgs{kind: "poison", Name: "orphan child"}, jobs.InsertOpts{})
		waitFor(t, waitTimeout, returned.Load)
		innocent := b.insert(t, testArgs{Name: "innocent"}, jobs.InsertOpts{})
		b.waitStateWithin(t, innocent, jobs.StateCompleted, wedgeTimeout)

		j := b.waitState(t, poison, jobs.StateRetryable)
		if len(j.Errors) != 1 || !strings.Contains(strings.ToLower(j.Errors[0].Error), "foreign key") {
			t.Errorf("errors = %+v, want the commit's foreign key error", j.Errors)
		}
		if n := b.count(t, "SELECT count(*) FROM child"); n != 0 {
			t.Errorf("%d orphan child rows committed", n)
		}
	})
}

// TestStopHonoursContextWhileOutcomeCannotCommit: Stop's ctx bounds the
// whole stop, including a recorder that keeps retrying a transaction the
// database refuses (as on a full disk).
func TestStopHonoursContextWhileOutcomeCannotCommit(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		cure := poisonSchema(t, st)
		clock := newFakeClock()
		var returned atomic.Bool
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		b.eng = newEngine(t, st, clock, options{}, poisonWorker(&returned))
		t.Cleanup(cure)

		id := b.insert(t, testArgs{kind: "poison", Name: "orphan child"}, jobs.InsertOpts{})
		waitFor(t, waitTimeout, returned.Load)

		stopCtx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- b.eng.Stop(stopCtx) }()
		var err error
		select {
		case err = <-stopped:
		case <-time.After(wedgeTimeout):
			t.Errorf("Stop still running %s after its context ended", wedgeTimeout)
			cure()
			err = <-stopped
		}
		if j := b.get(t, id); j.State == jobs.StateExecuting && err == nil {
			t.Errorf("Stop returned nil but left job %d executing, its outcome unrecorded", id)
		}
	})
}

func TestNewRejectsBadMaintenanceSettings(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		_, err := jobs.New(st.Writer, jobs.Config{HeartbeatInterval: time.Minute, NodeTimeout: time.Minute})
		if err == nil {
			t.Error("New accepted a node timeout shorter than two heartbeats")
		}
	})
}
