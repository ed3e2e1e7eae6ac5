package live

import (
	"context"

	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
)

// DBSource is the database as the runtime dashboard and /metrics report it:
// named as pages may show it (no password), measured by the store (the
// SQLite file and its -wal file, or pg_database_size on PostgreSQL, whose
// write-ahead log is the whole server's and so is not reported).
func DBSource(st *store.Store) *stats.DBSource {
	return &stats.DBSource{
		Name: st.Path,
		WAL:  st.Dialect == store.SQLite,
		Size: func(ctx context.Context) (int64, int64, error) {
			size, err := st.Size(ctx)
			return size.Bytes, size.WALBytes, err
		},
	}
}
