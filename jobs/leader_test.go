package jobs_test

// Several engines on one PostgreSQL database, each with its side of one
// real maintenance lease (cluster.Lease) on the tests' fake clock: what
// only the leader does (cron, pruning), and the queue settings that reach
// every engine by NOTIFY.

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// leaseTTL is the test leases' TTL: their belief ends 24 s after a
// renewal was sent (margin 6 s), their row 30 s after.
const leaseTTL = 30 * time.Second

// testLease is node's side of the maintenance lease on st, on clock. Tests
// step it by hand (Campaign, Resign): it is never started.
func testLease(t *testing.T, st *store.Store, node string, clock *fakeClock) *cluster.Lease {
	t.Helper()
	l, err := cluster.NewLease(st.Writer, st.Dialect, "maintenance", node, leaseTTL,
		cluster.LeaseOptions{Now: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// leads is an engine's Config.IsLeader over the lease l will hold: the
// engine starts (and its maintenance asks) before the lease is made, and
// it does not lead until then.
func leads(l *atomic.Pointer[cluster.Lease]) func() bool {
	return func() bool {
		lease := l.Load()
		return lease != nil && lease.IsLeader()
	}
}

// campaign steps l and fails the test unless it then leads as want says.
func campaign(t *testing.T, l *cluster.Lease, want bool) {
	t.Helper()
	got, err := l.Campaign(t.Context())
	if err != nil || got != want {
		t.Fatalf("%s campaigns: leads %v (%v), want %v", l.Node(), got, err, want)
	}
}

// changedIDs collects the ids an engine reports to OnChange.
type changedIDs struct {
	mu  sync.Mutex
	ids []int64
}

func (c *changedIDs) add(ids []int64) {
	c.mu.Lock()
	c.ids = append(c.ids, ids...)
	c.mu.Unlock()
}

func (c *changedIDs) get() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

// TestCronOnceAcrossNodesWhoseLeaderChanges: two engines with the same
// minutely cron entry on one database, the lease passing from one to the
// other (resigned; then lost by a leader that stops renewing; then with
// nobody leading when a slot comes): every slot is inserted exactly once,
// always by the node that leads, and the slot that came while nobody led
// is inserted late by the next leader rather than lost. Only the cron
// entry's jobs are changed (its queue is run by neither), so each engine's
// OnChange names exactly the jobs it inserted.
func TestCronOnceAcrossNodesWhoseLeaderChanges(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	clock := newFakeClock() // 03:04:05
	var inserted [2]changedIDs
	var leases [2]atomic.Pointer[cluster.Lease]
	var st *store.Store
	for i, name := range []string{"node-a", "node-b"} {
		s, _ := pgNode(t, url, jobs.Config{Node: name, Queues: map[string]int{"default": 1}, PollInterval: 5 * time.Millisecond,
			Now: clock.Now, Periodic: []jobs.PeriodicJob{everyMinute},
			IsLeader: leads(&leases[i]), OnChange: inserted[i].add})
		leases[i].Store(testLease(t, s, name, clock))
		st = s
	}
	a, b := leases[0].Load(), leases[1].Load()
	bun := &bundle{ctx: t.Context(), st: st, clock: clock}
	// settled waits until both cron loops have read the clock many times
	// since (each reads it at every tick), then checks the slots inserted.
	settled := func(want int) {
		t.Helper()
		waitFor(t, waitTimeout, func() bool { return len(bun.cronJobs(t)) >= want })
		reads := clock.Reads()
		waitFor(t, waitTimeout, func() bool { return clock.Reads() >= reads+40 })
		if got := bun.cronJobs(t); len(got) != want {
			t.Fatalf("%d cron jobs %v, want %d", len(got), got, want)
		}
	}
	byNode := func() (int, int) { return len(inserted[0].get()), len(inserted[1].get()) }

	campaign(t, a, true)
	campaign(t, b, false)
	for slot := 1; slot <= 6; slot++ {
		leader := a
		if slot == 4 {
			// A resigns; B takes the lease at once (no expiry to wait for).
			if err := a.Resign(t.Context()); err != nil {
				t.Fatal(err)
			}
			campaign(t, b, true)
		}
		if slot >= 4 {
			leader = b
		}
		// The slot comes; only then does the leader renew (until then,
		// its belief has ended and nobody leads: the slot waits).
		clock.Advance(time.Minute)
		campaign(t, leader, true)
		settled(slot)
	}
	if na, nb := byNode(); na != 3 || nb != 3 {
		t.Fatalf("slots inserted by A %d, by B %d; want 3 and 3", na, nb)
	}

	// B stops renewing (partitioned, say; its engine runs on). Its belief
	// ends before its row expires, so at no instant do both lead.
	clock.Advance(25 * time.Second) // 03:10:30; B renewed at 03:10:05
	if b.IsLeader() {
		t.Fatal("B still believes it leads 25 s after its last renewal (TTL 30 s, margin 6 s)")
	}
	campaign(t, a, false) // the row is B's until 03:10:35
	clock.Advance(6 * time.Second)
	campaign(t, a, true)
	clock.Advance(24 * time.Second) // 03:11:00: slot 7
	campaign(t, a, true)
	settled(7)
	if na, nb := byNode(); na != 4 || nb != 3 {
		t.Fatalf("slot 7 inserted by A %d, B %d; want A's", na-3, nb-3)
	}

	// A dies just before slot 8 (it stops renewing), and nobody leads when
	// the slot comes: B takes over 20 s later and inserts it then.
	clock.Advance(time.Minute) // 03:12:00; A's belief ended at 03:11:24, its row at 03:11:30
	campaign(t, b, true)
	settled(8)
	if na, nb := byNode(); na != 4 || nb != 4 {
		t.Fatalf("slot 8 inserted by A %d, B %d; want B's", na-4, nb-3)
	}
}

// TestPruneOnlyOnTheLeader: a node that does not lead prunes nothing; the
// leader prunes.
func TestPruneOnlyOnTheLeader(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	clock := newFakeClock()
	var leases [2]atomic.Pointer[cluster.Lease]
	var engines [2]*jobs.Engine
	var st *store.Store
	for i, name := range []string{"node-a", "node-b"} {
		s, e := pgNode(t, url, jobs.Config{Node: name, Now: clock.Now, PruneAfter: time.Hour,
			IsLeader: leads(&leases[i])})
		leases[i].Store(testLease(t, s, name, clock))
		engines[i], st = e, s
	}
	for range 3 {
		if _, err := engines[0].Insert(t.Context(), testArgs{}, jobs.InsertOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	old := clock.Now().Add(-2 * time.Hour).UnixMilli()
	if _, err := st.Writer.Exec("UPDATE jobs SET state = 'completed', completed_at = $1", old); err != nil {
		t.Fatal(err)
	}
	campaign(t, leases[0].Load(), true)
	for _, e := range []*jobs.Engine{engines[1], engines[0]} {
		n, err := e.Prune(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if e == engines[0] {
			want = 3
		}
		if n != want {
			t.Fatalf("%s pruned %d jobs, want %d", e.Node(), n, want)
		}
	}
}

// TestQueueSettingsReachEveryNodeWithinASecond: a pause, a resume and a
// scale made on one engine reach another engine on the same database
// (its own pool, as another process) within a second, though its heartbeat,
// which also reloads them, is an hour away: the change's NOTIFY makes it
// reload them. A paused queue then claims nothing on either node, and the
// resume lets the job waiting meanwhile run. A third engine started later
// finds the settings stored.
func TestQueueSettingsReachEveryNodeWithinASecond(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	node := func(name string) jobs.Config {
		return jobs.Config{Node: name, Queues: map[string]int{"default": 3}, PollInterval: 5 * time.Millisecond,
			HeartbeatInterval: time.Hour, NodeTimeout: 2 * time.Hour}
	}
	st, a := pgNode(t, url, node("node-a"), probeWorker{})
	_, b := pgNode(t, url, node("node-b"), probeWorker{})
	within := func(what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		waitFor(t, waitTimeout, cond)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("%s took %s, want under a second", what, took)
		}
	}

	// Both listen (and have loaded the settings once more on connecting).
	waitFor(t, waitTimeout, func() bool { return len(listeners(t, st)) == 2 })
	if err := a.PauseQueue(t.Context(), "default"); err != nil {
		t.Fatal(err)
	}
	within("the pause on A reaching B", func() bool { return queueInfo(t, b, "default").Paused })
	res, err := b.Insert(t.Context(), probeArgs{N: 1}, jobs.InsertOpts{})
	if err != nil {
		t.Fatal(err)
	}
	// A paused queue shows nothing to wait for, so this is a window: both
	// queues were woken by the insert and poll every 5 ms, so in 50 ms a
	// claim that ignored the pause would have taken the job ten times over.
	a.Wake()
	b.Wake()
	time.Sleep(50 * time.Millisecond)
	if j, err := jobs.Get(t.Context(), st.Reader, res.ID); err != nil || j.State != jobs.StateAvailable {
		t.Fatalf("a job in the paused queue: %v (%v), want still available", j.State, err)
	}

	if err := b.ResumeQueue(t.Context(), "default"); err != nil {
		t.Fatal(err)
	}
	within("the resume on B reaching A", func() bool { return !queueInfo(t, a, "default").Paused })
	within("the waiting job running once resumed", func() bool {
		j, err := jobs.Get(t.Context(), st.Reader, res.ID)
		return err == nil && j.State == jobs.StateCompleted
	})

	if err := b.ScaleQueue(t.Context(), "default", 9); err != nil {
		t.Fatal(err)
	}
	within("the scale on B reaching A", func() bool { return queueInfo(t, a, "default").Limit == 9 })

	// Stored: an engine started afterwards starts with them.
	if err := a.PauseQueue(t.Context(), "default"); err != nil {
		t.Fatal(err)
	}
	_, c := pgNode(t, url, node("node-c"))
	if q := queueInfo(t, c, "default"); !q.Paused || q.Limit != 9 {
		t.Fatalf("a node started later: paused %v limit %d, want the stored true and 9", q.Paused, q.Limit)
	}
}

// TestCountsFoldedOnlyByTheLeader: the count ledger (PostgreSQL) is folded
// by the leader only: while the engine follows, the rows its inserts
// appended stay; once it leads, they are folded into one.
func TestCountsFoldedOnlyByTheLeader(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	var leads atomic.Bool
	st, e := pgNode(t, url, jobs.Config{Node: "node-a", Queues: map[string]int{"elsewhere": 1},
		CompactInterval: 5 * time.Millisecond, IsLeader: leads.Load})
	for range 5 {
		if _, err := e.Insert(t.Context(), testArgs{}, jobs.InsertOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() int {
		var n int
		if err := st.Reader.Get(&n, "SELECT count(*) FROM job_counts WHERE queue = 'default' AND state = 'available'"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A window of twenty compaction intervals: a follower that folded
	// would have by then.
	time.Sleep(100 * time.Millisecond)
	if n := rows(); n < 5 {
		t.Fatalf("%d ledger rows while following, want the 5 the inserts appended", n)
	}
	leads.Store(true)
	waitFor(t, waitTimeout, func() bool { return rows() == 1 })
}
