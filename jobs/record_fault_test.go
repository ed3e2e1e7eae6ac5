package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"

	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// TestCommitBusyOnceRetriesTheSameBatch makes the COMMIT of a job's outcome
// fail once with a real SQLITE_BUSY: the file is in rollback-journal mode
// and another connection holds a read lock, which a COMMIT must wait out
// (the writer has no busy timeout). The lock is let go as that COMMIT is
// rolled back, so the next try can commit. The retry must be the same transaction: the worker's write
// and the completed outcome both land, and no attempt is failed. SQLite
// only: the fault is SQLite's own lock protocol (PostgreSQL's COMMIT waits
// for no reader); the retry path it proves is the dialects' common code.
func TestCommitBusyOnceRetriesTheSameBatch(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "busy.db")
	storetest.Open(t, path).Close() // migrated; the test opens it its own way

	writer, err := sqlx.Open("sqlite", "file:"+path+
		"?_pragma=journal_mode(DELETE)&_pragma=busy_timeout(0)&_pragma=foreign_keys(1)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	writer.SetMaxOpenConns(1)
	t.Cleanup(func() { writer.Close() })
	var mode string
	if err := writer.Get(&mode, "PRAGMA journal_mode"); err != nil || mode != "delete" {
		t.Fatalf("journal mode %q (%v), want delete", mode, err)
	}
	if _, err := writer.Exec("CREATE TABLE outbox (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL) STRICT"); err != nil {
		t.Fatal(err)
	}
	// The blocker reads in rollback-journal mode too; it may wait for locks.
	blocker, err := sqlx.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blocker.Close() })

	var (
		mu        sync.Mutex
		readTx    *sqlx.Tx // holds SHARED while set
		stateSeen string   // the job's committed state when the COMMIT was retried
		jobID     int64
		busy      atomic.Int32 // COMMITs that failed under the read lock
	)
	release := func() {
		mu.Lock()
		defer mu.Unlock()
		if readTx == nil {
			return
		}
		readTx.Get(&stateSeen, "SELECT state FROM jobs WHERE id = ?", jobID)
		readTx.Rollback()
		readTx = nil
	}
	t.Cleanup(release)
	ctx := t.Context()
	conn, err := writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.Raw(func(dc any) error {
		hooked, ok := dc.(interface{ RegisterRollbackHook(sqlite.RollbackHookFn) })
		if !ok {
			return errors.New("the sqlite driver has no rollback hook")
		}
		// The driver rolls a COMMIT that failed busy back: that is
		// when the read lock goes, so the fault happens once.
		hooked.RegisterRollbackHook(func() {
			mu.Lock()
			held := readTx != nil
			mu.Unlock()
			if held {
				busy.Add(1)
				release()
			}
		})
		return nil
	})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}

	var afterRecord atomic.Int32
	worker := funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
		// Not Work's ctx: its end would roll the read back.
		tx, err := blocker.BeginTxx(context.Background(), &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		var n int
		if err := tx.Get(&n, "SELECT count(*) FROM jobs"); err != nil { // takes the SHARED lock
			tx.Rollback()
			return err
		}
		mu.Lock()
		readTx, jobID = tx, j.ID
		mu.Unlock()
		j.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO outbox (job_id) VALUES (?)"), j.ID)
			return err
		})
		j.AfterRecord(func() { afterRecord.Add(1) })
		return nil
	}}
	eng, err := jobs.New(writer, jobs.Config{
		Queues:       map[string]int{"default": 1}, // no claim commits while the job runs
		PollInterval: 5 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
		Node:         "busy-node",
		// No maintenance commit during the test.
		HeartbeatInterval: time.Hour, NodeTimeout: 2 * time.Hour, PruneAfter: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Register(worker); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		release()
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := eng.Stop(stopCtx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	res, err := eng.Insert(ctx, testArgs{Name: "connects"}, jobs.InsertOpts{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var j *jobs.Job
	waitFor(t, waitTimeout, func() bool {
		j, err = jobs.Get(ctx, writer, res.ID)
		return err == nil && j.State != jobs.StateExecuting && j.State != jobs.StateAvailable
	})
	if n := busy.Load(); n != 1 {
		t.Fatalf("%d COMMITs failed busy, want one", n)
	}
	if stateSeen != string(jobs.StateExecuting) {
		t.Errorf("between the busy COMMIT and its retry the job was %q, want executing", stateSeen)
	}
	if j.State != jobs.StateCompleted || j.Attempt != 1 || len(j.Errors) != 0 {
		t.Errorf("state %s attempt %d errors %+v, want completed on attempt 1 with no error", j.State, j.Attempt, j.Errors)
	}
	var rows int
	if err := writer.Get(&rows, "SELECT count(*) FROM outbox WHERE job_id = ?", res.ID); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("%d outbox rows, want the worker's one write", rows)
	}
	waitFor(t, waitTimeout, func() bool { return afterRecord.Load() == 1 })
}

// TestCallbackPanicsAreContained: a panic in a RecordTx callback fails that
// job's attempt (its writes rolled back) and a panic in an AfterRecord
// callback is logged; neither stops the process, and the other jobs of the
// batch are recorded with their writes and callbacks.
func TestCallbackPanicsAreContained(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := openWithOutbox(t, be, "job_id INTEGER NOT NULL")
		logs := &syncbuf.Buffer{}
		var after sync.Map
		// All three finish together, so they are usually recorded in one batch.
		var gate sync.WaitGroup
		gate.Add(3)
		worker := funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			var args struct{ Name string }
			j.UnmarshalArgs(&args)
			j.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
				if _, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO outbox (job_id) VALUES (?)"), j.ID); err != nil {
					return err
				}
				if args.Name == "recordtx panics" {
					panic("boom in RecordTx")
				}
				return nil
			})
			j.AfterRecord(func() {
				after.Store(j.ID, true)
				if args.Name == "afterrecord panics" {
					panic("boom in AfterRecord")
				}
			})
			gate.Done()
			gate.Wait()
			return nil
		}}
		clock := newFakeClock()
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		b.eng = newEngine(t, st, clock, options{queues: map[string]int{"default": 3}, backoff: jobs.FixedBackoff(time.Hour),
			configure: func(c *jobs.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }}, worker)
		recordPanics := b.insert(t, testArgs{Name: "recordtx panics"}, jobs.InsertOpts{MaxAttempts: 2})
		afterPanics := b.insert(t, testArgs{Name: "afterrecord panics"}, jobs.InsertOpts{})
		fine := b.insert(t, testArgs{Name: "fine"}, jobs.InsertOpts{})

		j := b.waitState(t, recordPanics, jobs.StateRetryable)
		if j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "record outcome: panic: boom in RecordTx") {
			t.Errorf("attempt %d errors %+v, want attempt 1 failed by the RecordTx panic", j.Attempt, j.Errors)
		}
		if _, ran := after.Load(recordPanics); ran {
			t.Error("AfterRecord ran for the job whose RecordTx panicked (its writes were rolled back)")
		}
		for _, id := range []int64{afterPanics, fine} {
			if j := b.waitState(t, id, jobs.StateCompleted); len(j.Errors) != 0 {
				t.Errorf("job %d errors %+v, want none", id, j.Errors)
			}
			waitFor(t, waitTimeout, func() bool { _, ran := after.Load(id); return ran })
		}
		if n := b.count(t, "SELECT count(*) FROM outbox"); n != 2 {
			t.Errorf("%d outbox rows, want the two of the jobs whose RecordTx returned", n)
		}
		waitFor(t, waitTimeout, func() bool { return strings.Contains(logs.String(), "boom in AfterRecord") })
		// The engine still runs jobs.
		b.probeOnce(t, "default")
	})
}
