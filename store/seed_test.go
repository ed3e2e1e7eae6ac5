package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// Nodes starting together on a new database each seed it: the seeds are
// added once, however many stores (each its own pool, as each node has)
// check and insert at the same moment. Several rounds, each on a new
// database, give a racy check-then-insert its chances to show.
func TestSeedOnceWhenManyStartTogether(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		const rounds, nodes = 4, 8
		ctx := context.Background()
		for range rounds {
			target := b.Target(t)
			stores := make([]*store.Store, nodes)
			for i := range stores {
				st, err := store.Open(ctx, target)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				if err := st.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				stores[i] = st
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			addedETs, addedPets := 0, 0
			start := make(chan struct{})
			for _, st := range stores {
				wg.Go(func() {
					<-start
					n, err := st.SeedExtraterrestrials(ctx)
					if err != nil {
						t.Error(err)
					}
					np, err := st.SeedPetsIfEmpty(ctx, time.Now(), time.Second)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					addedETs, addedPets = addedETs+n, addedPets+np
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			counts, err := stores[0].CountByStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := stores[0].CountPets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if counts.Total() != len(store.SeedNames) || addedETs != len(store.SeedNames) ||
				pc.Alive+pc.Dead != len(store.SeedPets) || addedPets != len(store.SeedPets) {
				t.Fatalf("%d stores seeding at once: %d extraterrestrials (%d reported added), %d pets (%d reported added); want %d and %d",
					nodes, counts.Total(), addedETs, pc.Alive+pc.Dead, addedPets, len(store.SeedNames), len(store.SeedPets))
			}
		}
	})
}

