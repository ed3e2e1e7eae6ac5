// Package jobs is phonehome's durable job queue: Oban's semantics on a SQLite
// table. Jobs are rows; queues with a concurrency limit claim due rows with
// one UPDATE … RETURNING; a worker's result decides whether the row is
// completed, retried after a backoff, cancelled, snoozed or discarded; and
// the outcomes of a batch, together with any writes the workers asked for,
// commit in one transaction.
//
// Around that core: queues that operators pause, resume and scale at run
// time (job_queues, so it survives restarts); counts per queue and state
// kept by triggers (job_counts, never a scan); node heartbeats (job_nodes)
// so that only the jobs of dead processes are rescued; pruning of old
// finished jobs in small batches; cron jobs inserted once per slot
// (job_cron); telemetry events and a throughput ring; and operator actions
// (cancel, retry, delete, one or many) for the dashboard.
package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// State is where a job is in its life.
type State string

// The states of a job, as in Oban.
const (
	// StateScheduled: inserted to run at a later time.
	StateScheduled State = "scheduled"
	// StateAvailable: due, waiting for a free worker.
	StateAvailable State = "available"
	// StateExecuting: claimed by a worker that is running it.
	StateExecuting State = "executing"
	// StateRetryable: an attempt failed; it runs again after its backoff.
	StateRetryable State = "retryable"
	// StateCompleted: an attempt succeeded.
	StateCompleted State = "completed"
	// StateDiscarded: the last allowed attempt failed.
	StateDiscarded State = "discarded"
	// StateCancelled: a worker or an operator cancelled it.
	StateCancelled State = "cancelled"
)

// States lists every state in the order of a job's life.
var States = []State{StateScheduled, StateAvailable, StateExecuting, StateRetryable, StateCompleted, StateDiscarded, StateCancelled}

// inFlight is the SQL list of states a job is not finished in.
const inFlight = "('scheduled', 'available', 'executing', 'retryable')"

// AttemptError records one failed attempt.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
	// Node is the node that ran the attempt (its Config.Node); empty in
	// errors recorded before nodes were named in them.
	Node string `json:"node,omitempty"`
}

// Job is one row of the jobs table, as a worker and the API see it.
type Job struct {
	ID          int64           `json:"id"`
	Queue       string          `json:"queue"`
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args"`
	State       State           `json:"state"`
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	Priority    int             `json:"priority"`
	Tags        []string        `json:"tags"`
	InsertedAt  time.Time       `json:"inserted_at"`
	ScheduledAt time.Time       `json:"scheduled_at"`
	AttemptedAt *time.Time      `json:"attempted_at"`
	// AttemptedBy is the node that claimed the latest attempt; empty
	// before the first.
	AttemptedBy string         `json:"attempted_by,omitempty"`
	CompletedAt *time.Time     `json:"completed_at"`
	CancelledAt *time.Time     `json:"cancelled_at"`
	DiscardedAt *time.Time     `json:"discarded_at"`
	Errors      []AttemptError `json:"errors"`

	rescues     int
	recordTx    []func(ctx context.Context, tx *sqlx.Tx) error
	recordBatch []batchItem
	afterRecord []func()
}

// UnmarshalArgs decodes the job's JSON args into v.
func (j *Job) UnmarshalArgs(v any) error {
	if err := json.Unmarshal(j.Args, v); err != nil {
		return fmt.Errorf("job %d (%s): decode args: %w", j.ID, j.Kind, err)
	}
	return nil
}

// RecordTx registers fn to run inside the transaction that records this
// attempt's outcome, so the worker's own writes and the job's new state
// commit together or not at all. fn runs whatever Work returns; if fn fails
// (returns an error or panics), its writes are rolled back and the attempt
// counts as failed with fn's error. When the transaction fails for the
// database's own reasons (busy, I/O error, full disk) it is tried again,
// unchanged, so fn may run more than once: it must write only through tx.
// An error fn returns that is itself such a database error (SQLite's BUSY,
// LOCKED, IOERR, FULL…) is retried the same way rather than failing the
// attempt.
func (j *Job) RecordTx(fn func(ctx context.Context, tx *sqlx.Tx) error) {
	j.recordTx = append(j.recordTx, fn)
}

// AfterRecord registers fn to run once this attempt's outcome (and the
// writes of RecordTx) has committed: the place to publish what changed.
// Outcomes commit, and so these callbacks run, in commit order. A panic in
// fn is recovered and logged; the outcome stays recorded.
func (j *Job) AfterRecord(fn func()) {
	j.afterRecord = append(j.afterRecord, fn)
}

// jobColumns are the columns scanned into a jobRow.
const jobColumns = `id, state, queue, kind, args, priority, attempt, max_attempts, rescues, errors, tags,
	inserted_at, scheduled_at, attempted_at, completed_at, cancelled_at, discarded_at, attempted_by`

type jobRow struct {
	ID          int64          `db:"id"`
	State       string         `db:"state"`
	Queue       string         `db:"queue"`
	Kind        string         `db:"kind"`
	Args        string         `db:"args"`
	Priority    int            `db:"priority"`
	Attempt     int            `db:"attempt"`
	MaxAttempts int            `db:"max_attempts"`
	Rescues     int            `db:"rescues"`
	Errors      string         `db:"errors"`
	Tags        string         `db:"tags"`
	InsertedAt  int64          `db:"inserted_at"`
	ScheduledAt int64          `db:"scheduled_at"`
	AttemptedAt sql.NullInt64  `db:"attempted_at"`
	CompletedAt sql.NullInt64  `db:"completed_at"`
	CancelledAt sql.NullInt64  `db:"cancelled_at"`
	DiscardedAt sql.NullInt64  `db:"discarded_at"`
	AttemptedBy sql.NullString `db:"attempted_by"`
}

// job is the row as a Job. An errors or tags column not in the shape the
// engine writes is salvaged (salvageErrors, salvageTags), never refused:
// a job that cannot be read would stop every claim of its queue.
func (r *jobRow) job() *Job {
	j := &Job{
		ID:          r.ID,
		Queue:       r.Queue,
		Kind:        r.Kind,
		Args:        json.RawMessage(r.Args),
		State:       State(r.State),
		Attempt:     r.Attempt,
		MaxAttempts: r.MaxAttempts,
		Priority:    r.Priority,
		InsertedAt:  fromMillis(r.InsertedAt),
		ScheduledAt: fromMillis(r.ScheduledAt),
		AttemptedAt: nullTime(r.AttemptedAt),
		CompletedAt: nullTime(r.CompletedAt),
		CancelledAt: nullTime(r.CancelledAt),
		DiscardedAt: nullTime(r.DiscardedAt),
		AttemptedBy: r.AttemptedBy.String,
		rescues:     r.Rescues,
	}
	errs, err := decodeErrors(r.Errors)
	if err != nil {
		errs = salvageErrors(r.Errors)
	}
	j.Errors = errs
	if r.Tags == "[]" {
		j.Tags = []string{}
	} else if err := json.Unmarshal([]byte(r.Tags), &j.Tags); err != nil {
		j.Tags = salvageTags(r.Tags)
	}
	return j
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMillis(v.Int64)
	return &t
}

// ErrNotFound is what errors.Is matches for a job id that does not exist.
// The error returned names the id once: "job 5 not found".
var ErrNotFound = errors.New("job not found")

// notFoundError is ErrNotFound for one id, worded once ("job 5 not found",
// not "job 5: job not found").
type notFoundError struct{ id int64 }

func (e notFoundError) Error() string        { return fmt.Sprintf("job %d not found", e.id) }
func (e notFoundError) Is(target error) bool { return target == ErrNotFound }

// Get returns the job with the given id from db (the reader pool is fine).
func Get(ctx context.Context, db sqlx.QueryerContext, id int64) (*Job, error) {
	var r jobRow
	err := sqlx.GetContext(ctx, db, &r, dialectOf(db).getSQL, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFoundError{id}
	}
	if err != nil {
		return nil, fmt.Errorf("get job %d: %w", id, err)
	}
	return r.job(), nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with values that always encode
	}
	return string(b)
}
