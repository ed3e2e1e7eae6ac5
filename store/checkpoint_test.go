package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
)

// TestCheckpointsOffTheWriter: what the writer commits reaches the database
// file without the writer checkpointing (its own threshold is far above
// what is written here): the checkpointer copies the log on a connection
// of its own.
func TestCheckpointsOffTheWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	st, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Writer.ExecContext(ctx, "CREATE TABLE blobs (b BLOB) STRICT"); err != nil {
		t.Fatal(err)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// About 1,500 pages of 4 KiB, in one transaction: below the writer's
	// own checkpoint threshold, above SQLite's default one.
	const bytes = 5 << 20
	if _, err := st.Writer.ExecContext(ctx, `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1500)
		INSERT INTO blobs SELECT randomblob(4000) FROM c`); err != nil {
		t.Fatal(err)
	}
	if db := size(path); db >= bytes {
		t.Fatalf("the database file holds %d bytes right after the commit: the writer checkpointed", db)
	}
	testwait.Until(t, 10*time.Second, "the log copied into the database file", func() bool { return size(path) >= bytes })
}
