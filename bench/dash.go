package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"github.com/phonehome/phonehome/store"
)

// dashSamples is how many timed requests each dashboard page gets per run
// (after dashWarmup untimed ones); the run reports their p50.
const (
	dashSamples = 21
	dashWarmup  = 3
)

// dashPage is one page (or query) of the jobs dashboard under test.
type dashPage struct {
	// Name is the row label in BENCHMARKS.md.
	Name string
	// Run renders the page once and fails on anything but success.
	Run func(ctx context.Context) error
}

// dashTarget builds the pages to time over a database holding the generated
// jobs; how says how they are measured, for BENCHMARKS.md. close releases
// what it built.
type dashTarget func(ctx context.Context, st *store.Store, rows int) (pages []dashPage, how string, close func(), err error)

// fillJobs writes rows jobs into phonehome's jobs table in one statement, a
// mix like a busy queue's history: 90 % completed, 4 % discarded (with an
// error), 2 % available, 1.5 % retryable, 1.5 % scheduled, 0.9 % cancelled,
// 0.1 % executing; three queues; six kinds, one of them rare (0.1 %).
func fillJobs(ctx context.Context, st *store.Store, rows int) error {
	now := time.Now().UnixMilli()
	_, err := st.Writer.ExecContext(ctx, `
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1),
g AS (SELECT x, x % 1000 AS b, ?2 - (?1 - x) * 10 AS t FROM c)
INSERT INTO jobs (id, state, queue, kind, args, priority, attempt, max_attempts, errors, tags,
                  inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, cancelled_at, discarded_at)
SELECT x,
  CASE WHEN b < 900 THEN 'completed' WHEN b < 940 THEN 'discarded' WHEN b < 960 THEN 'available'
       WHEN b < 975 THEN 'retryable' WHEN b < 990 THEN 'scheduled' WHEN b < 999 THEN 'cancelled'
       ELSE 'executing' END,
  CASE x % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'phone_calls' ELSE 'mailers' END,
  CASE WHEN b = 500 THEN 'rare_report'
       ELSE CASE x % 5 WHEN 0 THEN 'speak_and_spell' WHEN 1 THEN 'send_email' WHEN 2 THEN 'resize_image'
            WHEN 3 THEN 'sync_account' ELSE 'bench' END END,
  json_object('n', x, 'to', 'user' || (x % 9973) || '@example.com'),
  x % 10,
  CASE WHEN b < 900 THEN 1 WHEN b < 940 THEN 5 WHEN b < 960 THEN 0 ELSE 2 END,
  5,
  CASE WHEN b >= 900 AND b < 940 THEN json_array(json_object('attempt', 5, 'at', '2026-11-22T10:00:00Z',
       'error', 'no answer')) ELSE '[]' END,
  '[]',
  t,
  CASE WHEN b >= 975 AND b < 990 THEN t + 3600000 ELSE t END,
  CASE WHEN b >= 940 AND b < 960 THEN NULL ELSE t + 5 END,
  CASE WHEN b >= 940 AND b < 960 THEN NULL ELSE 'bench/1' END,
  CASE WHEN b < 900 THEN t + 7 END,
  CASE WHEN b >= 990 AND b < 999 THEN t + 7 END,
  CASE WHEN b >= 900 AND b < 940 THEN t + 7 END
FROM g`, rows, now)
	if err != nil {
		return fmt.Errorf("fill %d jobs: %w", rows, err)
	}
	_, err = st.Writer.ExecContext(ctx, "ANALYZE")
	return err
}

// runDash fills a fresh database with rows jobs and times each dashboard
// page, reporting the p50 in ms per page name.
func runDash(ctx context.Context, dir string, rows int, target dashTarget) (map[string]float64, string, error) {
	st, err := store.Open(ctx, filepath.Join(dir, "dash.db"))
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return nil, "", err
	}
	t0 := time.Now()
	if err := fillJobs(ctx, st, rows); err != nil {
		return nil, "", err
	}
	fill := time.Since(t0)
	pages, how, closeTarget, err := target(ctx, st, rows)
	if err != nil {
		return nil, "", err
	}
	defer closeTarget()
	out := map[string]float64{"fill_s": fill.Seconds()}
	for _, p := range pages {
		for range dashWarmup {
			if err := p.Run(ctx); err != nil {
				return nil, "", fmt.Errorf("%s: %w", p.Name, err)
			}
		}
		lat := make([]float64, 0, dashSamples)
		for range dashSamples {
			t := time.Now()
			if err := p.Run(ctx); err != nil {
				return nil, "", fmt.Errorf("%s: %w", p.Name, err)
			}
			lat = append(lat, float64(time.Since(t))/float64(time.Millisecond))
		}
		out[p.Name] = percentile(lat, 50)
	}
	return out, how, nil
}

// dashRow is what a job list shows of a job.
type dashRow struct {
	ID          int64          `db:"id"`
	State       string         `db:"state"`
	Queue       string         `db:"queue"`
	Kind        string         `db:"kind"`
	Args        string         `db:"args"`
	Priority    int            `db:"priority"`
	Attempt     int            `db:"attempt"`
	MaxAttempts int            `db:"max_attempts"`
	Errors      string         `db:"errors"`
	Tags        string         `db:"tags"`
	InsertedAt  int64          `db:"inserted_at"`
	ScheduledAt int64          `db:"scheduled_at"`
	AttemptedAt sql.NullInt64  `db:"attempted_at"`
	AttemptedBy sql.NullString `db:"attempted_by"`
	CompletedAt sql.NullInt64  `db:"completed_at"`
	CancelledAt sql.NullInt64  `db:"cancelled_at"`
	DiscardedAt sql.NullInt64  `db:"discarded_at"`
}

const dashCols = `id, state, queue, kind, args, priority, attempt, max_attempts, errors, tags, inserted_at,
	scheduled_at, attempted_at, attempted_by, completed_at, cancelled_at, discarded_at`

// queryTarget times the SQL a job list and its counts need, on the reader
// pool, without the web layer: the stand-in used while the app's /jobs
// pages are not there.
func queryTarget(_ context.Context, st *store.Store, rows int) ([]dashPage, string, func(), error) {
	list := func(where string, args ...any) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			var out []dashRow
			if err := st.Reader.SelectContext(ctx, &out,
				"SELECT "+dashCols+" FROM jobs "+where+" ORDER BY id DESC LIMIT 50", args...); err != nil {
				return err
			}
			if len(out) == 0 {
				return fmt.Errorf("no rows for %q", where)
			}
			return nil
		}
	}
	type count struct {
		State string `db:"state"`
		N     int    `db:"n"`
	}
	pages := []dashPage{
		{"counts per state (`GROUP BY state`)", func(ctx context.Context) error {
			var out []count
			return st.Reader.SelectContext(ctx, &out, "SELECT state, count(*) AS n FROM jobs GROUP BY state")
		}},
		{"counts per queue and state (`GROUP BY queue, state`)", func(ctx context.Context) error {
			var out []struct {
				Queue string `db:"queue"`
				State string `db:"state"`
				N     int    `db:"n"`
			}
			return st.Reader.SelectContext(ctx, &out, "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state")
		}},
		{"list: newest 50, all states", list("")},
		{"list: state=completed, newest 50", list("WHERE state = ?", "completed")},
		{"list: state=retryable, newest 50", list("WHERE state = ?", "retryable")},
		{"list: queue+kind filter, newest 50", list("WHERE queue = ? AND kind = ?", "phone_calls", "send_email")},
		{"list: rare kind (0.1 %), newest 50", list("WHERE kind = ?", "rare_report")},
		{"list: cursor page in the middle", list("WHERE id < ?", rows/2)},
	}
	how := "**Measured without the web layer**: the SQL a job list and its counts need, on phonehome's read-only pool " +
		"(`store.Open(...).Reader`), rows scanned into structs; no template rendering, no HTTP."
	return pages, how, func() {}, nil
}

// storeT is phonehome's store, named short for the target signatures.
type storeT = store.Store

// dashTargetFor picks how the dashboard is measured: the SQL directly while
// the app's /jobs pages are not there.
func dashTargetFor() dashTarget { return queryTarget }
