package store_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// countByScan counts the way the counts table replaces: a full GROUP BY.
func countByScan(t *testing.T, st *store.Store) store.StatusCounts {
	t.Helper()
	var rows []struct {
		Status sql.NullString `db:"communication_status"`
		N      int            `db:"n"`
	}
	if err := st.Reader.Select(&rows, "SELECT communication_status, count(*) AS n FROM extraterrestrials GROUP BY 1"); err != nil {
		t.Fatal(err)
	}
	var c store.StatusCounts
	for _, r := range rows {
		switch store.Status(r.Status.String) {
		case store.StatusNone:
			c.Never = r.N
		case store.StatusPhoningHome:
			c.PhoningHome = r.N
		case store.StatusSpaceTaxi:
			c.SpaceTaxi = r.N
		case store.StatusNoAnswer:
			c.NoAnswer = r.N
		}
	}
	return c
}

// The counts table that CountByStatus reads stays equal to a full count
// through inserts (single and bulk), every status transition, rewrites of
// the same status, rolled-back transactions and deletes.
func TestCountsFollowEveryChange(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		st := b.Open(t)
		ctx := context.Background()
		check := func(step string, want store.StatusCounts) {
			t.Helper()
			got, err := st.CountByStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if scan := countByScan(t, st); got != scan || got != want {
				t.Fatalf("%s: CountByStatus %+v, full count %+v, want %+v", step, got, scan, want)
			}
		}
		check("empty", store.StatusCounts{})
		if _, err := st.SeedExtraterrestrials(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.GenerateExtraterrestrials(ctx, 990); err != nil {
			t.Fatal(err)
		}
		check("seeded", store.StatusCounts{Never: 1000})

		record := func(id int64, s store.Status, attempt int) {
			t.Helper()
			err := st.InTx(ctx, func(tx *sqlx.Tx) error {
				_, err := store.RecordCallTx(ctx, tx, id, s, attempt, time.Now())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name   string
			id     int64
			status store.Status
			want   store.StatusCounts
		}{
			{"never → phoning", 1, store.StatusPhoningHome, store.StatusCounts{Never: 999, PhoningHome: 1}},
			{"phoning → phoning", 1, store.StatusPhoningHome, store.StatusCounts{Never: 999, PhoningHome: 1}},
			{"phoning → home", 1, store.StatusSpaceTaxi, store.StatusCounts{Never: 999, SpaceTaxi: 1}},
			{"never → no answer", 2, store.StatusNoAnswer, store.StatusCounts{Never: 998, SpaceTaxi: 1, NoAnswer: 1}},
			{"no answer → phoning", 2, store.StatusPhoningHome, store.StatusCounts{Never: 998, PhoningHome: 1, SpaceTaxi: 1}},
		}
		for i, tt := range tests {
			record(tt.id, tt.status, i+1)
			check(tt.name, tt.want)
		}
		last := tests[len(tests)-1].want

		// A transaction that rolls back leaves the counts as they were.
		err := st.InTx(ctx, func(tx *sqlx.Tx) error {
			if _, err := store.RecordCallTx(ctx, tx, 3, store.StatusSpaceTaxi, 1, time.Now()); err != nil {
				return err
			}
			return context.Canceled
		})
		if err == nil {
			t.Fatal("want the rollback's error")
		}
		check("rolled back", last)

		// Back to never tried (a hand repair), and deletes.
		if _, err := st.Writer.Exec("UPDATE extraterrestrials SET communication_status = NULL WHERE id = 2"); err != nil {
			t.Fatal(err)
		}
		check("phoning → never", store.StatusCounts{Never: 999, SpaceTaxi: 1})
		if _, err := st.Writer.Exec("DELETE FROM extraterrestrials WHERE id IN (1, 5, 6)"); err != nil {
			t.Fatal(err)
		}
		check("deleted", store.StatusCounts{Never: 997})
	})
}

// The campaign header's query is cheap at any size: it reads the four rows
// of the counts table, never the extraterrestrials.
func TestCountByStatusReadsNoExtraterrestrial(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		st := b.Open(t)
		if b.Dialect == store.Postgres {
			// The ledger's sum: a scan of extraterrestrial_counts alone.
			var plan []string
			if err := st.Reader.Select(&plan, "EXPLAIN SELECT status, sum(n)::bigint AS n FROM extraterrestrial_counts GROUP BY status"); err != nil {
				t.Fatal(err)
			}
			for _, p := range plan {
				if strings.Contains(p, " on ") && !strings.Contains(p, " on extraterrestrial_counts") {
					t.Errorf("plan step %q", p)
				}
			}
			return
		}
		var plan []struct {
			ID     int    `db:"id"`
			Parent int    `db:"parent"`
			NotUse int    `db:"notused"`
			Detail string `db:"detail"`
		}
		if err := st.Reader.Select(&plan, "EXPLAIN QUERY PLAN SELECT status, n FROM extraterrestrial_counts"); err != nil {
			t.Fatal(err)
		}
		for _, p := range plan {
			if p.Detail != "SCAN extraterrestrial_counts" {
				t.Errorf("plan step %q", p.Detail)
			}
		}
	})
}
