// Package housekeeping holds the app's periodic maintenance: jobs the
// engine's cron inserts, which the cron page shows, runs and pauses.
package housekeeping

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// The database optimisation's names: its kind, queue, cron entry and
// schedule.
const (
	Kind  = "db_optimize"
	Queue = "maintenance"
	// QueueLimit: one at a time; on SQLite it holds the single writer
	// connection.
	QueueLimit = 1
	Name       = "db-optimize"
	Spec       = "@hourly"
)

// OptimizeArgs are the args of the hourly database optimisation (none).
type OptimizeArgs struct{}

// Kind names the optimisation.
func (OptimizeArgs) Kind() string { return Kind }

// InsertOpts: in the maintenance queue, a few attempts, and never two in
// flight (a "Run now" while one waits is refused).
func (OptimizeArgs) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Queue: Queue, MaxAttempts: 3, Unique: true}
}

// Periodic is the cron entry on a database of dialect: every hour, as
// SQLite's documentation advises for long-lived connections. Its
// description (the cron page, GET /api/cron) says what OptimizeWorker runs
// on that database.
func Periodic(dialect store.Dialect) jobs.PeriodicJob {
	what := "tables whose contents changed much (PRAGMA optimize)"
	if dialect == store.Postgres {
		what = "every table, from a sample of its rows (ANALYZE)"
	}
	return jobs.PeriodicJob{
		Name: Name, Spec: Spec, Args: OptimizeArgs{},
		Description: "Refreshes the query planner's statistics of " + what + ", so the job list, the campaign and the pets keep their fast plans as tables grow from ten rows to a million.",
	}
}

// OptimizeWorker runs PRAGMA optimize on the writer connection. SQLite
// keeps the planner statistics (sqlite_stat1) as they were when last
// analysed: a table that grew from 10 to 1,000,000 rows since may get a
// poor plan. PRAGMA optimize analyses only the tables that need it, and
// with analysis_limit each in bounded time (milliseconds), so it never
// holds the writer long. On PostgreSQL it runs ANALYZE, the same refresh:
// autovacuum analyses too, but on its own schedule and thresholds, and
// ANALYZE samples a bounded number of rows a table (30,000 by default), so
// an hourly run costs little and keeps the cron entry meaning the same on
// both databases.
type OptimizeWorker struct {
	DB *sqlx.DB
}

// Kind names the worker.
func (OptimizeWorker) Kind() string { return Kind }

// Timeout bounds one run.
func (OptimizeWorker) Timeout(*jobs.Job) time.Duration { return time.Minute }

// Work optimises the database.
func (w OptimizeWorker) Work(ctx context.Context, _ *jobs.Job) error {
	if w.DB.DriverName() != "sqlite" {
		_, err := w.DB.ExecContext(ctx, "ANALYZE")
		return err
	}
	// analysis_limit samples about 400 rows per index instead of reading
	// whole tables: optimize's ANALYZE stays fast at a million rows.
	if _, err := w.DB.ExecContext(ctx, "PRAGMA analysis_limit = 400"); err != nil {
		return err
	}
	_, err := w.DB.ExecContext(ctx, "PRAGMA optimize")
	return err
}
