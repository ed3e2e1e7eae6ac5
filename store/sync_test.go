package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/phonehome/phonehome/store"
)

// TestSyncSetsTheWritersPragma checks that -sync reaches the writer
// connection: SQLite reports synchronous as 1 (NORMAL) or 2 (FULL).
func TestSyncSetsTheWritersPragma(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sync store.Sync
		want int
	}{
		{name: "default", sync: "", want: 1},
		{name: "normal", sync: store.SyncNormal, want: 1},
		{name: "full", sync: store.SyncFull, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, err := store.OpenWith(ctx, filepath.Join(t.TempDir(), "sync.db"), store.Options{Sync: tt.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var got int
			if err := st.Writer.GetContext(ctx, &got, "PRAGMA synchronous"); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA synchronous = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseSync(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]store.Sync{"normal": store.SyncNormal, "FULL": store.SyncFull} {
		if got, err := store.ParseSync(in); err != nil || got != want {
			t.Errorf("ParseSync(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "off", "extra", "2"} {
		if _, err := store.ParseSync(bad); err == nil {
			t.Errorf("ParseSync(%q) accepted", bad)
		}
	}
}
