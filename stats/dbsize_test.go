package stats_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// brokenSource is a database whose size cannot be read.
func brokenSource() *stats.DBSource {
	return &stats.DBSource{Name: "broken.db", WAL: true, Size: func(context.Context) (int64, int64, error) {
		return 0, 0, errors.New("no such database")
	}}
}

// The database's size comes from the database itself: the SQLite file and
// its -wal file, or pg_database_size on PostgreSQL (no WAL of its own,
// none reported on /metrics); the name never carries a password.
func TestDatabaseSize(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		st := b.Open(t)
		if _, err := st.SeedExtraterrestrials(ctx); err != nil {
			t.Fatal(err)
		}
		c := stats.New(stats.Config{Sources: stats.Sources{DB: live.DBSource(st)}})
		db := c.Current(ctx).DB
		if db.Err != "" || db.Path != st.Path || db.Bytes == 0 {
			t.Fatalf("db = %+v, want %s with some bytes", db, st.Path)
		}
		fams := scrape(t, c.MetricsHandler())
		walShown := hasSeries(fams, stats.MetricDBBytes, "file", "wal")
		switch b.Dialect {
		case store.SQLite:
			if want := fileSize(t, st.Path); db.Bytes != want {
				t.Errorf("database %d bytes, want the file's %d", db.Bytes, want)
			}
			if want := fileSize(t, st.Path+"-wal"); db.WALBytes != want || want == 0 || !db.WAL || !walShown {
				t.Errorf("WAL %d bytes (shown %v), want %d (and more than 0)", db.WALBytes, walShown, want)
			}
			// A file gone is an error on the page, not a crash.
			if err := os.Remove(st.Path); err != nil {
				t.Fatal(err)
			}
			if db := c.Current(ctx).DB; db.Err == "" {
				t.Errorf("a missing file reports no error: %+v", db)
			}
		case store.Postgres:
			var want int64
			if err := st.Reader.Get(&want, "SELECT pg_database_size(current_database())"); err != nil {
				t.Fatal(err)
			}
			// Tolerance: the server may grow the database between the reads.
			if db.Bytes < want/2 || db.Bytes > want*2 {
				t.Errorf("database %d bytes, want about pg_database_size's %d", db.Bytes, want)
			}
			if db.WAL || db.WALBytes != 0 || walShown {
				t.Errorf("PostgreSQL reports a WAL of its own: %+v (on /metrics: %v)", db, walShown)
			}
			u, err := url.Parse(b.Server)
			if err != nil {
				t.Fatal(err)
			}
			if pw, ok := u.User.Password(); ok && strings.Contains(db.Path, pw) {
				t.Errorf("the dashboard's database name shows the password: %q", db.Path)
			}
		}
	})
}

// hasSeries reports whether the metric has a series with this label.
func hasSeries(fams map[string]*dto.MetricFamily, name, label, value string) bool {
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return true
			}
		}
	}
	return false
}
