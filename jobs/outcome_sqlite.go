package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"

	"github.com/jmoiron/sqlx"
)

// On SQLite the outcomes that are not plain completions (failures, snoozes,
// cancels, discards) are written by one statement whose rows are bound as
// parameters, six a job, in a VALUES list. It used to take them as one JSON
// array read with json_each, and each reference to a field re-read the
// row's JSON text: 13 µs a failed attempt against 8 µs now, measured on
// 50-job batches. The statement's text depends on its number of rows, so
// a batch is padded with rows of NULLs (which match no job) up to the next
// power of two, and the nine sizes up to maxBatch are prepared as they are
// first needed.
//
// The node is ?1, before the rows. Written last (a parameter numbered past
// 31), it made SQLite prepare the statement again at every run: SQLite
// marks a parameter whose value the planner looked at, and one mark past 31
// stands for every parameter past 31, so rebinding any row expired the plan
// (measured: 0.2 s of W2's 1.1 s went to sqlite3Reprepare).
//
// An attempt's error is appended to the errors array by text: a JSON array
// of objects ends in "}]", so the new object goes before the "]". Anything
// else (an array written some other way) takes json_insert, and the CHECK
// (json_valid(errors)) holds either way.

// outcomeCols is the number of parameters of one job's row.
const outcomeCols = 6

// outcomeValuesSQL is the SQLite outcome statement of n rows. ?1 is the
// node (only rows still executing under it are written), the rows' values
// follow as anonymous parameters: the driver looks up every parameter's
// name as it binds, and SQLite finds a numbered one (?7) in a list of all
// of them, so numbering each cost 0.2 s of W2's 1.1 s at 256 rows.
func outcomeValuesSQL(n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", outcomeCols), ",") + ")"
	return `WITH me(node) AS (SELECT ?1),
	v(id, state, at, sched, snooze, err) AS (VALUES ` + strings.TrimSuffix(strings.Repeat(row+",", n), ",") + `)
	UPDATE jobs SET
		state        = v.state,
		attempt      = attempt - v.snooze,
		scheduled_at = coalesce(v.sched, scheduled_at),
		completed_at = iif(v.state = 'completed', v.at, completed_at),
		cancelled_at = iif(v.state = 'cancelled', v.at, cancelled_at),
		discarded_at = iif(v.state = 'discarded', v.at, discarded_at),
		errors       = CASE
			WHEN v.err IS NULL THEN errors
			WHEN errors = '[]' THEN '[' || v.err || ']'
			WHEN errors GLOB '[[]{*}]' THEN substr(errors, 1, length(errors) - 1) || ',' || v.err || ']'
			ELSE json_insert(errors, '$[#]', json(v.err)) END
	FROM v, me
	WHERE jobs.id = v.id AND +jobs.state = 'executing' AND jobs.attempted_by = me.node
	RETURNING jobs.id`
}

// outcomeSize is the number of rows of the statement that takes n outcomes:
// the next power of two.
func outcomeSize(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// outcomeValuesArgs binds node, then rows, padded with rows of NULLs, for
// outcomeValuesSQL(size).
func outcomeValuesArgs(rows []outcomeRow, size int, node string) ([]any, error) {
	args := make([]any, 1, size*outcomeCols+1)
	args[0] = node
	for _, r := range rows {
		var sched, errJSON any
		if r.Sched != nil {
			sched = *r.Sched
		}
		if r.Err != nil {
			b, err := marshalAttemptError(r.Err)
			if err != nil {
				return nil, err
			}
			errJSON = b
		}
		args = append(args, r.ID, string(r.State), r.At, sched, r.Snooze, errJSON)
	}
	for range (size - len(rows)) * outcomeCols {
		args = append(args, nil)
	}
	return args, nil
}

// marshalAttemptError encodes e as the JSON object stored in errors.
func marshalAttemptError(e *AttemptError) (string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encode an attempt's error: %w", err)
	}
	return string(b), nil
}

// outcomeStmt returns the prepared statement that writes rows and its
// arguments: on SQLite the statement of rows' size (prepared on the writer
// at its first use, so it must be called outside a transaction), else the
// dialect's one outcome statement.
func (e *Engine) outcomeStmt(ctx context.Context, rows []outcomeRow) (*sqlx.Stmt, []any, error) {
	if !e.d.outcomeBySize {
		args, err := e.d.outcomeArgs(rows, e.cfg.Node)
		return e.stmts.outcome, args, err
	}
	size := outcomeSize(len(rows))
	args, err := outcomeValuesArgs(rows, size, e.cfg.Node)
	if err != nil {
		return nil, nil, err
	}
	e.stmts.outcomeMu.Lock()
	defer e.stmts.outcomeMu.Unlock()
	stmt := e.stmts.outcomeBySize[size]
	if stmt == nil {
		if stmt, err = e.db.PreparexContext(ctx, outcomeValuesSQL(size)); err != nil {
			return nil, nil, fmt.Errorf("prepare the outcome of %d jobs: %w", size, err)
		}
		if e.stmts.outcomeBySize == nil {
			e.stmts.outcomeBySize = map[int]*sqlx.Stmt{}
		}
		e.stmts.outcomeBySize[size] = stmt
	}
	return stmt, args, nil
}
