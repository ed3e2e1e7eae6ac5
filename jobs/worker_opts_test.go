package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// timedWorker bounds its attempts with Timeout and reports whether its ctx
// had a deadline.
type timedWorker struct {
	timeout     time.Duration
	hadDeadline chan bool
}

func (w timedWorker) Kind() string { return "test" }

func (w timedWorker) Timeout(*jobs.Job) time.Duration { return w.timeout }

func (w timedWorker) Work(ctx context.Context, _ *jobs.Job) error {
	_, ok := ctx.Deadline()
	w.hadDeadline <- ok
	if !ok {
		return nil
	}
	<-ctx.Done() // only the timeout ends this attempt
	return ctx.Err()
}

func TestWorkerTimeout(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		t.Run("timeout ends the attempt", func(t *testing.T) {
			t.Parallel()
			w := timedWorker{timeout: 20 * time.Millisecond, hadDeadline: make(chan bool, 1)}
			b := setup(t, be, options{backoff: jobs.FixedBackoff(time.Hour)}, w)
			id := b.insert(t, testArgs{Name: "slow"}, jobs.InsertOpts{})
			j := b.waitState(t, id, jobs.StateRetryable)
			if !<-w.hadDeadline {
				t.Error("Work's ctx had no deadline")
			}
			if len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "timed out after 20ms") ||
				!strings.Contains(j.Errors[0].Error, context.DeadlineExceeded.Error()) {
				t.Errorf("errors %+v, want one timeout", j.Errors)
			}
		})
		t.Run("zero means no limit", func(t *testing.T) {
			t.Parallel()
			w := timedWorker{hadDeadline: make(chan bool, 1)}
			b := setup(t, be, options{}, w)
			id := b.insert(t, testArgs{Name: "unbounded"}, jobs.InsertOpts{})
			b.waitState(t, id, jobs.StateCompleted)
			if <-w.hadDeadline {
				t.Error("Work's ctx had a deadline without a timeout")
			}
		})
	})
}

// backoffWorker fails every attempt and asks for its own retry delay.
type backoffWorker struct {
	delay func(*jobs.Job) time.Duration
}

func (backoffWorker) Kind() string { return "test" }

func (w backoffWorker) Backoff(j *jobs.Job) time.Duration { return w.delay(j) }

func (backoffWorker) Work(context.Context, *jobs.Job) error { return errors.New("fails") }

func TestWorkerBackoff(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name  string
			delay func(*jobs.Job) time.Duration
			want  time.Duration
		}{
			{name: "by attempt", delay: func(j *jobs.Job) time.Duration { return time.Duration(j.Attempt) * 7 * time.Minute }, want: 7 * time.Minute},
			{name: "zero retries now", delay: func(*jobs.Job) time.Duration { return 0 }, want: 0},
			{name: "negative takes the engine's", delay: func(*jobs.Job) time.Duration { return -1 }, want: time.Hour},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, be, options{backoff: jobs.FixedBackoff(time.Hour)}, backoffWorker{delay: tt.delay})
				id := b.insert(t, testArgs{Name: "fails"}, jobs.InsertOpts{MaxAttempts: 10})
				var j *jobs.Job
				if tt.want == 0 {
					// Retried at once: it reaches its second attempt.
					waitFor(t, waitTimeout, func() bool { j = b.get(t, id); return j.Attempt >= 2 })
					return
				}
				j = b.waitState(t, id, jobs.StateRetryable)
				if got := j.ScheduledAt.Sub(t0); got != tt.want {
					t.Errorf("retry in %s, want %s", got, tt.want)
				}
			})
		}
	})
}
