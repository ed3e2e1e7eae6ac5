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
	"github.com/phonehome/phonehome/store/storetest"
)

// TestRecordBatchTxSharesOneWrite: jobs recorded in one transaction give
// their items to one Write, which commits with their outcomes; an item
// that fails the write fails its own job's attempt alone (recorded one at
// a time to find it), without its write, and the others' writes commit.
func TestRecordBatchTxSharesOneWrite(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		for _, poisoned := range []bool{false, true} {
			name := "every item written"
			if poisoned {
				name = "a poisoned item"
			}
			t.Run(name, func(t *testing.T) {
				st := openWithOutbox(t, be, "job_id INTEGER NOT NULL")
				const n = 20
				var writes, most atomic.Int64
				var poison atomic.Int64
				batch := &jobs.TxBatch{Write: func(ctx context.Context, tx *sqlx.Tx, items []any) error {
					writes.Add(1)
					if int64(len(items)) > most.Load() {
						most.Store(int64(len(items)))
					}
					for _, it := range items {
						id := it.(int64)
						if id == poison.Load() {
							return errors.New("poisoned item")
						}
						if _, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO outbox (job_id) VALUES (?)"), id); err != nil {
							return err
						}
					}
					return nil
				}}
				release := make(chan struct{})
				var started atomic.Int64
				worker := funcWorker{kind: "test", fn: func(ctx context.Context, job *jobs.Job) error {
					job.RecordBatchTx(batch, job.ID)
					started.Add(1)
					return released(ctx, release)
				}}
				clock := newFakeClock()
				b := &bundle{ctx: t.Context(), st: st, clock: clock}
				b.eng = newEngine(t, st, clock, options{queues: map[string]int{"default": n}, noStart: true}, worker)
				params := make([]jobs.InsertParams, n)
				for i := range params {
					params[i] = jobs.InsertParams{Args: testArgs{}, Opts: jobs.InsertOpts{MaxAttempts: 1}}
				}
				if _, err := b.eng.InsertMany(b.ctx, params); err != nil {
					t.Fatal(err)
				}
				var ids []int64
				if err := st.Reader.SelectContext(b.ctx, &ids, "SELECT id FROM jobs WHERE kind = 'test' ORDER BY id"); err != nil || len(ids) != n {
					t.Fatalf("%d jobs (%v), want %d", len(ids), err, n)
				}
				if poisoned {
					poison.Store(ids[7])
				}
				if err := b.eng.Start(b.ctx); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 10*time.Second, func() bool { return started.Load() == n })
				close(release) // every attempt ends at once: their outcomes share transactions
				for _, id := range ids {
					want := jobs.StateCompleted
					if poisoned && id == ids[7] {
						want = jobs.StateDiscarded
					}
					j := b.waitState(t, id, want)
					if want == jobs.StateDiscarded && (len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "poisoned item")) {
						t.Errorf("the poisoned job's errors %+v, want the write's", j.Errors)
					}
				}
				wantRows := n
				if poisoned {
					wantRows = n - 1
					if c := b.count(t, "SELECT count(*) FROM outbox WHERE job_id = ?", ids[7]); c != 0 {
						t.Errorf("the poisoned job's write committed (%d rows)", c)
					}
				}
				if c := b.count(t, "SELECT count(*) FROM outbox"); c != wantRows {
					t.Errorf("%d rows written, want %d (one per job whose write was not poisoned)", c, wantRows)
				}
				if c := b.count(t, "SELECT count(DISTINCT job_id) FROM outbox"); c != wantRows {
					t.Errorf("%d jobs written, want %d, each once", c, wantRows)
				}
				if !poisoned && (most.Load() < 2 || writes.Load() >= n) {
					t.Errorf("%d writes for %d jobs, the largest of %d items: the outcomes did not share their write", writes.Load(), n, most.Load())
				}
			})
		}
	})
}
