package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// How job_counts stays exact (migration 0011). Inserts and deletes are
// counted by the jobs_count_insert and jobs_count_delete triggers, whoever
// makes them. A state change is counted by the engine statement that makes
// it: claims, outcomes, cancels, retries and rescues add their deltas per
// (queue, state) in the same transaction, one statement a batch, instead of
// a row trigger that ran a sub-program per job (it cost more than the rest
// of an outcome's counting). Code that changes a job's state or queue with
// raw SQL must add its own deltas, or call Recount.
//
// On PostgreSQL job_counts is a ledger that the statement-level triggers of
// migration 0004 append every change to, whoever makes it (the engine and
// raw SQL alike), so the engine adds no deltas there (dialect.ownCounts),
// and the maintenance loop folds the ledger now and then (compactCounts).

// countKey is one row of job_counts.
type countKey struct {
	queue string
	state State
}

// countDeltas are the changes one transaction makes to job_counts.
type countDeltas map[countKey]int

// move counts one job of queue leaving state from for state to.
func (d countDeltas) move(queue string, from, to State) {
	if from == to {
		return
	}
	d[countKey{queue, from}]--
	d[countKey{queue, to}]++
}

// countDeltasSQL adds ?1, a JSON array of [queue, state, delta], to
// job_counts. ("WHERE true" tells SQLite's parser the ON CONFLICT belongs to
// the INSERT, not to a join.)
const countDeltasSQL = `INSERT INTO job_counts (queue, state, n)
	SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true
	ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`

// arg encodes the non-zero deltas for countDeltasSQL ("" when none).
func (d countDeltas) arg() (string, error) {
	rows := make([][3]any, 0, len(d))
	for k, n := range d {
		if n != 0 {
			rows = append(rows, [3]any{k.queue, string(k.state), n})
		}
	}
	if len(rows) == 0 {
		return "", nil
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return "", fmt.Errorf("encode count deltas: %w", err)
	}
	return string(b), nil
}

// apply writes the deltas in tx; stmt, when not nil, is countDeltasSQL
// prepared (the engine's hot path).
func (d countDeltas) apply(ctx context.Context, tx *sqlx.Tx, stmt *sqlx.Stmt) error {
	arg, err := d.arg()
	if err != nil || arg == "" {
		return err
	}
	if stmt != nil {
		_, err = tx.StmtxContext(ctx, stmt).ExecContext(ctx, arg)
	} else {
		_, err = tx.ExecContext(ctx, countDeltasSQL, arg)
	}
	if err != nil {
		return fmt.Errorf("count jobs: %w", err)
	}
	return nil
}

// applyCounts writes d in tx where the engine keeps the counts itself
// (SQLite); on PostgreSQL the trigger has counted the changes already.
func (e *Engine) applyCounts(ctx context.Context, tx *sqlx.Tx, d countDeltas, stmt *sqlx.Stmt) error {
	if !e.d.ownCounts {
		return nil
	}
	return d.apply(ctx, tx, stmt)
}

// jobPlace is where a job is counted: its queue and state.
type jobPlace struct {
	ID    int64  `db:"id"`
	Queue string `db:"queue"`
	State State  `db:"state"`
}

// placesOf reads the queue and state of the jobs of ids in tx, before a
// statement changes some of their states (SQLite only: see applyCounts).
func placesOf(ctx context.Context, tx *sqlx.Tx, ids []int64) (map[int64]jobPlace, error) {
	var rows []jobPlace
	if err := tx.SelectContext(ctx, &rows,
		"SELECT id, queue, state FROM jobs WHERE id IN (SELECT value FROM json_each(?1))", mustJSON(ids)); err != nil {
		return nil, fmt.Errorf("read job states: %w", err)
	}
	m := make(map[int64]jobPlace, len(rows))
	for _, r := range rows {
		m[r.ID] = r
	}
	return m, nil
}

// Recount makes job_counts exact by counting the jobs table (a full scan,
// in one transaction on db, the writer). It is for code that changed jobs'
// states or queues with raw SQL around the engine; the engine's own writes
// keep the counts exact without it. On PostgreSQL the triggers count raw
// SQL too, so it is never needed there; it still works, locking the jobs
// table against writes while it counts (another transaction's change
// between the DELETE and the count would otherwise be counted twice).
func Recount(ctx context.Context, db *sqlx.DB) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recount jobs: %w", err)
	}
	defer tx.Rollback()
	if dialectOf(db).postgres {
		if _, err := tx.ExecContext(ctx, `LOCK TABLE jobs IN SHARE MODE`); err != nil {
			return fmt.Errorf("recount jobs: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM job_counts`); err != nil {
		return fmt.Errorf("recount jobs: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO job_counts (queue, state, n)
		SELECT queue, state, count(*) FROM jobs WHERE true GROUP BY queue, state`); err != nil {
		return fmt.Errorf("recount jobs: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recount jobs: %w", err)
	}
	return nil
}
