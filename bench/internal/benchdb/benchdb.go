// Package benchdb opens the phonehome databases the benchmarks measure,
// the one way every benchmark does: the app's own store, migrated to the
// current schema.
package benchdb

import (
	"context"

	"github.com/phonehome/phonehome/store"
)

// Open opens the store at path (creating the file if need be) and migrates
// it, closing it again if the migration fails.
func Open(ctx context.Context, path string) (*store.Store, error) {
	st, err := store.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}
