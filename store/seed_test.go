package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// A -db that cannot be a database file is said in one line with what to do,
// before anything is made beside it.
func TestOpenExplainsBadPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path string
		says       []string
	}{
		{"empty", "", []string{"empty", "-db"}},
		{"missing folder", filepath.Join(dir, "no", "such", "x.db"), []string{filepath.Join(dir, "no", "such") + " does not exist", "create it", "choose another -db"}},
		{"a folder", dir, []string{dir + " is a folder, not a database file", filepath.Join(dir, "phonehome.db")}},
		{"a folder with a slash", dir + "/", []string{"is a folder, not a database file"}},
		{"a file as its folder", filepath.Join(file, "x.db"), []string{file + " is not a folder", "choose another -db"}},
		{"a file deeper in the way", filepath.Join(file, "a", "x.db"), []string{"is not a folder", "choose another -db"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, check := range []func() error{
				func() error { return store.CheckSQLitePath(tt.path) },
				func() error { _, err := store.Open(context.Background(), tt.path); return err },
			} {
				err := check()
				if err == nil {
					t.Fatalf("%q: no error", tt.path)
				}
				for _, s := range tt.says {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%q: %q does not say %q", tt.path, err, s)
					}
				}
				if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "check that the file and its folder exist") {
					t.Errorf("%q: %q", tt.path, err)
				}
			}
		})
	}
	// Nothing was made beside a folder given as the file.
	if _, err := os.Stat(dir + "-journal"); err == nil {
		t.Errorf("a journal was made beside the folder %s", dir)
	}
	// A good path passes.
	if err := store.CheckSQLitePath(filepath.Join(dir, "phonehome.db")); err != nil {
		t.Errorf("a new file in an existing folder: %v", err)
	}
}
