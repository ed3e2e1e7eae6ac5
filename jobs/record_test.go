package jobs_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
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
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
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
