package jobs

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/phonehome/phonehome/internal/loop"
)

// ErrUnknownQueue is returned for a queue this engine does not run.
var ErrUnknownQueue = errors.New("unknown queue")

// MaxQueueLimit bounds ScaleQueue.
const MaxQueueLimit = 10_000

// queue is one queue this engine runs.
type queue struct {
	name       string
	configured int // the limit of Config.Queues
	wake       chan struct{}

	// claimMu is held through a claim, from reading the free slots to
	// counting the claimed jobs, so a pause or scale that returned is
	// seen by every later claim and no claim decided before it is still
	// running.
	claimMu sync.Mutex
	// claims logs the outages of the queue's claims (Engine.claimed),
	// guarded by claimMu.
	claims loop.Outage

	mu      sync.Mutex
	limit   int
	paused  bool
	running int
}

// newQueue is a queue of the given limit, its claims' outages logged to
// log (claimed).
func newQueue(name string, limit int, log *slog.Logger) *queue {
	return &queue{name: name, limit: limit, configured: limit, wake: make(chan struct{}, 1),
		claims: loop.Outage{Log: log.With("queue", name), Failed: "claim jobs", Recovered: "claiming jobs again"}}
}

// claimed records the outcome of a claim of q, with q.claimMu held:
// claims that fail are logged when they start failing and once when they
// work again, not at every poll while the database is away. Nothing is
// logged while the engine stops.
func (e *Engine) claimed(q *queue, err error) {
	select {
	case <-e.stopping:
	default:
		q.claims.Record(context.Background(), err)
	}
}

func (q *queue) free() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.paused {
		return 0
	}
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

// set applies stored settings; a nil limit means the configured one.
func (q *queue) set(limit sql.NullInt64, paused bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = q.configured
	if limit.Valid {
		q.limit = int(limit.Int64)
	}
	q.paused = paused
}

// QueueInfo describes one queue for an operator.
type QueueInfo struct {
	// Name is the queue's name.
	Name string
	// Limit is how many of its jobs this engine runs at once (0 for a
	// queue that has jobs but that this engine does not run); each node
	// runs as many.
	Limit int
	// Running is how many of its jobs are running now: on this engine, or,
	// on PostgreSQL, where several nodes may share the database, on every
	// node (its executing jobs), so every node's dashboard says the same.
	Running int
	// Nodes is how many nodes run the queue at Limit each: the live nodes
	// on PostgreSQL (heartbeat within Config.NodeTimeout), 1 on SQLite.
	Nodes int
	// Paused is true while the queue claims no new jobs.
	Paused bool
	// Counts are the queue's jobs per state (every state present).
	Counts map[State]int
}

// Queue settings' statements, the same on both dialects but for the
// placeholders (paused is written true/false: a boolean on PostgreSQL, 1/0
// in SQLite's integer column).
const (
	loadQueuesSQL = `SELECT name, "limit", paused FROM job_queues`
	pauseQueueSQL = `INSERT INTO job_queues (name, paused, updated_at) VALUES (?1, true, ?2)
		 ON CONFLICT (name) DO UPDATE SET paused = true, updated_at = ?2`
	resumeQueueSQL = `INSERT INTO job_queues (name, paused, updated_at) VALUES (?1, false, ?2)
		 ON CONFLICT (name) DO UPDATE SET paused = false, updated_at = ?2`
	scaleQueueSQL = `INSERT INTO job_queues (name, "limit", updated_at) VALUES (?1, ?3, ?2)
		 ON CONFLICT (name) DO UPDATE SET "limit" = ?3, updated_at = ?2`
)

type queueSetting struct {
	Name   string        `db:"name"`
	Limit  sql.NullInt64 `db:"limit"`
	Paused bool          `db:"paused"`
}

// loadQueueSettings applies the stored pause and scale settings to this
// engine's queues and wakes those that may claim now.
func (e *Engine) loadQueueSettings(ctx context.Context) error {
	// Read and apply as one step against this node's own pause, resume
	// and scale: one made between them would be undone by the older read.
	e.settingsMu.Lock()
	defer e.settingsMu.Unlock()
	var rows []queueSetting
	if err := e.db.SelectContext(ctx, &rows, e.d.loadQueues); err != nil {
		return fmt.Errorf("load queue settings: %w", err)
	}
	stored := map[string]queueSetting{}
	for _, r := range rows {
		stored[r.Name] = r
	}
	for name, q := range e.queues {
		r := stored[name]
		q.claimMu.Lock()
		q.set(r.Limit, r.Paused)
		q.claimMu.Unlock()
		q.signal()
	}
	return nil
}

// Queues lists the queues this engine runs, and any other queue that has
// jobs, by name, with their settings and counts. It reads Config.Reader
// and never scans the jobs table.
func (e *Engine) Queues(ctx context.Context) ([]QueueInfo, error) {
	type countRow struct {
		Queue string `db:"queue"`
		State string `db:"state"`
		N     int    `db:"n"`
	}
	var counts []countRow
	if err := e.reader.SelectContext(ctx, &counts, e.d.queueCounts); err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	var settings []queueSetting
	if err := e.reader.SelectContext(ctx, &settings, e.d.loadQueues); err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	infos := map[string]*QueueInfo{}
	info := func(name string) *QueueInfo {
		if qi, ok := infos[name]; ok {
			return qi
		}
		qi := &QueueInfo{Name: name, Counts: zeroCounts()}
		infos[name] = qi
		return qi
	}
	for name, q := range e.queues {
		qi := info(name)
		q.mu.Lock()
		qi.Limit, qi.Running, qi.Paused = q.limit, q.running, q.paused
		q.mu.Unlock()
	}
	for _, s := range settings {
		if _, ours := e.queues[s.Name]; !ours {
			if qi, ok := infos[s.Name]; ok {
				qi.Paused = s.Paused
			}
		}
	}
	for _, c := range counts {
		info(c.Queue).Counts[State(c.State)] += c.N
	}
	nodes := 1
	if e.d.postgres {
		live, err := e.Nodes(ctx)
		if err != nil {
			return nil, fmt.Errorf("queues: %w", err)
		}
		nodes = max(len(live), 1)
		for _, qi := range infos {
			qi.Running = qi.Counts[StateExecuting]
		}
	}
	for name := range e.queues {
		infos[name].Nodes = nodes
	}
	out := make([]QueueInfo, 0, len(infos))
	for _, qi := range infos {
		out = append(out, *qi)
	}
	slices.SortFunc(out, func(a, b QueueInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func zeroCounts() map[State]int {
	m := make(map[State]int, len(States))
	for _, s := range States {
		m[s] = 0
	}
	return m
}

// Counts returns how many jobs are in each state, over all queues (every
// state present). It reads Config.Reader and never scans the jobs table.
func (e *Engine) Counts(ctx context.Context) (map[State]int, error) {
	type row struct {
		State string `db:"state"`
		N     int    `db:"n"`
	}
	var rows []row
	if err := e.reader.SelectContext(ctx, &rows, e.d.stateCounts); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	m := zeroCounts()
	for _, r := range rows {
		m[State(r.State)] = r.N
	}
	return m, nil
}

// PauseQueue stops name from claiming new jobs (running ones finish). The
// setting is stored: it survives a restart. On PostgreSQL it reaches every
// other engine on the database when it commits (a NOTIFY in the same
// statement makes them reload the settings, within milliseconds); every
// engine also reloads them at each heartbeat, which covers a listener that
// was reconnecting.
func (e *Engine) PauseQueue(ctx context.Context, name string) error {
	return e.updateQueue(ctx, name, func(q *queue) { q.paused = true }, e.d.pauseQueue)
}

// ResumeQueue lets a paused queue claim jobs again, at once.
func (e *Engine) ResumeQueue(ctx context.Context, name string) error {
	return e.updateQueue(ctx, name, func(q *queue) { q.paused = false }, e.d.resumeQueue)
}

// ScaleQueue sets how many jobs of name run at once (1…MaxQueueLimit). A
// lower limit lets running jobs finish; a higher one claims at once. The
// setting is stored like PauseQueue's.
func (e *Engine) ScaleQueue(ctx context.Context, name string, limit int) error {
	if limit < 1 || limit > MaxQueueLimit {
		return fmt.Errorf("scale queue %q: limit %d is outside 1…%d", name, limit, MaxQueueLimit)
	}
	return e.updateQueue(ctx, name, func(q *queue) { q.limit = limit }, e.d.scaleQueue, limit)
}

func (e *Engine) updateQueue(ctx context.Context, name string, apply func(*queue), query string, extra ...any) error {
	q, ok := e.queues[name]
	if !ok {
		return fmt.Errorf("queue %q: %w", name, ErrUnknownQueue)
	}
	args := append([]any{name, e.now().UnixMilli()}, extra...)
	e.settingsMu.Lock()
	defer e.settingsMu.Unlock()
	if _, err := e.db.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("queue %q: store setting: %w", name, err)
	}
	q.claimMu.Lock()
	q.mu.Lock()
	apply(q)
	q.mu.Unlock()
	q.claimMu.Unlock()
	q.signal()
	return nil
}
