package pets_test

// Watchers, the active list, the sweep and the loop that publishes changes.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

func TestWatchedPetsAndTheActiveList(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	var ids []int64
	for i := range 16 {
		ids = append(ids, b.adopt(t, "k", fmt.Sprintf("Pet %02d", i)).ID)
	}
	w := b.sim.Watchers()
	w.Update("extraterrestrials", 3) // not a pet: ignored
	w.Update(pets.Stream(ids[0]), 1)
	w.Update(pets.Stream(ids[1]), 2)
	w.Update(pets.Stream(ids[2]), 1)
	if err := b.sim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	live := b.pub.takeLive()
	viewers := map[int64]int{}
	for _, s := range live {
		viewers[s.ID] = s.Viewers
	}
	if len(live) != 3 || viewers[ids[0]] != 1 || viewers[ids[1]] != 2 || viewers[ids[2]] != 1 {
		t.Errorf("published %v", viewers)
	}
	a, ok := b.pub.lastActive()
	if !ok || a.Total != 3 || len(a.Pets) != 3 || a.Pets[0].ID != ids[2] || a.Pets[2].ID != ids[0] {
		t.Fatalf("active = %+v", a)
	}
	others, total, _ := a.For(ids[1])
	if total != 2 || len(others) != 2 || others[0].ID != ids[2] || others[1].ID != ids[0] {
		t.Errorf("for the second pet: %d others %+v", total, others)
	}
	// A page whose pet is not watched (yet) sees them all.
	if others, total, _ := a.For(ids[9]); total != 3 || len(others) != 3 {
		t.Errorf("for an unwatched pet: %d, %d", total, len(others))
	}

	// One leaves: the list shrinks; a count that changes is published.
	w.Update(pets.Stream(ids[1]), 0)
	w.Update(pets.Stream(ids[0]), 2)
	b.sim.Flush(ctx)
	if a, _ := b.pub.lastActive(); a.Total != 2 {
		t.Errorf("after a leave: %+v", a)
	}
	if live := b.pub.takeLive(); len(live) != 1 || live[0].ID != ids[0] || live[0].Viewers != 2 {
		t.Errorf("after count changes: %+v", live)
	}

	// Many watched: every page lists ActiveShown others and the rest as a number.
	for _, id := range ids {
		w.Update(pets.Stream(id), 1)
	}
	b.sim.Flush(ctx)
	a, _ = b.pub.lastActive()
	if a.Total != 16 || len(a.Pets) != pets.ActiveShown+1 || len(a.Watched) != 16 {
		t.Fatalf("16 watched: %+v", a)
	}
	newest := a.Pets[0].ID
	others, total, shared := a.For(newest)
	if len(others) != pets.ActiveShown || total != 15 || shared || others[0].ID == newest {
		t.Errorf("newest: %d shown of %d, shared %v", len(others), total, shared)
	}
	others, total, shared = a.For(ids[0]) // watched first, so listed last: not shown
	if len(others) != pets.ActiveShown || total != 15 || !shared {
		t.Errorf("oldest: %d shown of %d, shared %v", len(others), total, shared)
	}
}

func TestActiveListLeavesOutDeadPets(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	old, young := b.adoptedApart(t, time.Hour)
	b.sim.Watchers().Update(pets.Stream(old.ID), 1)
	b.sim.Watchers().Update(pets.Stream(young.ID), 1)
	b.tick(t, epoch.Add(b.sim.Rules().Lifespan()+time.Second))
	b.sim.Flush(context.Background())
	a, _ := b.pub.lastActive()
	if a.Total != 1 || len(a.Pets) != 1 || a.Pets[0].ID != young.ID || len(a.Watched) != 1 {
		t.Errorf("active = %+v", a)
	}
}

func TestSweepBatchesAndTellsTheListToReload(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *pets.Config) { c.SweepBatch = 2; c.ListedDeaths = 3 })
	for i := range 7 {
		b.adopt(t, "k", fmt.Sprintf("Pet %d", i))
	}
	b.adopt(t, "k", "Survivor") // born with the others, but…
	ctx := context.Background()
	if _, err := b.st.Writer.ExecContext(ctx, "UPDATE pets SET born_at = born_at + 1000, hunger_at = hunger_at + 1000 WHERE name = 'Survivor'"); err != nil {
		t.Fatal(err)
	}
	if err := b.sim.Start(ctx); err != nil { // counts the pets
		t.Fatal(err)
	}
	stats := b.tick(t, epoch.Add(b.sim.Rules().Lifespan()))
	b.pub.mu.Lock()
	listed, resyncs := len(b.pub.listed), b.pub.resyncs
	b.pub.mu.Unlock()
	if stats.Died != 7 || listed != 3 || resyncs != 1 {
		t.Errorf("died %d, rows %d, resyncs %d", stats.Died, listed, resyncs)
	}
	if c := b.sim.Counts(); c != (store.PetCounts{Alive: 1, Dead: 7}) {
		t.Errorf("counts %+v", c)
	}
	if c, _ := b.st.CountPets(ctx); c != (store.PetCounts{Alive: 1, Dead: 7}) {
		t.Errorf("stored counts %+v", c)
	}
}

func TestTickRendersOnlyWatchedPets(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	if err := b.st.GeneratePets(context.Background(), 500, store.GeneratePetsOptions{Now: epoch, Lifespan: b.sim.Rules().Lifespan()}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{499, 500, 7} { // 7 was born long ago and is dead
		b.sim.Watchers().Update(pets.Stream(id), 1)
	}
	stats := b.tick(t, epoch)
	if stats.Rendered != 2 {
		t.Errorf("rendered %d pets, want the 2 living watched ones", stats.Rendered)
	}
}

func TestTheLoopPublishesChangesAsTheyHappen(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *pets.Config) { c.ActiveEvery = time.Millisecond; c.CountsEvery = time.Millisecond })
	ctx := context.Background()
	if err := b.sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p := b.adopt(t, "keeper", "Mochi")
	waitFor(t, "the counts", func() bool {
		b.pub.mu.Lock()
		defer b.pub.mu.Unlock()
		return len(b.pub.adopted) == 1 && len(b.pub.counts) > 0 && b.pub.counts[len(b.pub.counts)-1].Alive == 1
	})
	b.sim.Watchers().Update(pets.Stream(p.ID), 1)
	waitFor(t, "the watched pet's state", func() bool {
		for _, s := range b.pub.takeLive() {
			if s.ID == p.ID && s.Viewers == 1 {
				return true
			}
		}
		return false
	})
	waitFor(t, "the active list", func() bool { a, ok := b.pub.lastActive(); return ok && a.Total == 1 })
	if _, err := b.sim.Feed(ctx, "keeper", p.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fed state", func() bool {
		for _, s := range b.pub.takeLive() {
			if s.ID == p.ID && s.Hunger == 150 {
				return true
			}
		}
		return false
	})
}

func TestWatchersReconcileWithTheHub(t *testing.T) {
	t.Parallel()
	w := pets.NewWatchers()
	w.Update("pet-1", 1)
	w.Update("pet-3", 1)
	w.Reconcile(map[string]int{"pet-1": 2, "pet-2": 1, "pets": 4})
	if w.Count(1) != 2 || w.Count(2) != 1 || w.Count(3) != 0 || w.Len() != 2 {
		t.Errorf("counts %d %d %d, len %d", w.Count(1), w.Count(2), w.Count(3), w.Len())
	}
	touched, changed := w.Take()
	if !changed || fmt.Sprint(touched) != "[1 2 3]" {
		t.Errorf("take: %v %v", touched, changed)
	}
	w.Reconcile(map[string]int{"pet-1": 2, "pet-2": 1})
	if touched, changed := w.Take(); changed || len(touched) != 0 {
		t.Errorf("nothing changed, yet %v %v", touched, changed)
	}
}

// TestActionsTicksAndWatchersDoNotRace runs everything at once (under -race)
// and checks that no feed or treat was lost.
func TestActionsTicksAndWatchersDoNotRace(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *pets.Config) { c.ActiveEvery = time.Millisecond })
	ctx := context.Background()
	if err := b.sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p := b.adopt(t, "keeper", "Busy")
	if _, err := b.st.Writer.ExecContext(ctx, "UPDATE pets SET hunger_base = 500"); err != nil {
		t.Fatal(err)
	}
	b.sim.Watchers().Update(pets.Stream(p.ID), 1)
	var wg sync.WaitGroup
	const feeds, treaters = 2, 10
	errs := make(chan error, feeds+treaters*2)
	for range feeds {
		wg.Go(func() {
			_, err := b.sim.Feed(ctx, "keeper", p.ID)
			errs <- err
		})
	}
	for i := range treaters {
		wg.Go(func() {
			_, _, err := b.sim.Treat(ctx, fmt.Sprintf("giver-%d", i), p.ID)
			errs <- err
		})
	}
	for i := range 20 {
		wg.Go(func() {
			b.sim.Watchers().Update(pets.Stream(int64(i%5+2)), i%3)
			if _, err := b.sim.Tick(ctx, epoch); err != nil {
				errs <- err
			}
			b.sim.Flush(ctx)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The clock never moved: every action counted.
	if s := b.get(t, p.ID); s.Hunger != 500-feeds*pets.FeedAmount-treaters*pets.TreatAmount {
		t.Errorf("hunger %d after %d feeds and %d treats", s.Hunger, feeds, treaters)
	}
}
