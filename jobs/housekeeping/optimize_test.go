package housekeeping_test

import (
	"strings"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/housekeeping"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestOptimizeAnalysesAGrownTable: a table that was never analysed and
// grew gets planner statistics from one run (sqlite_stat1 rows; on
// PostgreSQL, pg_stats rows), on the real migrated database; and the cron
// entry's description names the command that runs on that database.
func TestOptimizeAnalysesAGrownTable(t *testing.T) {
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		ctx := t.Context()
		if err := st.GenerateExtraterrestrials(ctx, 2000); err != nil {
			t.Fatal(err)
		}
		stats := "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'extraterrestrials'"
		if st.Dialect == store.Postgres {
			stats = "SELECT count(*) FROM pg_stats WHERE tablename = 'extraterrestrials'" // written by ANALYZE, in its transaction
		}
		// Before: no statistics (the table sqlite_stat1 may not even exist).
		var before int
		if err := st.Writer.GetContext(ctx, &before, stats); err == nil && before != 0 {
			t.Fatalf("statistics before optimize: %d rows", before)
		}
		w := housekeeping.OptimizeWorker{DB: st.Writer}
		if err := w.Work(ctx, &jobs.Job{}); err != nil {
			t.Fatalf("optimize: %v", err)
		}
		var n int
		if err := st.Writer.GetContext(ctx, &n, stats); err != nil {
			t.Fatalf("read statistics: %v", err)
		}
		if n == 0 {
			t.Errorf("no planner statistics for extraterrestrials after optimize")
		}
		// The cron entry says what runs on this database, and not the
		// other's command.
		says, not := "(PRAGMA optimize)", "ANALYZE)"
		if st.Dialect == store.Postgres {
			says, not = "(ANALYZE)", "PRAGMA"
		}
		if p := housekeeping.Periodic(st.Dialect); p.Name != housekeeping.Name ||
			!strings.Contains(p.Description, says) || strings.Contains(p.Description, not) {
			t.Errorf("periodic entry on %s: %+v; want its description to say %s, not %s", st.Dialect, p, says, not)
		}
	})
}
