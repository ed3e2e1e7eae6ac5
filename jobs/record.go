package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

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

func (e *Engine) drain(first *attempt) []*attempt {
	batch := []*attempt{first}
	for len(batch) < maxBatch {
		select {
		case a := <-e.finished:
			batch = append(batch, a)
		default:
			return batch
		}
	}
	return batch
}

// recordBatch commits the outcomes of batch in one transaction. When that
// fails, one attempt may be the cause (a worker's hook that breaks the
// commit), so each is then recorded on its own.
func (e *Engine) recordBatch(batch []*attempt) {
	if len(batch) > 1 {
		if e.tryRecord(batch) == nil {
			e.afterRecord(batch)
			return
		}
		for _, a := range batch {
			e.recordOne(a)
		}
		return
	}
	e.recordOne(batch[0])
}

// recordOne commits one attempt's outcome. When its worker's hooks make the
// commit fail, the attempt is recorded as failed without them; when even
// that fails (disk full, I/O error) it retries with a growing delay: until
// it succeeds the job stays executing, so nothing is half-written or lost.
// It gives up only when the engine is stopped hard; the job is then
// rescued later.
func (e *Engine) recordOne(a *attempt) {
	batch := []*attempt{a}
	err := e.tryRecord(batch)
	if err != nil && (len(a.job.recordTx) > 0 || len(a.job.afterRecord) > 0) {
		e.log.Error("record job outcome with its worker's changes; recording it as failed", "job_id", a.job.ID, "err", err)
		a.job.recordTx, a.job.afterRecord = nil, nil
		a.err = fmt.Errorf("record outcome: %w", err)
		err = e.tryRecord(batch)
	}
	delay := 50 * time.Millisecond
	for err != nil {
		e.log.Error("record job outcome; will retry", "job_id", a.job.ID, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-e.workCtx.Done():
			e.log.Error("stopping: job outcome not recorded; the job will be rescued", "job_id", a.job.ID)
			e.unrecorded.Add(1)
			return
		}
		delay = min(delay*2, 5*time.Second)
		err = e.tryRecord(batch)
	}
	e.afterRecord(batch)
}

// completeSQL completes many jobs in one statement: ?1 is a JSON array of
// [id, completed_at] pairs. Only rows still executing under this node are
// written; RETURNING names them. (The unary + keeps the planner from
// walking the state index instead of looking each id up.)
const completeSQL = `UPDATE jobs SET state = 'completed', completed_at = v.at
	FROM (SELECT value ->> 0 AS id, value ->> 1 AS at FROM json_each(?1)) AS v
	WHERE jobs.id = v.id AND +jobs.state = 'executing' AND jobs.attempted_by = ?2
	RETURNING jobs.id`

// tryRecord commits the outcomes of batch in one transaction. The jobs'
// in-memory state changes only when it commits, so a failed try can be
// repeated from the workers' original results.
func (e *Engine) tryRecord(batch []*attempt) error {
	ctx := context.Background()
	updated := make([]Job, len(batch))
	dropped := make([]bool, len(batch))
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		// Plain completions (no hooks) are written in one statement.
		var plain [][2]int64
		plainAt := map[int64]int{}
		for i, a := range batch {
			updated[i] = *a.job
			updated[i].Errors = slices.Clone(a.job.Errors)
			dropped[i] = false
			if a.err == nil && len(a.job.recordTx) == 0 {
				plain = append(plain, [2]int64{a.job.ID, a.finishedAt.UnixMilli()})
				plainAt[a.job.ID] = i
				continue
			}
			ok, err := e.writeOutcome(ctx, tx, &updated[i], a.finishedAt, a.err)
			if err != nil {
				return err
			}
			if !ok {
				dropped[i] = true
				continue
			}
			for _, fn := range a.job.recordTx {
				if err := fn(ctx, tx); err != nil {
					return err
				}
			}
		}
		if len(plain) == 0 {
			return nil
		}
		pairs, _ := json.Marshal(plain)
		var done []int64
		if err := tx.SelectContext(ctx, &done, completeSQL, string(pairs), e.cfg.Node); err != nil {
			return fmt.Errorf("complete %d jobs: %w", len(plain), err)
		}
		for _, i := range plainAt {
			dropped[i] = true
		}
		for _, id := range done {
			i := plainAt[id]
			dropped[i] = false
			updated[i].State = StateCompleted
			at := batch[i].finishedAt
			updated[i].CompletedAt = &at
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, a := range batch {
		a.dropped = dropped[i]
		if !a.dropped {
			*a.job = updated[i]
		}
	}
	return nil
}

// writeOutcome turns an attempt's result into the job's next state. It
// reports false when the row was no longer this attempt's to write: an
// operator cancelled or deleted it, or it was rescued.
func (e *Engine) writeOutcome(ctx context.Context, tx *sqlx.Tx, j *Job, finishedAt time.Time, runErr error) (bool, error) {
	at := finishedAt.UnixMilli()
	var cancel *cancelError
	var snooze *snoozeError
	var q string
	var args []any
	switch {
	case runErr == nil:
		j.State = StateCompleted
		j.CompletedAt = &finishedAt
		q = "UPDATE jobs SET state = 'completed', completed_at = ? WHERE id = ?"
		args = []any{at, j.ID}
	case errors.As(runErr, &snooze):
		j.State = StateScheduled
		j.Attempt--
		j.ScheduledAt = finishedAt.Add(snooze.d)
		q = "UPDATE jobs SET state = 'scheduled', attempt = attempt - 1, scheduled_at = ? WHERE id = ?"
		args = []any{j.ScheduledAt.UnixMilli(), j.ID}
	case errors.As(runErr, &cancel):
		j.State = StateCancelled
		j.CancelledAt = &finishedAt
		q = "UPDATE jobs SET state = 'cancelled', cancelled_at = ?, errors = json_insert(errors, '$[#]', json(?)) WHERE id = ?"
		args = []any{at, errorJSON(j.Attempt, finishedAt, runErr), j.ID}
	case j.Attempt >= j.MaxAttempts:
		j.State = StateDiscarded
		j.DiscardedAt = &finishedAt
		q = "UPDATE jobs SET state = 'discarded', discarded_at = ?, errors = json_insert(errors, '$[#]', json(?)) WHERE id = ?"
		args = []any{at, errorJSON(j.Attempt, finishedAt, runErr), j.ID}
	default:
		j.State = StateRetryable
		j.ScheduledAt = finishedAt.Add(e.backoff(j))
		q = "UPDATE jobs SET state = 'retryable', scheduled_at = ?, errors = json_insert(errors, '$[#]', json(?)) WHERE id = ?"
		args = []any{j.ScheduledAt.UnixMilli(), errorJSON(j.Attempt, finishedAt, runErr), j.ID}
	}
	q += " AND state = 'executing' AND attempted_by = ?"
	args = append(args, e.cfg.Node)
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("job %d: write outcome: %w", j.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if runErr != nil && snooze == nil {
		j.Errors = append(j.Errors, AttemptError{Attempt: j.Attempt, At: finishedAt, Error: runErr.Error()})
	}
	return true, nil
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

func errorJSON(attempt int, at time.Time, err error) string {
	return mustJSON(AttemptError{Attempt: attempt, At: at.UTC(), Error: err.Error()})
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
			fn()
		}
	}
	for q, n := range touched {
		q.add(-n)
		q.signal()
	}
	e.changed(ids)
}
