package housekeeping_test

import (
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/housekeeping"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestOptimizeAnalysesAGrownTable: a table that was never analysed and
// grew gets planner statistics from one run (sqlite_stat1 rows), on the
// real migrated database.
func TestOptimizeAnalysesAGrownTable(t *testing.T) {
	st := storetest.Open(t, "")
	ctx := t.Context()
	if err := st.GenerateExtraterrestrials(ctx, 2000); err != nil {
		t.Fatal(err)
	}
	// Before: no statistics (the table sqlite_stat1 may not even exist).
	var before int
	if err := st.Writer.GetContext(ctx, &before, "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'extraterrestrials'"); err == nil && before != 0 {
		t.Fatalf("statistics before optimize: %d rows", before)
	}
	w := housekeeping.OptimizeWorker{DB: st.Writer}
	if err := w.Work(ctx, &jobs.Job{}); err != nil {
		t.Fatalf("optimize: %v", err)
	}
	var n int
	if err := st.Writer.GetContext(ctx, &n, "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'extraterrestrials'"); err != nil {
		t.Fatalf("read statistics: %v", err)
	}
	if n == 0 {
		t.Errorf("no planner statistics for extraterrestrials after optimize")
	}
	if p := housekeeping.Periodic(); p.Name != housekeeping.Name || p.Description == "" {
		t.Errorf("periodic entry: %+v", p)
	}
}
