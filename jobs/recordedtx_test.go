package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// Config.RecordedTx runs in each outcome transaction, with the jobs whose
// outcomes it writes in their new state: what it writes commits with
// them. An error from it fails that transaction, which is tried again, so
// what it wrote is never left behind twice or lost.
func TestRecordedTxCommitsWithTheOutcomes(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		hook := func(ctx context.Context, tx *sqlx.Tx, recorded []*jobs.Job) error {
			for _, j := range recorded {
				if j.State != jobs.StateCompleted && j.State != jobs.StateRetryable {
					return errors.New("a recorded job not in its new state: " + string(j.State))
				}
				if _, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO recorded (job_id, state) VALUES (?, ?)"), j.ID, string(j.State)); err != nil {
					return err
				}
			}
			if calls.Add(1) == 1 {
				return errors.New("refused once") // the first batch is tried again
			}
			return nil
		}
		fail := funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			if j.Attempt == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		}}
		b := setup(t, be, options{noStart: true, configure: func(c *jobs.Config) { c.RecordedTx = hook }}, fail)
		if _, err := b.st.Writer.ExecContext(b.ctx, "CREATE TABLE recorded (job_id BIGINT NOT NULL, state TEXT NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for i := range 5 {
			ids = append(ids, b.insert(t, testArgs{Name: string(rune('a' + i))}, jobs.InsertOpts{MaxAttempts: 2}))
		}
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			b.waitState(t, id, jobs.StateCompleted)
		}
		for _, id := range ids {
			for _, st := range []jobs.State{jobs.StateRetryable, jobs.StateCompleted} {
				if n := b.count(t, "SELECT count(*) FROM recorded WHERE job_id = ? AND state = ?", id, string(st)); n != 1 {
					t.Errorf("job %d: %d rows of its %s outcome, want 1 (each outcome's writes committed once)", id, n, st)
				}
			}
		}
	})
}
