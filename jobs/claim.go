package jobs

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"

	"github.com/jmoiron/sqlx"
)

// On SQLite a claim is two statements in one transaction: count the jobs it
// will take, by the state each leaves (an UPDATE's RETURNING cannot give the
// old state), then take them. Both pick the same jobs: the same query, in
// one transaction on the single writer, ordered down to the id. On
// PostgreSQL it is one statement (the trigger counts; see dialect_postgres.go).

// claimPick picks the due jobs of queue ?1 at ?2, at most ?3. The limit is
// written "?3 + 0": a bare bound LIMIT makes SQLite prepare the statement
// again whenever its value changes (measured: 10 µs a claim with the
// expression, 48–56 µs without when the free slots vary).
const claimPick = `SELECT id, state FROM jobs
		WHERE state IN ('available', 'scheduled', 'retryable') AND queue = ?1 AND scheduled_at <= ?2
		ORDER BY priority, scheduled_at, id
		LIMIT ?3 + 0`

// claimCountsSQL moves the picked jobs' counts to executing.
const claimCountsSQL = `WITH picked AS (` + claimPick + `)
	INSERT INTO job_counts (queue, state, n)
		SELECT ?1, state, -count(*) FROM picked GROUP BY state
		UNION ALL
		SELECT ?1, 'executing', count(*) FROM picked WHERE true
	ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`

// claimSQL moves the picked jobs to executing under node ?4.
const claimSQL = `UPDATE jobs
	SET state = 'executing', attempt = attempt + 1, attempted_at = ?2, attempted_by = ?4
	WHERE id IN (SELECT id FROM (` + claimPick + `))
	RETURNING ` + claimColumns

// claimColumns are the columns a claim returns: those of jobColumns it does
// not set itself, or know. A claimed job is executing, in the claim's
// queue, attempted now by this node, and has no finish time (a job gets one
// only with a finished state, and a retry clears it). Returning the 18
// columns took 7.5 µs a job, these 11 6.6 µs (measured on 50-job claims),
// and their scan less.
const claimColumns = `id, kind, args, priority, attempt, max_attempts, rescues, errors, tags, inserted_at, scheduled_at`

// hotStmts are the statements of every claim and outcome, prepared once at
// Start: preparing them per run (parsing and planning) cost more than
// running them.
type hotStmts struct {
	claimCounts, claim, outcome, complete, counts *sqlx.Stmt

	// outcomeMu guards outcomeBySize, SQLite's outcome statements by
	// their number of rows (see outcome_sqlite.go).
	outcomeMu     sync.Mutex
	outcomeBySize map[int]*sqlx.Stmt

	// insertMu guards insert, insertSQL prepared at the first Insert (an
	// engine may insert before Start, and after Stop).
	insertMu sync.Mutex
	insert   *sqlx.Stmt
}

// insertStmt returns insertSQL prepared on the writer.
func (e *Engine) insertStmt(ctx context.Context) (*sqlx.Stmt, error) {
	e.stmts.insertMu.Lock()
	defer e.stmts.insertMu.Unlock()
	if e.stmts.insert == nil {
		stmt, err := e.db.PreparexContext(ctx, e.d.insert)
		if err != nil {
			return nil, fmt.Errorf("prepare the insert: %w", err)
		}
		e.stmts.insert = stmt
	}
	return e.stmts.insert, nil
}

// prepare prepares the hot statements once.
func (e *Engine) prepare(ctx context.Context) error {
	for _, s := range []struct {
		stmt **sqlx.Stmt
		sql  string
		name string
	}{
		{&e.stmts.claimCounts, e.d.claimCounts, "the claim's counts"},
		{&e.stmts.claim, e.d.claim, "the claim"},
		{&e.stmts.outcome, e.d.outcome, "the outcome"},
		{&e.stmts.complete, e.d.complete, "the completions"},
		{&e.stmts.counts, e.d.counts, "the counts"},
	} {
		if *s.stmt != nil || s.sql == "" { // "": not in this dialect
			continue
		}
		stmt, err := e.db.PreparexContext(ctx, s.sql)
		if err != nil {
			return fmt.Errorf("prepare %s: %w", s.name, err)
		}
		*s.stmt = stmt
	}
	return nil
}

// closeStmts closes the hot statements at Stop.
func (e *Engine) closeStmts() {
	for _, stmt := range []*sqlx.Stmt{e.stmts.claimCounts, e.stmts.claim, e.stmts.outcome, e.stmts.complete, e.stmts.counts} {
		if stmt != nil {
			stmt.Close()
		}
	}
	e.stmts.outcomeMu.Lock()
	for size, stmt := range e.stmts.outcomeBySize {
		stmt.Close()
		delete(e.stmts.outcomeBySize, size)
	}
	e.stmts.outcomeMu.Unlock()
	e.stmts.insertMu.Lock()
	if e.stmts.insert != nil {
		e.stmts.insert.Close()
		e.stmts.insert = nil
	}
	e.stmts.insertMu.Unlock()
}

// claim moves up to n due jobs of queue to executing in a transaction of
// its own.
func (e *Engine) claim(queueName string, n int) ([]*Job, error) {
	ctx := context.Background()
	tx, err := e.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	jobs, err := e.claimTx(ctx, tx, queueName, n)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return jobs, nil
}

// claimTx moves up to n due jobs of queue to executing in tx, oldest first
// within a priority, and counts them.
func (e *Engine) claimTx(ctx context.Context, tx *sqlx.Tx, queueName string, n int) ([]*Job, error) {
	now := e.now().UnixMilli()
	if e.stmts.claimCounts != nil {
		if _, err := tx.StmtxContext(ctx, e.stmts.claimCounts).ExecContext(ctx, queueName, now, n); err != nil {
			return nil, fmt.Errorf("claim: count: %w", err)
		}
	}
	rows, err := scanClaimRows(tx.StmtxContext(ctx, e.stmts.claim).QueryContext(ctx, queueName, now, n, e.cfg.Node))
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	jobs := make([]*Job, 0, len(rows))
	for i := range rows {
		r := &rows[i]
		r.State, r.Queue = string(StateExecuting), queueName
		r.AttemptedAt = sql.NullInt64{Int64: now, Valid: true}
		r.AttemptedBy = sql.NullString{String: e.cfg.Node, Valid: true}
		j := r.job()
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b *Job) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), a.ScheduledAt.Compare(b.ScheduledAt), cmp.Compare(a.ID, b.ID))
	})
	return jobs, nil
}

// scanClaimRows reads rows of claimColumns, in their order, without sqlx's
// reflection (which cost about as much as the claim's statement).
func scanClaimRows(rows *sql.Rows, err error) ([]jobRow, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jobRow
	for rows.Next() {
		var r jobRow
		if err := rows.Scan(&r.ID, &r.Kind, &r.Args, &r.Priority, &r.Attempt, &r.MaxAttempts,
			&r.Rescues, &r.Errors, &r.Tags, &r.InsertedAt, &r.ScheduledAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
