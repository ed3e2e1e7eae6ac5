package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"github.com/phonehome/phonehome/bench/internal/benchdb"
)

// rawBatch is the rows updated per transaction in the batched raw test.
const rawBatch = 1000

// rawSingle is how many single-row commits the raw test makes.
const rawSingle = 5000

// runRaw measures what SQLite itself can do. The ceiling W1–W2 are held to
// is on a lean table (leanRates). On phonehome's own jobs table, through the
// same writer connection and pragmas (store.Open) — the own-table ceiling,
// which includes the schema's cost and is reported apart: n jobs are
// inserted, then updated twice each — a claim (state executing, attempt+1,
// attempted_at/by) and a finish (state completed, completed_at) — by
// primary key, one prepared UPDATE per row, 1,000 rows per transaction. That
// is the least write work a queue does per job, batched as well as it can
// be on that schema. It also measures single-row commits/s (one UPDATE
// per transaction), the cost of writing each outcome on its own.
func runRaw(ctx context.Context, dir string, n int) (map[string]float64, error) {
	st, err := benchdb.Open(ctx, filepath.Join(dir, "raw.db"))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	now := time.Now().UnixMilli()
	t0 := time.Now()
	tx, err := st.Writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO jobs (id, state, queue, kind, args, max_attempts, inserted_at, scheduled_at)
		VALUES (?, 'available', 'default', 'bench', ?, 5, ?, ?)`)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	for i := 1; i <= 2*n; i++ {
		if _, err := ins.ExecContext(ctx, i, fmt.Sprintf(`{"n":%d}`, i), now, now); err != nil {
			tx.Rollback()
			return nil, fmt.Errorf("insert: %w", err)
		}
	}
	ins.Close()
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	insert := time.Since(t0)

	// Rows 1…n are updated one prepared statement per row; rows n+1…2n
	// by one statement per 1,000-row range. Both do a claim, then a finish.
	claim := `UPDATE jobs SET state = 'executing', attempt = attempt + 1, attempted_at = ?, attempted_by = 'bench'`
	finish := `UPDATE jobs SET state = 'completed', completed_at = ?`
	t1 := time.Now()
	for _, q := range []string{claim, finish} {
		for from := 1; from <= n; from += rawBatch {
			err := inTx(ctx, st.Writer.DB, func(tx *sql.Tx) error {
				return updateByID(ctx, tx, q, now, from, n, "update")
			})
			if err != nil {
				return nil, err
			}
		}
	}
	batched := time.Since(t1)

	t2 := time.Now()
	for _, q := range []string{claim, finish} {
		for from := n + 1; from <= 2*n; from += rawBatch {
			err := inTx(ctx, st.Writer.DB, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, q+" WHERE id >= ? AND id < ?", now, from, min(from+rawBatch, 2*n+1))
				if err != nil {
					return fmt.Errorf("update: %w", err)
				}
				if k, _ := res.RowsAffected(); k != int64(min(rawBatch, 2*n+1-from)) {
					return fmt.Errorf("range update from %d changed %d rows", from, k)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	ranged := time.Since(t2)

	leanRow, leanRange, err := leanRates(ctx, dir, n)
	if err != nil {
		return nil, err
	}

	single := min(rawSingle, n)
	t3 := time.Now()
	for id := 1; id <= single; id++ {
		err := inTx(ctx, st.Writer.DB, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'discarded', discarded_at = ? WHERE id = ?`, now, id)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	singles := time.Since(t3)

	return map[string]float64{
		"insert_rate":    float64(2*n) / insert.Seconds(),
		"update_rate":    float64(2*n) / batched.Seconds(),
		"range_rate":     float64(2*n) / ranged.Seconds(),
		"job_rate":       float64(n) / min(batched, ranged).Seconds(),
		"single_commits": float64(single) / singles.Seconds(),
		// The ceiling: a job is two writes (claim, finish).
		"lean_row_rate": leanRow,
		"lean_job_rate": leanRow / 2,
		"lean_rate":     leanRange,
	}, nil
}

// inTx runs fn in one write transaction on the store's writer.
// updateByID runs q (an UPDATE setting one ? to now) with " WHERE id = ?"
// once per row from from to the end of its rawBatch range, at most n, by one
// prepared statement; what names the step in an error.
func updateByID(ctx context.Context, tx *sql.Tx, q string, now int64, from, n int, what string) error {
	stmt, err := tx.PrepareContext(ctx, q+" WHERE id = ?")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for id := from; id < from+rawBatch && id <= n; id++ {
		if _, err := stmt.ExecContext(ctx, now, id); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// inTx runs fn in a transaction on db, committing unless fn fails.
func inTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// leanRates measures SQLite's own write limit for a job queue: a lean
// queue table (the columns a claim and a finish write, one partial fetch
// index, no triggers) in a database file of its own, opened like the app's
// writer and the peers (WAL, synchronous=NORMAL, the same other pragmas)
// with one connection. n rows get a claim, then a finish, by primary key,
// one prepared UPDATE per row, 1,000 rows per transaction: perRow rows/s,
// the ceiling a queue is held to (it writes each job by its id). Another n
// rows get the same two updates as one statement per 1,000-row range
// (ranged rows/s), which no queue can do for jobs finishing in any order:
// context only.
func leanRates(ctx context.Context, dir string, n int) (perRow, ranged float64, err error) {
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(dir, "lean.db"), peerPragmas))
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	_, err = db.ExecContext(ctx, `CREATE TABLE lean_jobs (
		id INTEGER PRIMARY KEY, state TEXT NOT NULL, queue TEXT NOT NULL, args TEXT NOT NULL,
		attempt INTEGER NOT NULL DEFAULT 0, scheduled_at INTEGER NOT NULL, attempted_at INTEGER, completed_at INTEGER) STRICT;
		CREATE INDEX lean_fetch ON lean_jobs (queue, scheduled_at, id) WHERE state = 'available';
		WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)
		INSERT INTO lean_jobs (id, state, queue, args, scheduled_at) SELECT x, 'available', 'default', json_object('n', x), 0 FROM c`, 2*n)
	if err != nil {
		return 0, 0, fmt.Errorf("lean table: %w", err)
	}
	claim := `UPDATE lean_jobs SET state = 'executing', attempt = attempt + 1, attempted_at = ?`
	finish := `UPDATE lean_jobs SET state = 'completed', completed_at = ?`
	now := time.Now().UnixMilli()

	// Rows 1…n: one prepared statement per row, by primary key.
	t0 := time.Now()
	for _, q := range []string{claim, finish} {
		for from := 1; from <= n; from += rawBatch {
			err := inTx(ctx, db, func(tx *sql.Tx) error {
				return updateByID(ctx, tx, q, now, from, n, "lean update")
			})
			if err != nil {
				return 0, 0, err
			}
		}
	}
	perRow = float64(2*n) / time.Since(t0).Seconds()

	// Rows n+1…2n: one statement per 1,000-row range.
	t1 := time.Now()
	for _, q := range []string{claim, finish} {
		for from := n + 1; from <= 2*n; from += rawBatch {
			err := inTx(ctx, db, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, q+" WHERE id >= ? AND id < ?", now, from, min(from+rawBatch, 2*n+1))
				return err
			})
			if err != nil {
				return 0, 0, err
			}
		}
	}
	ranged = float64(2*n) / time.Since(t1).Seconds()

	var left int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM lean_jobs WHERE state <> 'completed'").Scan(&left); err != nil {
		return 0, 0, err
	}
	if left != 0 {
		return 0, 0, fmt.Errorf("lean table: %d rows not updated", left)
	}
	return perRow, ranged, nil
}
