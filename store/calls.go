package store

// calls.go records many phone calls' outcomes in one statement: the
// campaign worker's shared write (jobs.TxBatch), one statement for every
// call of an outcome transaction instead of one a call.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Call is one phone call's outcome, as RecordCallsTx stores it.
type Call struct {
	ID      int64
	Status  Status
	Attempt int
	At      time.Time
}

// recordCallsSQL updates every call's row from the calls given as one
// value (SQLite: a JSON array of [id, status, attempt, at]; PostgreSQL:
// four arrays) and returns the rows.
var recordCallsSQL = map[bool]string{
	false: `UPDATE extraterrestrials SET communication_status = c.c_status,
			communication_attempt = c.c_attempt, last_communication_attempt_at = c.c_at
		FROM (SELECT value ->> 0 AS c_id, value ->> 1 AS c_status, value ->> 2 AS c_attempt, value ->> 3 AS c_at
		      FROM json_each(?)) AS c
		WHERE extraterrestrials.id = c.c_id
		RETURNING ` + etColumns,
	true: `UPDATE extraterrestrials SET communication_status = c.c_status,
			communication_attempt = c.c_attempt, last_communication_attempt_at = c.c_at
		FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[]) AS c(c_id, c_status, c_attempt, c_at)
		WHERE extraterrestrials.id = c.c_id
		RETURNING ` + etColumns,
}

// RecordCallsTx stores the outcomes of calls inside tx in one statement
// (RecordCallTx for many) and returns the updated rows in the order of
// calls. Every call's row must exist, and an extraterrestrial may appear
// once only: otherwise nothing is written and the error says which.
func RecordCallsTx(ctx context.Context, tx *sqlx.Tx, calls []Call) ([]Extraterrestrial, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	seen := make(map[int64]bool, len(calls))
	for _, c := range calls {
		if seen[c.ID] {
			return nil, fmt.Errorf("record calls: extraterrestrial %d twice in one batch", c.ID)
		}
		seen[c.ID] = true
	}
	postgres := sqlx.BindType(tx.DriverName()) == sqlx.DOLLAR
	var args []any
	if postgres {
		ids, statuses, attempts, ats := make([]int64, len(calls)), make([]string, len(calls)), make([]int64, len(calls)), make([]int64, len(calls))
		for i, c := range calls {
			ids[i], statuses[i], attempts[i], ats[i] = c.ID, string(c.Status), int64(c.Attempt), UnixMillis(c.At)
		}
		args = []any{ids, statuses, attempts, ats}
	} else {
		rows := make([][4]any, len(calls))
		for i, c := range calls {
			rows[i] = [4]any{c.ID, string(c.Status), c.Attempt, UnixMillis(c.At)}
		}
		b, err := json.Marshal(rows)
		if err != nil {
			return nil, err
		}
		args = []any{string(b)}
	}
	var updated []etRow
	if err := tx.SelectContext(ctx, &updated, recordCallsSQL[postgres], args...); err != nil {
		return nil, fmt.Errorf("record %d calls: %w", len(calls), err)
	}
	byID := make(map[int64]Extraterrestrial, len(updated))
	for _, r := range updated {
		byID[r.ID] = r.extraterrestrial()
	}
	out := make([]Extraterrestrial, len(calls))
	for i, c := range calls {
		et, ok := byID[c.ID]
		if !ok {
			return nil, fmt.Errorf("record calls: extraterrestrial %d: %w", c.ID, ErrNotFound)
		}
		out[i] = et
	}
	return out, nil
}
