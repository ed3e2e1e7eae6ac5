package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// finishedJobs inserts n jobs in state; finished ones finished at at,
// others were inserted and due at at.
func (b *bundle) finishedJobs(t *testing.T, n int, state jobs.State, at time.Time) []int64 {
	t.Helper()
	column := map[jobs.State]string{
		jobs.StateCompleted: "completed_at", jobs.StateCancelled: "cancelled_at", jobs.StateDiscarded: "discarded_at",
	}[state]
	if column == "" {
		column = "attempted_at"
	}
	q := fmt.Sprintf(`INSERT INTO jobs (state, queue, kind, args, inserted_at, scheduled_at, %s)
		VALUES (?, 'default', 'test', '{}', ?, ?, ?) RETURNING id`, column)
	ids := make([]int64, n)
	err := b.st.InTx(b.ctx, func(tx *sqlx.Tx) error {
		for i := range ids {
			if err := tx.GetContext(b.ctx, &ids[i], tx.Rebind(q), state, at.UnixMilli(), at.UnixMilli(), at.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestPruneDeletesOldFinishedJobsInBatches(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var changes changeLog
		b := setup(t, be, options{noStart: true, configure: func(c *jobs.Config) {
			c.PruneAfter = time.Hour
			c.OnChange = changes.record
		}})
		old := t0.Add(-time.Hour - time.Millisecond)
		young := t0.Add(-time.Hour + time.Millisecond)
		oldIDs := b.finishedJobs(t, 1000, jobs.StateCompleted, old)
		oldIDs = append(oldIDs, b.finishedJobs(t, 300, jobs.StateCancelled, old)...)
		oldIDs = append(oldIDs, b.finishedJobs(t, 200, jobs.StateDiscarded, old)...)
		b.finishedJobs(t, 5, jobs.StateCompleted, young)
		b.finishedJobs(t, 5, jobs.StateDiscarded, young)
		// Unfinished jobs stay however old.
		for _, s := range []jobs.State{jobs.StateAvailable, jobs.StateScheduled, jobs.StateRetryable, jobs.StateExecuting} {
			b.finishedJobs(t, 2, s, old.Add(-48*time.Hour))
		}

		n, err := b.eng.Prune(b.ctx)
		if err != nil || n != 1500 {
			t.Fatalf("prune: n=%d err=%v, want 1500", n, err)
		}
		if got := b.count(t, "SELECT count(*) FROM jobs"); got != 18 {
			t.Errorf("%d jobs left, want 10 young finished + 8 unfinished", got)
		}
		if len(changes.calls) != 2 {
			t.Errorf("OnChange called %d times, want 2 (batches of at most 1,000)", len(changes.calls))
		}
		reported := map[int64]bool{}
		for _, call := range changes.calls {
			if len(call) > 1000 {
				t.Errorf("a batch of %d deletions", len(call))
			}
			for _, id := range call {
				reported[id] = true
			}
		}
		for _, id := range oldIDs {
			if !reported[id] {
				t.Fatalf("pruned job %d not reported", id)
			}
		}
		if counts, _ := b.eng.Counts(b.ctx); counts[jobs.StateCompleted] != 5 || counts[jobs.StateDiscarded] != 5 || counts[jobs.StateCancelled] != 0 {
			t.Errorf("counts after prune %v", counts)
		}
		if n, err := b.eng.Prune(b.ctx); err != nil || n != 0 {
			t.Errorf("second prune: n=%d err=%v, want 0", n, err)
		}
	})
}

func TestPruneAfterSetting(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name       string
			pruneAfter time.Duration
			wantLeft   int
		}{
			{name: "zero means 24 hours", pruneAfter: 0, wantLeft: 1},
			{name: "negative keeps everything", pruneAfter: -1, wantLeft: 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, be, options{noStart: true, configure: func(c *jobs.Config) { c.PruneAfter = tt.pruneAfter }})
				b.finishedJobs(t, 1, jobs.StateCompleted, t0.Add(-25*time.Hour))
				b.finishedJobs(t, 1, jobs.StateCompleted, t0.Add(-23*time.Hour))
				if _, err := b.eng.Prune(b.ctx); err != nil {
					t.Fatal(err)
				}
				if got := b.count(t, "SELECT count(*) FROM jobs"); got != tt.wantLeft {
					t.Errorf("%d jobs left, want %d", got, tt.wantLeft)
				}
			})
		}
	})
}

func TestPruneRunsOnItsOwn(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{configure: func(c *jobs.Config) {
			c.PruneAfter = time.Minute
			c.PruneInterval = 5 * time.Millisecond
		}}, funcWorker{kind: "test", fn: func(_ context.Context, _ *jobs.Job) error { return nil }})
		id := b.insert(t, testArgs{Name: "short-lived"}, jobs.InsertOpts{})
		b.waitState(t, id, jobs.StateCompleted)
		b.clock.Advance(time.Minute + time.Millisecond)
		waitFor(t, waitTimeout, func() bool { return b.count(t, "SELECT count(*) FROM jobs WHERE id = ?", id) == 0 })
	})
}
