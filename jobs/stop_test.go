// Stopping the engine, and the recorder that Stop waits for: what happens to
// running jobs and to outcomes the database refuses to commit.
package jobs_test

import (
	"context"
	"errors"
	"fmt"
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

func TestStopWaitsForRunningJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		started := make(chan struct{})
		release := make(chan struct{})
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
			close(started)
			return released(ctx, release)
		}})
		id := b.insert(t, testArgs{Name: "slow"}, jobs.InsertOpts{})
		<-started

		returned := b.stopWhile(t, context.Background(), "a job was still running")
		// Released from another goroutine while Stop waits.
		go close(release)
		if err := returned("the running job finished"); err != nil {
			t.Fatalf("stop: %v", err)
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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
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
		// The job cannot return before its context ends, and that needs
		// stopCtx to end: Stop must still be waiting.
		returned := b.stopWhile(t, stopCtx, "a job was running and its context was live")
		expire()
		if err := returned("its context ended"); err != nil {
			t.Errorf("stop: %v, want nil (the job honoured cancellation)", err)
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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
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

func TestRecordTxCommitsWithOutcome(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
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
				st := openWithOutbox(t, be, "job_id INTEGER NOT NULL, note TEXT NOT NULL")

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

// wedgeTimeout is the shorter deadline of the tests that catch the engine
// wedged: a healthy engine needs milliseconds, and a wedged one then takes up
// to 5 s more (its retry delay) to recover once cured.
const wedgeTimeout = 4 * time.Second

// poisoned is a bundle on a poisoned database (poisonSchema) with a started
// engine, and its cure; the cure also runs when the test ends, before the engine's Stop, so a
// wedged recorder can finish.
func poisoned(t *testing.T, be storetest.Backend, opts options, workers ...jobs.Worker) (b *bundle, cure func()) {
	t.Helper()
	b = bare(t, be)
	cure = poisonSchema(t, b.st)
	b.eng = newEngine(t, b.st, b.clock, opts, workers...)
	t.Cleanup(cure)
	return b, cure
}

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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var returned atomic.Bool
		b, _ := poisoned(t, be, options{queues: map[string]int{"default": 2}, backoff: jobs.FixedBackoff(time.Hour)},
			poisonWorker(&returned), funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})

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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var returned atomic.Bool
		b, cure := poisoned(t, be, options{}, poisonWorker(&returned))

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
