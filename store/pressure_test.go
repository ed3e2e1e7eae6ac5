package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestPressureNoDatabaseIsLocked runs 8 writers and 32 readers through one
// Store for a minute (5 s with -short): read-then-write transactions of the
// app's own kinds on the writer, page and count queries on the readers. Not
// one of them may fail, with "database is locked" (SQLITE_BUSY) or anything
// else, and every acknowledged write is in the file afterwards.
func TestPressureNoDatabaseIsLocked(t *testing.T) {
	const writers, readers = 8, 32
	duration := time.Minute
	if testing.Short() {
		duration = 5 * time.Second
	}
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		const ets = 2000
		if err := st.GenerateExtraterrestrials(ctx, ets); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		keepers := make([]string, writers)
		for i := range keepers {
			keepers[i] = fmt.Sprintf("%032x", i+1)
		}

		var (
			writes, reads atomic.Int64
			adopted       atomic.Int64
			mu            sync.Mutex
			failures      []string
			locked        int
		)
		fail := func(who string, err error) {
			mu.Lock()
			defer mu.Unlock()
			msg := err.Error()
			if strings.Contains(msg, "locked") || strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "(5)") || strings.Contains(msg, "(517)") {
				locked++
			}
			if len(failures) < 20 {
				failures = append(failures, who+": "+msg)
			}
		}
		stop := time.Now().Add(duration)
		var wg sync.WaitGroup
		for w := range writers {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			wg.Go(func() {
				var pets []int64
				for time.Now().Before(stop) {
					var err error
					switch op := r.IntN(3); {
					case op == 0 || len(pets) == 0:
						// Adopt: ensure the keeper, insert the pet.
						var p store.Pet
						err = st.InTx(ctx, func(tx *sqlx.Tx) error {
							if err := store.EnsureKeeperTx(ctx, tx, keepers[w], 5, now); err != nil {
								return err
							}
							var err error
							p, err = store.InsertPetTx(ctx, tx, store.NewPet{KeeperID: keepers[w], Name: fmt.Sprintf("Pressure %d-%d", w, len(pets)),
								Species: store.SpeciesCat, BornAt: time.Now(), Hunger: 250})
							return err
						})
						if err == nil {
							pets = append(pets, p.ID)
							adopted.Add(1)
						}
					case op == 1:
						// Feed: read the pet, then write its hunger.
						id := pets[r.IntN(len(pets))]
						err = st.InTx(ctx, func(tx *sqlx.Tx) error {
							p, err := store.GetPetTx(ctx, tx, id)
							if err != nil {
								return err
							}
							_, err = store.SetPetHungerTx(ctx, tx, id, max(0, p.HungerBase-100), time.Now())
							return err
						})
					default:
						// A phone call: read the attempt, record the next one.
						id := int64(1 + r.IntN(ets))
						err = st.InTx(ctx, func(tx *sqlx.Tx) error {
							var attempt int
							if err := tx.GetContext(ctx, &attempt, tx.Rebind("SELECT communication_attempt FROM extraterrestrials WHERE id = ?"), id); err != nil {
								return err
							}
							_, err := store.RecordCallTx(ctx, tx, id, store.StatusPhoningHome, attempt+1, time.Now())
							return err
						})
					}
					if err != nil {
						fail(fmt.Sprintf("writer %d", w), err)
						continue
					}
					writes.Add(1)
				}
			})
		}
		for rd := range readers {
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			wg.Go(func() {
				var cursor store.Cursor
				for time.Now().Before(stop) {
					var err error
					switch r.IntN(5) {
					case 0:
						var rows []store.Extraterrestrial
						rows, cursor, err = st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 100, After: cursor})
						_ = rows
					case 1:
						_, err = st.CountByStatus(ctx)
					case 2:
						_, _, err = st.ListPets(ctx, store.PetFilter{Limit: 50, Query: "Pressure " + fmt.Sprint(r.IntN(writers))})
					case 3:
						_, err = st.CountPets(ctx)
					default:
						_, err = st.GetExtraterrestrial(ctx, int64(1+r.IntN(ets)))
					}
					if err != nil {
						fail(fmt.Sprintf("reader %d", rd), err)
						continue
					}
					reads.Add(1)
				}
			})
		}
		wg.Wait()

		for _, f := range failures {
			t.Error(f)
		}
		if locked > 0 {
			t.Errorf("%d operations failed with database is locked / SQLITE_BUSY", locked)
		}
		if writes.Load() == 0 || reads.Load() == 0 {
			t.Fatalf("no progress: %d writes, %d reads", writes.Load(), reads.Load())
		}
		counts, err := st.CountPets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if int64(counts.Total()) != adopted.Load() {
			t.Errorf("%d pets in the file, %d adoptions acknowledged", counts.Total(), adopted.Load())
		}
		t.Logf("%s, %d writers and %d readers: %d write transactions and %d reads, 0 errors",
			duration, writers, readers, writes.Load(), reads.Load())
	})
}
