package jobs

// Acting on everything a filter matches ("Retry all 312 discarded in
// phone_calls"), not only the jobs on screen: the matching ids are read in
// batches from the read pool, newest first, and each batch goes through the
// same transaction as the selection's action (CancelJobs, RetryJobs,
// DeleteJobs), so a batch is exactly as safe as acting on a selection of
// that size. A batch is at most 1,000 jobs, and fewer when a batch held the
// writer longer than filterTargetHold (the next batch is sized to take about
// that long: deletes, which touch every index, get smaller batches than
// retries). Between batches the action waits as long as the batch held the
// writer (at most filterPauseMax): the workers' claims and outcomes, queued
// behind the batch, get the writer back at once and keep at least half of
// its time however many jobs the filter matches.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
)

// Filter selects jobs for an action: the list's state, queue and kind
// filters and a search query's terms. A filter that sets none of them
// matches every job in every state; an action on it is refused with
// ErrEmptyFilter unless All asks for exactly that.
type Filter struct {
	States []State
	Queue  string
	Kind   string
	Terms  []SearchTerm
	// All must be set to act on (or count) every job with an empty
	// filter; with any other field set it changes nothing.
	All bool
}

// ErrEmptyFilter is returned by CountFilter and ActOnFilter for a filter
// that sets nothing and not All: it would match every job, in every state.
// It wraps ErrListParams.
var ErrEmptyFilter = fmt.Errorf("%w: the filter sets no state, queue, kind or search terms: set All to act on every job", ErrListParams)

// Empty reports whether f sets no state, queue, kind or search term (and
// so, with All, matches every job).
func (f Filter) Empty() bool {
	return len(f.States) == 0 && f.Queue == "" && f.Kind == "" && len(f.Terms) == 0
}

// FilterAction is an action on every job a filter matches.
type FilterAction string

// The actions on a filter: those of the selection.
const (
	FilterCancel FilterAction = "cancel"
	FilterRetry  FilterAction = "retry"
	FilterDelete FilterAction = "delete"
)

// actionStates are the states each action accepts (as the SQL lists of
// actions.go: cancellable, retriable, deletable).
var actionStates = map[FilterAction][]State{
	FilterCancel: {StateScheduled, StateAvailable, StateExecuting, StateRetryable},
	FilterRetry:  {StateScheduled, StateRetryable, StateCompleted, StateDiscarded, StateCancelled},
	FilterDelete: {StateScheduled, StateAvailable, StateRetryable, StateCompleted, StateDiscarded, StateCancelled},
}

// DefaultFilterBatch is how many jobs one transaction of an action on a
// filter changes.
const DefaultFilterBatch = 1000

// filterPauseMax bounds the pause between batches.
const filterPauseMax = 50 * time.Millisecond

// filterTargetHold is how long a batch should hold the writer; the batch
// size follows it, between filterMinBatch and the Batch option.
const (
	filterTargetHold = 20 * time.Millisecond
	filterMinBatch   = 50
)

// FilterProgress is how far an action on a filter has got.
type FilterProgress struct {
	// Matched is how many jobs it has picked so far (matching the filter
	// and in a state the action accepts when picked).
	Matched int
	// Changed is how many of them it changed; the others had changed
	// state meanwhile (a job finished, another operator acted).
	Changed int
	// Batches is how many transactions it has committed.
	Batches int
	// MaxHold is the longest a batch's transaction took (the writer held).
	MaxHold time.Duration
	// TotalHold is the time of all batches' transactions together.
	TotalHold time.Duration
	// Done: the last batch is committed.
	Done bool
}

// FilterOptions tune ActOnFilter.
type FilterOptions struct {
	// Batch is the most jobs one transaction changes (DefaultFilterBatch);
	// fewer when a batch held the writer beyond filterTargetHold.
	Batch int
	// Progress, when set, hears after every batch.
	Progress func(FilterProgress)
}

// effectiveStates are the states an action on f touches: f's states that
// the action accepts, or all it accepts.
func (f Filter) effectiveStates(a FilterAction) ([]State, error) {
	ok, known := actionStates[a]
	if !known {
		return nil, fmt.Errorf("%w: action %q is not one of cancel, retry, delete", ErrListParams, a)
	}
	if f.Empty() && !f.All {
		return nil, ErrEmptyFilter
	}
	states, err := listStates(f.States)
	if err != nil {
		return nil, err
	}
	if len(states) == 0 {
		return ok, nil
	}
	var out []State
	for _, s := range states {
		if slices.Contains(ok, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// CountFilter counts the jobs an action on f would act on now (the number
// a confirmation states). Without terms or a kind it reads the per-queue
// counts the engine keeps (job_counts: no scan at any size); otherwise it
// counts the rows, through the state, queue or kind index.
func (e *Engine) CountFilter(ctx context.Context, a FilterAction, f Filter) (int, error) {
	states, err := f.effectiveStates(a)
	if err != nil || len(states) == 0 {
		return 0, err
	}
	if len(f.Terms) == 0 && f.Kind == "" {
		counts, err := e.Queues(ctx)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, q := range counts {
			if f.Queue != "" && q.Name != f.Queue {
				continue
			}
			for _, s := range states {
				n += q.Counts[s]
			}
		}
		return n, nil
	}
	pg := isPostgres(e.reader)
	cond, condArgs := searchConds(pg, f.Terms)
	n := 0
	for _, s := range states {
		// One count per state, each one range of an index.
		sf := scanFilter{states: []State{s}, queue: f.Queue, kind: f.Kind, pg: pg}
		inner, args := sf.scanAll(jobColumns)
		var c int
		q := "SELECT count(*) FROM (" + inner + ") AS s WHERE " + cond
		if err := sqlx.GetContext(ctx, e.reader, &c, rebind(pg, q), append(args, condArgs...)...); err != nil {
			return 0, fmt.Errorf("count jobs: %w", err)
		}
		n += c
	}
	return n, nil
}

// scanAll is scan without a bound: every row that passes the filter.
func (f scanFilter) scanAll(cols string) (string, []any) { return f.scan(cols, 0, -1) }

// ActOnFilter runs action a on every job f matches, in batches of
// opts.Batch jobs, each its own transaction (see the top of this file), and
// returns the final progress. Jobs inserted after it started (ids above
// the newest at the start) are left alone; a job that left the action's
// states meanwhile is skipped. Cancelling ctx stops it between batches,
// with the batches so far committed.
func (e *Engine) ActOnFilter(ctx context.Context, a FilterAction, f Filter, opts FilterOptions) (FilterProgress, error) {
	states, err := f.effectiveStates(a)
	if err != nil {
		return FilterProgress{}, err
	}
	maxBatch := opts.Batch
	if maxBatch <= 0 {
		maxBatch = DefaultFilterBatch
	}
	// The first batch is a quarter of the most: the next ones follow
	// how long it held the writer.
	batch := min(max(maxBatch/4, filterMinBatch), maxBatch)
	do := map[FilterAction]func(context.Context, []int64) (int, error){
		FilterCancel: e.CancelJobs, FilterRetry: e.RetryJobs, FilterDelete: e.DeleteJobs,
	}[a]
	var prog FilterProgress
	report := func() {
		if opts.Progress != nil {
			opts.Progress(prog)
		}
	}
	if len(states) == 0 {
		prog.Done = true
		report()
		return prog, nil
	}
	pg := isPostgres(e.reader)
	cond, condArgs := searchConds(pg, f.Terms)
	sf := scanFilter{states: states, queue: f.Queue, kind: f.Kind, pg: pg}
	// Below the newest id now: jobs inserted meanwhile are not the ones
	// the confirmation counted.
	var top int64
	if err := sqlx.GetContext(ctx, e.reader, &top, "SELECT coalesce(max(id), 0) + 1 FROM jobs"); err != nil {
		return prog, fmt.Errorf("act on filter: %w", err)
	}
	before := top
	for {
		ids, reached, end, err := e.filterBatch(ctx, sf, cond, condArgs, before, batch)
		if err != nil {
			return prog, err
		}
		if len(ids) > 0 {
			t0 := time.Now()
			n, err := do(ctx, ids)
			hold := time.Since(t0)
			if err != nil {
				return prog, err
			}
			prog.Matched += len(ids)
			prog.Changed += n
			prog.Batches++
			prog.TotalHold += hold
			prog.MaxHold = max(prog.MaxHold, hold)
			if len(ids) == batch && hold > 0 {
				// Size the next batch to hold the writer about filterTargetHold.
				next := int(float64(batch) * float64(filterTargetHold) / float64(hold))
				batch = min(max(next, filterMinBatch), batch*2, maxBatch)
			}
			if !end {
				report()
			}
			// Give the writer back for as long as it was held.
			select {
			case <-ctx.Done():
				return prog, ctx.Err()
			case <-time.After(min(hold, filterPauseMax)):
			}
		}
		if end {
			break
		}
		before = reached
	}
	prog.Done = true
	report()
	return prog, nil
}

// filterBatch reads up to n matching ids below before, newest first, from
// the read pool, scanning chunks of the filter's index ranges; reached is
// the id to continue below, end whether the ranges are exhausted.
func (e *Engine) filterBatch(ctx context.Context, sf scanFilter, cond string, condArgs []any, before int64, n int) (ids []int64, reached int64, end bool, err error) {
	if len(condArgs) == 0 {
		// No terms: the index ranges are the batch.
		q, args := sf.scan("id", before, n)
		if err := sqlx.SelectContext(ctx, e.reader, &ids, rebind(sf.pg, q), args...); err != nil {
			return nil, 0, false, fmt.Errorf("act on filter: %w", err)
		}
		if len(ids) < n {
			return ids, 0, true, nil
		}
		return ids, ids[len(ids)-1], false, nil
	}
	for {
		// A chunk's ids with whether each matches: one read tells both
		// which match and how far the chunk reached.
		inner, args := sf.scan("id, args, tags, errors", before, searchChunk)
		q := "SELECT id, CASE WHEN " + cond + " THEN 1 ELSE 0 END AS m FROM (" + inner + ") AS s ORDER BY id DESC"
		var rows []struct {
			ID    int64 `db:"id"`
			Match int   `db:"m"`
		}
		if err := sqlx.SelectContext(ctx, e.reader, &rows, rebind(sf.pg, q), append(slicesClone(condArgs), args...)...); err != nil {
			return nil, 0, false, fmt.Errorf("act on filter: %w", err)
		}
		for _, r := range rows {
			if r.Match == 1 {
				ids = append(ids, r.ID)
				if len(ids) == n {
					// Continue right below it: the rest of the chunk
					// is read again by the next batch.
					return ids, r.ID, false, nil
				}
			}
		}
		if len(rows) < searchChunk {
			return ids, 0, true, nil
		}
		before = rows[len(rows)-1].ID
	}
}
