// Package jobfill writes many jobs into the jobs table in one statement, a
// mix like a busy queue's history, for the benchmarks and the tests that
// need a table of a million jobs. It writes rows straight into the table,
// never through the engine: filling a million jobs takes seconds this way.
package jobfill

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phonehome/phonehome/store"
)

// Mix is what the generated jobs look like. Job x (1 to rows) takes its
// state from b = x % 1000: 90 % completed, 4 % discarded (attempt 5, with
// the error "no answer"), 2 % available, 1.5 % retryable, 1.5 % scheduled
// (an hour after it was inserted), the rest cancelled. Jobs are inserted
// 10 ms apart, the last one now.
type Mix struct {
	// Queues and Kinds are dealt in turn: job x is in Queues[x % len].
	Queues, Kinds []string
	// RareKind, when set, is the kind of one job in a thousand (b = 500),
	// one a kind filter finds only deep in the table.
	RareKind string
	// Executing leaves one job in a thousand executing (b = 999), so 0.9 %
	// are cancelled; without it 1 % are.
	Executing bool
	// Args is the SQL expression of job x's args; {object} stands for the
	// database's JSON object builder.
	Args string
	// TagEvery tags one job in TagEvery "campaign"; 0 tags none.
	TagEvery int
	// Node is the attempted_by of every attempted job.
	Node string
	// IDs gives job x the id x, for a table without jobs; otherwise the
	// table's identity numbers them.
	IDs bool
}

// Dashboard is the mix of the jobs dashboard's benchmark: three queues,
// five kinds and one rare kind, args {"n", "to"}, no tags.
var Dashboard = Mix{
	Queues:    []string{"default", "phone_calls", "mailers"},
	Kinds:     []string{"speak_and_spell", "send_email", "resize_image", "sync_account", "bench"},
	RareKind:  "rare_report",
	Executing: true,
	Args:      `{object}('n', x, 'to', 'user' || (x % 9973) || '@example.com')`,
	Node:      "bench/1",
	IDs:       true,
}

// Fill writes rows jobs of mix into st's jobs table in one statement, then
// brings what depends on the table up to date (on PostgreSQL, with IDs, the
// identity moved past them and the counts ledger folded) and analyzes it.
func Fill(ctx context.Context, st *store.Store, rows int, mix Mix) error {
	if len(mix.Queues) == 0 || len(mix.Kinds) == 0 {
		return fmt.Errorf("fill %d jobs: a mix needs queues and kinds", rows)
	}
	pg := st.Dialect == store.Postgres
	if _, err := st.Writer.ExecContext(ctx, mix.statement(pg), rows, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("fill %d jobs: %w", rows, err)
	}
	if pg && mix.IDs {
		// The ids were given: move the identity past them, and fold the
		// counts ledger the insert's trigger wrote.
		if _, err := st.Writer.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('jobs', 'id'), $1::bigint)`, rows); err != nil {
			return err
		}
		if err := st.CompactCounts(ctx); err != nil {
			return err
		}
	}
	_, err := st.Writer.ExecContext(ctx, "ANALYZE")
	return err
}

// statement is Fill's statement for the database: $1 (?1) is rows, $2
// (?2) now in unix milliseconds.
func (m Mix) statement(pg bool) string {
	// One statement on both databases; only the row source and the JSON
	// builders differ.
	rowsSQL := `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1),
g AS (SELECT x, x % 1000 AS b, ?2 - (?1 - x) * 10 AS t FROM c)`
	object, array, empty := "json_object", "json_array", "'[]'"
	if pg {
		rowsSQL = `WITH g AS (SELECT x, x % 1000 AS b, $2::bigint - ($1::bigint - x) * 10 AS t FROM generate_series(1, $1::bigint) AS x)`
		object, array, empty = "jsonb_build_object", "jsonb_build_array", "'[]'::jsonb"
	}
	idCol, idVal := "", ""
	if m.IDs {
		idCol, idVal = "id, ", " x,"
	}
	cancelledBelow := "1000"
	if m.Executing {
		cancelledBelow = "999"
	}
	kind := dealt(m.Kinds)
	if m.RareKind != "" {
		kind = "CASE WHEN b = 500 THEN " + quote(m.RareKind) + " ELSE " + kind + " END"
	}
	tags := "{empty}"
	if m.TagEvery > 0 {
		tags = "CASE WHEN x % " + strconv.Itoa(m.TagEvery) + ` = 0 THEN '["campaign"]' ELSE {empty} END`
	}
	// The mix's parts first: Args and tags hold JSON builders too.
	q := strings.NewReplacer(
		"{rows}", rowsSQL, "{id_col}", idCol, "{id}", idVal, "{cancelled_below}", cancelledBelow,
		"{queue}", dealt(m.Queues), "{kind}", kind, "{args}", m.Args, "{tags}", tags, "{node}", quote(m.Node),
	).Replace(fillSQL)
	return strings.NewReplacer("{object}", object, "{array}", array, "{empty}", empty).Replace(q)
}

// fillSQL is Fill's statement, with {rows} (the source of x, b and t), the
// mix's parts and the JSON builders to fill in.
const fillSQL = `{rows}
INSERT INTO jobs ({id_col}state, queue, kind, args, priority, attempt, max_attempts, errors, tags,
                  inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, cancelled_at, discarded_at)
SELECT{id}
  CASE WHEN b < 900 THEN 'completed' WHEN b < 940 THEN 'discarded' WHEN b < 960 THEN 'available'
       WHEN b < 975 THEN 'retryable' WHEN b < 990 THEN 'scheduled' WHEN b < {cancelled_below} THEN 'cancelled'
       ELSE 'executing' END,
  {queue},
  {kind},
  {args},
  x % 10,
  CASE WHEN b < 900 THEN 1 WHEN b < 940 THEN 5 WHEN b < 960 THEN 0 ELSE 2 END,
  5,
  CASE WHEN b >= 900 AND b < 940 THEN {array}({object}('attempt', 5, 'at', '2026-11-22T10:00:00Z',
       'error', 'no answer')) ELSE {empty} END,
  {tags},
  t,
  CASE WHEN b >= 975 AND b < 990 THEN t + 3600000 ELSE t END,
  CASE WHEN b >= 940 AND b < 960 THEN NULL ELSE t + 5 END,
  CASE WHEN b >= 940 AND b < 960 THEN NULL ELSE {node} END,
  CASE WHEN b < 900 THEN t + 7 END,
  CASE WHEN b >= 990 AND b < {cancelled_below} THEN t + 7 END,
  CASE WHEN b >= 900 AND b < 940 THEN t + 7 END
FROM g`

// dealt is the SQL of values dealt in turn over x: values[x % len].
func dealt(values []string) string {
	if len(values) == 1 {
		return quote(values[0])
	}
	var b strings.Builder
	b.WriteString("CASE x % " + strconv.Itoa(len(values)))
	for i, v := range values[:len(values)-1] {
		b.WriteString(" WHEN " + strconv.Itoa(i) + " THEN " + quote(v))
	}
	b.WriteString(" ELSE " + quote(values[len(values)-1]) + " END")
	return b.String()
}

// quote is s as an SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
