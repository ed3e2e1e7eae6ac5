package jobs

import (
	"sync"
	"time"
)

// EventKind names what happened to a job, after Oban's telemetry events.
type EventKind string

// The kinds of Event.
const (
	// EventStart: an attempt was claimed and its worker is about to run.
	EventStart EventKind = "start"
	// EventStop: an attempt succeeded and the job is completed.
	EventStop EventKind = "stop"
	// EventException: an attempt failed (an error or a panic); the job is
	// retryable, or discarded when it has no attempts left.
	EventException EventKind = "exception"
	// EventCancel: the worker returned Cancel, or an operator cancelled
	// the job while it ran.
	EventCancel EventKind = "cancel"
	// EventSnooze: the worker returned Snooze; the job is scheduled again.
	EventSnooze EventKind = "snooze"
	// EventInterrupted: this engine's hard stop cut the attempt short; the
	// attempt is given back and the job is available again.
	EventInterrupted EventKind = "interrupted"
)

// Event is one job's telemetry. Outcome events (all but EventStart) are
// reported after the outcome has committed.
type Event struct {
	Kind EventKind
	// Job is a snapshot of the job: for an outcome, in its new state.
	Job *Job
	// At is when it happened (the engine's clock).
	At time.Time
	// QueueTime is how long the job waited from when it was due to when
	// this attempt started.
	QueueTime time.Duration
	// Duration is how long the worker ran (zero for EventStart).
	Duration time.Duration
	// Err is the attempt's error (EventException, EventCancel and
	// EventInterrupted).
	Err error
}

// ThroughputPoint is one second of the throughput ring.
type ThroughputPoint struct {
	// At is the start of the second (UTC).
	At time.Time
	// Completed counts attempts that completed their job in this second.
	Completed int
	// Failed counts attempts that failed (retryable or discarded).
	Failed int
}

// throughputWindow is how far back Throughput reaches, one point a second.
const throughputWindow = 15 * 60

// throughputRing counts completed and failed attempts per second over the
// last throughputWindow seconds.
type throughputRing struct {
	// timings are the per-minute wait and run times per queue and kind
	// (timings.go); kept here, with the ring they complement, so that the
	// Engine needs no new field.
	timings timings
	// shared is the other nodes' telemetry (telemetry_shared.go).
	shared sharedTelemetry

	mu    sync.Mutex
	slots [throughputWindow]struct {
		sec               int64
		completed, failed int
	}
}

func (r *throughputRing) add(at time.Time, completed, failed int) {
	sec := at.Unix()
	r.mu.Lock()
	s := &r.slots[sec%throughputWindow]
	if s.sec != sec {
		s.sec, s.completed, s.failed = sec, 0, 0
	}
	s.completed += completed
	s.failed += failed
	r.mu.Unlock()
}

// second is what the ring counted in the second sec (zeros when it holds
// none of it); the caller holds r.mu.
func (r *throughputRing) second(sec int64) (completed, failed int) {
	if s := r.slots[((sec%throughputWindow)+throughputWindow)%throughputWindow]; s.sec == sec {
		return s.completed, s.failed
	}
	return 0, 0
}

// Throughput returns completed and failed attempts per second over the
// last 15 minutes, oldest first, one point for every second up to and
// including the current one (zeros where nothing finished). It counts this
// engine's attempts since it started and, on PostgreSQL, every other
// node's (as read at most ShareTelemetryEvery ago; telemetry_shared.go).
func (e *Engine) Throughput() []ThroughputPoint {
	now := e.now().Unix()
	out := make([]ThroughputPoint, throughputWindow)
	r := &e.throughput
	r.mu.Lock()
	for i := range out {
		sec := now - throughputWindow + 1 + int64(i)
		out[i].At = time.Unix(sec, 0).UTC()
		out[i].Completed, out[i].Failed = r.second(sec)
	}
	r.mu.Unlock()
	r.shared.addThroughput(out)
	return out
}

func snapshot(j *Job) *Job {
	c := *j
	c.recordTx, c.recordBatch, c.afterRecord = nil, nil, nil
	return &c
}

func queueTime(j *Job) time.Duration {
	if j.AttemptedAt == nil {
		return 0
	}
	return max(j.AttemptedAt.Sub(j.ScheduledAt), 0)
}

func (e *Engine) emit(ev Event) {
	if e.cfg.OnEvent != nil {
		e.cfg.OnEvent(ev)
	}
}

// observeStart reports an attempt about to run.
func (e *Engine) observeStart(j *Job, waited time.Duration) {
	e.log.Debug("job started", "job_id", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
		"queue_time_ms", waited.Milliseconds())
	if e.cfg.OnEvent != nil {
		e.emit(Event{Kind: EventStart, Job: snapshot(j), At: e.now(), QueueTime: waited})
	}
}

// observeOutcome reports a recorded attempt: slog, the throughput ring and
// OnEvent.
func (e *Engine) observeOutcome(a *attempt) {
	j := a.job
	if j.State != StateAvailable { // an interrupted attempt did not finish
		e.throughput.timings.add(j.Queue, j.Kind, a.finishedAt, a.queueTime, a.duration, j.State == StateRetryable || j.State == StateDiscarded)
	}
	ev := Event{Job: j, At: a.finishedAt, QueueTime: a.queueTime, Duration: a.duration, Err: a.err}
	attrs := []any{"job_id", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
		"state", j.State, "duration_ms", a.duration.Milliseconds(), "queue_time_ms", ev.QueueTime.Milliseconds()}
	switch j.State {
	case StateCompleted:
		ev.Kind = EventStop
		e.throughput.add(a.finishedAt, 1, 0)
		e.log.Debug("job completed", attrs...)
	case StateCancelled:
		ev.Kind = EventCancel
		e.log.Info("job cancelled by its worker", append(attrs, "err", a.err)...)
	case StateAvailable:
		ev.Kind = EventInterrupted
		e.log.Warn("job interrupted by the shutdown; its attempt is given back", append(attrs, "err", a.err)...)
	case StateScheduled:
		ev.Kind = EventSnooze
		e.log.Debug("job snoozed", append(attrs, "until", j.ScheduledAt)...)
	case StateDiscarded:
		ev.Kind = EventException
		e.throughput.add(a.finishedAt, 0, 1)
		e.log.Warn("job discarded", append(attrs, "err", a.err)...)
	default:
		ev.Kind = EventException
		e.throughput.add(a.finishedAt, 0, 1)
		e.log.Debug("job attempt failed", append(attrs, "err", a.err)...)
	}
	if e.cfg.OnEvent != nil {
		ev.Job = snapshot(j)
		e.emit(ev)
	}
}

// observeDropped reports an attempt whose outcome was not recorded because
// its row was no longer executing here.
func (e *Engine) observeDropped(a *attempt) {
	j := a.job
	if a.run != nil && a.run.byOperator.Load() {
		e.log.Info("job cancelled by an operator while it ran", "job_id", j.ID, "kind", j.Kind, "queue", j.Queue,
			"attempt", j.Attempt, "duration_ms", a.duration.Milliseconds())
		if e.cfg.OnEvent != nil {
			c := snapshot(j)
			c.State = StateCancelled
			e.emit(Event{Kind: EventCancel, Job: c, At: a.finishedAt, QueueTime: a.queueTime, Duration: a.duration, Err: a.err})
		}
		return
	}
	e.log.Warn("job outcome not recorded: the job was no longer executing on this node (deleted, cancelled or rescued)",
		"job_id", j.ID, "kind", j.Kind, "attempt", j.Attempt)
}
