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

// recordOne commits one attempt's outcome, retrying with a growing delay
// while the database refuses (disk full, I/O error): until it succeeds the
// job stays executing, so nothing is half-written or lost. It gives up only
// when the engine is stopped hard; the job is then rescued later.
func (e *Engine) recordOne(a *attempt) {
	err := e.recordOnce(a)
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
		err = e.recordOnce(a)
	}
	e.afterRecord([]*attempt{a})
}

// recordOnce tries to commit a's outcome with its worker's changes and, when
// that fails, without them, as a failed attempt. Only when the second try
// commits were the worker's changes the cause; when it fails too, the
// database is (disk full, I/O error), and the changes are kept for the
// next try, so a call that did connect is not recorded as failed.
func (e *Engine) recordOnce(a *attempt) error {
	batch := []*attempt{a}
	err := e.tryRecord(batch)
	if err == nil || (len(a.job.recordTx) == 0 && len(a.job.afterRecord) == 0) {
		return err
	}
	recordTx, afterRecord, runErr := a.job.recordTx, a.job.afterRecord, a.err
	a.job.recordTx, a.job.afterRecord = nil, nil
	a.err = fmt.Errorf("record outcome: %w", err)
	if err2 := e.tryRecord(batch); err2 != nil {
		a.job.recordTx, a.job.afterRecord, a.err = recordTx, afterRecord, runErr
		return err2
	}
	e.log.Error("the worker's changes made its outcome fail to commit; recorded the attempt as failed without them",
		"job_id", a.job.ID, "err", err)
	return nil
}

// outcomeSQL records the outcomes of a batch in one statement: ?1 is a JSON
// array of outcomeRow. Only rows still executing under this node (?2) are
// written; RETURNING names them. (The unary + keeps the planner from
// walking the state index instead of looking each id up.)
const outcomeSQL = `UPDATE jobs SET
		state        = v.state,
		attempt      = attempt - v.snooze,
		scheduled_at = coalesce(v.sched, scheduled_at),
		completed_at = iif(v.state = 'completed', v.at, completed_at),
		cancelled_at = iif(v.state = 'cancelled', v.at, cancelled_at),
		discarded_at = iif(v.state = 'discarded', v.at, discarded_at),
		errors       = iif(v.err IS NULL, errors, json_insert(errors, '$[#]', json(v.err)))
	FROM (SELECT value ->> 'id' AS id, value ->> 'state' AS state, value ->> 'at' AS at,
	             value ->> 'sched' AS sched, value ->> 'snooze' AS snooze, value -> 'err' AS err
	      FROM json_each(?1)) AS v
	WHERE jobs.id = v.id AND +jobs.state = 'executing' AND jobs.attempted_by = ?2
	RETURNING jobs.id`

// outcomeRow is one job's new state in outcomeSQL.
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
func (e *Engine) tryRecord(batch []*attempt) error {
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
	arg, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("encode outcomes: %w", err)
	}
	written := make([]bool, len(batch))
	err = e.inTx(ctx, func(tx *sqlx.Tx) error {
		var ids []int64
		if err := tx.StmtxContext(ctx, e.outcomeStmt).SelectContext(ctx, &ids, string(arg), e.cfg.Node); err != nil {
			return fmt.Errorf("record %d outcomes: %w", len(batch), err)
		}
		clear(written)
		for _, id := range ids {
			written[index[id]] = true
		}
		for i, a := range batch {
			if !written[i] {
				continue
			}
			for _, fn := range a.job.recordTx {
				if err := fn(ctx, tx); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
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
	switch {
	case runErr == nil:
		j.State = StateCompleted
		j.CompletedAt = &finishedAt
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
	if j.State == StateScheduled || j.State == StateRetryable {
		sched := j.ScheduledAt.UnixMilli()
		r.Sched = &sched
	}
	if runErr != nil && snooze == nil {
		ae := AttemptError{Attempt: j.Attempt, At: finishedAt.UTC(), Error: runErr.Error()}
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
			fn()
		}
	}
	for q, n := range touched {
		q.add(-n)
		q.signal()
	}
	e.changed(ids)
}
