package cluster_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/internal/testclock"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// t0 is where the tests' clocks start.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// second opens another pool on the database of target (migrated by the
// first), closed when t ends unless the test closes it first: a node of
// its own, whose database a test can make unreachable.
func second(t *testing.T, target string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openTarget makes a new database of b and opens it migrated (closed when
// t ends); the target names it, for a second pool or another process.
func openTarget(t *testing.T, b storetest.Backend) (string, *store.Store) {
	t.Helper()
	target := b.Target(t)
	return target, storetest.Open(t, target)
}

// startInTurn starts a and waits until it leads, then starts other
// (stopped when t ends).
func startInTurn(t *testing.T, ctx context.Context, a, other *cluster.Lease) {
	t.Helper()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "a leads", a.IsLeader)
	if err := other.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Stop(ctx) })
}

func newLease(t *testing.T, st *store.Store, node string, ttl time.Duration, opts cluster.LeaseOptions) *cluster.Lease {
	t.Helper()
	l, err := cluster.NewLease(st.Writer, st.Dialect, "maintenance", node, ttl, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func campaign(t *testing.T, l *cluster.Lease) bool {
	t.Helper()
	ok, err := l.Campaign(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", l.Node(), err)
	}
	return ok
}

// One node takes the lease, renews it while it lasts, and another takes
// it only once it expired, with the next term.
func TestLeaseElectsOneAndTakesOverAtExpiry(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		clock := testclock.New(t0)
		opts := cluster.LeaseOptions{Now: clock.Now}
		a := newLease(t, st, "a", 30*time.Second, opts)
		b := newLease(t, st, "b", 30*time.Second, opts)
		if !campaign(t, a) || campaign(t, b) {
			t.Fatal("a free lease went to b, or to nobody")
		}
		if !a.IsLeader() || b.IsLeader() || a.Term() != 1 {
			t.Fatalf("a leads %v (term %d), b leads %v", a.IsLeader(), a.Term(), b.IsLeader())
		}
		if h, err := a.Holder(ctx); err != nil || h != "a" {
			t.Fatalf("holder %q, %v", h, err)
		}
		clock.Add(20 * time.Second)
		if !campaign(t, a) || campaign(t, b) || a.Term() != 1 {
			t.Fatal("a could not renew, or b took a live lease")
		}
		// a stops renewing; its lease ends 30 s after its last renewal.
		clock.Add(29 * time.Second)
		if campaign(t, b) {
			t.Fatal("b took the lease before it expired")
		}
		if a.IsLeader() {
			t.Fatal("a still believes it leads past TTL − margin")
		}
		clock.Add(2 * time.Second)
		if !campaign(t, b) || b.Term() != 2 {
			t.Fatalf("b did not take the expired lease (term %d)", b.Term())
		}
		if campaign(t, a) || a.IsLeader() {
			t.Fatal("a took the lease back from b")
		}
		if h, _ := a.Holder(ctx); h != "b" {
			t.Fatalf("holder %q, want b", h)
		}
	})
}

// Many nodes campaigning at the same moment, round after round: exactly
// one wins each round.
func TestLeaseConcurrentCampaignsElectExactlyOne(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		clock := testclock.New(t0)
		const nodes, rounds = 8, 15
		leases := make([]*cluster.Lease, nodes)
		for i := range leases {
			leases[i] = newLease(t, st, string(rune('a'+i)), 10*time.Second, cluster.LeaseOptions{Now: clock.Now})
		}
		for round := range rounds {
			var won atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for _, l := range leases {
				wg.Go(func() {
					<-start
					ok, err := l.Campaign(ctx)
					if err != nil {
						t.Error(err)
					}
					if ok {
						won.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if won.Load() != 1 {
				t.Fatalf("round %d: %d leaders", round, won.Load())
			}
			clock.Add(11 * time.Second) // every lease expires: a fresh election
		}
	})
}

// A leader whose database is unreachable cannot renew: it stops believing
// it leads before its row expires, and the next leader starts only after
// that; at no instant do both lead.
func TestLeaseLeaderThatCannotRenewStepsDownBeforeExpiry(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		target := b.Target(t)
		st := storetest.Open(t, "")
		if b.Dialect == store.Postgres {
			st = second(t, target)
			if err := st.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
		} else {
			st = storetest.Open(t, target)
		}
		lost := second(t, target) // a's own pool, closed below
		clock := testclock.New(t0)
		opts := cluster.LeaseOptions{Now: clock.Now}
		const ttl = 30 * time.Second
		a := newLease(t, lost, "a", ttl, opts)
		other := newLease(t, st, "b", ttl, opts)
		if !campaign(t, a) {
			t.Fatal("a did not lead")
		}
		clock.Add(10 * time.Second)
		if !campaign(t, a) { // the last renewal: the row expires at t0+40s
			t.Fatal("a did not renew")
		}
		lost.Close()
		var aStopped, bStarted time.Time
		for step := 0; step < 40; step++ {
			clock.Add(time.Second)
			if ok, err := a.Campaign(context.Background()); err == nil || ok != a.IsLeader() {
				t.Fatalf("a renewed on a closed database (ok %v, err %v)", ok, err)
			}
			aLeads := a.IsLeader()
			bLeads := campaign(t, other)
			if aLeads && bLeads {
				t.Fatalf("at %s both lead", clock.Now().Sub(t0))
			}
			if !aLeads && aStopped.IsZero() {
				aStopped = clock.Now()
			}
			if bLeads && bStarted.IsZero() {
				bStarted = clock.Now()
			}
		}
		if aStopped.IsZero() || bStarted.IsZero() {
			t.Fatalf("a stopped at %v, b started at %v", aStopped, bStarted)
		}
		// a believes until TTL − margin (6 s) after it sent the renewal;
		// b starts once the row's expiry has passed.
		if got, want := aStopped.Sub(t0), 10*time.Second+ttl-ttl/5; got != want {
			t.Errorf("a stopped believing at t0+%s, want t0+%s", got, want)
		}
		if got := bStarted.Sub(t0); got <= 40*time.Second || got > 41*time.Second {
			t.Errorf("b took over at t0+%s, want just past the expiry at t0+40s", got)
		}
	})
}

// changes records a lease's OnChange calls with when they came.
type changes struct {
	mu  sync.Mutex
	got []change
}

type change struct {
	leading bool
	at      time.Time
}

func (c *changes) record(leading bool) {
	c.mu.Lock()
	c.got = append(c.got, change{leading, time.Now()})
	c.mu.Unlock()
}

func (c *changes) list() []change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]change(nil), c.got...)
}

// The same on the real clocks and the real goroutines: the database's
// clock for the rows, the monotonic clock for the belief. The leader's
// database goes away; when the other node becomes the leader, the old one
// no longer believes it leads.
func TestLeaseOnRealClocksHandsOverWithoutOverlap(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		target := b.Target(t)
		first, err := store.Open(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if err := first.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		lost := second(t, target)
		const ttl = 2 * time.Second
		var ca changes
		a := newLease(t, lost, "a", ttl, cluster.LeaseOptions{OnChange: ca.record})
		// aLeadsWhenBWon is what a believed at the moment b took over.
		var aLeadsWhenBWon atomic.Int32
		other := newLease(t, first, "b", ttl, cluster.LeaseOptions{OnChange: func(leading bool) {
			if leading {
				v := int32(1)
				if a.IsLeader() {
					v = 2
				}
				aLeadsWhenBWon.CompareAndSwap(0, v)
			}
		}})
		startInTurn(t, ctx, a, other)
		lost.Close()
		testwait.Until(t, 10*time.Second, "b reports leading", func() bool { return aLeadsWhenBWon.Load() != 0 })
		if aLeadsWhenBWon.Load() != 1 {
			t.Fatal("a still believed it led when b took over")
		}
		testwait.Until(t, 5*time.Second, "a reports losing the lead", func() bool {
			got := ca.list()
			return len(got) >= 2 && !got[len(got)-1].leading
		})
		if err := a.Stop(ctx); err == nil {
			t.Error("a resigned on a closed database")
		}
		if got := ca.list(); !got[0].leading {
			t.Fatalf("a's changes %+v", got)
		}
	})
}

// Stop resigns: the row goes, and another node takes the lease at once.
// On PostgreSQL the resignation's notification wakes the other node, long
// before its next campaign would have.
func TestLeaseStopResignsAndAnotherTakesOverAtOnce(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		var ca changes
		a := newLease(t, st, "a", time.Minute, cluster.LeaseOptions{OnChange: ca.record})
		other := newLease(t, st, "b", time.Minute, cluster.LeaseOptions{}) // campaigns every 20 s
		startInTurn(t, ctx, a, other)
		if st.Dialect == store.Postgres {
			// b's listener is up once it holds a LISTENing connection.
			testwait.Until(t, 5*time.Second, "b listens", func() bool { return listeners(t, st) == 2 })
		}
		stopped := time.Now()
		if err := a.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if a.IsLeader() {
			t.Fatal("a leads after Stop")
		}
		if got := ca.list(); len(got) != 2 || !got[0].leading || got[1].leading {
			t.Fatalf("a's changes %+v", got)
		}
		// No holder, or already b (woken on PostgreSQL), never a.
		if h, err := other.Holder(ctx); err != nil || h == "a" {
			t.Fatalf("holder after resigning %q, %v", h, err)
		}
		if st.Dialect == store.Postgres {
			testwait.Until(t, 5*time.Second, "b takes over after the notification", other.IsLeader)
			t.Logf("took over %s after the resignation (next campaign was due in 20 s)", time.Since(stopped))
		} else if !campaign(t, other) {
			t.Fatal("b could not take a resigned lease")
		}
		if other.Term() != 2 {
			t.Errorf("term %d after one change of holder", other.Term())
		}
	})
}

// Settings that cannot keep two leaders apart are refused.
func TestNewLeaseRefusesBadSettings(t *testing.T) {
	t.Parallel()
	st := storetest.Open(t, "")
	for _, c := range []struct {
		name, node string
		ttl        time.Duration
		opts       cluster.LeaseOptions
	}{
		{"", "a", time.Second, cluster.LeaseOptions{}},
		{"m", "", time.Second, cluster.LeaseOptions{}},
		{"m", "a", time.Millisecond, cluster.LeaseOptions{}},
		{"m", "a", time.Second, cluster.LeaseOptions{RenewEvery: 900 * time.Millisecond}},
	} {
		if _, err := cluster.NewLease(st.Writer, st.Dialect, c.name, c.node, c.ttl, c.opts); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// listeners counts the connections LISTENing for resignations.
func listeners(t *testing.T, st *store.Store) int {
	t.Helper()
	var n int
	if err := st.Writer.GetContext(context.Background(), &n, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+cluster.LeaseChannel+`'`); err != nil {
		t.Fatal(err)
	}
	return n
}

// A listener whose connection the server dropped connects again and still
// hears the next resignation.
func TestLeaseListenerReconnects(t *testing.T) {
	t.Parallel()
	st := storetest.Postgres(t).Open(t)
	ctx := context.Background()
	a := newLease(t, st, "a", time.Minute, cluster.LeaseOptions{})
	other := newLease(t, st, "b", time.Minute, cluster.LeaseOptions{}) // campaigns every 20 s
	for _, l := range []*cluster.Lease{a, other} {
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer l.Stop(ctx)
	}
	testwait.Until(t, 5*time.Second, "both listen", func() bool { return listeners(t, st) == 2 })
	if !a.IsLeader() && !other.IsLeader() {
		t.Fatal("nobody leads")
	}
	if _, err := st.Writer.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+cluster.LeaseChannel+`'`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "both listen again", func() bool { return listeners(t, st) == 2 })
	leader, follower := a, other
	if other.IsLeader() {
		leader, follower = other, a
	}
	if err := leader.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "the follower takes over after the notification", follower.IsLeader)
}
