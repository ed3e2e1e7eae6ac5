package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// insertChunk is how many jobs one statement of a bulk insert carries: 11
// values each, well under SQLite's 32,766 bound parameters. One statement a
// job cost more in the statement's round trip (binding, stepping, reading
// RETURNING through database/sql) than in SQLite's own work.
const insertChunk = 500

// insertColumns are the columns insertValues binds, in order.
const insertColumns = `state, queue, kind, args, priority, max_attempts, tags, unique_key, unique_by, inserted_at, scheduled_at`

// insertValuesSQL inserts n jobs in one statement. ON CONFLICT DO NOTHING
// skips a job whose unique_key is in flight, also when the job it meets was
// inserted earlier in the same statement (rows are inserted in order), so a
// chunk behaves as its jobs inserted one after another. RETURNING names the
// jobs inserted (only asked for when they are reported: reading 100,000 ids
// back cost a tenth of a bulk insert).
func insertValuesSQL(n int, returning bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO jobs (" + insertColumns + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT DO NOTHING")
	if returning {
		b.WriteString(" RETURNING id")
	}
	return b.String()
}

// A run of jobs that differ only in their args (a bulk insert's usual
// shape) is inserted with one bound value a job, the rest bound once a
// statement: binding cost more than SQLite's own work per job (each bind a
// call through the driver and SQLite's mutex). A run shorter than
// uniformMin joins the general statements instead.
const (
	uniformChunk = 1000
	uniformMin   = 16
)

// rowShape is what the jobs of a uniform run share.
type rowShape struct {
	state, queue, kind, tags string
	priority, maxAttempts    int
	scheduledAt              int64
	unique                   bool
}

func shapeOf(r insertRow) rowShape {
	return rowShape{state: r.state, queue: r.queue, kind: r.kind, tags: r.tags, priority: r.priority,
		maxAttempts: r.maxAttempts, scheduledAt: r.scheduledAt, unique: r.uniqueKey.Valid}
}

// uniformValuesSQL inserts n jobs of one shape: the shared values first
// (state, queue, kind, priority, max_attempts, tags, inserted_at,
// scheduled_at), then each job's args, in order. A unique job's key is its
// kind and args, as prepareInsert makes it. Every parameter is a plain "?"
// (the driver looks each numbered one up by name in a list as long as the
// statement's: quadratic at a thousand).
func uniformValuesSQL(n int, unique, returning bool) string {
	key := "NULL"
	if unique {
		key = "s.kind || ':' || v.column1"
	}
	var b strings.Builder
	b.WriteString(`WITH s (state, queue, kind, priority, max_attempts, tags, inserted_at, scheduled_at) AS (SELECT ?, ?, ?, ?, ?, ?, ?, ?)
	INSERT INTO jobs (` + insertColumns + `)
	SELECT s.state, s.queue, s.kind, v.column1, s.priority, s.max_attempts, s.tags, ` + key + `, NULL, s.inserted_at, s.scheduled_at
	FROM s, (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?)")
	}
	b.WriteString(`) AS v WHERE true ON CONFLICT DO NOTHING`)
	if returning {
		b.WriteString(" RETURNING id")
	}
	return b.String()
}

// bulkInserter inserts prepared rows in chunks, in the order given.
type bulkInserter struct {
	e   *Engine
	ctx context.Context
	tx  *sqlx.Tx
	now time.Time
	// queues are the queues jobs went to, for the notifications.
	queues map[string]bool
	// full and fullUniform[unique] are the statements of a full chunk,
	// prepared at their first use.
	full        *sqlx.Stmt
	fullUniform [2]*sqlx.Stmt
	// args and rows are the general statement's pending jobs; run the
	// pending jobs of one shape, inserted before or after them in order.
	args []any
	rows int
	run  []insertRow
	// returning asks for the new ids (to report them); count is how many
	// jobs were inserted either way.
	returning bool
	ids       []int64
	count     int
}

// exec runs one insert statement (stmt, or query when stmt is nil) and
// counts (and, with returning, keeps) what it inserted.
func (b *bulkInserter) exec(stmt *sqlx.Stmt, query string, args []any) error {
	if b.returning {
		var ids []int64
		var err error
		if stmt != nil {
			err = stmt.SelectContext(b.ctx, &ids, args...)
		} else {
			err = b.tx.SelectContext(b.ctx, &ids, query, args...)
		}
		b.ids = append(b.ids, ids...)
		b.count += len(ids)
		return err
	}
	var res sql.Result
	var err error
	if stmt != nil {
		res, err = stmt.ExecContext(b.ctx, args...)
	} else {
		res, err = b.tx.ExecContext(b.ctx, query, args...)
	}
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	b.count += int(n)
	return err
}

// add queues r; a row with a lookup uniqueness (unique_by) is inserted on
// its own, after the rows queued before it, so it sees them.
func (b *bulkInserter) add(r insertRow) error {
	if r.uniqueBy.Valid {
		if err := b.flush(); err != nil {
			return err
		}
		res, err := b.e.insertOne(b.ctx, b.tx, r, b.now, nil)
		if err != nil {
			return err
		}
		if !res.Duplicate {
			b.ids = append(b.ids, res.ID)
			b.count++
		}
		return nil
	}
	if len(b.run) > 0 && shapeOf(b.run[0]) != shapeOf(r) {
		if err := b.endRun(); err != nil {
			return err
		}
	}
	b.queues[r.queue] = true
	b.run = append(b.run, r)
	if len(b.run) == uniformChunk {
		return b.endRun()
	}
	return nil
}

// endRun inserts the pending run: as a uniform statement when long enough
// (after the general statement's pending jobs, which came before it), else
// by adding its jobs to the general statement.
func (b *bulkInserter) endRun() error {
	run := b.run
	b.run = b.run[:0]
	if len(run) >= uniformMin {
		if err := b.flushGeneral(); err != nil {
			return err
		}
		return b.insertUniform(run)
	}
	for _, r := range run {
		b.args = append(b.args, r.state, r.queue, r.kind, r.args, r.priority, r.maxAttempts,
			r.tags, r.uniqueKey, r.uniqueBy, b.now.UnixMilli(), r.scheduledAt)
		b.rows++
		if b.rows == insertChunk {
			if err := b.flushGeneral(); err != nil {
				return err
			}
		}
	}
	return nil
}

// insertUniform inserts run, jobs of one shape, in one statement.
func (b *bulkInserter) insertUniform(run []insertRow) error {
	first := run[0]
	unique := first.uniqueKey.Valid
	args := make([]any, 0, 8+len(run))
	args = append(args, first.state, first.queue, first.kind, first.priority, first.maxAttempts, first.tags,
		b.now.UnixMilli(), first.scheduledAt)
	for _, r := range run {
		args = append(args, r.args)
	}
	var err error
	if len(run) == uniformChunk {
		u := 0
		if unique {
			u = 1
		}
		if b.fullUniform[u] == nil {
			if b.fullUniform[u], err = b.tx.PreparexContext(b.ctx, b.e.d.uniformValues(uniformChunk, unique, b.returning)); err != nil {
				return fmt.Errorf("insert many: %w", err)
			}
		}
		err = b.exec(b.fullUniform[u], "", args)
	} else {
		err = b.exec(nil, b.e.d.uniformValues(len(run), unique, b.returning), args)
	}
	if err != nil {
		return fmt.Errorf("insert %d jobs: %w", len(run), err)
	}
	return nil
}

// flush inserts every pending job.
func (b *bulkInserter) flush() error {
	if err := b.endRun(); err != nil {
		return err
	}
	return b.flushGeneral()
}

// flushGeneral inserts the general statement's pending jobs.
func (b *bulkInserter) flushGeneral() error {
	if b.rows == 0 {
		return nil
	}
	var err error
	if b.rows == insertChunk {
		if b.full == nil {
			if b.full, err = b.tx.PreparexContext(b.ctx, b.e.d.insertValues(insertChunk, b.returning)); err != nil {
				return fmt.Errorf("insert many: %w", err)
			}
		}
		err = b.exec(b.full, "", b.args)
	} else {
		err = b.exec(nil, b.e.d.insertValues(b.rows, b.returning), b.args)
	}
	if err != nil {
		return fmt.Errorf("insert %d jobs: %w", b.rows, err)
	}
	b.args, b.rows = b.args[:0], 0
	return nil
}

// notify tells the listening engines (PostgreSQL) that queue has new jobs,
// at tx's commit; nothing on SQLite, where only this process inserts.
func (e *Engine) notify(ctx context.Context, tx *sqlx.Tx, queue string) error {
	if e.d.notify == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, e.d.notify, queue); err != nil {
		return fmt.Errorf("notify queue %s: %w", queue, err)
	}
	return nil
}

func (b *bulkInserter) close() {
	for _, s := range []*sqlx.Stmt{b.full, b.fullUniform[0], b.fullUniform[1]} {
		if s != nil {
			s.Close()
		}
	}
}

// InsertManyTx adds many jobs inside the caller's transaction and returns
// how many were inserted; unique duplicates are skipped, each job seeing
// the ones before it as if inserted one by one. Call Wake after the commit.
func (e *Engine) InsertManyTx(ctx context.Context, tx *sqlx.Tx, params []InsertParams) (int, error) {
	now := e.now()
	b := &bulkInserter{e: e, ctx: ctx, tx: tx, now: now, queues: map[string]bool{},
		args: make([]any, 0, 11*min(len(params), insertChunk)), returning: e.cfg.OnChange != nil}
	defer b.close()
	for _, p := range params {
		r, err := prepareInsert(p, now)
		if err != nil {
			return 0, err
		}
		if err := b.add(r); err != nil {
			return 0, err
		}
	}
	if err := b.flush(); err != nil {
		return 0, err
	}
	if b.count > 0 {
		for q := range b.queues {
			if err := e.notify(ctx, tx, q); err != nil {
				return 0, err
			}
		}
	}
	e.addPending(b.ids...)
	return b.count, nil
}
