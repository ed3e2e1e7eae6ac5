package cluster_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/internal/testclock"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

func newPresence(t *testing.T, st *store.Store, node string, opts cluster.PresenceOptions) *cluster.Presence {
	t.Helper()
	p, err := cluster.NewPresence(st.Writer, st.Dialect, node, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func count(t *testing.T, p *cluster.Presence, topic string) int {
	t.Helper()
	n, err := p.Count(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func flush(t *testing.T, ps ...*cluster.Presence) {
	t.Helper()
	for _, p := range ps {
		if err := p.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// Counts are summed over the nodes; a node that stops refreshing stops
// counting after TTL, the leader's sweep deletes its rows, and the node
// writes them again when it comes back.
func TestPresenceSumsLiveNodesAndForgetsStaleOnes(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		clock := testclock.New(t0)
		opts := cluster.PresenceOptions{Refresh: 2 * time.Second, Now: clock.Now} // TTL 6 s
		a := newPresence(t, st, "a", opts)
		b := newPresence(t, st, "b", opts)
		a.Add("pet:1", 1)
		a.Add("pet:1", 1)
		a.Add("pet:2", 1)
		b.Set("pet:1", 1)
		if n := count(t, a, "pet:1"); n != 0 {
			t.Fatalf("counted %d before any flush", n)
		}
		flush(t, a, b)
		if n := count(t, b, "pet:1"); n != 3 {
			t.Fatalf("pet:1 watched by %d, want 2 on a and 1 on b", n)
		}
		counts, err := a.Counts(ctx)
		if err != nil || !maps.Equal(counts, map[string]int{"pet:1": 3, "pet:2": 1}) {
			t.Fatalf("counts %v, %v", counts, err)
		}
		// b dies (stops refreshing); a goes on.
		for range 4 {
			clock.Add(2 * time.Second)
			if err := a.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(t, a, "pet:1"); n != 2 {
			t.Fatalf("pet:1 watched by %d after b went stale, want a's 2", n)
		}
		if swept, err := a.Sweep(ctx); err != nil || swept != 1 {
			t.Fatalf("swept %d rows (%v), want b's one", swept, err)
		}
		// b comes back: its refresh finds its row gone and writes it again.
		if err := b.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, a, "pet:1"); n != 3 {
			t.Fatalf("pet:1 watched by %d after b came back, want 3", n)
		}
		// Viewers leave: a row at zero is gone.
		a.Add("pet:2", -1)
		a.Add("pet:2", -1) // never below zero
		flush(t, a)
		if n, l := count(t, a, "pet:2"), a.Local("pet:2"); n != 0 || l != 0 {
			t.Fatalf("pet:2 watched by %d (local %d) after its viewer left", n, l)
		}
		if err := b.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, a, "pet:1"); n != 2 {
			t.Fatalf("pet:1 watched by %d after b stopped, want a's 2", n)
		}
	})
}

// On the real clocks and goroutines: changes reach the table within the
// flush period, a node whose database went away stops counting within
// TTL, and Stop removes a node's viewers at once.
func TestPresenceRunsOnItsOwn(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		target, st := openTarget(t, b)
		dying := second(t, target)
		opts := cluster.PresenceOptions{Flush: 10 * time.Millisecond, Refresh: 200 * time.Millisecond}
		a := newPresence(t, st, "a", opts)
		d := newPresence(t, dying, "d", opts)
		for _, p := range []*cluster.Presence{a, d} {
			if err := p.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for range 5 {
			a.Add("pet:7", 1)
		}
		d.Add("pet:7", 1)
		testwait.Until(t, 5*time.Second, "6 watching", func() bool { return count(t, a, "pet:7") == 6 })
		dying.Close() // d can no longer write: its row goes stale
		died := time.Now()
		testwait.Until(t, 5*time.Second, "d's viewer no longer counts", func() bool { return count(t, a, "pet:7") == 5 })
		t.Logf("a dead node's viewers stopped counting after %s (TTL %s)", time.Since(died), 3*opts.Refresh)
		if err := a.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, a, "pet:7"); n != 0 {
			t.Fatalf("%d watching after a stopped", n)
		}
		if err := d.Stop(ctx); err == nil {
			t.Error("d removed its rows on a closed database")
		}
	})
}
