package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/internal/setting"
	"github.com/phonehome/phonehome/store"
)

// Config configures an Engine. Zero fields take the documented defaults.
type Config struct {
	// Queues maps each queue this engine runs to its concurrency limit.
	// A limit set at run time with ScaleQueue (stored in job_queues)
	// overrides it, also after a restart.
	Queues map[string]int
	// PollInterval is how often idle queues look for due jobs (1 s).
	// Inserts through this engine wake its queues at once; on PostgreSQL
	// every insert, by any engine or process, wakes them through
	// LISTEN/NOTIFY, and the poll is the fallback.
	PollInterval time.Duration
	// Backoff is the delay before a failed attempt is retried (Oban's).
	// A worker may override it (WorkerWithBackoff).
	Backoff Backoff
	// Now is the clock (time.Now); tests pass a fake one.
	Now func() time.Time
	// Logger receives job logs (slog.Default()).
	Logger *slog.Logger
	// Node names this process in attempted_by and job_nodes (host name and
	// pid). Names must be unique among running engines: at Start, jobs left
	// executing under this engine's own name are rescued at once.
	Node string
	// Reader serves Queues and Counts (the writer when nil): pass the
	// read-only pool so the dashboard never waits for the writer.
	Reader *sqlx.DB

	// HeartbeatInterval is how often the node records that it is alive,
	// rescues the jobs of dead nodes, and reloads queue settings changed
	// by other nodes (15 s; on PostgreSQL a change reaches every engine at
	// once by NOTIFY, and the heartbeat's reload is the fallback).
	HeartbeatInterval time.Duration
	// NodeTimeout is how old a node's heartbeat must be before its
	// executing jobs may be rescued (1 min; at least two heartbeats).
	NodeTimeout time.Duration
	// PruneAfter is how long completed, cancelled and discarded jobs are
	// kept (24 h when zero, as River; negative keeps them forever).
	PruneAfter time.Duration
	// PruneInterval is how often old finished jobs are pruned (1 min).
	PruneInterval time.Duration
	// CompactInterval is how often, on PostgreSQL, the count ledgers are
	// folded (store.CompactCounts; 5 s). SQLite has no ledger.
	CompactInterval time.Duration
	// Periodic are the cron jobs this engine inserts (see PeriodicJob).
	Periodic []PeriodicJob
	// IsLeader, when set, tells whether this node leads the maintenance
	// that must run on one node at a time (cluster.Lease.IsLeader): cron
	// inserts, pruning and, on PostgreSQL, count compaction run only while
	// it returns true, checked before each step (one cron slot, one prune
	// batch, one compaction), each far shorter than the lease's margin.
	// Nil: this engine always leads (SQLite, where one process serves a
	// file, and a single node). Rescue runs on every node either way: it
	// judges each dead node by its heartbeat and is idempotent.
	IsLeader func() bool

	// RecordedTx, when set, runs in each outcome transaction just before
	// it commits, after the workers' RecordTx callbacks and the claims,
	// with the jobs whose outcomes it writes (as they will be once it
	// commits): the place to write, once per batch, what must commit with
	// a batch of outcomes (several nodes' live events: see
	// live.ExtraterrestrialFeed.RecordedTx). An error fails the
	// transaction, which is tried again, as when the database refuses it.
	RecordedTx func(ctx context.Context, tx *sqlx.Tx, recorded []*Job) error
	// Listener is the process's LISTEN connection on PostgreSQL, shared
	// with its other parts; the engine subscribes at Start and leaves at
	// Stop, and whoever made it starts it before and stops it after. Nil:
	// the engine makes one of its own (one more connection). Unused on
	// SQLite.
	Listener *pglisten.Listener

	// OnEvent receives every job's telemetry (see Event). It is called
	// synchronously by the engine's goroutines, several at once, and must
	// return quickly.
	OnEvent func(Event)
	// OnChange receives the ids of jobs whose rows changed, once per
	// committed batch, after the commit and without engine locks held:
	// inserts (those of InsertTx and InsertManyTx at the next Wake, which
	// the caller makes after its commit), claims, outcomes, operator
	// actions, rescues, cron inserts and prunes. A deleted row is reported
	// like a changed one: reading it then finds ErrNotFound, which means it
	// is gone (an id of a rolled-back InsertTx reads the same way). It may
	// be called from several goroutines at once and must not block: hand
	// the ids to another goroutine. Rows written around the engine (raw
	// SQL) are not reported.
	OnChange func(ids []int64)
}

// Defaults of Config.
const (
	DefaultPollInterval      = time.Second
	DefaultHeartbeatInterval = 15 * time.Second
	DefaultNodeTimeout       = time.Minute
	DefaultPruneAfter        = 24 * time.Hour
	DefaultPruneInterval     = time.Minute
	DefaultCompactInterval   = 5 * time.Second
)

// MaxRescues is how many times a job may be found executing after a crash
// before it is discarded as the likely cause of the crashes.
const MaxRescues = 3

// maxBatch bounds how many finished attempts are recorded per transaction.
const maxBatch = 256

// Engine runs the queues of one process over the jobs table.
type Engine struct {
	db     *sqlx.DB
	reader *sqlx.DB
	// d holds the statements of db's dialect (SQLite or PostgreSQL).
	d *dialect
	// st is a view of db and reader as a store, for its transactions and
	// its count compaction (never closed: the caller owns the pools).
	st   *store.Store
	cfg  Config
	log  *slog.Logger
	host string
	pid  int
	// bootID and procStart identify this process beyond its pid (see
	// dead); empty and zero where the system does not tell.
	bootID    string
	procStart sql.NullInt64
	workers   map[string]Worker
	queues    map[string]*queue
	cron      []*periodic

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

	// runsMu guards runs: the attempts running in this engine, by job id,
	// from their claim until their outcome is recorded.
	runsMu sync.Mutex
	runs   map[int64]*run
	// claimGate makes a claim and the registration of its runs one step
	// for CancelJob(s): a cancel sees every job claimed before it as
	// running here (so it interrupts it, and a retry after it is refused
	// while the worker runs), never one claimed but not yet registered.
	// Claims share it; cancels take it alone.
	claimGate sync.RWMutex
	// afterClaim, set by tests only, runs after a claim's runs are
	// registered and before they start.
	afterClaim func(ids []int64)

	// settingsMu makes storing a queue setting and applying it, and
	// reading the stored settings and applying them, one step each.
	settingsMu sync.Mutex
	// settingsWake tells settingsLoop to reload the stored queue settings
	// (PostgreSQL: another engine changed one).
	settingsWake chan struct{}

	// pendingMu guards pending: ids inserted in callers' transactions,
	// reported to OnChange at the next Wake.
	pendingMu sync.Mutex
	pending   []int64

	throughput throughputRing
	subs       subscribers

	// stmts are the hot statements (see claim.go).
	stmts hotStmts
	// listen is the engine's use of Config.Listener (PostgreSQL; nil on
	// SQLite; see listen.go).
	listen *pglisten.Part
}

// run is one attempt running in this engine.
type run struct {
	ctx    context.Context
	cancel context.CancelFunc
	// byOperator is set when CancelJob cancelled it.
	byOperator atomic.Bool
}

// attempt is one finished run of a job, waiting to be recorded.
type attempt struct {
	job        *Job
	queue      *queue
	run        *run
	err        error
	finishedAt time.Time
	duration   time.Duration
	queueTime  time.Duration
	// dropped is set when the job's row was no longer this attempt's to
	// write (an operator cancelled it): nothing was recorded.
	dropped bool
}

// New makes an engine over db, the store's writer: on SQLite its single
// connection, on PostgreSQL its pool (the engine then speaks PostgreSQL, and
// any number of engines, in this process or others, may share the
// database). Register workers, then Start it.
func New(db *sqlx.DB, cfg Config) (*Engine, error) {
	setting.Default(&cfg.PollInterval, DefaultPollInterval)
	if cfg.Backoff == nil {
		cfg.Backoff = ObanBackoff(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	setting.Default(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setting.Default(&cfg.NodeTimeout, DefaultNodeTimeout)
	if cfg.NodeTimeout < 2*cfg.HeartbeatInterval {
		return nil, fmt.Errorf("node timeout %s must be at least two heartbeat intervals (%s)", cfg.NodeTimeout, cfg.HeartbeatInterval)
	}
	if cfg.PruneAfter == 0 {
		cfg.PruneAfter = DefaultPruneAfter
	}
	setting.Default(&cfg.PruneInterval, DefaultPruneInterval)
	setting.Default(&cfg.CompactInterval, DefaultCompactInterval)
	host, _ := os.Hostname()
	if cfg.Node == "" {
		cfg.Node = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	reader := cfg.Reader
	if reader == nil {
		reader = db
	}
	e := &Engine{
		db:         db,
		reader:     reader,
		d:          dialectOf(db),
		st:         &store.Store{Writer: db, Reader: reader, Dialect: store.SQLite},
		cfg:        cfg,
		log:        cfg.Logger,
		host:       host,
		pid:        os.Getpid(),
		bootID:     bootID(),
		workers:    map[string]Worker{},
		queues:     map[string]*queue{},
		finished:   make(chan *attempt, 1024),
		stopping:   make(chan struct{}),
		recorderGo: make(chan struct{}),
		runs:       map[int64]*run{},

		settingsWake: make(chan struct{}, 1),
	}
	if e.d.postgres {
		e.st.Dialect = store.Postgres
		e.listen = pglisten.For(cfg.Listener, db.DB, pglisten.Options{Logger: e.log})
	}
	if ticks, ok := procStart(e.pid); ok {
		e.procStart = sql.NullInt64{Int64: ticks, Valid: true}
	}
	for name, limit := range cfg.Queues {
		if name == "" || limit < 1 {
			return nil, fmt.Errorf("queue %q: limit %d must be at least 1", name, limit)
		}
		e.queues[name] = newQueue(name, limit, e.log)
	}
	for i, p := range cfg.Periodic {
		pj, err := newPeriodic(p)
		if err != nil {
			return nil, fmt.Errorf("periodic job %d: %w", i, err)
		}
		e.cron = append(e.cron, pj)
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

// leading reports whether this node may run leader-only maintenance now
// (see Config.IsLeader).
func (e *Engine) leading() bool { return e.cfg.IsLeader == nil || e.cfg.IsLeader() }

// Node is the name this engine runs under (Config.Node, or its default):
// the name in attempted_by, in the attempts' errors and in job_nodes.
func (e *Engine) Node() string { return e.cfg.Node }

// Dialect is the kind of database the engine runs on, for callers that
// write SQL of their own for it (InsertSelect's Select).
func (e *Engine) Dialect() store.Dialect { return e.st.Dialect }

// Start records this node (refusing a name another process serves, see
// CheckNameFree), rescues jobs that stopped processes left executing (see
// Rescue; jobs left under this node's own name too), loads the queues'
// stored settings, then starts the queues, the recorder and the
// maintenance (heartbeat, rescue, prune, cron). It returns once they run;
// ctx bounds the start-up work only. When that fails Start may be called
// again; once it has succeeded, later calls do nothing.
func (e *Engine) Start(ctx context.Context) error {
	e.startMu.Lock()
	defer e.startMu.Unlock()
	if e.started {
		return nil
	}
	if err := e.prepare(ctx); err != nil {
		return err
	}
	if err := e.enroll(ctx); err != nil {
		return err
	}
	if _, err := e.rescue(ctx, true); err != nil {
		return err
	}
	if err := e.loadQueueSettings(ctx); err != nil {
		return err
	}
	if e.d.postgres {
		if err := e.listen.Start(ctx, e.subscription()); err != nil {
			return err
		}
	}
	e.started = true
	e.recorderWG.Add(1)
	go e.recordLoop()
	for _, q := range e.queues {
		e.loops.Add(1)
		go e.queueLoop(q)
	}
	e.loops.Add(1)
	go e.maintain()
	if e.d.postgres {
		e.loops.Add(3)
		go e.settingsLoop()
		go e.compactLoop()
		go e.telemetryLoop()
	}
	if e.cfg.PruneAfter >= 0 {
		e.loops.Add(1)
		go e.pruneLoop()
	}
	if len(e.cron) > 0 {
		e.startCron()
		e.loops.Add(1)
		go e.cronLoop()
	}
	return nil
}

// Wake makes every queue look for due jobs now instead of at its next poll,
// and reports the jobs inserted with InsertTx or InsertManyTx since the last
// Wake to OnChange: call it after committing such an insert.
func (e *Engine) Wake() {
	e.reportPending()
	for _, q := range e.queues {
		q.signal()
	}
}

// Stop stops claiming jobs and waits for running ones to finish and be
// recorded. When ctx ends first, running jobs' contexts are cancelled and
// Stop waits briefly (2 s) for them; a job that returns an error then was
// interrupted by this stop, so its attempt is given back (the job is
// available again, the attempt not counted). A job that still does not
// return is left executing, and is rescued once this node's heartbeat is
// stale (or at the next Start of an engine with the same Node name).
func (e *Engine) Stop(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		close(e.stopping)
		e.loops.Wait()
		_ = e.listen.Stop(ctx)
		// The recorder claims too (piggyback.go), checking stopping under
		// claimGate: once this barrier is passed, no claim starts a job.
		e.claimGate.Lock()
		e.claimGate.Unlock()
		done := make(chan struct{})
		go func() { e.running.Wait(); close(done) }()
		left := false
		select {
		case <-done:
		case <-ctx.Done():
			e.cancelWork()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				left = true
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
			// executing for a rescue.
			e.cancelWork()
			<-recorded
		}
		e.cancelWork()
		if n := e.unrecorded.Load(); n > 0 {
			left = true
			err = errors.Join(err, fmt.Errorf("stop: the outcomes of %d jobs could not be recorded; they are left executing and will be rescued", n))
		}
		e.startMu.Lock()
		started := e.started
		e.startMu.Unlock()
		e.closeStmts()
		if started && !left {
			// Nothing of ours is executing: leave without a trace. With
			// jobs left, the row stays and its heartbeat goes stale.
			if _, derr := e.db.ExecContext(context.WithoutCancel(ctx), e.d.deleteNode, e.cfg.Node); derr != nil {
				e.log.Warn("remove node row", "node", e.cfg.Node, "err", derr)
			}
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
		q.claimMu.Lock()
		free := q.free()
		if free <= 0 {
			q.claimMu.Unlock()
			return
		}
		e.claimGate.RLock()
		jobs, err := e.claim(q.name, free)
		e.claimed(q, err)
		if err != nil {
			e.claimGate.RUnlock()
			q.claimMu.Unlock()
			return
		}
		runs := e.register(jobs)
		e.claimGate.RUnlock()
		q.add(len(jobs))
		q.claimMu.Unlock()
		e.running.Add(len(jobs))
		e.changed(e.launch(q, jobs, runs))
		if len(jobs) < free {
			return
		}
	}
}

// launch starts the workers of claimed jobs (registered and counted in
// e.running already), after telling afterClaim, and returns their ids.
func (e *Engine) launch(q *queue, jobs []*Job, runs []*run) []int64 {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	if e.afterClaim != nil && len(ids) > 0 {
		e.afterClaim(ids)
	}
	for i, j := range jobs {
		go e.execute(q, j, runs[i])
	}
	return ids
}

// register records claimed jobs as running here, each with the context its
// worker will get.
func (e *Engine) register(jobs []*Job) []*run {
	runs := make([]*run, len(jobs))
	e.runsMu.Lock()
	defer e.runsMu.Unlock()
	for i, j := range jobs {
		ctx, cancel := context.WithCancel(e.workCtx)
		runs[i] = &run{ctx: ctx, cancel: cancel}
		e.runs[j.ID] = runs[i]
	}
	return runs
}

// execute runs one claimed attempt and hands its result to the recorder.
func (e *Engine) execute(q *queue, j *Job, r *run) {
	defer e.running.Done()
	ctx := r.ctx
	defer r.cancel()

	w, ok := e.workers[j.Kind]
	var timeout time.Duration
	if tw, isTimed := w.(WorkerWithTimeout); ok && isTimed {
		if timeout = tw.Timeout(j); timeout > 0 {
			var cancelTimeout context.CancelFunc
			ctx, cancelTimeout = context.WithTimeout(ctx, timeout)
			defer cancelTimeout()
		}
	}
	waited := queueTime(j)
	e.observeStart(j, waited)
	start := time.Now()
	var err error
	switch {
	case r.byOperator.Load():
		// Cancelled by an operator between its claim and now: the row
		// is cancelled, so nothing will be recorded; do not start it.
		err = context.Canceled
	case ok:
		err = runWorker(ctx, w, j)
	default:
		err = fmt.Errorf("no worker registered for kind %q", j.Kind)
	}
	if err != nil && timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) && e.workCtx.Err() == nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	if err != nil && e.workCtx.Err() != nil && interruptible(err) {
		// Our own hard stop cancelled it: the attempt did not fail, it
		// was cut short, so it is given back, as a rescue would.
		err = &interruptedError{err: err}
	}
	e.finished <- &attempt{job: j, queue: q, run: r, err: err, finishedAt: e.now(), duration: time.Since(start), queueTime: waited}
}

// forget removes finished attempts from the running set.
func (e *Engine) forget(batch []*attempt) {
	e.runsMu.Lock()
	for _, a := range batch {
		if e.runs[a.job.ID] == a.run {
			delete(e.runs, a.job.ID)
		}
	}
	e.runsMu.Unlock()
}

// inTx runs fn in one transaction and commits it. On PostgreSQL a
// transaction that failed only because it met another (a deadlock, a
// serialization failure) is run again, a few times: fn must then be
// repeatable, as every caller's is (it decides from what it reads in tx).
func (e *Engine) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	for try := 1; ; try++ {
		err := e.st.InTx(ctx, fn)
		if err == nil || try == 3 || !retryable(err) {
			return err
		}
	}
}
