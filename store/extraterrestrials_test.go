package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
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
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
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
	storetest.RunStore(t, func(t *testing.T, _ context.Context, st *store.Store) {
		if st.Dialect == store.Postgres {
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

// While calls are recorded concurrently and the counts are compacted over
// and over, every read of the counts is exact: the total never moves (no
// row is added or removed), and at the end the counts equal a full count.
// On PostgreSQL this is the ledger of migration 0007 and CompactCounts; on
// SQLite the counters of its triggers.
func TestCountsStayExactUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		const ets, writers, calls = 500, 4, 40
		if err := st.GenerateExtraterrestrials(ctx, ets); err != nil {
			t.Fatal(err)
		}
		statuses := []store.Status{store.StatusPhoningHome, store.StatusSpaceTaxi, store.StatusNoAnswer}
		done := make(chan struct{})
		errs := make(chan error, writers+2)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range calls {
					id := int64(1 + (w*calls+i)*7%ets)
					err := st.InTx(ctx, func(tx *sqlx.Tx) error {
						_, err := store.RecordCallTx(ctx, tx, id, statuses[(w+i)%3], i+1, time.Now())
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		// Each side goroutine repeats its step until the writers are done
		// or the step fails.
		var side sync.WaitGroup
		untilDone := func(step func() error) {
			side.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if err := step(); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		untilDone(func() error { return st.CompactCounts(ctx) }) // the compactor
		reads := 0
		untilDone(func() error { // a reader
			c, err := st.CountByStatus(ctx)
			if err != nil {
				return err
			}
			if c.Total() != ets {
				return fmt.Errorf("read %+v: total %d, want %d", c, c.Total(), ets)
			}
			reads++
			return nil
		})
		wg.Wait()
		close(done)
		side.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if err := st.CompactCounts(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := st.CountByStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if scan := countByScan(t, st); got != scan {
			t.Errorf("CountByStatus %+v, full count %+v", got, scan)
		}
		var rows int
		if err := st.Reader.Get(&rows, "SELECT count(*) FROM extraterrestrial_counts"); err != nil || rows != 4 {
			t.Errorf("after compacting: %d rows in extraterrestrial_counts (%v), want 4", rows, err)
		}
		t.Logf("%d consistent reads while writing", reads)
	})
}

// job_counts follows inserts (one and many in a statement), state and queue
// changes, rollbacks and deletes of jobs, before and after CompactCounts.
// On PostgreSQL triggers count every change. On SQLite a state or queue
// change is counted by the job engine in its own transaction (migration
// 0011; package jobs tests that), so raw UPDATEs there are followed by
// jobs.Recount, as the engine's contract asks of code around it; inserts
// and deletes are counted by triggers on both.
func TestJobCountsFollowEveryChange(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		type key struct{ Queue, State string }
		counts := func(q string) map[key]int {
			t.Helper()
			var rows []struct {
				Queue string `db:"queue"`
				State string `db:"state"`
				N     int    `db:"n"`
			}
			if err := st.Reader.Select(&rows, q); err != nil {
				t.Fatal(err)
			}
			out := map[key]int{}
			for _, r := range rows {
				if r.N != 0 {
					out[key{r.Queue, r.State}] = r.N
				}
			}
			return out
		}
		check := func(step string, want map[key]int) {
			t.Helper()
			kept := counts("SELECT queue, state, CAST(sum(n) AS BIGINT) AS n FROM job_counts GROUP BY queue, state")
			scan := counts("SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state")
			if fmt.Sprint(kept) != fmt.Sprint(scan) || fmt.Sprint(kept) != fmt.Sprint(want) {
				t.Fatalf("%s: job_counts %v, full count %v, want %v", step, kept, scan, want)
			}
		}
		exec := func(q string) {
			t.Helper()
			if _, err := st.Writer.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		update := func(q string) {
			t.Helper()
			exec(q)
			if st.Dialect == store.SQLite {
				if err := jobs.Recount(ctx, st.Writer); err != nil {
					t.Fatal(err)
				}
			}
		}
		check("empty", map[key]int{})
		exec("INSERT INTO jobs (queue, kind, inserted_at, scheduled_at) VALUES ('a', 'k', 0, 0), ('a', 'k', 0, 0), ('a', 'k', 0, 0), ('b', 'k', 0, 0)")
		exec("INSERT INTO jobs (queue, kind, state, inserted_at, scheduled_at) VALUES ('b', 'k', 'scheduled', 0, 0)")
		check("inserted", map[key]int{{"a", "available"}: 3, {"b", "available"}: 1, {"b", "scheduled"}: 1})
		update("UPDATE jobs SET state = 'executing' WHERE queue = 'a'")
		update("UPDATE jobs SET attempt = attempt + 1") // no state change: no count change
		check("claimed", map[key]int{{"a", "executing"}: 3, {"b", "available"}: 1, {"b", "scheduled"}: 1})
		if err := st.CompactCounts(ctx); err != nil {
			t.Fatal(err)
		}
		check("compacted", map[key]int{{"a", "executing"}: 3, {"b", "available"}: 1, {"b", "scheduled"}: 1})
		update("UPDATE jobs SET state = 'completed' WHERE id = 1")
		update("UPDATE jobs SET queue = 'c' WHERE id = 2")
		update("UPDATE jobs SET state = 'available' WHERE state = 'scheduled'")
		check("moved", map[key]int{{"a", "completed"}: 1, {"c", "executing"}: 1, {"a", "executing"}: 1, {"b", "available"}: 2})
		err := st.InTx(ctx, func(tx *sqlx.Tx) error {
			if _, err := tx.ExecContext(ctx, "UPDATE jobs SET state = 'discarded'"); err != nil {
				return err
			}
			return context.Canceled
		})
		if err == nil {
			t.Fatal("want the rollback's error")
		}
		check("rolled back", map[key]int{{"a", "completed"}: 1, {"c", "executing"}: 1, {"a", "executing"}: 1, {"b", "available"}: 2})
		exec("DELETE FROM jobs WHERE queue IN ('a', 'c')")
		check("deleted", map[key]int{{"b", "available"}: 2})
		if err := st.CompactCounts(ctx); err != nil {
			t.Fatal(err)
		}
		check("compacted again", map[key]int{{"b", "available"}: 2})
	})
}
