package jobs

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
)

// recordLoop commits finished attempts in batches, in the order they finish.
func (e *Engine) recordLoop() {
	defer e.recorderWG.Done()
	for {
		var first *attempt
		select {
		case first = <-e.finished:
		case <-e.recorderGo:
			// No more attempts will arrive once the runners are done,
			// but some may still sit in the channel.
			for {
				select {
				case a := <-e.finished:
					e.recordBatch(e.drain(a))
				default:
					return
				}
			}
		}
		e.recordBatch(e.drain(first))
	}
}

// lingerMax is how long drain waits for more attempts to finish before it
// records the batch it has (when jobs are still running here).
const lingerMax = time.Millisecond

// drain gathers the batch that starts with first: every attempt already
// finished, then those that finish within lingerMax, unless every attempt
// running here is in the batch already. Taking only what already sat in the
// channel made transactions of one job (measured in W1: 7 jobs a batch, most
// of one), each paying a commit, and, with claims made with the outcomes
// (piggyback.go), freeing one slot at a time.
func (e *Engine) drain(first *attempt) []*attempt {
	batch := []*attempt{first}
	var deadline <-chan time.Time
	for len(batch) < maxBatch {
		select {
		case a := <-e.finished:
			batch = append(batch, a)
			continue
		default:
		}
		if len(batch) >= e.inFlight() {
			return batch
		}
		if deadline == nil {
			t := time.NewTimer(lingerMax)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case a := <-e.finished:
			batch = append(batch, a)
		case <-deadline:
			return batch
		}
	}
	return batch
}

// inFlight is how many claimed attempts of this engine are not recorded yet.
func (e *Engine) inFlight() int {
	n := 0
	for _, q := range e.queues {
		q.mu.Lock()
		n += q.running
		q.mu.Unlock()
	}
	return n
}

// recordBatch commits the outcomes of batch in one transaction, and keeps
// trying until it has: the jobs stay executing meanwhile, so nothing is
// half-written or lost. What a failure means decides what happens next:
//
//   - a worker's RecordTx callback returned an error (or panicked): that
//     job's attempt fails, recorded without its writes, and the batch is
//     tried again at once, the other jobs unchanged;
//   - the COMMIT broke a deferred constraint (a foreign key): some job's
//     writes are to blame, so each job is recorded on its own to find it;
//   - anything else (busy, I/O error, full disk, a statement the database
//     refuses for now): the same batch is tried again, unchanged, after a
//     growing delay. Nothing is blamed on the workers' writes.
//
// It gives up only when the engine is stopped hard; those jobs are left
// executing and rescued later.
func (e *Engine) recordBatch(batch []*attempt) {
	delay := 50 * time.Millisecond
	claim := true
	for {
		var p *piggyback
		if claim {
			p = e.lockPiggyback(batch)
		}
		err := e.tryRecord(batch, p)
		if err == nil {
			e.afterPiggyback(p)
			e.afterRecord(batch)
			e.startPiggyback(p)
			return
		}
		p.unlock(e)
		var ce *claimError
		if errors.As(err, &ce) {
			// The outcomes must not wait on a claim: record them alone,
			// and leave the claim to the queue's own loop.
			e.log.Error("claim with the outcomes; recording them alone", "err", ce.err)
			claim = false
			continue
		}
		var cb *callbackError
		if errors.As(err, &cb) && !transient(cb.err) {
			e.log.Error("a worker's RecordTx failed; its attempt fails without its writes",
				"job_id", cb.attempt.job.ID, "err", cb.err)
			failWrites(cb.attempt, cb.err)
			continue
		}
		var be *batchError
		if errors.As(err, &be) && !transient(be.err) && len(batch) > 1 {
			// A write several jobs shared failed: each job alone tells
			// which one's item is to blame (a callbackError then).
			e.log.Warn("a shared write of several jobs failed; recording them one at a time", "jobs", len(batch), "err", be.err)
			for _, a := range batch {
				e.recordBatch([]*attempt{a})
			}
			return
		}
		if isCommitConstraint(err) {
			if len(batch) > 1 {
				for _, a := range batch {
					e.recordBatch([]*attempt{a})
				}
				return
			}
			if a := batch[0]; len(a.job.recordTx) > 0 || len(a.job.recordBatch) > 0 {
				e.log.Error("the worker's writes broke a constraint at commit; its attempt fails without them",
					"job_id", a.job.ID, "err", err)
				failWrites(a, err)
				continue
			}
		}
		e.log.Error("record job outcomes; will retry", "jobs", len(batch), "job_id", batch[0].job.ID,
			"err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-e.workCtx.Done():
			e.log.Error("stopping: job outcomes not recorded; the jobs will be rescued", "jobs", len(batch))
			e.unrecorded.Add(int64(len(batch)))
			return
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// failWrites turns a's attempt into a failure caused by its RecordTx
// callbacks, and drops them (and AfterRecord, which announces those writes).
func failWrites(a *attempt, cause error) {
	a.job.recordTx, a.job.recordBatch, a.job.afterRecord = nil, nil, nil
	a.err = fmt.Errorf("record outcome: %w", cause)
}

// callbackError is the error a worker's RecordTx callback returned (or its
// panic), told apart from the engine's own statements and the COMMIT.
type callbackError struct {
	attempt *attempt
	err     error
}

func (c *callbackError) Error() string { return c.err.Error() }
func (c *callbackError) Unwrap() error { return c.err }

// commitError is an error of the COMMIT itself.
type commitError struct{ err error }

func (c *commitError) Error() string { return "commit: " + c.err.Error() }
func (c *commitError) Unwrap() error { return c.err }

// sqliteConstraint is SQLite's primary result code for a broken constraint.
const sqliteConstraint = 19

// sqliteCode is the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		return coded.Code() & 0xff
	}
	return 0
}

// pgCode is the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}

// transient reports whether err says the database could not take the
// write now, rather than that the write itself is wrong: such a write is
// retried unchanged. SQLite: busy, locked, out of memory, I/O error, full
// disk, cannot open, locking protocol. PostgreSQL: a serialization failure
// or deadlock (40…), a lost connection (08…), too few resources (53…), an
// operator or shutdown intervention (57P…), or a connection the driver
// found broken.
func transient(err error) bool {
	switch sqliteCode(err) {
	case 5, 6, 7, 10, 13, 14, 15: // BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL
		return true
	}
	code := pgCode(err)
	switch {
	case strings.HasPrefix(code, "40"), strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"),
		strings.HasPrefix(code, "57P"):
		return true
	}
	return errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// retryable reports whether a PostgreSQL transaction failed only because
// it met another one (a serialization failure or a deadlock): run again,
// it succeeds.
func retryable(err error) bool {
	code := pgCode(err)
	return code == "40001" || code == "40P01"
}

// isUniqueViolation reports whether err is a broken unique index (SQLite
// reports any constraint with one code; the engine's statements can only
// break the unique ones).
func isUniqueViolation(err error) bool {
	return sqliteCode(err) == sqliteConstraint || pgCode(err) == "23505"
}

// isCommitConstraint reports whether err is a COMMIT refused for a
// deferred constraint, which only the transaction's writes can break.
func isCommitConstraint(err error) bool {
	var c *commitError
	if !errors.As(err, &c) {
		return false
	}
	return sqliteCode(c.err) == sqliteConstraint || strings.HasPrefix(pgCode(c.err), "23")
}

// runRecordTx runs one RecordTx callback, turning a panic into its error:
// a worker's bug fails its own attempt, never the process.
func runRecordTx(ctx context.Context, fn func(context.Context, *sqlx.Tx) error, tx *sqlx.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, tx)
}

// completeSQL records plain completions at one time: ?1 is a JSON array of
// ids, ?2 the time. Like the outcome statement (outcome_sqlite.go), only
// rows still executing under this node (?3) are written, and RETURNING
// names them. Without its seven computed assignments per job it costs less,
// and nearly every outcome of a busy queue is one.
const completeSQL = `UPDATE jobs SET state = 'completed', completed_at = ?2
	WHERE id IN (SELECT value FROM json_each(?1)) AND +state = 'executing' AND attempted_by = ?3
	RETURNING id`

// outcomeRow is one job's new state, as the outcome statement writes it.
type outcomeRow struct {
	ID     int64         `json:"id"`
	State  State         `json:"state"`
	At     int64         `json:"at"`
	Sched  *int64        `json:"sched,omitempty"`
	Snooze int           `json:"snooze"`
	Err    *AttemptError `json:"err,omitempty"`
}

// tryRecord commits the outcomes of batch in one transaction: one statement
// for every job's new state, then the workers' RecordTx hooks of those it
// wrote. The jobs' in-memory state changes only when it commits, so a
// failed try can be repeated from the workers' original results.
func (e *Engine) tryRecord(batch []*attempt, p *piggyback) error {
	ctx := context.Background()
	updated := make([]Job, len(batch))
	rows := make([]outcomeRow, len(batch))
	index := make(map[int64]int, len(batch))
	for i, a := range batch {
		updated[i] = *a.job
		updated[i].Errors = slices.Clone(a.job.Errors)
		rows[i] = e.outcome(&updated[i], a.finishedAt, a.err)
		index[a.job.ID] = i
	}
	// Plain completions (most outcomes) take the lean statement, one per
	// finish time (a batch spans a few milliseconds); the rest the
	// general one.
	var others []outcomeRow
	completedAt := map[int64][]int64{}
	for _, r := range rows {
		if r.State == StateCompleted && r.Err == nil && r.Snooze == 0 && r.Sched == nil {
			completedAt[r.At] = append(completedAt[r.At], r.ID)
		} else {
			others = append(others, r)
		}
	}
	// On PostgreSQL a statement costs a round trip and a run of the count
	// trigger: once the general statement is needed, it takes the
	// completions too (W2: 0.3 ms of a 3.9 ms cycle).
	if e.d.postgres && len(others) > 0 && len(completedAt) > 0 {
		others, completedAt = rows, nil
	}
	var outcomeStmt *sqlx.Stmt
	var outcomeArgs []any
	if len(others) > 0 {
		var err error
		if outcomeStmt, outcomeArgs, err = e.outcomeStmt(ctx, others); err != nil {
			return err
		}
	}
	written := make([]bool, len(batch))
	tx, err := e.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	var ids []int64
	for at, group := range completedAt {
		// Each group's ids apart: sqlx's Select overwrites the slice it
		// is given.
		var done []int64
		err := tx.StmtxContext(ctx, e.stmts.complete).SelectContext(ctx, &done, e.d.ids(group), at, e.cfg.Node)
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("record %d completions: %w", len(group), err)
		}
		ids = append(ids, done...)
	}
	if len(others) > 0 {
		var more []int64
		if err := tx.StmtxContext(ctx, outcomeStmt).SelectContext(ctx, &more, outcomeArgs...); err != nil {
			tx.Rollback()
			return fmt.Errorf("record %d outcomes: %w", len(others), err)
		}
		ids = append(ids, more...)
	}
	d := countDeltas{}
	for _, id := range ids {
		i := index[id]
		written[i] = true
		d.move(updated[i].Queue, StateExecuting, updated[i].State)
	}
	for i, a := range batch {
		if !written[i] {
			continue
		}
		for _, fn := range a.job.recordTx {
			if err := runRecordTx(ctx, fn, tx); err != nil {
				tx.Rollback()
				return &callbackError{attempt: a, err: err}
			}
		}
	}
	if err := writeBatches(ctx, tx, batch, written); err != nil {
		tx.Rollback()
		return err
	}
	if err := e.claimPiggyback(ctx, tx, p); err != nil {
		tx.Rollback()
		return err
	}
	if err := e.applyCounts(ctx, tx, d, e.stmts.counts); err != nil {
		tx.Rollback()
		return err
	}
	if e.cfg.RecordedTx != nil {
		var recorded []*Job
		for i := range batch {
			if written[i] {
				recorded = append(recorded, &updated[i])
			}
		}
		if err := e.cfg.RecordedTx(ctx, tx, recorded); err != nil {
			tx.Rollback()
			return fmt.Errorf("record %d outcomes: RecordedTx: %w", len(recorded), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return &commitError{err: err}
	}
	for i, a := range batch {
		a.dropped = !written[i]
		if !a.dropped {
			*a.job = updated[i]
		}
	}
	return nil
}

// outcome turns an attempt's result into the job's next state, applied to
// j, and returns the row that records it.
func (e *Engine) outcome(j *Job, finishedAt time.Time, runErr error) outcomeRow {
	r := outcomeRow{ID: j.ID, At: finishedAt.UnixMilli()}
	var cancel *cancelError
	var snooze *snoozeError
	var interrupted *interruptedError
	switch {
	case runErr == nil:
		j.State = StateCompleted
		j.CompletedAt = &finishedAt
	case errors.As(runErr, &interrupted):
		// Cut short by our own shutdown: available again at once, the
		// attempt given back (not counted against max_attempts), and
		// the interruption noted, as a rescue notes it.
		j.State = StateAvailable
		j.Attempt--
		r.Snooze = 1
		j.ScheduledAt = finishedAt
	case errors.As(runErr, &snooze):
		j.State = StateScheduled
		j.Attempt--
		r.Snooze = 1
		j.ScheduledAt = finishedAt.Add(snooze.d)
	case errors.As(runErr, &cancel):
		j.State = StateCancelled
		j.CancelledAt = &finishedAt
	case j.Attempt >= j.MaxAttempts:
		j.State = StateDiscarded
		j.DiscardedAt = &finishedAt
	default:
		j.State = StateRetryable
		j.ScheduledAt = finishedAt.Add(e.backoff(j))
	}
	r.State = j.State
	if j.State == StateScheduled || j.State == StateRetryable || j.State == StateAvailable {
		sched := j.ScheduledAt.UnixMilli()
		r.Sched = &sched
	}
	if runErr != nil && snooze == nil {
		ae := AttemptError{Attempt: j.Attempt + r.Snooze, At: finishedAt.UTC(), Error: runErr.Error(), Node: e.cfg.Node}
		j.Errors = append(j.Errors, ae)
		r.Err = &ae
	}
	return r
}

// backoff is the delay before retrying j: its worker's, or the engine's.
func (e *Engine) backoff(j *Job) time.Duration {
	if w, ok := e.workers[j.Kind].(WorkerWithBackoff); ok {
		if d := w.Backoff(j); d >= 0 {
			return d
		}
	}
	return e.cfg.Backoff(j.Attempt)
}

// afterRecord runs once the batch has committed: frees the queue slots,
// reports telemetry and the changed rows, and runs the workers'
// AfterRecord callbacks in commit order.
func (e *Engine) afterRecord(batch []*attempt) {
	e.forget(batch)
	touched := map[*queue]int{}
	ids := make([]int64, 0, len(batch))
	for _, a := range batch {
		touched[a.queue]++
		if a.dropped {
			e.observeDropped(a)
			continue
		}
		ids = append(ids, a.job.ID)
		e.observeOutcome(a)
		for _, fn := range a.job.afterRecord {
			e.runAfterRecord(a.job, fn)
		}
	}
	for q, n := range touched {
		q.add(-n)
		q.signal()
	}
	e.changed(ids)
}

// runAfterRecord runs one AfterRecord callback. The outcome has committed,
// so a panic there cannot change it: it is logged, and the rest of the batch
// goes on.
func (e *Engine) runAfterRecord(j *Job, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("a worker's AfterRecord callback panicked", "job_id", j.ID, "kind", j.Kind,
				"err", &PanicError{Value: r, Stack: debug.Stack()})
		}
	}()
	fn()
}
