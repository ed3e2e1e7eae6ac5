package pets_test

// LivePet over several nodes: two sims on one PostgreSQL database, each
// with its own store (connection pool), presence and publisher, as two
// processes would have.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/internal/testclock"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// Presence settings of the node tests: fast, so that a dead node stops
// counting within a second.
const (
	nodeFlush   = 20 * time.Millisecond
	nodeRefresh = 200 * time.Millisecond
	nodeTTL     = time.Second
)

// discard is the nodes' logger: a dead node's presence complains.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one process's LivePet: its own pool on the shared database, its
// presence (started) and its sim (started, ticks by hand).
type node struct {
	name string
	st   *store.Store
	pres *cluster.Presence
	sim  *pets.Sim
	pub  *recorder
}

// twoNodes starts nodes A and B on one new PostgreSQL database; the sims
// run on a new clock at epoch and read the other node's viewers every
// presenceEvery.
func twoNodes(t *testing.T, presenceEvery time.Duration) (clock *testclock.Clock, a, b *node) {
	t.Helper()
	clock = testclock.New(epoch)
	url := storetest.Postgres(t).Target(t)
	return clock, startNode(t, url, "A", clock, presenceEvery), startNode(t, url, "B", clock, presenceEvery)
}

// adopt has the keeper adopt a pet on this node.
func (nd *node) adopt(t *testing.T, keeper, name, species string) pets.State {
	t.Helper()
	p, err := nd.sim.Adopt(context.Background(), keeper, name, species)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startNode(t *testing.T, url, name string, clock *testclock.Clock, presenceEvery time.Duration) *node {
	t.Helper()
	ctx := context.Background()
	nd := &node{name: name, st: openStore(t, url), pub: &recorder{}}
	pres, err := cluster.NewPresence(nd.st.Writer, nd.st.Dialect, name, cluster.PresenceOptions{Flush: nodeFlush, Refresh: nodeRefresh, TTL: nodeTTL, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := pres.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pres.Stop(ctx) })
	nd.pres = pres
	nd.sim, err = pets.New(pets.Config{
		Store: nd.st, Tick: T, Publisher: nd.pub, Now: clock.Now, ManualTicks: true,
		ActiveEvery: time.Millisecond, CountsEvery: time.Millisecond,
		Presence: pres, Node: name, PresenceTTL: nodeTTL, PresenceEvery: presenceEvery,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nd.sim.Stop(ctx) })
	return nd
}

// watch is the hub's report that this node's streams on pet id are now n.
func (nd *node) watch(id int64, n int) { nd.sim.Watchers().Update(pets.Stream(id), n) }

func (nd *node) viewers(t *testing.T, id int64) int {
	t.Helper()
	st, err := nd.sim.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Viewers
}

// published is the last state of pet id this node's pages were sent.
func (nd *node) published(id int64) (pets.State, bool) {
	nd.pub.mu.Lock()
	defer nd.pub.mu.Unlock()
	for i := len(nd.pub.live) - 1; i >= 0; i-- {
		if nd.pub.live[i].ID == id {
			return nd.pub.live[i], true
		}
	}
	return pets.State{}, false
}

func (nd *node) died(id int64) int {
	nd.pub.mu.Lock()
	defer nd.pub.mu.Unlock()
	n := 0
	for _, s := range nd.pub.died {
		if s.ID == id {
			n++
		}
	}
	return n
}

// One viewer on each of two nodes: both count 2 and both pages are sent
// "2 watching"; a third viewer on A counts on A at once; the active list
// of each node lists a pet watched only on the other; a node that dies
// (its database connections gone, its presence never refreshed again)
// stops counting within the presence TTL.
func TestViewersAreCountedOnEveryNode(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t, 20*time.Millisecond)
	ctx := context.Background()
	p := a.adopt(t, "k1", "Pip", "cat")
	q := b.adopt(t, "k2", "Quill", "owl")

	a.watch(p.ID, 1)
	b.watch(p.ID, 1)
	for _, nd := range []*node{a, b} {
		testwait.Until(t, 10*time.Second, nd.name+" counts 2 watching", func() bool { return nd.viewers(t, p.ID) == 2 })
		testwait.Until(t, 10*time.Second, nd.name+"'s page is sent 2 watching", func() bool {
			st, ok := nd.published(p.ID)
			return ok && st.Viewers == 2
		})
	}

	// This node's own viewers count at once, before any database knows.
	a.watch(p.ID, 2)
	if n := a.viewers(t, p.ID); n != 3 {
		t.Errorf("A counts %d right after its second viewer came, want 3", n)
	}
	testwait.Until(t, 10*time.Second, "B counts A's second viewer", func() bool { return b.viewers(t, p.ID) == 3 })

	// Quill is watched on B only: A's active list has it.
	b.watch(q.ID, 1)
	testwait.Until(t, 10*time.Second, "A's active list has the pet watched on B", func() bool {
		act, err := a.sim.ActivePets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		others, total, _ := act.For(p.ID)
		return total == 1 && len(others) == 1 && others[0].ID == q.ID && others[0].Viewers == 1
	})
	testwait.Until(t, 10*time.Second, "A's pages are sent the active list with Quill", func() bool {
		act, ok := a.pub.lastActive()
		return ok && act.Total == 2 && len(act.Watched) == 2
	})

	// B dies: nothing of it writes any more.
	if err := b.sim.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	b.st.Close()
	testwait.Until(t, 10*time.Second, "A stops counting the dead node's viewer", func() bool { return a.viewers(t, p.ID) == 2 })
	testwait.Until(t, 10*time.Second, "A's page is sent 2 watching again", func() bool {
		st, ok := a.published(p.ID)
		return ok && st.Viewers == 2
	})
	testwait.Until(t, 10*time.Second, "Quill leaves A's active list", func() bool {
		act, err := a.sim.ActivePets(ctx)
		return err == nil && act.Total == 1
	})
	// A deletes the dead node's rows (readers ignored them already).
	testwait.Until(t, 10*time.Second, "the dead node's presence rows deleted", func() bool {
		var n int
		if err := a.st.Reader.GetContext(ctx, &n, "SELECT count(*) FROM cluster_presence WHERE node = 'B'"); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

// A treat given on B to a pet watched only on A is allowed, even before B
// has read the other nodes' viewers (it reads them once a minute here): the
// rule reads them again when its own counts say nobody watches.
func TestATreatIsAllowedWhenAnotherNodeWatches(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t, time.Minute)
	ctx := context.Background()
	p := a.adopt(t, "k1", "Pip", "cat")
	if _, _, err := b.sim.Treat(ctx, "k2", p.ID); !errors.Is(err, pets.ErrNotWatched) {
		t.Fatalf("treat of a pet nobody watches: %v, want ErrNotWatched", err)
	}
	a.watch(p.ID, 1)
	var (
		st  pets.State
		err error
	)
	testwait.Until(t, 10*time.Second, "a treat on B of the pet watched on A", func() bool {
		st, _, err = b.sim.Treat(ctx, "k2", p.ID)
		if err != nil && !errors.Is(err, pets.ErrNotWatched) {
			t.Fatal(err)
		}
		return err == nil
	})
	if st.Hunger != pets.NewbornHunger-pets.TreatAmount {
		t.Errorf("hunger after the treat %d", st.Hunger)
	}
	// A leaves: treats are refused again.
	a.watch(p.ID, 0)
	testwait.Until(t, 10*time.Second, "a treat refused once A's viewer left", func() bool {
		_, _, err = b.sim.Treat(ctx, "k2", p.ID)
		return errors.Is(err, pets.ErrNotWatched)
	})
}

// A feed on B reaches A's page of the pet at once (a notification), not at
// A's next tick (never, here) nor its next read of presence (a minute).
func TestAFeedOnOneNodeReachesAnotherNodesPage(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t, time.Minute)
	ctx := context.Background()
	p := b.adopt(t, "k1", "Pip", "cat")
	a.watch(p.ID, 1)
	testwait.Until(t, 10*time.Second, "A's page gets the pet's state", func() bool {
		_, ok := a.published(p.ID)
		return ok
	})
	// A's listener may still be connecting: feed until A shows a feed.
	fed := 0
	testwait.Until(t, 10*time.Second, "A's page shows the feed made on B", func() bool {
		if fed < 3 {
			if _, err := b.sim.Feed(ctx, "k1", p.ID); err != nil {
				t.Fatal(err)
			}
			fed++
		}
		st, ok := a.published(p.ID)
		return ok && st.Hunger < pets.NewbornHunger
	})
	// B's own feed is not published twice on B (B's page is not watched
	// there: nothing at all).
	if _, ok := b.published(p.ID); ok {
		t.Errorf("B published a pet no page of B watches")
	}
}

// A node that does not record deaths (another node did: the leader's sweep)
// still shows its pages the death, once, at its next tick.
func TestADeathRecordedByAnotherNodeReachesThisNodesPage(t *testing.T) {
	t.Parallel()
	clock, a, b := twoNodes(t, 20*time.Millisecond)
	ctx := context.Background()
	p := a.adopt(t, "k1", "Pip", "cat")
	a.watch(p.ID, 1)
	// Quill, born three ticks later, is watched on B only: on A's active
	// list.
	clock.Add(3 * T)
	q := b.adopt(t, "k2", "Quill", "owl")
	b.watch(q.ID, 1)
	testwait.Until(t, 10*time.Second, "A's pages list Quill", func() bool {
		act, ok := a.pub.lastActive()
		return ok && act.Total == 2
	})
	death := p.DiesAt
	clock.Set(death)
	// B records the death; no page of B watches the pet.
	if stats, err := b.sim.Tick(ctx, death); err != nil || stats.Died != 1 {
		t.Fatalf("B's tick: %+v, %v", stats, err)
	}
	if n := b.died(p.ID); n != 0 {
		t.Errorf("B showed the death to %d pages it does not have", n)
	}
	// A's tick finds nothing to record, but its page is watching the pet.
	if stats, err := a.sim.Tick(ctx, death.Add(T)); err != nil || stats.Died != 0 {
		t.Fatalf("A's tick: %+v, %v", stats, err)
	}
	if n := a.died(p.ID); n != 1 {
		t.Fatalf("A's page was shown the death %d times, want once", n)
	}
	if _, err := a.sim.Tick(ctx, death.Add(2*T)); err != nil {
		t.Fatal(err)
	}
	if n := a.died(p.ID); n != 1 {
		t.Errorf("A's page was shown the death %d times after another tick, want once", n)
	}
	testwait.Until(t, 10*time.Second, "A's pages are sent the active list without Pip", func() bool {
		act, ok := a.pub.lastActive()
		return ok && act.Total == 1
	})
	// Quill dies, watched on B only and recorded by B: A's pages are sent
	// the active list without it.
	clock.Set(q.DiesAt)
	if stats, err := b.sim.Tick(ctx, q.DiesAt); err != nil || stats.Died != 1 {
		t.Fatalf("B's tick: %+v, %v", stats, err)
	}
	if stats, err := a.sim.Tick(ctx, q.DiesAt); err != nil || stats.Died != 0 {
		t.Fatalf("A's tick: %+v, %v", stats, err)
	}
	testwait.Until(t, 10*time.Second, "A's pages are sent the active list without Quill", func() bool {
		act, ok := a.pub.lastActive()
		return ok && act.Total == 0
	})
}

// A watched pet whose life ran out is shown dead by the first publish that
// finds it so (here a flush, before any tick), and the sweep that records
// the death then does not show it again.
func TestADeathIsShownOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	p := b.adopt(t, "k", "Pip")
	b.sim.Watchers().Update(pets.Stream(p.ID), 1)
	b.clock.Set(p.DiesAt)
	b.sim.Watchers().Update(pets.Stream(p.ID), 2) // touched: the flush reads it
	if err := b.sim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	died := func() int { b.pub.mu.Lock(); defer b.pub.mu.Unlock(); return len(b.pub.died) }
	if n := died(); n != 1 {
		t.Fatalf("shown dead %d times by the flush, want once", n)
	}
	if stats := b.tick(t, p.DiesAt.Add(T/2)); stats.Died != 1 {
		t.Fatalf("the sweep recorded %d deaths, want 1", stats.Died)
	}
	if n := died(); n != 1 {
		t.Errorf("shown dead %d times after the sweep, want once", n)
	}
}
