package handlers_test

import (
	"context"
	"testing"

	"github.com/phonehome/phonehome/store"
)

// migratedStore opens a new SQLite file at path (in a temp dir), brings it
// to the current schema and closes it when the test ends.
func migratedStore(t testing.TB, path string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}
