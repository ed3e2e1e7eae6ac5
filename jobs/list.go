package jobs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// DefaultListLimit is the page size of List when ListParams.Limit is zero.
const DefaultListLimit = 50

// MaxListLimit is the largest page List returns.
const MaxListLimit = 1000

// ErrListParams is wrapped by List's errors for a malformed cursor, an
// unknown state or a limit out of range: the caller's input, not the
// database, is wrong.
var ErrListParams = errors.New("invalid job list parameters")

// ListParams selects one page of the job list. Every filter is optional.
type ListParams struct {
	// States keeps jobs in any of these states; empty keeps every state.
	States []State
	// Queue keeps the jobs of this queue.
	Queue string
	// Kind keeps the jobs of this kind.
	Kind string
	// Cursor continues a listing from an earlier ListPage.NextCursor; ""
	// starts at the newest job. It is opaque: only List makes them.
	Cursor string
	// Limit is the page size, 1…MaxListLimit; zero means DefaultListLimit.
	Limit int
}

// ListPage is one page of jobs, newest (highest id) first.
type ListPage struct {
	Jobs []*Job
	// NextCursor continues the listing after the last job of this page;
	// "" when this is the last page.
	NextCursor string
}

// listCursorPrefix versions the cursor's encoding.
const listCursorPrefix = "before:"

func listCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(listCursorPrefix + strconv.FormatInt(id, 10)))
}

// ParseListCursor decodes a ListPage.NextCursor into the id the next page
// starts below; "" is 0, the start. A cursor List did not make is an error
// wrapping ErrListParams.
func ParseListCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, fmt.Errorf("%w: malformed cursor", ErrListParams)
	}
	idText, ok := strings.CutPrefix(string(raw), listCursorPrefix)
	id, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: malformed cursor", ErrListParams)
	}
	return id, nil
}

// List returns one page of jobs matching p, newest first, and the cursor of
// the next page. Pages are keyed by id, so jobs inserted meanwhile never
// shift a later page, and every page costs about the same however many jobs
// the table holds: each state is read as one backward range of the index
// (state, id), and the states are merged; a queue or kind filter alone is
// one backward range of (queue, id) or (kind, id). Values are bound, never spliced into the SQL.
func List(ctx context.Context, db sqlx.QueryerContext, p ListParams) (ListPage, error) {
	query, args, limit, err := listQuery(dialectOf(db), p)
	if err != nil {
		return ListPage{}, err
	}
	var rows []jobRow
	if err := sqlx.SelectContext(ctx, db, &rows, query, args...); err != nil {
		return ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	page := ListPage{Jobs: make([]*Job, 0, min(len(rows), limit))}
	for i := range rows {
		if i == limit {
			page.NextCursor = listCursor(rows[i-1].ID)
			break
		}
		j := rows[i].job()
		page.Jobs = append(page.Jobs, j)
	}
	return page, nil
}

// listQuery builds List's statement; limit is the page size.
func listQuery(d *dialect, p ListParams) (query string, args []any, limit int, err error) {
	limit = p.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	if limit < 1 || limit > MaxListLimit {
		return "", nil, 0, fmt.Errorf("%w: limit %d is outside 1…%d", ErrListParams, limit, MaxListLimit)
	}
	before, err := ParseListCursor(p.Cursor)
	if err != nil {
		return "", nil, 0, err
	}
	states, err := listStates(p.States)
	if err != nil {
		return "", nil, 0, err
	}
	// A filter on queue or kind alone is one backward range of (queue, id)
	// or (kind, id) (migration 0011); states are each one backward range
	// of (state, id), merged.
	f := scanFilter{queue: p.Queue, kind: p.Kind, pg: d.postgres}
	// One more than the page tells whether there is a next page.
	fetch := limit + 1
	part := func(state *State) (string, []any) {
		q, a := f.backwardRange(jobColumns, before, state)
		return q + " ORDER BY id DESC LIMIT ?", append(a, fetch)
	}

	switch len(states) {
	case 0:
		query, args = part(nil)
	case 1:
		query, args = part(&states[0])
	default:
		parts := make([]string, len(states))
		for i := range states {
			q, a := part(&states[i])
			parts[i] = "SELECT * FROM (" + q + ")"
			if d.postgres {
				// PostgreSQL 15 wants a name for each; on SQLite one
				// changes the plan (each part sorted apart).
				parts[i] += " AS s" + strconv.Itoa(i)
			}
			args = append(args, a...)
		}
		query = strings.Join(parts, " UNION ALL ") + " ORDER BY id DESC LIMIT ?"
		args = append(args, fetch)
	}
	return d.rebind(query), args, limit, nil
}

// listStates checks and de-duplicates the states of a filter, in the
// order of States.
func listStates(in []State) ([]State, error) {
	var out []State
	for _, s := range in {
		if !slices.Contains(States, s) {
			return nil, fmt.Errorf("%w: unknown state %q", ErrListParams, s)
		}
	}
	for _, s := range States {
		if slices.Contains(in, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// GetMany returns the jobs with the given ids that exist, in ascending id
// order; ids of deleted jobs are simply absent. It is one query however many
// ids are asked for (they are bound as one JSON array; on PostgreSQL as one
// array).
func GetMany(ctx context.Context, db sqlx.QueryerContext, ids []int64) ([]*Job, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	d := dialectOf(db)
	var rows []jobRow
	err := sqlx.SelectContext(ctx, db, &rows, d.getManySQL, d.ids(ids))
	if err != nil {
		return nil, fmt.Errorf("get jobs: %w", err)
	}
	out := make([]*Job, 0, len(rows))
	for i := range rows {
		j := rows[i].job()
		out = append(out, j)
	}
	return out, nil
}

// queueKindConds are the conditions of a queue and a kind filter ("" for
// none), with their arguments. PostgreSQL text cannot hold NUL (binding
// one fails), so there a filter holding one is "false": it matches
// nothing, as it matches nothing on SQLite.
func queueKindConds(pg bool, queue, kind string) (conds []string, args []any) {
	if pg && (strings.ContainsRune(queue, 0) || strings.ContainsRune(kind, 0)) {
		return []string{"false"}, nil
	}
	if queue != "" {
		conds = append(conds, "queue = ?")
		args = append(args, queue)
	}
	if kind != "" {
		conds = append(conds, "kind = ?")
		args = append(args, kind)
	}
	return conds, args
}
