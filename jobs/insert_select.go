package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// InsertSelect is a bulk insert of one job per row that an SQL query
// selects, done by the database in one statement: a million jobs take
// seconds, where one Insert per row takes minutes. Every job is exactly the
// row Insert would write for Args(id) with Opts: the same args JSON, unique
// key, queue, priority, attempts, tags and state.
type InsertSelect struct {
	// Args returns the args of the job for one selected id. It is called
	// once, with a marker id, to learn how args of this type encode; its
	// JSON must hold the id once, as a number.
	Args func(id int64) Args
	// Opts are the insert options, merged with the Args' own as for Insert.
	// Of uniqueness only the default (unique while in flight) is allowed:
	// it is what the database checks for every row at once.
	Opts InsertOpts
	// Select is an SQL query of one integer column: the ids to insert a job
	// for, in the order the jobs are to be inserted. It may use ? for its
	// parameters, SelectArgs (on PostgreSQL rebound to $1…).
	Select     string
	SelectArgs []any
}

// argsMarker is the id Args is built with to find where the id stands in
// its JSON: a number no real id is likely to share the digits of.
const argsMarker int64 = 7_130_924_185_276_043_981

// InsertSelect inserts the jobs in its own transaction, wakes their queue
// and reports them to the subscribers, and returns how many it inserted:
// rows whose unique job is already in flight are skipped.
func (e *Engine) InsertSelect(ctx context.Context, p InsertSelect) (int, error) {
	var ids []int64
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		ids, err = e.InsertSelectTx(ctx, tx, p)
		return err
	})
	if err != nil {
		return 0, err
	}
	e.Wake()
	return len(ids), nil
}

// InsertSelectTx inserts the jobs inside the caller's transaction and
// returns the new jobs' ids. Call Wake after the commit to start them (and
// report them to the subscribers).
func (e *Engine) InsertSelectTx(ctx context.Context, tx *sqlx.Tx, p InsertSelect) ([]int64, error) {
	if p.Args == nil {
		return nil, errors.New("insert select: nil Args")
	}
	now := e.now()
	r, err := prepareInsert(InsertParams{Args: p.Args(argsMarker), Opts: p.Opts}, now)
	if err != nil {
		return nil, err
	}
	if r.uniqueBy.Valid {
		return nil, fmt.Errorf("insert select %s: only the default uniqueness (in flight, any time) is supported", r.kind)
	}
	argsBefore, argsAfter, err := splitAtMarker(r.args)
	if err != nil {
		return nil, fmt.Errorf("insert select %s: %w", r.kind, err)
	}
	// The unique key is kind:args (see prepareInsert), so it splits around
	// the id at the same place; NULL without uniqueness.
	var keyBefore *string
	if r.uniqueKey.Valid {
		k := r.kind + ":" + argsBefore
		keyBefore = &k
	}
	query := e.d.insertSelect(p.Select, len(p.SelectArgs))
	args := append(append([]any{}, p.SelectArgs...), r.state, r.queue, r.kind, argsBefore, argsAfter,
		r.priority, r.maxAttempts, r.tags, keyBefore, now.UnixMilli(), r.scheduledAt)
	var ids []int64
	if err := tx.SelectContext(ctx, &ids, query, args...); err != nil {
		return nil, fmt.Errorf("insert select %s: %w", r.kind, err)
	}
	if len(ids) > 0 {
		if err := e.notify(ctx, tx, r.queue); err != nil {
			return nil, err
		}
	}
	e.addPending(ids...)
	return ids, nil
}

// sqliteInsertSelect is InsertSelect's statement on SQLite. The caller's ?
// come first in the text, so they take numbers 1…n and the engine's own
// follow. A row whose unique job is in flight is left out by the NOT
// EXISTS, which reads the same partial unique index the ON CONFLICT would:
// with AUTOINCREMENT a row skipped by ON CONFLICT still uses up an id, so
// the ids would not follow each other. ON CONFLICT DO NOTHING stays as the
// guard. (PostgreSQL's identity sequence is used up by skipped rows too;
// its twin is pgInsertSelect.)
func sqliteInsertSelect(selectSQL string, n int) string {
	q := func(i int) string { return "?" + strconv.Itoa(n+i) }
	return `WITH selected(id) AS (` + selectSQL + `)
	INSERT INTO jobs (state, queue, kind, args, priority, max_attempts, tags, unique_key, inserted_at, scheduled_at)
	SELECT ` + q(1) + `, ` + q(2) + `, ` + q(3) + `, ` + q(4) + ` || id || ` + q(5) + `, ` + q(6) + `, ` + q(7) + `, ` + q(8) + `,
	       ` + q(9) + ` || id || ` + q(5) + `, ` + q(10) + `, ` + q(11) + `
	FROM selected WHERE ` + q(9) + ` IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS j
		WHERE j.unique_key = ` + q(9) + ` || selected.id || ` + q(5) + `
		  AND j.unique_key IS NOT NULL AND j.state IN ('scheduled', 'available', 'executing', 'retryable'))
	ON CONFLICT DO NOTHING RETURNING id`
}

// splitAtMarker splits args JSON around the one place the marker id
// stands, as a number: SQLite writes an integer's text as encoding/json
// writes an int64, so prefix || id || suffix is the JSON of any id.
func splitAtMarker(args string) (before, after string, err error) {
	m := strconv.FormatInt(argsMarker, 10)
	i := strings.Index(args, m)
	if i < 0 || strings.Count(args, m) != 1 {
		return "", "", errors.New("the args must hold the id once, as a number")
	}
	before, after = args[:i], args[i+len(m):]
	// A quoted id (",string") would make the key differ from Insert's
	// for no gain: refuse it rather than guess.
	if strings.HasSuffix(before, `"`) {
		return "", "", errors.New("the args must hold the id as a number, not a string")
	}
	return before, after, nil
}
