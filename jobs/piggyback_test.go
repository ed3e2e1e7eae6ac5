package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// countsMismatch compares job_counts with a count of the jobs table, both
// read in one read transaction (one snapshot: on PostgreSQL that takes
// REPEATABLE READ, READ COMMITTED's snapshot is per statement), and
// describes the rows that differ ("" when none).
func countsMismatch(t *testing.T, ctx context.Context, db *sqlx.DB) string {
	t.Helper()
	var opts *sql.TxOptions
	if db.DriverName() == "pgx" {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := db.BeginTxx(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	type row struct {
		Queue string `db:"queue"`
		State string `db:"state"`
		N     int    `db:"n"`
	}
	var kept, counted []row
	if err := tx.SelectContext(ctx, &kept, "SELECT queue, state, n FROM job_counts WHERE n != 0"); err != nil {
		t.Fatal(err)
	}
	if err := tx.SelectContext(ctx, &counted, "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state"); err != nil {
		t.Fatal(err)
	}
	diff := map[string]int{}
	for _, r := range kept {
		diff[r.Queue+"/"+r.State] += r.N
	}
	for _, r := range counted {
		diff[r.Queue+"/"+r.State] -= r.N
	}
	out := ""
	for k, d := range diff {
		if d != 0 {
			out += fmt.Sprintf(" %s off by %+d;", k, d)
		}
	}
	return out
}

// TestCountsExactUnderLoad: job_counts, kept by the engine's per-batch
// deltas (migration 0011), matches the table at every moment while two
// queues work jobs that succeed, fail, snooze, cancel themselves and panic,
// with operator cancels and retries running beside them; and at the end.
func TestCountsExactUnderLoad(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var attempts atomic.Int64
		var snoozed sync.Map
		w := funcWorker{kind: "mixed", fn: func(ctx context.Context, j *jobs.Job) error {
			attempts.Add(1)
			switch (j.ID*7 + int64(j.Attempt)) % 6 {
			case 0, 1:
				return nil
			case 2:
				return errors.New("no answer")
			case 3:
				// A snooze gives the attempt back: once a job, or forever.
				if _, again := snoozed.LoadOrStore(j.ID, true); !again {
					return jobs.Snooze(0)
				}
				return nil
			case 4:
				if j.ID%5 == 0 {
					return jobs.Cancel(errors.New("not wanted"))
				}
				return errors.New("busy")
			default:
				if j.ID%3 == 0 {
					panic("worker bug")
				}
				return nil
			}
		}}
		b := setup(t, be, options{queues: map[string]int{"default": 7, "other": 3}}, w)
		const n = 300
		params := make([]jobs.InsertParams, n)
		for i := range params {
			params[i] = jobs.InsertParams{Args: testArgs{kind: "mixed", Name: fmt.Sprint(i)}, Opts: jobs.InsertOpts{MaxAttempts: 3}}
			if i%3 == 0 {
				params[i].Opts.Queue = "other"
			}
			if i%50 == 0 {
				params[i].Opts.ScheduleIn = time.Hour
			}
		}
		if _, err := b.eng.InsertMany(b.ctx, params); err != nil {
			t.Fatal(err)
		}
		// Operators act beside the workers.
		stop := make(chan struct{})
		var ops sync.WaitGroup
		ops.Add(1)
		var opsDone atomic.Bool
		go func() {
			defer ops.Done()
			defer opsDone.Store(true)
			r := rand.New(rand.NewPCG(1, 2))
			for range 100 {
				select {
				case <-stop:
					return
				default:
				}
				id := int64(1 + r.IntN(n))
				switch r.IntN(3) {
				case 0:
					b.eng.CancelJob(b.ctx, id)
				case 1:
					b.eng.RetryJob(b.ctx, id)
				default:
					b.eng.RetryJobs(b.ctx, []int64{id, id + 1, id + 2})
				}
			}
		}()
		checks := 0
		deadline := time.Now().Add(3 * waitTimeout) // the race detector slows SQLite down many times
		for {
			if d := countsMismatch(t, b.ctx, b.st.Reader); d != "" {
				t.Fatalf("after %d attempts, job_counts differs from the table:%s", attempts.Load(), d)
			}
			checks++
			unfinished := b.count(t, "SELECT count(*) FROM jobs WHERE state IN ('available', 'executing', 'retryable') OR (state = 'scheduled' AND scheduled_at < ?)",
				b.clock.Now().Add(time.Minute).UnixMilli())
			if unfinished == 0 && attempts.Load() > n && opsDone.Load() {
				break
			}
			if time.Now().After(deadline) {
				var states []string
				b.st.Reader.SelectContext(b.ctx, &states, "SELECT queue || ' ' || state || ' ' || count(*) FROM jobs GROUP BY queue, state")
				qs, _ := b.eng.Queues(b.ctx)
				t.Fatalf("%d jobs still unfinished after %d attempts: %v %+v", unfinished, attempts.Load(), states, qs)
			}
			time.Sleep(time.Millisecond)
		}
		close(stop)
		ops.Wait()
		if err := b.eng.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}
		if d := countsMismatch(t, b.ctx, b.st.Reader); d != "" {
			t.Fatalf("after Stop, job_counts differs from the table:%s", d)
		}
		t.Logf("%d attempts, %d checks", attempts.Load(), checks)
	})
}

// TestOutcomeClaimRespectsPause: the claim an outcome's transaction makes
// for the slot it frees (piggyback.go) takes no job of a paused queue.
func TestOutcomeClaimRespectsPause(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		release := make(chan struct{})
		w := funcWorker{kind: "gated", fn: func(ctx context.Context, j *jobs.Job) error {
			if j.Attempt == 1 && j.ID == 1 {
				<-release
			}
			return nil
		}}
		b := setup(t, be, options{queues: map[string]int{"default": 1}}, w)
		first := b.insert(t, testArgs{kind: "gated"}, jobs.InsertOpts{})
		b.waitState(t, first, jobs.StateExecuting)
		second := b.insert(t, testArgs{kind: "gated", Name: "second"}, jobs.InsertOpts{})
		if err := b.eng.PauseQueue(b.ctx, "default"); err != nil {
			t.Fatal(err)
		}
		close(release)
		b.waitState(t, first, jobs.StateCompleted)
		// The outcome has committed; a claim made with it would show now.
		if j := b.get(t, second); j.State != jobs.StateAvailable || j.Attempt != 0 {
			t.Fatalf("second job %s (attempt %d) while its queue is paused, want available", j.State, j.Attempt)
		}
		if err := b.eng.ResumeQueue(b.ctx, "default"); err != nil {
			t.Fatal(err)
		}
		b.waitState(t, second, jobs.StateCompleted)
	})
}

// TestOutcomeClaimsTheFreedSlot: with a queue full and jobs waiting, the
// transaction that records an outcome claims the next job too: one commit
// shows both, never the slot free with a job waiting. (Against claims made
// only by the queue's loop after the commit, the watcher catches the window
// in about one run of three.)
func TestOutcomeClaimsTheFreedSlot(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		release, releaseSecond := make(chan struct{}), make(chan struct{})
		defer close(releaseSecond)
		w := funcWorker{kind: "gated", fn: func(ctx context.Context, j *jobs.Job) error {
			if j.ID == 1 {
				<-release
				return nil
			}
			<-releaseSecond
			return nil
		}}
		b := setup(t, be, options{queues: map[string]int{"default": 1}, poll: time.Hour}, w)
		first := b.insert(t, testArgs{kind: "gated"}, jobs.InsertOpts{})
		b.waitState(t, first, jobs.StateExecuting)
		second := b.insert(t, testArgs{kind: "gated", Name: "second"}, jobs.InsertOpts{})
		seen := make(chan [2]jobs.State, 1)
		var once sync.Once
		stopWatch := make(chan struct{})
		var watch sync.WaitGroup
		watch.Add(1)
		go func() {
			defer watch.Done()
			for {
				select {
				case <-stopWatch:
					return
				default:
				}
				tx, err := b.st.Reader.BeginTxx(b.ctx, nil)
				if err != nil {
					return
				}
				var s1, s2 jobs.State
				tx.GetContext(b.ctx, &s1, tx.Rebind("SELECT state FROM jobs WHERE id = ?"), first)
				tx.GetContext(b.ctx, &s2, tx.Rebind("SELECT state FROM jobs WHERE id = ?"), second)
				tx.Rollback()
				if s1 == jobs.StateCompleted {
					once.Do(func() { seen <- [2]jobs.State{s1, s2} })
					return
				}
			}
		}()
		close(release)
		got := <-seen
		close(stopWatch)
		watch.Wait()
		if got[1] != jobs.StateExecuting {
			t.Fatalf("when the first job's outcome committed the second was %s, want executing (claimed in the same transaction)", got[1])
		}
	})
}

// TestStopStartsNoJobAfterward: outcomes keep claiming while a Stop waits
// for running jobs; once Stop has returned, every job that started was
// recorded and none is left executing.
func TestStopStartsNoJobAfterward(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var started, stopped atomic.Int64
		var afterStop atomic.Bool
		w := funcWorker{kind: "quick", fn: func(ctx context.Context, j *jobs.Job) error {
			if afterStop.Load() {
				stopped.Add(1)
			}
			started.Add(1)
			return nil
		}}
		b := setup(t, be, options{queues: map[string]int{"default": 10}}, w)
		params := make([]jobs.InsertParams, 3000)
		for i := range params {
			params[i] = jobs.InsertParams{Args: testArgs{kind: "quick", Name: fmt.Sprint(i)}}
		}
		if _, err := b.eng.InsertMany(b.ctx, params); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitTimeout, func() bool { return started.Load() > 100 })
		if err := b.eng.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}
		afterStop.Store(true)
		if n := b.count(t, "SELECT count(*) FROM jobs WHERE state = 'executing'"); n != 0 {
			t.Errorf("%d jobs left executing after a graceful Stop", n)
		}
		done := b.count(t, "SELECT count(*) FROM jobs WHERE state = 'completed'")
		if int64(done) != started.Load() {
			t.Errorf("%d jobs started, %d completed", started.Load(), done)
		}
		if n := stopped.Load(); n != 0 {
			t.Errorf("%d jobs started after Stop returned", n)
		}
		if d := countsMismatch(t, b.ctx, b.st.Reader); d != "" {
			t.Errorf("job_counts differs from the table:%s", d)
		}
	})
}

// TestInsertClaimsWhenASlotIsFree: Insert into a queue of this engine with
// a free slot claims the job in its own transaction, so it is executing (or
// done) when Insert returns, with no poll and no wake in between; into a
// paused queue it only inserts.
func TestInsertClaimsWhenASlotIsFree(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		release := make(chan struct{})
		defer close(release)
		w := funcWorker{kind: "gated", fn: func(ctx context.Context, j *jobs.Job) error {
			<-release
			return nil
		}}
		b := setup(t, be, options{queues: map[string]int{"default": 2, "other": 1}, poll: time.Hour}, w)
		id := b.insert(t, testArgs{kind: "gated"}, jobs.InsertOpts{})
		if j := b.get(t, id); j.State != jobs.StateExecuting || j.Attempt != 1 {
			t.Fatalf("right after Insert: %s, attempt %d; want executing, attempt 1", j.State, j.Attempt)
		}
		if err := b.eng.PauseQueue(b.ctx, "other"); err != nil {
			t.Fatal(err)
		}
		paused := b.insert(t, testArgs{kind: "gated", Name: "paused"}, jobs.InsertOpts{Queue: "other"})
		if j := b.get(t, paused); j.State != jobs.StateAvailable {
			t.Fatalf("inserted into a paused queue: %s, want available", j.State)
		}
		if d := countsMismatch(t, b.ctx, b.st.Reader); d != "" {
			t.Errorf("job_counts differs from the table:%s", d)
		}
	})
}

// TestClaimedJobDecodesLikeGet: the claim's own row scan (no sqlx) gives
// the worker the same job Get reads, empty errors and tags as empty (not
// nil) slices, as a JSON decode makes them.
func TestClaimedJobDecodesLikeGet(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		got := make(chan *jobs.Job, 2)
		w := funcWorker{kind: "look", fn: func(ctx context.Context, j *jobs.Job) error {
			// A copy: once Work returns, the engine updates its job.
			c := *j
			c.Errors, c.Tags = slices.Clone(j.Errors), slices.Clone(j.Tags)
			got <- &c
			if j.Attempt == 1 && len(j.Tags) > 0 {
				return errors.New("once more")
			}
			return nil
		}}
		b := setup(t, be, options{}, w)
		plain := b.insert(t, testArgs{kind: "look"}, jobs.InsertOpts{})
		j := <-got
		if j.ID != plain || j.Errors == nil || len(j.Errors) != 0 || j.Tags == nil || len(j.Tags) != 0 || j.AttemptedAt == nil {
			t.Fatalf("claimed job %+v: want empty non-nil errors and tags, an attempt time", j)
		}
		tagged := b.insert(t, testArgs{kind: "look", Name: "tagged"}, jobs.InsertOpts{Tags: []string{"a", "b"}})
		<-got
		again := <-got // the second attempt carries the first one's error
		if again.ID != tagged || again.Attempt != 2 || len(again.Errors) != 1 || again.Errors[0].Error != "once more" ||
			len(again.Tags) != 2 || again.Tags[1] != "b" {
			t.Fatalf("second attempt %+v", again)
		}
		stored := b.waitState(t, tagged, jobs.StateCompleted)
		if len(stored.Errors) != 1 || stored.Errors[0] != again.Errors[0] {
			t.Errorf("stored errors %+v, the worker saw %+v", stored.Errors, again.Errors)
		}
	})
}

// TestEveryOutcomeCarriesItsWrites: with the real clock, the batches of a
// busy queue hold jobs that finished at several milliseconds (completions
// are recorded one statement per finish time) and jobs that failed; every
// recorded attempt has its RecordTx write, and no job is completed without
// it.
func TestEveryOutcomeCarriesItsWrites(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := openWithOutbox(t, be, "job_id INTEGER NOT NULL, attempt INTEGER NOT NULL")
		w := funcWorker{kind: "writes", fn: func(ctx context.Context, j *jobs.Job) error {
			id, attempt := j.ID, j.Attempt
			j.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
				_, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO outbox (job_id, attempt) VALUES (?, ?)"), id, attempt)
				return err
			})
			time.Sleep(time.Duration(id%3) * 300 * time.Microsecond)
			if id%4 == 0 && attempt == 1 {
				return errors.New("again")
			}
			return nil
		}}
		eng, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 20}, Backoff: jobs.FixedBackoff(0),
			Logger: slog.New(slog.DiscardHandler), PollInterval: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Register(w); err != nil {
			t.Fatal(err)
		}
		const n = 1000
		params := make([]jobs.InsertParams, n)
		for i := range params {
			params[i] = jobs.InsertParams{Args: testArgs{kind: "writes", Name: fmt.Sprint(i)}}
		}
		if _, err := eng.InsertMany(t.Context(), params); err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		count := func(q string) int {
			var c int
			if err := st.Reader.GetContext(t.Context(), &c, q); err != nil {
				t.Fatal(err)
			}
			return c
		}
		waitFor(t, 3*waitTimeout, func() bool { return count("SELECT count(*) FROM jobs WHERE state = 'completed'") == n })
		if err := eng.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		if c := count(`SELECT count(*) FROM jobs j WHERE NOT EXISTS (
		SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.attempt = j.attempt)`); c != 0 {
			t.Errorf("%d completed jobs without their last attempt's write", c)
		}
		if c := count("SELECT count(*) FROM outbox"); c != n+n/4 {
			t.Errorf("%d writes, want one per attempt (%d)", c, n+n/4)
		}
		if d := countsMismatch(t, t.Context(), st.Reader); d != "" {
			t.Errorf("job_counts differs from the table:%s", d)
		}
	})
}
