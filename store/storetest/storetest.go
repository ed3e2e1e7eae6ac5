// Package storetest makes the databases of tests: a real SQLite file in a
// test's temporary directory, migrated to the current schema. Every
// package's tests open theirs here, so there is one way to do it.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/phonehome/phonehome/store"
)

// Open opens the SQLite file at path (a new file in tb's temporary
// directory when path is ""), migrates it, and closes it when tb ends.
func Open(tb testing.TB, path string) *store.Store {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "test.db")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return st
}
