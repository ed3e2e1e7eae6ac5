package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

func openStore(t *testing.T) *store.Store { return storetest.Open(t, "") }

func TestSeedListsNamesInOrder(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		n, err := st.SeedExtraterrestrials(ctx)
		if err != nil || n != 10 {
			t.Fatalf("seed: n=%d err=%v", n, err)
		}
		if n, _ := st.SeedExtraterrestrials(ctx); n != 0 {
			t.Fatalf("second seed added %d rows, want 0", n)
		}
		rows, next, err := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if !next.IsZero() {
			t.Errorf("next cursor %v on the only page", next)
		}
		var names []string
		for _, r := range rows {
			names = append(names, r.Name)
			if r.CommunicationStatus != store.StatusNone || r.CommunicationAttempt != 0 || !r.LastAttemptAt.IsZero() {
				t.Errorf("%s: fresh row has status %q attempt %d at %v", r.Name, r.CommunicationStatus, r.CommunicationAttempt, r.LastAttemptAt)
			}
		}
		if got, want := strings.Join(names, ","), strings.Join(store.SeedNames, ","); got != want {
			t.Errorf("names = %s, want %s", got, want)
		}
	})
}

func TestListPagesFiltersAndSearches(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if err := st.GenerateExtraterrestrials(ctx, 1234); err != nil {
			t.Fatal(err)
		}
		// Walk every page: each row once, in name order.
		seen := map[int64]bool{}
		var last string
		var cur store.Cursor
		pages := 0
		for {
			rows, next, err := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 100, After: cur})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, r := range rows {
				if seen[r.ID] {
					t.Fatalf("row %d seen twice", r.ID)
				}
				seen[r.ID] = true
				if r.Name < last {
					t.Fatalf("%q after %q: not in name order", r.Name, last)
				}
				last = r.Name
			}
			if next.IsZero() {
				break
			}
			parsed, err := store.ParseCursor(next.String())
			if err != nil || parsed != next {
				t.Fatalf("cursor round trip: %v %v", parsed, err)
			}
			cur = parsed
		}
		if len(seen) != 1234 || pages != 13 {
			t.Errorf("walked %d rows in %d pages, want 1234 in 13", len(seen), pages)
		}

		rows, _, err := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Query: "korben-00001", Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 10 { // Korben-000010 … Korben-000019
			t.Errorf("search found %d rows, want 10", len(rows))
		}
		// LIKE wildcards in a search are literal.
		if rows, _, _ := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Query: "%", Limit: 50}); len(rows) != 0 {
			t.Errorf("search for %% found %d rows, want 0", len(rows))
		}

		err = st.InTx(ctx, func(tx *sqlx.Tx) error {
			_, err := store.RecordCallTx(ctx, tx, 7, store.StatusNoAnswer, 5, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		noAnswer := store.StatusNoAnswer
		rows, _, _ = st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Status: &noAnswer, Limit: 50})
		if len(rows) != 1 || rows[0].ID != 7 {
			t.Errorf("status filter: %+v", rows)
		}
		counts, err := st.CountByStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts.NoAnswer != 1 || counts.Never != 1233 || counts.Total() != 1234 {
			t.Errorf("counts = %+v", counts)
		}
	})
}

func TestRecordCall(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if _, err := st.SeedExtraterrestrials(ctx); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 22, 4, 15, 3, 0, time.UTC)
		var got store.Extraterrestrial
		err := st.InTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			got, err = store.RecordCallTx(ctx, tx, 3, store.StatusPhoningHome, 2, at)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Chiana" || got.CommunicationStatus != store.StatusPhoningHome || got.CommunicationAttempt != 2 || !got.LastAttemptAt.Equal(at) {
			t.Errorf("RecordCallTx returned %+v", got)
		}
		if again, _ := st.GetExtraterrestrial(ctx, 3); again != got {
			t.Errorf("read back %+v, want %+v", again, got)
		}
		err = st.InTx(ctx, func(tx *sqlx.Tx) error {
			_, err := store.RecordCallTx(ctx, tx, 999, store.StatusPhoningHome, 1, at)
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown id: err = %v, want ErrNotFound", err)
		}
		// The CHECK constraint keeps statuses to the known ones.
		err = st.InTx(ctx, func(tx *sqlx.Tx) error {
			_, err := store.RecordCallTx(ctx, tx, 3, store.Status("lost_in_space"), 1, at)
			return err
		})
		if err == nil {
			t.Error("unknown status was stored")
		}
	})
}

func TestParseCursorRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"!!", "bm9waWQ", "MDpB", "LTE6QQ"} {
		if _, err := store.ParseCursor(s); err == nil {
			t.Errorf("ParseCursor(%q) accepted", s)
		}
	}
	c := store.Cursor{Name: "Ayala:x", ID: 42}
	if got, err := store.ParseCursor(c.String()); err != nil || got != c {
		t.Errorf("round trip = %+v, %v", got, err)
	}
}

func TestOpenExplainsBadFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, notDB); err == nil || !strings.Contains(err.Error(), "not a SQLite database") {
		t.Errorf("not a database: err = %v", err)
	}
	if _, err := store.Open(ctx, filepath.Join(dir, "missing", "x.db")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing folder: err = %v", err)
	}
}

func TestMigrateRefusesDirtyAndNewerSchemas(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		v, dirty, err := st.SchemaVersion(ctx)
		if err != nil || dirty || v != store.LatestSchemaVersion() {
			t.Fatalf("after migrate: version %d dirty %v err %v; want %d clean", v, dirty, err, store.LatestSchemaVersion())
		}
		if _, err := st.Writer.Exec("UPDATE schema_migrations SET dirty = true"); err != nil {
			t.Fatal(err)
		}
		err = st.Migrate(ctx)
		if !errors.Is(err, store.ErrDirty) || !strings.Contains(err.Error(), "migrate -force") {
			t.Errorf("dirty: err = %v", err)
		}
		if err := st.ForceVersion(int(v)); err != nil {
			t.Fatal(err)
		}
		if err := st.Migrate(ctx); err != nil {
			t.Errorf("after force: %v", err)
		}
		if _, err := st.Writer.Exec("UPDATE schema_migrations SET version = 9999"); err != nil {
			t.Fatal(err)
		}
		if err := st.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "newer phonehome") {
			t.Errorf("newer schema: err = %v", err)
		}
	})
}
