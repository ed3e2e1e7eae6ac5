package pets_test

import (
	"context"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testclock"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestFollowerShowsTheLeadersDeaths: two sims on one database, as two
// nodes, only one of which leads (Config.IsLeader). The follower never
// records a death, neither at Start nor when it ticks; the leader does.
// Yet the follower's own watchers are told the pet died (once), its pet
// page reads it dead, and its counts follow the leader's sweep.
func TestFollowerShowsTheLeadersDeaths(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := storetest.DatabaseFor(t, "pets.db")
	clock := testclock.New(epoch)
	node := func(leads bool) (*pets.Sim, *recorder) {
		pub := &recorder{}
		sim, err := pets.New(pets.Config{Store: openStore(t, path), Tick: T, Publisher: pub, Now: clock.Now,
			ManualTicks: true, IsLeader: func() bool { return leads }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Stop(context.Background()) })
		return sim, pub
	}
	leader, leaderPub := node(true)
	follower, followerPub := node(false)
	early, err := leader.Adopt(ctx, "keeper", "Early", "fox")
	if err != nil {
		t.Fatal(err)
	}
	life := leader.Rules().Lifespan()
	clock.Set(epoch.Add(life / 2))
	p, err := follower.Adopt(ctx, "keeper", "Methuselah", "cat")
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(epoch.Add(life/2 + time.Hour))
	if _, err := leader.Adopt(ctx, "keeper", "Later", "owl"); err != nil {
		t.Fatal(err)
	}
	stored := func(id int64) time.Time {
		t.Helper()
		row, err := leader.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return row.Pet.DiedAt
	}

	// Both start with Early's life over (not the others'): only the
	// leader catches up.
	clock.Set(early.BornAt.Add(life + time.Second))
	if err := follower.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !stored(early.ID).IsZero() {
		t.Fatal("the follower recorded a death at Start")
	}
	if err := leader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if stored(early.ID).IsZero() {
		t.Fatal("the leader did not catch up on a death at Start")
	}

	// Methuselah is watched on the follower only.
	follower.Watchers().Update(pets.Stream(p.ID), 1)
	deathAt := p.BornAt.Add(life)
	tick := func(sim *pets.Sim, now time.Time) pets.TickStats {
		t.Helper()
		clock.Set(now)
		s, err := sim.Tick(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Dead by the rules before the leader's sweep: its watchers see it.
	if s := tick(follower, deathAt.Add(time.Second)); s.Died != 0 {
		t.Fatalf("the follower's tick recorded %d deaths", s.Died)
	}
	if !stored(p.ID).IsZero() {
		t.Fatal("the follower recorded a death when it ticked")
	}
	followerPub.mu.Lock()
	died := followerPub.died
	followerPub.mu.Unlock()
	if len(died) != 1 || died[0].ID != p.ID || died[0].Alive || died[0].Viewers != 1 {
		t.Fatalf("the follower's watchers were told %+v, want Methuselah dead", died)
	}
	if s := tick(leader, deathAt.Add(2*time.Second)); s.Died != 1 || !stored(p.ID).Equal(deathAt) {
		t.Fatalf("the leader's sweep: %+v, stored death %v, want 1 at %v", s, stored(p.ID), deathAt)
	}
	leaderPub.mu.Lock()
	leaderDied := len(leaderPub.died)
	leaderPub.mu.Unlock()
	if leaderDied != 0 {
		t.Errorf("the leader told %d watchers of its own; it has none", leaderDied)
	}
	tick(follower, deathAt.Add(3*time.Second))
	followerPub.mu.Lock()
	died = followerPub.died
	followerPub.mu.Unlock()
	if len(died) != 1 {
		t.Errorf("the follower's watchers were told %d times, want once", len(died))
	}
	if s, err := follower.Get(ctx, p.ID); err != nil || s.Alive || !s.DiedAt.Equal(deathAt) {
		t.Errorf("the follower's page reads %+v (%v), want dead at %v", s, err, deathAt)
	}
	// Counts: 3 pets, 2 dead, on both nodes.
	for name, sim := range map[string]*pets.Sim{"leader": leader, "follower": follower} {
		if c := sim.Counts(); c.Alive != 1 || c.Dead != 2 {
			t.Errorf("%s counts %+v, want 1 alive and 2 dead", name, c)
		}
	}
	if err := follower.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	followerPub.mu.Lock()
	counts := followerPub.counts
	followerPub.mu.Unlock()
	if len(counts) == 0 || counts[len(counts)-1].Dead != 2 {
		t.Errorf("the follower's list pages were sent counts %+v, want the last with 2 dead", counts)
	}
}

// TestFollowerOnPostgres runs TestFollowerShowsTheLeadersDeaths on
// PostgreSQL.
func TestFollowerOnPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunSuites(t, TestFollowerShowsTheLeadersDeaths)
}
