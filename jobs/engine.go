package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
)

// Config configures an Engine. Zero fields take the documented defaults.
type Config struct {
	// Queues maps each queue this engine runs to its concurrency limit.
	Queues map[string]int
	// PollInterval is how often idle queues look for due jobs (1 s).
	// Inserts through this engine wake its queues at once.
	PollInterval time.Duration
	// Backoff is the delay before a failed attempt is retried (Oban's).
	Backoff Backoff
	// Now is the clock (time.Now); tests pass a fake one.
	Now func() time.Time
	// Logger receives job logs (slog.Default()).
	Logger *slog.Logger
	// Node names this process in attempted_by (host name and pid).
	Node string
}

// MaxRescues is how many times a job may be found executing after a crash
// before it is discarded as the likely cause of the crashes.
const MaxRescues = 3

// maxBatch bounds how many finished attempts are recorded per transaction.
const maxBatch = 256

// Engine runs the queues of one process over the jobs table.
type Engine struct {
	db      *sqlx.DB
	cfg     Config
	log     *slog.Logger
	workers map[string]Worker
	queues  map[string]*queue

	finished chan *attempt
	// workCtx is the parent of every running job's context; cancelling it
	// is the hard stop.
	workCtx    context.Context
	cancelWork context.CancelFunc
	stopping   chan struct{}
	loops      sync.WaitGroup
	running    sync.WaitGroup
	recorderWG sync.WaitGroup
	recorderGo chan struct{} // closed to tell the recorder no attempt will arrive anymore

	// startMu guards started and workers: Register and Start may race.
	startMu  sync.Mutex
	started  bool
	stopOnce sync.Once
	// unrecorded counts outcomes given up on at Stop; the next Start
	// rescues their jobs.
	unrecorded atomic.Int64
}

type queue struct {
	name  string
	limit int
	wake  chan struct{}

	mu      sync.Mutex
	running int
}

func (q *queue) free() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.limit - q.running
}

func (q *queue) add(n int) {
	q.mu.Lock()
	q.running += n
	q.mu.Unlock()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// attempt is one finished run of a job, waiting to be recorded.
type attempt struct {
	job        *Job
	queue      *queue
	err        error
	finishedAt time.Time
	duration   time.Duration
}

// New makes an engine over db, which must be the single-connection writer
// (see package store). Register workers, then Start it.
func New(db *sqlx.DB, cfg Config) (*Engine, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Backoff == nil {
		cfg.Backoff = ObanBackoff(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Node == "" {
		host, _ := os.Hostname()
		cfg.Node = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	e := &Engine{
		db:         db,
		cfg:        cfg,
		log:        cfg.Logger,
		workers:    map[string]Worker{},
		queues:     map[string]*queue{},
		finished:   make(chan *attempt, 1024),
		stopping:   make(chan struct{}),
		recorderGo: make(chan struct{}),
	}
	for name, limit := range cfg.Queues {
		if name == "" || limit < 1 {
			return nil, fmt.Errorf("queue %q: limit %d must be at least 1", name, limit)
		}
		e.queues[name] = &queue{name: name, limit: limit, wake: make(chan struct{}, 1)}
	}
	e.workCtx, e.cancelWork = context.WithCancel(context.Background())
	return e, nil
}

// Register adds a worker for its kind. Registering two workers for one kind,
// or registering after Start, is an error.
func (e *Engine) Register(w Worker) error {
	e.startMu.Lock()
	defer e.startMu.Unlock()
	if e.started {
		return fmt.Errorf("register %s: engine already started", w.Kind())
	}
	if _, dup := e.workers[w.Kind()]; dup {
		return fmt.Errorf("register %s: a worker for this kind is already registered", w.Kind())
	}
	e.workers[w.Kind()] = w
	return nil
}

func (e *Engine) now() time.Time { return e.cfg.Now().UTC() }

// Start rescues jobs that a stopped process left executing, then starts the
// queues. It returns once they are running; ctx bounds the rescue only. When
// the rescue fails Start may be called again; once it has succeeded, later
// calls do nothing.
func (e *Engine) Start(ctx context.Context) error {
	e.startMu.Lock()
	defer e.startMu.Unlock()
	if e.started {
		return nil
	}
	if _, err := e.Rescue(ctx); err != nil {
		return err
	}
	e.started = true
	e.recorderWG.Add(1)
	go e.recordLoop()
	for _, q := range e.queues {
		e.loops.Add(1)
		go e.queueLoop(q)
	}
	return nil
}

// Wake makes every queue look for due jobs now instead of at its next poll.
func (e *Engine) Wake() {
	for _, q := range e.queues {
		q.signal()
	}
}

// Stop stops claiming jobs and waits for running ones to finish and be
// recorded. When ctx ends first, running jobs' contexts are cancelled and
// Stop waits briefly for them; a job that still does not return is left
// executing, and the next Start rescues it.
func (e *Engine) Stop(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		close(e.stopping)
		e.loops.Wait()
		done := make(chan struct{})
		go func() { e.running.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			e.cancelWork()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				err = errors.New("stop: some jobs ignored cancellation and are left executing")
			}
		}
		close(e.recorderGo)
		recorded := make(chan struct{})
		go func() { e.recorderWG.Wait(); close(recorded) }()
		select {
		case <-recorded:
		case <-ctx.Done():
			// The recorder may be retrying a commit the database refuses:
			// cancelling work makes it give up, leaving those jobs
			// executing for the next Start to rescue.
			e.cancelWork()
			<-recorded
		}
		e.cancelWork()
		if n := e.unrecorded.Load(); n > 0 {
			err = errors.Join(err, fmt.Errorf("stop: the outcomes of %d jobs could not be recorded; they are left executing and the next start rescues them", n))
		}
	})
	return err
}

func (e *Engine) queueLoop(q *queue) {
	defer e.loops.Done()
	ticker := time.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	for {
		e.fill(q)
		select {
		case <-e.stopping:
			return
		case <-q.wake:
		case <-ticker.C:
		}
	}
}

// fill claims as many due jobs as the queue has free slots and runs them.
func (e *Engine) fill(q *queue) {
	for {
		select {
		case <-e.stopping:
			return
		default:
		}
		free := q.free()
		if free <= 0 {
			return
		}
		jobs, err := e.claim(q.name, free)
		if err != nil {
			e.log.Error("claim jobs", "queue", q.name, "err", err)
			return
		}
		for _, j := range jobs {
			q.add(1)
			e.running.Add(1)
			go e.execute(q, j)
		}
		if len(jobs) < free {
			return
		}
	}
}

const claimSQL = `UPDATE jobs
	SET state = 'executing', attempt = attempt + 1, attempted_at = ?1, attempted_by = ?2
	WHERE id IN (
		SELECT id FROM jobs
		WHERE state IN ('available', 'scheduled', 'retryable') AND queue = ?3 AND scheduled_at <= ?1
		ORDER BY priority, scheduled_at, id
		LIMIT ?4)
	RETURNING ` + jobColumns

// claim moves up to n due jobs of queue to executing in one statement.
func (e *Engine) claim(queueName string, n int) ([]*Job, error) {
	var rows []jobRow
	if err := e.db.SelectContext(context.Background(), &rows, claimSQL,
		e.now().UnixMilli(), e.cfg.Node, queueName, n); err != nil {
		return nil, err
	}
	jobs := make([]*Job, 0, len(rows))
	for i := range rows {
		j, err := rows[i].job()
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b *Job) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), a.ScheduledAt.Compare(b.ScheduledAt), cmp.Compare(a.ID, b.ID))
	})
	return jobs, nil
}

func (e *Engine) execute(q *queue, j *Job) {
	defer e.running.Done()
	start := time.Now()
	var err error
	if w, ok := e.workers[j.Kind]; ok {
		err = runWorker(e.workCtx, w, j)
	} else {
		err = fmt.Errorf("no worker registered for kind %q", j.Kind)
	}
	e.finished <- &attempt{job: j, queue: q, err: err, finishedAt: e.now(), duration: time.Since(start)}
}

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
// rescued at the next start.
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
			e.log.Error("stopping: job outcome not recorded; the job will be rescued at the next start", "job_id", a.job.ID)
			e.unrecorded.Add(1)
			return
		}
		delay = min(delay*2, 5*time.Second)
		err = e.tryRecord(batch)
	}
	e.afterRecord(batch)
}

// tryRecord commits the outcomes of batch in one transaction. The jobs'
// in-memory state changes only when it commits, so a failed try can be
// repeated from the workers' original results.
func (e *Engine) tryRecord(batch []*attempt) error {
	updated := make([]Job, len(batch))
	err := e.inTx(context.Background(), func(tx *sqlx.Tx) error {
		for i, a := range batch {
			updated[i] = *a.job
			updated[i].Errors = slices.Clone(a.job.Errors)
			if len(a.job.recordTx) > 0 {
				if hookErr := e.runRecordHooks(context.Background(), tx, a); hookErr != nil {
					return hookErr
				}
			}
			if err := e.writeOutcome(context.Background(), tx, &updated[i], a.finishedAt, a.err); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, a := range batch {
		*a.job = updated[i]
	}
	return nil
}

// runRecordHooks runs the worker's RecordTx functions in the outcome's
// transaction. An error rolls the whole transaction back; recordOne then
// records the attempt as failed without them.
func (e *Engine) runRecordHooks(ctx context.Context, tx *sqlx.Tx, a *attempt) error {
	for _, fn := range a.job.recordTx {
		if err := fn(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// writeOutcome turns an attempt's result into the job's next state.
func (e *Engine) writeOutcome(ctx context.Context, tx *sqlx.Tx, j *Job, finishedAt time.Time, runErr error) error {
	at := finishedAt.UnixMilli()
	var cancel *cancelError
	var snooze *snoozeError
	var q string
	var args []any
	switch {
	case runErr == nil:
		j.State = StateCompleted
		q = "UPDATE jobs SET state = 'completed', completed_at = ? WHERE id = ? AND state = 'executing'"
		args = []any{at, j.ID}
	case errors.As(runErr, &snooze):
		j.State = StateScheduled
		j.ScheduledAt = finishedAt.Add(snooze.d)
		q = "UPDATE jobs SET state = 'scheduled', attempt = attempt - 1, scheduled_at = ? WHERE id = ? AND state = 'executing'"
		args = []any{j.ScheduledAt.UnixMilli(), j.ID}
	case errors.As(runErr, &cancel):
		j.State = StateCancelled
		q = "UPDATE jobs SET state = 'cancelled', cancelled_at = ?, errors = json_insert(errors, '$[#]', json(?)) WHERE id = ? AND state = 'executing'"
		args = []any{at, errorJSON(j.Attempt, finishedAt, runErr), j.ID}
	case j.Attempt >= j.MaxAttempts:
		j.State = StateDiscarded
		q = "UPDATE jobs SET state = 'discarded', discarded_at = ?, errors = json_insert(errors, '$[#]', json(?)) WHERE id = ? AND state = 'executing'"
		args = []any{at, errorJSON(j.Attempt, finishedAt, runErr), j.ID}
	default:
		j.State = StateRetryable
		j.ScheduledAt = finishedAt.Add(e.cfg.Backoff(j.Attempt))
		q = "UPDATE jobs SET state = 'retryable', scheduled_at = ?, errors = json_insert(errors, '$[#]', json(?)) WHERE id = ? AND state = 'executing'"
		args = []any{j.ScheduledAt.UnixMilli(), errorJSON(j.Attempt, finishedAt, runErr), j.ID}
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("job %d: write outcome: %w", j.ID, err)
	}
	if runErr != nil && snooze == nil {
		j.Errors = append(j.Errors, AttemptError{Attempt: j.Attempt, At: finishedAt, Error: runErr.Error()})
	}
	return nil
}

func errorJSON(attempt int, at time.Time, err error) string {
	return mustJSON(AttemptError{Attempt: attempt, At: at.UTC(), Error: err.Error()})
}

// afterRecord runs once the batch has committed: frees the queue slots,
// logs, and runs the workers' AfterRecord callbacks in commit order.
func (e *Engine) afterRecord(batch []*attempt) {
	touched := map[*queue]int{}
	for _, a := range batch {
		j := a.job
		touched[a.queue]++
		attrs := []any{"job_id", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt,
			"state", j.State, "duration_ms", a.duration.Milliseconds()}
		switch {
		case a.err == nil:
			e.log.Debug("job completed", attrs...)
		case j.State == StateDiscarded:
			e.log.Warn("job discarded", append(attrs, "err", a.err)...)
		default:
			e.log.Debug("job attempt failed", append(attrs, "err", a.err)...)
		}
		for _, fn := range j.afterRecord {
			fn()
		}
	}
	for q, n := range touched {
		q.add(-n)
		q.signal()
	}
}

// Rescue returns jobs left executing by a process that stopped without
// recording them. The interrupted attempt recorded nothing, so it is not
// counted: the job becomes available again with its attempt number given
// back, and the interruption is noted in its errors. A job rescued
// MaxRescues times is discarded instead, as the likely cause of the crashes.
// It reports how many jobs it rescued.
func (e *Engine) Rescue(ctx context.Context) (int, error) {
	now := e.now()
	res, err := e.db.ExecContext(ctx, `UPDATE jobs SET
		state        = CASE WHEN rescues + 1 >= ?1 THEN 'discarded' ELSE 'available' END,
		discarded_at = CASE WHEN rescues + 1 >= ?1 THEN ?2 END,
		attempt      = CASE WHEN rescues + 1 >= ?1 THEN attempt ELSE attempt - 1 END,
		rescues      = rescues + 1,
		scheduled_at = ?2,
		errors       = json_insert(errors, '$[#]', json_object(
			'attempt', attempt, 'at', ?3,
			'error', 'interrupted: the process running this attempt (' || coalesce(attempted_by, '?') || ') stopped before it finished'))
		WHERE state = 'executing'`,
		MaxRescues, now.UnixMilli(), now.Format(time.RFC3339Nano))
	if err != nil {
		return 0, fmt.Errorf("rescue executing jobs: %w", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		e.log.Warn("rescued jobs left executing by a stopped process", "jobs", n)
	}
	return int(n), nil
}

func (e *Engine) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := e.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
