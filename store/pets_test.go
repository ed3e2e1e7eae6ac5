package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

var petEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// adopt inserts a pet (and its keeper) in one transaction.
func adopt(t *testing.T, st *store.Store, keeper, name string, sp store.Species, born time.Time) store.Pet {
	t.Helper()
	var p store.Pet
	err := st.InTx(context.Background(), func(tx *sqlx.Tx) error {
		if err := store.EnsureKeeperTx(context.Background(), tx, keeper, 5, born); err != nil {
			return err
		}
		var err error
		p, err = store.InsertPetTx(context.Background(), tx, store.NewPet{KeeperID: keeper, Name: name, Species: sp, BornAt: born, Hunger: 250})
		return err
	})
	if err != nil {
		t.Fatalf("adopt %s: %v", name, err)
	}
	return p
}

func TestPetsTableRefusesInvalidRows(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if _, err := st.Writer.Exec("INSERT INTO keepers VALUES ('k', 5, 0, 0)"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, sql string
		}{
			{"name of 2 characters", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', 'ab', 'cat', 0, 250, 0, 0)"},
			{"name of 101 characters", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', '" + strings.Repeat("é", 101) + "', 'cat', 0, 250, 0, 0)"},
			{"unknown species", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', 'Rex', 'dragon', 0, 250, 0, 0)"},
			{"hunger above 500", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', 'Rex', 'dog', 0, 501, 0, 0)"},
			{"negative hunger", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', 'Rex', 'dog', 0, -1, 0, 0)"},
			{"fed before birth", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', 'Rex', 'dog', 10, 250, 5, 0)"},
			{"unknown keeper", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('nobody', 'Rex', 'dog', 0, 250, 0, 0)"},
			{"text in a time column (STRICT)", "INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at) VALUES ('k', 'Rex', 'dog', 'yesterday', 250, 0, 0)"},
		}
		for _, tt := range tests {
			if _, err := st.Writer.ExecContext(ctx, tt.sql); err == nil {
				t.Errorf("%s: inserted", tt.name)
			}
		}
		var n int
		if err := st.Reader.Get(&n, "SELECT count(*) FROM pets"); err != nil || n != 0 {
			t.Errorf("%d pets stored (err %v)", n, err)
		}
		// 3 and 100 characters (not bytes) are fine.
		adopt(t, st, "k", "Rex", store.SpeciesDog, petEpoch)
		adopt(t, st, "k", strings.Repeat("é", 100), store.SpeciesDog, petEpoch)
	})
}

func TestInsertAndGetPet(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		p := adopt(t, st, "k1", "<script>alert(1)</script>", store.SpeciesPhoenix, petEpoch)
		got, err := st.GetPet(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := store.Pet{ID: p.ID, KeeperID: "k1", Name: "<script>alert(1)</script>", Species: store.SpeciesPhoenix,
			BornAt: petEpoch, HungerBase: 250, HungerAt: petEpoch, UpdatedAt: petEpoch}
		if got != want {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
		if _, err := st.GetPet(ctx, 999); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown id: %v, want ErrNotFound", err)
		}
		many, err := st.GetPets(ctx, []int64{999, p.ID})
		if err != nil || len(many) != 1 || many[0].ID != p.ID {
			t.Errorf("GetPets = %+v, %v", many, err)
		}

		fed := petEpoch.Add(time.Minute)
		err = st.InTx(ctx, func(tx *sqlx.Tx) error {
			_, err := store.SetPetHungerTx(ctx, tx, p.ID, 40, fed)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = st.GetPet(ctx, p.ID)
		if got.HungerBase != 40 || !got.HungerAt.Equal(fed) || !got.UpdatedAt.Equal(fed) {
			t.Errorf("after feed: %+v", got)
		}
		err = st.InTx(ctx, func(tx *sqlx.Tx) error {
			_, err := store.SetPetHungerTx(ctx, tx, 999, 40, fed)
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("hunger of unknown pet: %v", err)
		}
	})
}

func TestKillDuePetsRecordsTheInstantOfDeath(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		lifespan := 10001 * 5 * time.Second
		old := adopt(t, st, "k", "Oldest", store.SpeciesOwl, petEpoch)
		older := adopt(t, st, "k", "Older", store.SpeciesOwl, petEpoch.Add(time.Second))
		young := adopt(t, st, "k", "Young", store.SpeciesOwl, petEpoch.Add(time.Hour))

		kill := func(now time.Time, limit int) []store.Pet {
			t.Helper()
			var dead []store.Pet
			err := st.InTx(ctx, func(tx *sqlx.Tx) error {
				var err error
				dead, err = store.KillDuePetsTx(ctx, tx, now, lifespan, limit)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return dead
		}
		if dead := kill(petEpoch.Add(lifespan-time.Millisecond), 10); len(dead) != 0 {
			t.Fatalf("killed %d a millisecond early", len(dead))
		}
		// Noticed long after: still dies at born + lifespan. Oldest first, limit honoured.
		late := petEpoch.Add(lifespan + 40*time.Minute)
		dead := kill(late, 1)
		if len(dead) != 1 || dead[0].ID != old.ID || !dead[0].DiedAt.Equal(petEpoch.Add(lifespan)) || !dead[0].UpdatedAt.Equal(late) {
			t.Fatalf("first batch = %+v", dead)
		}
		dead = kill(late, 10)
		if len(dead) != 1 || dead[0].ID != older.ID || !dead[0].DiedAt.Equal(older.BornAt.Add(lifespan)) {
			t.Fatalf("second batch = %+v", dead)
		}
		if dead := kill(late, 10); len(dead) != 0 {
			t.Fatalf("dead pets died again: %+v", dead)
		}
		if p, _ := st.GetPet(ctx, young.ID); !p.DiedAt.IsZero() {
			t.Errorf("young pet died: %+v", p)
		}
		c, err := st.CountPets(ctx)
		if err != nil || c != (store.PetCounts{Alive: 1, Dead: 2}) {
			t.Errorf("counts %+v, %v", c, err)
		}
	})
}

func TestListPetsPagesFiltersAndSearches(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		names := []string{"Mochi", "mocha", "Biscuit", "100%_real", "100 real", "Momo", "Ember"}
		ids := map[string]int64{}
		for i, n := range names {
			ids[n] = adopt(t, st, "k"+fmt.Sprint(i%2), n, store.SpeciesCat, petEpoch.Add(time.Duration(i)*time.Second)).ID
		}
		err := st.InTx(ctx, func(tx *sqlx.Tx) error {
			_, err := tx.Exec("UPDATE pets SET died_at = born_at + 1 WHERE name IN ('Biscuit', 'Momo')")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		alive, dead := true, false
		list := func(f store.PetFilter) []string {
			t.Helper()
			var out []string
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("cursor never ends")
				}
				rows, next, err := st.ListPets(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					out = append(out, r.Name)
				}
				if next.IsZero() {
					return out
				}
				f.After = next
			}
		}
		tests := []struct {
			name   string
			filter store.PetFilter
			want   string
		}{
			{"all, newest first, two a page", store.PetFilter{Limit: 2}, "Ember,Momo,100 real,100%_real,Biscuit,mocha,Mochi"},
			{"alive", store.PetFilter{Alive: &alive, Limit: 2}, "Ember,100 real,100%_real,mocha,Mochi"},
			{"dead", store.PetFilter{Alive: &dead, Limit: 1}, "Momo,Biscuit"},
			{"prefix, any case, by name", store.PetFilter{Query: "MO", Limit: 2}, "mocha,Mochi,Momo"},
			{"prefix and alive", store.PetFilter{Query: "mo", Alive: &alive}, "mocha,Mochi"},
			{"% and _ are literal", store.PetFilter{Query: "100%_"}, "100%_real"},
			{"_ is not a wildcard", store.PetFilter{Query: "100_"}, ""},
			{"prefix, not substring", store.PetFilter{Query: "ochi"}, ""},
			{"NUL finds nothing", store.PetFilter{Query: "mo\x00"}, ""},
			{"invalid UTF-8 finds nothing", store.PetFilter{Query: "\xffmo"}, ""},
		}
		for _, tt := range tests {
			if got := strings.Join(list(tt.filter), ","); got != tt.want {
				t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
			}
		}
		mine, err := st.KeeperPets(ctx, "k0", 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range mine {
			got = append(got, p.Name)
		}
		if strings.Join(got, ",") != "Ember,100 real,Biscuit,Mochi" {
			t.Errorf("k0's pets = %v", got)
		}
		c, _ := st.CountPets(ctx)
		if c != (store.PetCounts{Alive: 5, Dead: 2}) || c.Total() != 7 {
			t.Errorf("counts %+v", c)
		}
	})
}

func TestGeneratePetsMakesVariedAges(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		lifespan := 10001 * 5 * time.Second
		const n = 2345
		if err := st.GeneratePets(ctx, n, store.GeneratePetsOptions{Now: petEpoch, Lifespan: lifespan}); err != nil {
			t.Fatal(err)
		}
		var s struct {
			N, Dead, BadDeath, Newborn, Old, Keepers int
			MinBorn, MaxBorn                         int64
		}
		// CAST keeps PostgreSQL from guessing integer (32 bits) for the
		// parameters of an arithmetic on two of them.
		err := st.Reader.QueryRow(st.Rebind(`SELECT count(*),
			count(*) FILTER (WHERE died_at IS NOT NULL),
			count(*) FILTER (WHERE (died_at IS NOT NULL) != (born_at + CAST(? AS BIGINT) <= CAST(? AS BIGINT)) OR died_at != born_at + CAST(? AS BIGINT)),
			count(*) FILTER (WHERE born_at > CAST(? AS BIGINT) - CAST(? AS BIGINT) / 10),
			count(*) FILTER (WHERE died_at IS NULL AND born_at < CAST(? AS BIGINT) - CAST(? AS BIGINT) * 9 / 10),
			count(DISTINCT keeper_id), min(born_at), max(born_at) FROM pets`),
			lifespan.Milliseconds(), petEpoch.UnixMilli(), lifespan.Milliseconds(),
			petEpoch.UnixMilli(), lifespan.Milliseconds(), petEpoch.UnixMilli(), lifespan.Milliseconds()).
			Scan(&s.N, &s.Dead, &s.BadDeath, &s.Newborn, &s.Old, &s.Keepers, &s.MinBorn, &s.MaxBorn)
		if err != nil {
			t.Fatal(err)
		}
		if s.N != n || s.Keepers != 1 || s.BadDeath != 0 {
			t.Errorf("stats %+v", s)
		}
		// Births are spread over 1.1 lifespans: about 1/11 dead, some newborn, some old.
		if s.Dead < n/15 || s.Dead > n/8 || s.Newborn < n/20 || s.Old < n/20 {
			t.Errorf("ages do not vary as promised: %+v", s)
		}
		if s.MaxBorn > petEpoch.UnixMilli() {
			t.Errorf("born in the future: %+v", s)
		}
		if p, err := st.GetPet(ctx, 1); err != nil || p.Name != store.GeneratedPetName(0) || p.KeeperID != store.SeedKeeperID {
			t.Errorf("first pet %+v, %v", p, err)
		}
	})
}

func TestSeedPetsOnlyIntoAnEmptyTable(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		n, err := st.SeedPetsIfEmpty(ctx, petEpoch, 5*time.Second)
		if err != nil || n != 10 {
			t.Fatalf("seed: %d, %v", n, err)
		}
		if n, _ := st.SeedPetsIfEmpty(ctx, petEpoch, 5*time.Second); n != 0 {
			t.Errorf("second seed added %d", n)
		}
		rows, _, err := st.ListPets(ctx, store.PetFilter{Limit: 100})
		if err != nil || len(rows) != 10 {
			t.Fatalf("%d rows, %v", len(rows), err)
		}
		species := map[store.Species]bool{}
		for _, p := range rows {
			species[p.Species] = true
			if p.KeeperID != store.SeedKeeperID || !p.DiedAt.IsZero() || p.BornAt.After(petEpoch) {
				t.Errorf("seed pet %+v", p)
			}
		}
		if len(species) != len(store.AllSpecies) {
			t.Errorf("seed pets cover %d species, want all %d", len(species), len(store.AllSpecies))
		}
	})
}

func TestKeepers(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if _, err := st.GetKeeper(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown keeper: %v", err)
		}
		for range 2 { // the second time changes nothing
			err := st.InTx(ctx, func(tx *sqlx.Tx) error { return store.EnsureKeeperTx(ctx, tx, "k", 5, petEpoch) })
			if err != nil {
				t.Fatal(err)
			}
			err = st.InTx(ctx, func(tx *sqlx.Tx) error { return store.SetTreatsTx(ctx, tx, "k", 3, petEpoch.Add(time.Minute)) })
			if err != nil {
				t.Fatal(err)
			}
		}
		k, err := st.GetKeeper(ctx, "k")
		if err != nil || k.TreatsLeft != 3 || !k.WindowStart.Equal(petEpoch.Add(time.Minute)) || !k.CreatedAt.Equal(petEpoch) {
			t.Errorf("keeper %+v, %v", k, err)
		}
		err = st.InTx(ctx, func(tx *sqlx.Tx) error { return store.SetTreatsTx(ctx, tx, "nobody", 3, petEpoch) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("treats of unknown keeper: %v", err)
		}
		if _, err := st.Writer.Exec("UPDATE keepers SET treats_left = -1"); err == nil {
			t.Error("negative treats stored")
		}
	})
}

func TestParseSpecies(t *testing.T) {
	t.Parallel()
	for _, sp := range store.AllSpecies {
		if got, err := store.ParseSpecies(string(sp)); err != nil || got != sp {
			t.Errorf("%s: %v %v", sp, got, err)
		}
	}
	for _, bad := range []string{"", "Cat", "dragon", " cat"} {
		if _, err := store.ParseSpecies(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
