package pets_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testclock"
	"github.com/phonehome/phonehome/internal/testwait"

	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// recorder is a Publisher that keeps what the sim showed, for the tests to
// inspect. (The real one, live.PetFeed, is tested through the router.)
type recorder struct {
	mu      sync.Mutex
	live    []pets.State
	died    []pets.State
	active  []pets.Active
	listed  []pets.State
	adopted []pets.State
	resyncs int
	counts  []store.PetCounts
}

func (r *recorder) Live(s []pets.State) { r.mu.Lock(); r.live = append(r.live, s...); r.mu.Unlock() }
func (r *recorder) Died(s pets.State)   { r.mu.Lock(); r.died = append(r.died, s); r.mu.Unlock() }
func (r *recorder) Active(a pets.Active) {
	r.mu.Lock()
	r.active = append(r.active, a)
	r.mu.Unlock()
}
func (r *recorder) Listed(s pets.State, adopted bool) {
	r.mu.Lock()
	if adopted {
		r.adopted = append(r.adopted, s)
	} else {
		r.listed = append(r.listed, s)
	}
	r.mu.Unlock()
}
func (r *recorder) Resync() { r.mu.Lock(); r.resyncs++; r.mu.Unlock() }
func (r *recorder) Counts(c store.PetCounts) {
	r.mu.Lock()
	r.counts = append(r.counts, c)
	r.mu.Unlock()
}

// take returns and forgets what was published live.
func (r *recorder) takeLive() []pets.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.live
	r.live = nil
	return out
}

func (r *recorder) lastActive() (pets.Active, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.active) == 0 {
		return pets.Active{}, false
	}
	return r.active[len(r.active)-1], true
}

type bundle struct {
	ctx   context.Context
	sim   *pets.Sim
	st    *store.Store
	path  string
	clock *testclock.Clock
	pub   *recorder
}

func openStore(t testing.TB, path string) *store.Store { return storetest.Open(t, path) }

// setup makes a sim over a new database (storetest.DatabaseFor) with a fake clock at
// epoch. It is
// not started: tests call Tick and Flush themselves unless they Start it.
func setup(t *testing.T, tune func(*pets.Config)) *bundle {
	t.Helper()
	path := storetest.DatabaseFor(t, "pets.db")
	b := &bundle{ctx: context.Background(), st: openStore(t, path), path: path, clock: testclock.New(epoch), pub: &recorder{}}
	cfg := pets.Config{Store: b.st, Tick: T, Publisher: b.pub, Now: b.clock.Now, ManualTicks: true}
	if tune != nil {
		tune(&cfg)
	}
	sim, err := pets.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Stop(context.Background()) })
	b.sim = sim
	return b
}

// adoptedApart has keeper k adopt First now (the clock at epoch) and Second
// apart later, leaving the clock there.
func (b *bundle) adoptedApart(t *testing.T, apart time.Duration) (first, second pets.State) {
	t.Helper()
	first = b.adopt(t, "k", "First")
	b.clock.Set(epoch.Add(apart))
	return first, b.adopt(t, "k", "Second")
}

func (b *bundle) adopt(t *testing.T, keeper, name string) pets.State {
	t.Helper()
	s, err := b.sim.Adopt(context.Background(), keeper, name, "fox")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *bundle) tick(t *testing.T, now time.Time) pets.TickStats {
	t.Helper()
	b.clock.Set(now)
	stats, err := b.sim.Tick(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func (b *bundle) get(t *testing.T, id int64) pets.State {
	t.Helper()
	s, err := b.sim.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTicksAgeAndHungerUpToTheCap(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.adopt(t, "k", "Ember")
	if p.Age != 0 || p.Hunger != pets.NewbornHunger || !p.Alive || !p.BornAt.Equal(epoch) {
		t.Fatalf("newborn = %+v", p)
	}
	b.sim.Watchers().Update(pets.Stream(p.ID), 1)
	for _, k := range []int{1, 2, 10, 49, 50, 51, 400} {
		stats := b.tick(t, at(k, T/2))
		want := min(500, 250+5*k)
		if s := b.get(t, p.ID); s.Age != k || s.Hunger != want {
			t.Errorf("tick %d: age %d hunger %d, want %d %d", k, s.Age, s.Hunger, k, want)
		}
		live := b.pub.takeLive()
		if stats.Rendered != 1 || len(live) != 1 || live[0].Age != k || live[0].Hunger != want || live[0].Viewers != 1 {
			t.Errorf("tick %d published %+v (stats %+v)", k, live, stats)
		}
	}
}

func TestEachPetTicksOnItsOwnPhase(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	first, second := b.adoptedApart(t, T/2)
	b.clock.Set(at(1, T/4))
	if a, b := b.get(t, first.ID), b.get(t, second.ID); a.Age != 1 || a.Hunger != 255 || b.Age != 0 || b.Hunger != 250 {
		t.Errorf("first %d/%d, second %d/%d", a.Age, a.Hunger, b.Age, b.Hunger)
	}
}

func TestFeedTakes100OffDownToZeroForTheKeeperOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.adopt(t, "keeper", "Mochi")
	b.clock.Set(at(10, 4*time.Second)) // hunger 300
	for _, want := range []int{200, 100, 0, 0} {
		s, err := b.sim.Feed(b.ctx, "keeper", p.ID)
		if err != nil || s.Hunger != want {
			t.Fatalf("feed: hunger %d, %v; want %d", s.Hunger, err, want)
		}
	}
	// Hunger grows again from the feed, on the pet's own ticks.
	b.clock.Set(at(11, 0))
	if s := b.get(t, p.ID); s.Hunger != 5 {
		t.Errorf("a tick after the last feed: hunger %d, want 5", s.Hunger)
	}

	_, err := b.sim.Feed(b.ctx, "stranger", p.ID)
	if !errors.Is(err, pets.ErrNotYours) || !strings.Contains(err.Error(), "Mochi is not your pet") {
		t.Errorf("stranger's feed: %v", err)
	}
	if s := b.get(t, p.ID); s.Hunger != 5 {
		t.Errorf("refused feed changed hunger to %d", s.Hunger)
	}
	if _, err := b.sim.Feed(b.ctx, "keeper", 999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown pet: %v", err)
	}
}

func TestFeedIsCommittedBeforeItReturns(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.adopt(t, "keeper", "Mochi")
	b.clock.Set(at(20, 0)) // hunger 350
	if _, err := b.sim.Feed(context.Background(), "keeper", p.ID); err != nil {
		t.Fatal(err)
	}
	// Another connection to the file, as after a crash and restart, sees it.
	other := openStore(t, b.path)
	got, err := other.GetPet(context.Background(), p.ID)
	if err != nil || got.HungerBase != 250 || !got.HungerAt.Equal(at(20, 0)) {
		t.Errorf("after the feed, the file holds %+v (%v)", got, err)
	}
}

func TestDeathWhenAgePasses10000(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.adopt(t, "keeper", "Methuselah")
	other := b.adopt(t, "keeper", "Youngster")
	b.sim.Watchers().Update(pets.Stream(p.ID), 1)

	stats := b.tick(t, at(pets.LifeTicks+1, -time.Millisecond))
	if s := b.get(t, p.ID); !s.Alive || s.Age != pets.LifeTicks || stats.Died != 0 {
		t.Fatalf("just before death: %+v, %+v", s, stats)
	}
	b.pub.takeLive()

	deathAt := epoch.Add(b.sim.Rules().Lifespan())
	stats = b.tick(t, deathAt.Add(3*time.Second)) // noticed a little late
	if stats.Died != 2 || stats.Rendered != 0 {
		t.Errorf("tick stats %+v", stats)
	}
	s := b.get(t, p.ID)
	if s.Alive || s.Age != pets.LifeTicks+1 || !s.DiedAt.Equal(deathAt) {
		t.Errorf("after death: alive %v age %d died %v, want died at %v", s.Alive, s.Age, s.DiedAt, deathAt)
	}
	if row, _ := b.st.GetPet(b.ctx, p.ID); !row.DiedAt.Equal(deathAt) {
		t.Errorf("stored died_at %v, want %v (the instant, not when noticed)", row.DiedAt, deathAt)
	}
	b.pub.mu.Lock()
	died, listed := b.pub.died, b.pub.listed
	b.pub.mu.Unlock()
	if len(died) != 1 || died[0].ID != p.ID || died[0].Alive {
		t.Errorf("died events %+v (only the watched pet's page is told)", died)
	}
	if len(listed) != 2 {
		t.Errorf("list rows %+v", listed)
	}
	if c := b.sim.Counts(); c.Dead != 2 {
		t.Errorf("counts %+v", c)
	}

	// Not live any more: later ticks render nothing for it, and it cannot be fed.
	b.tick(t, deathAt.Add(time.Hour))
	if live := b.pub.takeLive(); len(live) != 0 {
		t.Errorf("dead pet rendered: %+v", live)
	}
	if _, err := b.sim.Feed(b.ctx, "keeper", p.ID); !errors.Is(err, pets.ErrDead) {
		t.Errorf("feeding the dead: %v", err)
	}
	if s := b.get(t, other.ID); s.Alive {
		t.Errorf("the other pet, born at the same instant, is alive: %+v", s)
	}
}

func TestADuePetIsDeadBeforeTheSweep(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.adopt(t, "keeper", "Late")
	b.clock.Set(epoch.Add(b.sim.Rules().Lifespan()))
	if s := b.get(t, p.ID); s.Alive {
		t.Error("alive after its death instant, before any sweep")
	}
	if _, err := b.sim.Feed(context.Background(), "keeper", p.ID); !errors.Is(err, pets.ErrDead) {
		t.Errorf("feed: %v", err)
	}
}

func TestRestartCatchesUpOnDeaths(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	first, second := b.adoptedApart(t, time.Hour)
	if err := b.sim.Start(b.ctx); err != nil {
		t.Fatal(err)
	}
	_ = b.sim.Stop(context.Background())

	// The process was down for most of a day: the first pet's life ran out
	// meanwhile, the second's runs out half an hour after the restart.
	lifespan := b.sim.Rules().Lifespan()
	restart := testclock.New(epoch.Add(lifespan + 30*time.Minute))
	sim, err := pets.New(pets.Config{Store: b.st, Tick: T, Now: restart.Now, ManualTicks: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(b.ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop(context.Background())
	row, _ := b.st.GetPet(b.ctx, first.ID)
	if !row.DiedAt.Equal(epoch.Add(lifespan)) {
		t.Errorf("first pet's died_at %v, want %v", row.DiedAt, epoch.Add(lifespan))
	}
	if row, _ := b.st.GetPet(b.ctx, second.ID); !row.DiedAt.IsZero() {
		t.Errorf("second pet died early: %v", row.DiedAt)
	}
	if c := sim.Counts(); c != (store.PetCounts{Alive: 1, Dead: 1}) {
		t.Errorf("counts %+v", c)
	}
	s, _ := sim.Get(b.ctx, first.ID)
	if s.Age != pets.LifeTicks+1 || s.Alive {
		t.Errorf("first pet %+v", s)
	}
}

func TestTreats(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	mine := b.adopt(t, "giver", "Mine")
	theirs := b.adopt(t, "owner", "Theirs")
	b.clock.Set(at(2, 0)) // hunger 260

	_, _, err := b.sim.Treat(b.ctx, "giver", theirs.ID)
	if !errors.Is(err, pets.ErrNotWatched) || !strings.Contains(err.Error(), "nobody is watching Theirs") {
		t.Fatalf("unwatched: %v", err)
	}
	b.sim.Watchers().Update(pets.Stream(theirs.ID), 1)
	b.sim.Watchers().Update(pets.Stream(mine.ID), 1)
	if _, _, err := b.sim.Treat(b.ctx, "giver", mine.ID); !errors.Is(err, pets.ErrOwnPet) {
		t.Errorf("own pet: %v", err)
	}
	if _, _, err := b.sim.Treat(b.ctx, "giver", 999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown pet: %v", err)
	}
	if tr, _ := b.sim.Treats(b.ctx, "giver"); tr.Left != 5 {
		t.Errorf("refused treats cost %d", 5-tr.Left)
	}

	for i := 1; i <= 5; i++ {
		s, tr, err := b.sim.Treat(b.ctx, "giver", theirs.ID)
		if err != nil {
			t.Fatalf("treat %d: %v", i, err)
		}
		if s.Hunger != 260-20*i || tr.Left != 5-i || !tr.RefillAt.Equal(at(2, 30*time.Minute)) {
			t.Errorf("treat %d: hunger %d, treats %+v", i, s.Hunger, tr)
		}
	}
	_, _, err = b.sim.Treat(b.ctx, "giver", theirs.ID)
	if !errors.Is(err, pets.ErrNoTreats) || !strings.Contains(err.Error(), "5 more at") {
		t.Fatalf("sixth treat: %v", err)
	}
	if s := b.get(t, theirs.ID); s.Hunger != 160 {
		t.Errorf("refused treat changed hunger to %d", s.Hunger)
	}
	// Another keeper has a budget of their own.
	if _, tr, err := b.sim.Treat(b.ctx, "owner", mine.ID); err != nil || tr.Left != 4 {
		t.Errorf("owner's treat: %+v, %v", tr, err)
	}

	// Refilled 30 minutes after the window's first treat (hunger has capped by then).
	b.clock.Set(at(2, 30*time.Minute-time.Millisecond))
	if tr, _ := b.sim.Treats(b.ctx, "giver"); tr.Left != 0 {
		t.Errorf("a millisecond before the refill: %+v", tr)
	}
	b.clock.Set(at(2, 30*time.Minute))
	if tr, _ := b.sim.Treats(b.ctx, "giver"); tr.Left != 5 {
		t.Errorf("refill: %+v", tr)
	}
	s, tr, err := b.sim.Treat(b.ctx, "giver", theirs.ID)
	if err != nil || tr.Left != 4 || !tr.RefillAt.Equal(at(2, time.Hour)) || s.Hunger != 480 {
		t.Errorf("after the refill: %+v %+v %v", s, tr, err)
	}

	// Down to 0, never below.
	for range 3 {
		if _, err := b.sim.Feed(b.ctx, "owner", theirs.ID); err != nil {
			t.Fatal(err)
		}
	}
	b.sim.Feed(b.ctx, "owner", theirs.ID)
	b.sim.Feed(b.ctx, "owner", theirs.ID) // hunger 0 now
	if s, _, err := b.sim.Treat(b.ctx, "giver", theirs.ID); err != nil || s.Hunger != 0 {
		t.Errorf("treat at hunger 0: %d, %v", s.Hunger, err)
	}

	b.clock.Set(epoch.Add(b.sim.Rules().Lifespan()))
	if _, _, err := b.sim.Treat(b.ctx, "giver", theirs.ID); !errors.Is(err, pets.ErrDead) {
		t.Errorf("treat to the dead: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}
