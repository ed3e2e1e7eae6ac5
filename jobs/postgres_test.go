package jobs_test

// PostgreSQL alone: what only a database that many engines share can show
// (several nodes claiming from one queue, wake-ups through LISTEN/NOTIFY).
// Each test skips without PHONEHOME_TEST_POSTGRES (and fails under CI).

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// pgNode opens its own store (its own pool, as another process would) on
// the database at url and makes an engine over it with cfg (a discarded
// log, no backoff and a quick count compaction unless cfg says), stopped
// when the test ends; started unless cfg has no queues.
func pgNode(t *testing.T, url string, cfg jobs.Config, workers ...jobs.Worker) (*store.Store, *jobs.Engine) {
	t.Helper()
	st, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Reader = st.Reader
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Backoff == nil {
		cfg.Backoff = jobs.FixedBackoff(0)
	}
	if cfg.CompactInterval == 0 {
		cfg.CompactInterval = 50 * time.Millisecond
	}
	eng := buildEngine(t, st.Writer, cfg, workers...)
	if len(cfg.Queues) > 0 {
		if err := eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return st, eng
}

// pgDatabase is a new, migrated PostgreSQL database; its URL.
func pgDatabase(t *testing.T) string {
	t.Helper()
	url := storetest.Postgres(t).Target(t)
	st, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return url
}

// TestTwoNodesNeverRunAJobTwice: two engines, each with its own pool, drain
// one queue of one database at once; SKIP LOCKED gives every job to one of
// them, so each job runs exactly once, both nodes take part, and the counts
// (the ledger, compacted meanwhile) end exact.
func TestTwoNodesNeverRunAJobTwice(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	const n = 2000
	var runs sync.Map // job id → *atomic.Int32
	var byNode [2]atomic.Int64
	worker := func(i int) jobs.Worker {
		return funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			c, _ := runs.LoadOrStore(j.ID, new(atomic.Int32))
			c.(*atomic.Int32).Add(1)
			byNode[i].Add(1)
			return nil
		}}
	}
	// Insert first, so both nodes find the whole queue waiting.
	_, inserter := pgNode(t, url, jobs.Config{Node: "inserter"})
	params := make([]jobs.InsertParams, n)
	for i := range params {
		params[i] = jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(i)}}
	}
	if _, err := inserter.InsertMany(t.Context(), params); err != nil {
		t.Fatal(err)
	}
	node := func(name string) jobs.Config {
		return jobs.Config{Node: name, Queues: map[string]int{"default": 20}, PollInterval: 5 * time.Millisecond}
	}
	st, a := pgNode(t, url, node("node-a"), worker(0))
	_, _ = pgNode(t, url, node("node-b"), worker(1))

	waitFor(t, 60*time.Second, func() bool {
		c, err := a.Counts(t.Context())
		return err == nil && c[jobs.StateCompleted] == n
	})
	twice := 0
	total := 0
	runs.Range(func(_, v any) bool {
		total++
		if v.(*atomic.Int32).Load() != 1 {
			twice++
		}
		return true
	})
	if twice > 0 || total != n {
		t.Errorf("%d of %d jobs ran more than once (%d distinct ran)", twice, n, total)
	}
	if byNode[0].Load() == 0 || byNode[1].Load() == 0 {
		t.Errorf("runs per node %d and %d: both nodes should have claimed", byNode[0].Load(), byNode[1].Load())
	}
	var executed int
	if err := st.Reader.Get(&executed, "SELECT count(*) FROM jobs WHERE state = 'completed' AND attempt = 1"); err != nil || executed != n {
		t.Errorf("%d jobs completed at their first attempt (%v), want %d", executed, err, n)
	}
	if msg := countsMismatch(t, t.Context(), st.Writer); msg != "" {
		t.Errorf("counts differ from the table:%s", msg)
	}
	// The maintenance loop folds the ledger: one row per queue and state.
	waitFor(t, waitTimeout, func() bool {
		var rows int
		return st.Reader.Get(&rows, "SELECT count(*) FROM job_counts") == nil && rows <= len(jobs.States)
	})
}

// listeners are the backend pids of the sessions listening for new jobs on
// st's database.
func listeners(t *testing.T, st *store.Store) []int {
	t.Helper()
	var pids []int
	if err := st.Reader.Select(&pids, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN phonehome_jobs' ORDER BY pid`); err != nil {
		t.Fatal(err)
	}
	return pids
}

// waitListening waits until exactly one session listens, not one of old,
// and returns its pid.
func waitListening(t *testing.T, st *store.Store, old []int) int {
	t.Helper()
	var pid int
	waitFor(t, waitTimeout, func() bool {
		pids := listeners(t, st)
		if len(pids) != 1 || slices.Contains(old, pids[0]) {
			return false
		}
		pid = pids[0]
		return true
	})
	return pid
}

// notifySetup is a node that polls once an hour, listening on a new
// database, and another engine (not started, so not listening) that
// inserts into it.
func notifySetup(t *testing.T) (st *store.Store, inserter *jobs.Engine, done chan int64) {
	t.Helper()
	url := pgDatabase(t)
	done = make(chan int64, 10)
	st, _ = pgNode(t, url, jobs.Config{Node: "listener", Queues: map[string]int{"default": 5}, PollInterval: time.Hour},
		funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error { done <- j.ID; return nil }})
	_, inserter = pgNode(t, url, jobs.Config{Node: "inserter"})
	return st, inserter, done
}

// wokenBy inserts a job through inserter and waits (a few seconds, where the
// poll would take an hour) for the listening node to run it; its id.
func wokenBy(t *testing.T, inserter *jobs.Engine, done chan int64) int64 {
	t.Helper()
	res, err := inserter.Insert(t.Context(), testArgs{Name: "wake"}, jobs.InsertOpts{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-done:
		if id != res.ID {
			t.Fatalf("ran job %d, want %d", id, res.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the insert did not wake the other node within 5 s (its poll is an hour)")
	}
	return res.ID
}

// TestNotifyWakesAnotherNode: an insert by one engine wakes the queue of
// another, whose poll is an hour, at the insert's commit.
func TestNotifyWakesAnotherNode(t *testing.T) {
	t.Parallel()
	st, inserter, done := notifySetup(t)
	waitListening(t, st, nil)
	var last int64
	for range 3 {
		last = wokenBy(t, inserter, done)
	}
	// A retry by the other engine is announced too: the job is due now.
	waitFor(t, waitTimeout, func() bool {
		j, err := jobs.Get(t.Context(), st.Reader, last)
		return err == nil && j.State == jobs.StateCompleted
	})
	if _, err := inserter.RetryJob(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-done:
		if id != last {
			t.Fatalf("ran job %d, want the retried %d", id, last)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the retry did not wake the other node within 5 s (its poll is an hour)")
	}
}

// TestListenerReconnects: when the listening connection is killed, the
// engine connects again (after a short backoff) and notifications wake it
// as before.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	st, inserter, done := notifySetup(t)
	first := waitListening(t, st, nil)
	var killed bool
	if err := st.Writer.Get(&killed, "SELECT pg_terminate_backend($1)", first); err != nil || !killed {
		t.Fatalf("terminate the listener %d: %v %v", first, killed, err)
	}
	second := waitListening(t, st, []int{first})
	if second == first {
		t.Fatalf("still pid %d", first)
	}
	wokenBy(t, inserter, done)
}

// TestCronSlotOnceAcrossNodes: two nodes with the same periodic job and the
// same clock reach each slot together; the slot's upsert lets one of them
// insert it.
func TestCronSlotOnceAcrossNodes(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	clock := newFakeClock()
	node := func(name string) jobs.Config {
		return jobs.Config{Node: name, Queues: map[string]int{"default": 1}, PollInterval: 5 * time.Millisecond,
			Now: clock.Now, Periodic: []jobs.PeriodicJob{everyMinute}}
	}
	st, _ := pgNode(t, url, node("node-a"))
	_, _ = pgNode(t, url, node("node-b"))
	b := &bundle{ctx: t.Context(), st: st, clock: clock}
	for slot := 1; slot <= 5; slot++ {
		clock.Advance(time.Minute)
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) >= slot })
		// Both cron loops have looked at the clock again since (each reads
		// it at every tick): a second insert of the slot would be there.
		reads := clock.Reads()
		waitFor(t, waitTimeout, func() bool { return clock.Reads() >= reads+20 })
		if got := b.cronJobs(t); len(got) != slot {
			t.Fatalf("after %d slots: %d cron jobs %v", slot, len(got), got)
		}
	}
}

// TestUniquePeriodAcrossPools: inserts of one job unique for a period,
// made at once through two pools, insert it once (the lookup and the
// insert are one step under an advisory lock on the key).
func TestUniquePeriodAcrossPools(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	_, a := pgNode(t, url, jobs.Config{Node: "a"})
	st, b := pgNode(t, url, jobs.Config{Node: "b"})
	opts := jobs.InsertOpts{Unique: true, UniquePeriod: time.Hour}
	var inserted atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		eng := a
		if i%2 == 1 {
			eng = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				res, err := eng.Insert(t.Context(), testArgs{Name: "once"}, opts)
				if err != nil {
					t.Error(err)
					return
				}
				if !res.Duplicate {
					inserted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var rows int
	if err := st.Reader.Get(&rows, "SELECT count(*) FROM jobs"); err != nil || rows != 1 || inserted.Load() != 1 {
		t.Errorf("%d rows (%v), %d inserts reported; want 1 and 1", rows, err, inserted.Load())
	}
}

// TestQueuesCountEveryNode: two engines on one database each run two jobs
// of a queue limited to two; each engine's queue table says four running
// of two nodes' slots, not its own two (every node's dashboard says the
// same, whichever node draws it).
func TestQueuesCountEveryNode(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	release := make(chan struct{})
	var started atomic.Int32
	blocking := funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
		started.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	defer close(release)
	node := func(name string) jobs.Config {
		return jobs.Config{Node: name, Queues: map[string]int{"default": 2}, PollInterval: 5 * time.Millisecond}
	}
	_, a := pgNode(t, url, node("node-a"), blocking)
	_, b := pgNode(t, url, node("node-b"), blocking)
	params := make([]jobs.InsertParams, 6)
	for i := range params {
		params[i] = jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(i)}}
	}
	if _, err := a.InsertMany(t.Context(), params); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, func() bool { return started.Load() == 4 })
	for _, eng := range []*jobs.Engine{a, b} {
		qs, err := eng.Queues(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(qs) != 1 || qs[0].Running != 4 || qs[0].Nodes != 2 || qs[0].Limit != 2 {
			t.Errorf("queues %+v: want default with 4 running, 2 nodes, limit 2 each", qs)
		}
	}
}
