package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// Args are a job's typed arguments. Kind names the worker that runs them; the
// value itself is stored as JSON.
type Args interface {
	Kind() string
}

// ArgsWithOpts lets an Args type carry its worker's defaults (queue,
// max_attempts, …), like Oban's `use Oban.Worker, queue: …`.
type ArgsWithOpts interface {
	Args
	InsertOpts() InsertOpts
}

// Worker runs the jobs of one kind. Work must honour ctx: it is cancelled at
// a hard stop, and an attempt that then returns an error (other than Cancel
// or Snooze) is given back rather than counted as failed: the job is
// available again with the same attempt number. Returning nil completes the job; an error fails the attempt
// (retried after the backoff, or discarded when no attempts are left);
// Cancel and Snooze return special errors; a panic counts as an error.
type Worker interface {
	Kind() string
	Work(ctx context.Context, job *Job) error
}

// WorkerWithTimeout is a Worker that bounds each attempt: Work's ctx ends
// after Timeout(job) (zero or negative: no limit), and the attempt's error
// then reads "timed out after …". Work must honour ctx; the engine cannot
// stop a worker that ignores it.
type WorkerWithTimeout interface {
	Worker
	Timeout(job *Job) time.Duration
}

// WorkerWithBackoff is a Worker with its own retry delay, like Oban's
// backoff/1: Backoff(job) is called after attempt job.Attempt failed and
// returns how long to wait before the next one (negative: the engine's
// Config.Backoff).
type WorkerWithBackoff interface {
	Worker
	Backoff(job *Job) time.Duration
}

// PanicError is the failure recorded when a worker panics.
type PanicError struct {
	Value any
	Stack []byte
}

// Error reports the panic value and the stack where it happened.
func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n\n%s", e.Value, e.Stack)
}

// runWorker calls w.Work and turns a panic into a PanicError.
func runWorker(ctx context.Context, w Worker, job *Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return w.Work(ctx, job)
}

// cancelError is returned by Cancel.
type cancelError struct{ reason error }

func (e *cancelError) Error() string { return "cancelled: " + e.reason.Error() }
func (e *cancelError) Unwrap() error { return e.reason }

// Cancel, returned from Work, stops the job for good: it becomes cancelled
// with reason recorded, and is never retried.
func Cancel(reason error) error {
	if reason == nil {
		reason = errors.New("cancelled by worker")
	}
	return &cancelError{reason: reason}
}

// snoozeError is returned by Snooze.
type snoozeError struct{ d time.Duration }

func (e *snoozeError) Error() string { return fmt.Sprintf("snoozed for %s", e.d) }

// Snooze, returned from Work, runs the job again after d without using up
// an attempt.
func Snooze(d time.Duration) error {
	return &snoozeError{d: max(d, 0)}
}

// interruptedError wraps the error of an attempt that this engine's hard
// stop cancelled (Stop's ctx ended while it ran).
type interruptedError struct{ err error }

// Error says what happened without the worker's error (a "context
// canceled" that would read as a failure): the attempt did not fail.
func (e *interruptedError) Error() string {
	return "interrupted: this process stopped before the attempt finished; the attempt is given back"
}
func (e *interruptedError) Unwrap() error { return e.err }

// interruptible reports whether err, returned after the hard stop, may be
// the stop's doing. A worker's own decision (Cancel, Snooze) and a panic are
// recorded as they are.
func interruptible(err error) bool {
	var (
		c *cancelError
		s *snoozeError
		p *PanicError
	)
	return !errors.As(err, &c) && !errors.As(err, &s) && !errors.As(err, &p)
}
