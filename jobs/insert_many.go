package jobs

import (
	"context"
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
// jobs inserted.
func insertValuesSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO jobs (" + insertColumns + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT DO NOTHING RETURNING id")
	return b.String()
}

// bulkInserter inserts prepared rows in chunks, in the order given.
type bulkInserter struct {
	ctx  context.Context
	tx   *sqlx.Tx
	now  time.Time
	full *sqlx.Stmt // insertValuesSQL(insertChunk), prepared at the first full chunk
	args []any
	rows int
	ids  []int64
}

// add queues r; a row with a lookup uniqueness (unique_by) is inserted on
// its own, after the rows queued before it, so it sees them.
func (b *bulkInserter) add(r insertRow) error {
	if r.uniqueBy.Valid {
		if err := b.flush(); err != nil {
			return err
		}
		res, err := insertOne(b.ctx, b.tx, r, b.now, nil)
		if err != nil {
			return err
		}
		if !res.Duplicate {
			b.ids = append(b.ids, res.ID)
		}
		return nil
	}
	b.args = append(b.args, r.state, r.queue, r.kind, r.args, r.priority, r.maxAttempts,
		r.tags, r.uniqueKey, r.uniqueBy, b.now.UnixMilli(), r.scheduledAt)
	b.rows++
	if b.rows == insertChunk {
		return b.flush()
	}
	return nil
}

// flush inserts the queued rows.
func (b *bulkInserter) flush() error {
	if b.rows == 0 {
		return nil
	}
	var ids []int64
	var err error
	if b.rows == insertChunk {
		if b.full == nil {
			if b.full, err = b.tx.PreparexContext(b.ctx, insertValuesSQL(insertChunk)); err != nil {
				return fmt.Errorf("insert many: %w", err)
			}
		}
		err = b.full.SelectContext(b.ctx, &ids, b.args...)
	} else {
		err = b.tx.SelectContext(b.ctx, &ids, insertValuesSQL(b.rows), b.args...)
	}
	if err != nil {
		return fmt.Errorf("insert %d jobs: %w", b.rows, err)
	}
	b.ids = append(b.ids, ids...)
	b.args, b.rows = b.args[:0], 0
	return nil
}

func (b *bulkInserter) close() {
	if b.full != nil {
		b.full.Close()
	}
}

// InsertManyTx adds many jobs inside the caller's transaction and returns
// how many were inserted; unique duplicates are skipped, each job seeing
// the ones before it as if inserted one by one. Call Wake after the commit.
func (e *Engine) InsertManyTx(ctx context.Context, tx *sqlx.Tx, params []InsertParams) (int, error) {
	now := e.now()
	b := &bulkInserter{ctx: ctx, tx: tx, now: now, args: make([]any, 0, 11*min(len(params), insertChunk))}
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
	e.addPending(b.ids...)
	return len(b.ids), nil
}
