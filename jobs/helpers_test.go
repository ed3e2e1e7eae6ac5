// Shared helpers of the jobs tests: the fake clock, the args and workers,
// and the bundle every engine test starts from (setup, newEngine).
package jobs_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/phonehome/phonehome/internal/testwait"
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

// bothBackends runs fn once per backend (storetest.Run), the test itself
// in parallel with the others.
func bothBackends(t *testing.T, fn func(t *testing.T, be storetest.Backend)) {
	t.Helper()
	t.Parallel()
	storetest.Run(t, fn)
}

// bare is a bundle on a fresh database of be, with a fake clock and no
// engine yet: for tests that build their engines themselves.
func bare(t *testing.T, be storetest.Backend) *bundle {
	t.Helper()
	return &bundle{ctx: t.Context(), st: be.Open(t), clock: newFakeClock()}
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
	eng := buildEngine(t, st.Writer, cfg, append([]jobs.Worker{probeWorker{}}, workers...)...)
	if !opts.noStart {
		if err := eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return eng
}

// buildEngine makes an engine over db with cfg, registers workers, and
// stops it when the test ends (failing the test if it cannot within 5 s).
func buildEngine(t *testing.T, db *sqlx.DB, cfg jobs.Config, workers ...jobs.Worker) *jobs.Engine {
	t.Helper()
	eng, err := jobs.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if err := eng.Register(w); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			t.Errorf("stop engine %s: %v", cfg.Node, err)
		}
	})
	return eng
}

// waitFor is testwait.Until for the many waits of these tests that the
// failing line names well enough.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testwait.Until(t, timeout, "condition", cond)
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

// waitDue waits until job id is in state, then checks that it is due at
// due after attempt attempts.
func (b *bundle) waitDue(t *testing.T, id int64, state jobs.State, attempt int, due time.Time) *jobs.Job {
	t.Helper()
	j := b.waitState(t, id, state)
	if j.Attempt != attempt || !j.ScheduledAt.Equal(due) {
		t.Errorf("%s: attempt %d, scheduled_at %v; want attempt %d, due at %v", state, j.Attempt, j.ScheduledAt, attempt, due)
	}
	return j
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

// stopWhile calls b.eng.Stop(ctx) in another goroutine and checks that it
// does not return while what holds (see waitStopping). The returned
// function waits for Stop to return, after what the caller then did
// (failing t when it does not within waitTimeout), and gives its error.
func (b *bundle) stopWhile(t *testing.T, ctx context.Context, what string) (returned func(after string) error) {
	t.Helper()
	stopped := make(chan error, 1)
	var stopReturned atomic.Bool
	go func() {
		err := b.eng.Stop(ctx)
		stopReturned.Store(true)
		stopped <- err
	}()
	b.waitStopping(t, &stopReturned)
	if stopReturned.Load() {
		t.Fatalf("Stop returned (%v) while %s", <-stopped, what)
	}
	return func(after string) error {
		t.Helper()
		select {
		case err := <-stopped:
			return err
		case <-time.After(waitTimeout):
			t.Fatalf("Stop did not return after %s", after)
			return nil
		}
	}
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
// openWithOutbox opens a new database of be with a table of the test's
// own, outbox: an id, then columns.
func openWithOutbox(t *testing.T, be storetest.Backend, columns string) *store.Store {
	t.Helper()
	st := be.Open(t)
	if _, err := st.Writer.ExecContext(t.Context(), "CREATE TABLE outbox ("+idColumn(st)+", "+columns+")"); err != nil {
		t.Fatal(err)
	}
	return st
}

// released waits until release closes (nil) or ctx ends (its error): the
// body of a worker that runs until the test lets it go.
func released(ctx context.Context, release <-chan struct{}) error {
	select {
	case <-release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func idColumn(st *store.Store) string {
	if st.Dialect == store.Postgres {
		return "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
	}
	return "id INTEGER PRIMARY KEY"
}

func sameTime(got *time.Time, want time.Time) bool { return got != nil && got.Equal(want) }
