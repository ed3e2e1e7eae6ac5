package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"
)

// ErrStateConflict is returned when a job's state forbids an operator
// action (HTTP 409): retrying a job that is available, deleting one that
// is executing, cancelling one that is finished.
var ErrStateConflict = errors.New("job state conflict")

// The states each operator action accepts, as SQL lists.
const (
	cancellable = "('scheduled', 'available', 'executing', 'retryable')"
	retriable   = "('scheduled', 'retryable', 'completed', 'discarded', 'cancelled')"
	deletable   = "('scheduled', 'available', 'retryable', 'completed', 'discarded', 'cancelled')"
)

// cancelSQL and retrySQL change the jobs whose ids are in the JSON array ?1
// and return their ids.
const (
	cancelSQL = `UPDATE jobs SET state = 'cancelled', cancelled_at = ?2
		WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ` + cancellable + ` RETURNING id`
	// A retried job that used all its attempts gets one more, as in Oban.
	// A unique job is not retried while another copy of it is in flight,
	// and of several finished copies of one unique job chosen together
	// only the newest is: two would break the unique-in-flight index (and
	// fail the whole statement), and one run is what retrying asks for.
	retrySQL = `WITH chosen AS (
			SELECT j.id, j.state, j.unique_key FROM json_each(?1) AS s JOIN jobs AS j ON j.id = s.value
			WHERE j.state IN ` + retriable + `),
		` + retryPicked + `
		UPDATE jobs SET state = 'available', scheduled_at = ?2,
		max_attempts = max(max_attempts, attempt + 1),
		completed_at = NULL, cancelled_at = NULL, discarded_at = NULL
		WHERE id IN (SELECT id FROM picked)
		RETURNING id`
	deleteSQL = `DELETE FROM jobs
		WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ` + deletable + ` RETURNING id`
)

// retryPicked chooses which of the jobs in the CTE "chosen" (id, state,
// unique_key) a retry takes (see retrySQL), on both dialects.
const retryPicked = `picked AS (
			SELECT id FROM chosen WHERE unique_key IS NULL OR state IN ('scheduled', 'retryable')
			UNION ALL
			SELECT max(id) FROM chosen
			WHERE unique_key IS NOT NULL AND state NOT IN ('scheduled', 'retryable') AND NOT EXISTS (
				SELECT 1 FROM jobs AS other
				WHERE other.unique_key = chosen.unique_key AND other.state IN ` + inFlight + `)
			GROUP BY unique_key)`

// CancelJob cancels a job that has not finished. An executing job's context
// is cancelled (when it runs in this engine; on another node the worker
// runs on, but its outcome is not recorded), and the job ends cancelled.
// It returns the job after the change; ErrNotFound for an unknown id;
// ErrStateConflict for a completed, discarded or cancelled job.
func (e *Engine) CancelJob(ctx context.Context, id int64) (*Job, error) {
	e.claimGate.Lock()
	j, err := e.actOne(ctx, id, "cancel", "scheduled, available, executing or retryable", e.cancelTx)
	e.claimGate.Unlock()
	if err == nil {
		e.interrupt([]int64{id})
	}
	return j, err
}

// RetryJob makes a scheduled, retryable, completed, discarded or cancelled
// job available now (a job with no attempts left gets one more). It returns
// the job after the change; ErrNotFound for an unknown id; ErrStateConflict
// for an available or executing job, for a cancelled job whose worker is
// still running here, and for a finished unique job while another copy of
// it is in flight.
func (e *Engine) RetryJob(ctx context.Context, id int64) (*Job, error) {
	j, err := e.actOne(ctx, id, "retry", "scheduled, retryable, completed, discarded or cancelled", e.retryTx)
	if err == nil {
		e.Wake()
	}
	return j, err
}

// DeleteJob deletes a job that is not executing. It returns ErrNotFound
// for an unknown id and ErrStateConflict for an executing job (cancel it
// first). The deleted id is reported to OnChange.
func (e *Engine) DeleteJob(ctx context.Context, id int64) error {
	_, err := e.actOne(ctx, id, "delete", "not executing", e.deleteTx)
	return err
}

// CancelJobs cancels every job of ids that has not finished, as CancelJob,
// in one transaction, and returns how many it cancelled; other ids are
// skipped.
func (e *Engine) CancelJobs(ctx context.Context, ids []int64) (int, error) {
	r, err := e.cancelSelection(ctx, ids)
	return len(r.Changed), err
}

// RetryJobs retries every job of ids that RetryJob accepts, in one
// transaction, and returns how many it retried; other ids are skipped.
func (e *Engine) RetryJobs(ctx context.Context, ids []int64) (int, error) {
	r, err := e.retrySelection(ctx, ids)
	return len(r.Changed), err
}

// DeleteJobs deletes every job of ids that is not executing, in one
// transaction, and returns how many it deleted; other ids are skipped.
func (e *Engine) DeleteJobs(ctx context.Context, ids []int64) (int, error) {
	r, err := e.actMany(ctx, ids, "delete", e.deleteTx)
	return len(r.Changed), err
}

// Selection is what an action on a selection of jobs did with each id.
type Selection struct {
	// Changed are the ids the action changed, in no particular order.
	Changed []int64
	// Refused are the jobs it left alone because of their state, as
	// they were in the action's transaction, in the order of the ids.
	Refused []RefusedJob
	// NotFound are the ids of no job, in the order of the ids.
	NotFound []int64
}

// RefusedJob is a job an action left alone because of its state.
type RefusedJob struct {
	ID    int64
	State State
}

// ActOnSelection runs action a on the jobs of ids in one transaction, as
// CancelJobs, RetryJobs or DeleteJobs do, and says what became of each id:
// changed, refused because of its state, or not found.
func (e *Engine) ActOnSelection(ctx context.Context, a FilterAction, ids []int64) (Selection, error) {
	switch a {
	case FilterCancel:
		return e.cancelSelection(ctx, ids)
	case FilterRetry:
		return e.retrySelection(ctx, ids)
	case FilterDelete:
		return e.actMany(ctx, ids, "delete", e.deleteTx)
	}
	return Selection{}, fmt.Errorf("%w: action %q is not one of cancel, retry, delete", ErrListParams, a)
}

func (e *Engine) cancelSelection(ctx context.Context, ids []int64) (Selection, error) {
	e.claimGate.Lock()
	r, err := e.actMany(ctx, ids, "cancel", e.cancelTx)
	e.claimGate.Unlock()
	if len(r.Changed) > 0 {
		e.interrupt(ids)
	}
	return r, err
}

func (e *Engine) retrySelection(ctx context.Context, ids []int64) (Selection, error) {
	r, err := e.actMany(ctx, ids, "retry", e.retryTx)
	if len(r.Changed) > 0 {
		e.Wake()
	}
	return r, err
}

type actionTx func(ctx context.Context, tx *sqlx.Tx, ids []int64) ([]int64, error)

func (e *Engine) cancelTx(ctx context.Context, tx *sqlx.Tx, ids []int64) ([]int64, error) {
	done, err := e.movedTx(ctx, tx, ids, StateCancelled, e.d.cancel, e.d.ids(ids), e.now().UnixMilli())
	if err != nil {
		return nil, err
	}
	// Mark those running here; interrupt cancels them after the commit.
	e.runsMu.Lock()
	for _, id := range done {
		if r, ok := e.runs[id]; ok {
			r.byOperator.Store(true)
		}
	}
	e.runsMu.Unlock()
	return done, nil
}

// interrupt cancels the contexts of the attempts of ids running here; their
// outcome then finds the row cancelled and records nothing.
func (e *Engine) interrupt(ids []int64) {
	e.runsMu.Lock()
	defer e.runsMu.Unlock()
	for _, id := range ids {
		if r, ok := e.runs[id]; ok {
			r.cancel()
		}
	}
}

func (e *Engine) isRunning(id int64) bool {
	e.runsMu.Lock()
	defer e.runsMu.Unlock()
	_, ok := e.runs[id]
	return ok
}

func (e *Engine) retryTx(ctx context.Context, tx *sqlx.Tx, ids []int64) ([]int64, error) {
	// A job an operator cancelled while its worker runs here stays
	// cancelled until the worker has returned: retrying it would run it
	// twice at once. (Any other job still in e.runs has finished: its
	// outcome committed, and afterRecord has yet to forget it.)
	e.runsMu.Lock()
	kept := make([]int64, 0, len(ids))
	for _, id := range ids {
		if r, running := e.runs[id]; !running || !r.byOperator.Load() {
			kept = append(kept, id)
		}
	}
	e.runsMu.Unlock()
	done, err := e.movedTx(ctx, tx, kept, StateAvailable, e.d.retry, e.d.ids(kept), e.now().UnixMilli())
	if err != nil {
		if isUniqueViolation(err) {
			// Only the unique-in-flight index can refuse a retry: a
			// copy of the job is in flight after all.
			return nil, fmt.Errorf("%w: %w", ErrStateConflict, err)
		}
		return nil, err
	}
	return done, nil
}

// movedTx runs query (an UPDATE … RETURNING id that moves some of the jobs
// of ids to state to) in tx, and counts the moves where the engine keeps
// the counts (see applyCounts).
func (e *Engine) movedTx(ctx context.Context, tx *sqlx.Tx, ids []int64, to State, query string, args ...any) ([]int64, error) {
	var before map[int64]jobPlace
	if e.d.ownCounts {
		var err error
		if before, err = placesOf(ctx, tx, ids); err != nil {
			return nil, err
		}
	}
	var done []int64
	if err := tx.SelectContext(ctx, &done, query, args...); err != nil {
		return nil, err
	}
	d := countDeltas{}
	for _, id := range done {
		p := before[id]
		d.move(p.Queue, p.State, to)
	}
	if err := e.applyCounts(ctx, tx, d, nil); err != nil {
		return nil, err
	}
	return done, nil
}

func (e *Engine) deleteTx(ctx context.Context, tx *sqlx.Tx, ids []int64) ([]int64, error) {
	var done []int64
	if err := tx.SelectContext(ctx, &done, e.d.delete, e.d.ids(ids)); err != nil {
		return nil, err
	}
	return done, nil
}

// refusal is an operator action refused for a reason the operator can
// act on: its message is one plain sentence ("job 1 is completed: only
// jobs that are … can be cancelled"), and errors.Is matches kind
// (ErrStateConflict). A missing job is Get's notFoundError.
type refusal struct {
	msg   string
	kind  error
	cause error
}

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == r.kind }
func (r *refusal) Unwrap() error        { return r.cause }

// pastTense names what an action does to a job, for messages.
var pastTense = map[string]string{"cancel": "cancelled", "retry": "retried", "delete": "deleted"}

// actOne runs one action on one job and explains a refusal.
func (e *Engine) actOne(ctx context.Context, id int64, verb, allowed string, act actionTx) (*Job, error) {
	var j *Job
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		done, err := act(ctx, tx, []int64{id})
		if errors.Is(err, ErrStateConflict) {
			// Only the unique-in-flight index refuses a retry this way.
			return &refusal{msg: fmt.Sprintf("job %d cannot be retried: another copy of this unique job is in flight", id),
				kind: ErrStateConflict, cause: err}
		}
		if err != nil {
			return fmt.Errorf("%s job %d: %w", verb, id, err)
		}
		if len(done) == 0 {
			cur, err := Get(ctx, tx, id)
			if err != nil {
				return err // ErrNotFound reads "job 5 not found" by itself
			}
			if verb == "retry" && cur.State == StateCancelled && e.isRunning(id) {
				return &refusal{msg: fmt.Sprintf("job %d is cancelled but its worker has not returned yet: retry it once it has", id),
					kind: ErrStateConflict}
			}
			if verb == "retry" && slices.Contains([]State{StateCompleted, StateDiscarded, StateCancelled}, cur.State) {
				return &refusal{msg: fmt.Sprintf("job %d cannot be retried: another copy of this unique job is in flight", id),
					kind: ErrStateConflict}
			}
			return &refusal{msg: fmt.Sprintf("job %d is %s: only jobs that are %s can be %s", id, cur.State, allowed, pastTense[verb]),
				kind: ErrStateConflict}
		}
		if verb == "delete" {
			return nil
		}
		j, err = Get(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.changed([]int64{id})
	return j, nil
}

// actMany runs one action on many jobs in one transaction and reads, in
// it, what became of the ids it did not change.
func (e *Engine) actMany(ctx context.Context, ids []int64, verb string, act actionTx) (Selection, error) {
	if len(ids) == 0 {
		return Selection{}, nil
	}
	var r Selection
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		done, err := act(ctx, tx, ids)
		if err != nil {
			return err
		}
		r = Selection{Changed: done}
		if len(done) == len(ids) {
			return nil
		}
		changed := make(map[int64]bool, len(done))
		for _, id := range done {
			changed[id] = true
		}
		var rest []int64
		for _, id := range ids {
			if !changed[id] {
				rest = append(rest, id)
			}
		}
		states, err := e.statesTx(ctx, tx, rest)
		if err != nil {
			return err
		}
		for _, id := range rest {
			if s, ok := states[id]; ok {
				r.Refused = append(r.Refused, RefusedJob{ID: id, State: s})
			} else {
				r.NotFound = append(r.NotFound, id)
			}
		}
		return nil
	})
	if errors.Is(err, ErrStateConflict) {
		return Selection{}, &refusal{msg: fmt.Sprintf("these %d jobs cannot be %s together: another copy of one of these unique jobs is in flight",
			len(ids), pastTense[verb]), kind: ErrStateConflict, cause: err}
	}
	if err != nil {
		return Selection{}, fmt.Errorf("%s %d jobs: %w", verb, len(ids), err)
	}
	e.changed(r.Changed)
	return r, nil
}

// statesTx reads the states of the jobs of ids that exist.
func (e *Engine) statesTx(ctx context.Context, tx *sqlx.Tx, ids []int64) (map[int64]State, error) {
	q := "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?1))"
	if e.d.postgres {
		q = "SELECT id, state FROM jobs WHERE id = ANY($1::bigint[])"
	}
	var rows []struct {
		ID    int64 `db:"id"`
		State State `db:"state"`
	}
	if err := tx.SelectContext(ctx, &rows, q, e.d.ids(ids)); err != nil {
		return nil, fmt.Errorf("read job states: %w", err)
	}
	m := make(map[int64]State, len(rows))
	for _, r := range rows {
		m[r.ID] = r.State
	}
	return m, nil
}
