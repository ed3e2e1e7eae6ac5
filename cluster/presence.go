package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/internal/setting"
	"github.com/phonehome/phonehome/store"
)

// Defaults of PresenceOptions.
const (
	DefaultPresenceFlush   = 250 * time.Millisecond
	DefaultPresenceRefresh = 2 * time.Second
)

// PresenceOptions are a Presence's settings.
type PresenceOptions struct {
	// Flush is the most often this node writes its changed counts (250
	// ms): changes in between are merged into one write.
	Flush time.Duration
	// Refresh is how often this node marks all its rows fresh (2 s).
	Refresh time.Duration
	// TTL is how long a row counts after it was last refreshed (3 ×
	// Refresh): a node that died stops counting within it.
	TTL time.Duration
	// Now is the clock of the rows; nil (what several real nodes need:
	// one clock, no skew between hosts) reads the database's. Tests pass
	// a clock they move.
	Now func() time.Time
	// Logger receives the failures to write, as it is: give it the
	// node's key when it lacks one (the app's logger has node=). When
	// nil, slog.Default() with node=.
	Logger *slog.Logger
}

// Presence is how many viewers each topic (e.g. "pet:42") has on every
// node: each node keeps its own counts in memory (Set, Add) and writes
// them to cluster_presence, one row per topic it has viewers on; readers
// sum the rows refreshed within TTL (Count, Counts). A row carries its own
// heartbeat (updated_at, refreshed every Refresh) rather than joining the
// job engine's heartbeat, whose timeout (a minute, tuned so a slow node's
// jobs are never rescued) is far longer than a viewer count may stay
// wrong. The leader deletes the stale rows (Sweep); Stop deletes this
// node's at once.
type Presence struct {
	q    queries
	node string
	opts PresenceOptions
	log  *slog.Logger
	loop loop.Loop
	wake chan struct{}

	// flushMu makes writes one at a time: two flushes in flight could
	// commit an older count of a topic after a newer one.
	flushMu sync.Mutex

	mu     sync.Mutex
	counts map[string]int      // this node's viewers per topic, > 0
	dirty  map[string]struct{} // topics whose row is not written yet
}

// NewPresence is node's presence in db (the store's Writer).
func NewPresence(db *sqlx.DB, dialect store.Dialect, node string, opts PresenceOptions) (*Presence, error) {
	if node == "" || len(node) > 200 {
		return nil, fmt.Errorf("presence node %q: 1 to 200 bytes", node)
	}
	setting.Default(&opts.Flush, DefaultPresenceFlush)
	setting.Default(&opts.Refresh, DefaultPresenceRefresh)
	setting.Default(&opts.TTL, 3*opts.Refresh)
	if opts.TTL <= opts.Refresh {
		return nil, fmt.Errorf("presence TTL %s must be longer than its refresh (%s)", opts.TTL, opts.Refresh)
	}
	// The app's logger names the node already (node= once on each line);
	// the default does not.
	log := opts.Logger
	if log == nil {
		log = slog.Default().With("node", node)
	}
	return &Presence{q: queries{db: db, dialect: dialect, now: opts.Now}, node: node, opts: opts,
		log: log, wake: make(chan struct{}, 1),
		counts: map[string]int{}, dirty: map[string]struct{}{}}, nil
}

// Set makes this node's count of viewers on topic n (0 or less removes
// it). It only changes memory; the row follows within Flush.
func (p *Presence) Set(topic string, n int) {
	p.mu.Lock()
	p.setLocked(topic, n)
	p.mu.Unlock()
	loop.Signal(p.wake)
}

// Add changes this node's count on topic by delta (a viewer came: +1;
// went: −1) and returns the new local count.
func (p *Presence) Add(topic string, delta int) int {
	p.mu.Lock()
	n := max(p.counts[topic]+delta, 0)
	p.setLocked(topic, n)
	p.mu.Unlock()
	loop.Signal(p.wake)
	return n
}

func (p *Presence) setLocked(topic string, n int) {
	if n <= 0 {
		delete(p.counts, topic)
	} else {
		p.counts[topic] = n
	}
	p.dirty[topic] = struct{}{}
}

// Local is this node's own count on topic, as set (written or not).
func (p *Presence) Local(topic string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[topic]
}

// Flush writes the counts changed since the last Flush, in one
// transaction. Start's goroutine calls it; tests call it to step by hand.
// On an error the changes stay pending for the next Flush.
func (p *Presence) Flush(ctx context.Context) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	if len(p.dirty) == 0 {
		p.mu.Unlock()
		return nil
	}
	type change struct {
		topic string
		n     int
	}
	changes := make([]change, 0, len(p.dirty))
	for t := range p.dirty {
		changes = append(changes, change{t, p.counts[t]})
	}
	clear(p.dirty)
	p.mu.Unlock()
	now := p.q.nowArg(p.q.clock())
	err := p.inTx(ctx, func(tx *sqlx.Tx) error {
		for _, c := range changes {
			var err error
			if c.n > 0 {
				_, err = tx.ExecContext(ctx, p.q.sql(`INSERT INTO cluster_presence (topic, node, count, updated_at)
					VALUES (?2, ?3, CAST(?4 AS BIGINT), {now})
					ON CONFLICT (topic, node) DO UPDATE SET count = excluded.count, updated_at = excluded.updated_at`),
					now, c.topic, p.node, c.n)
			} else {
				_, err = tx.ExecContext(ctx, p.q.sql(`DELETE FROM cluster_presence WHERE topic = ?1 AND node = ?2`), c.topic, p.node)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		p.mu.Lock()
		for _, c := range changes {
			p.dirty[c.topic] = struct{}{}
		}
		p.mu.Unlock()
		return fmt.Errorf("presence: flush: %w", err)
	}
	return nil
}

// Refresh marks every row of this node fresh, in one statement; when the
// rows are not all there (the leader swept them while this node could not
// write), it rewrites them all.
func (p *Presence) Refresh(ctx context.Context) error {
	if err := p.Flush(ctx); err != nil {
		return err
	}
	p.flushMu.Lock()
	p.mu.Lock()
	var want int64 // the rows written so far: counted topics not pending
	for t := range p.counts {
		if _, pending := p.dirty[t]; !pending {
			want++
		}
	}
	p.mu.Unlock()
	res, err := p.q.db.ExecContext(ctx, p.q.sql(`UPDATE cluster_presence SET updated_at = {now} WHERE node = ?2`),
		p.q.nowArg(p.q.clock()), p.node)
	p.flushMu.Unlock()
	if err != nil {
		return fmt.Errorf("presence: refresh: %w", err)
	}
	if got, err := res.RowsAffected(); err == nil && got == want {
		return nil
	}
	p.mu.Lock()
	for t := range p.counts {
		p.dirty[t] = struct{}{}
	}
	p.mu.Unlock()
	return p.Flush(ctx)
}

// Count is how many viewers topic has over every live node.
func (p *Presence) Count(ctx context.Context, topic string) (int, error) {
	var n int64
	err := p.q.db.GetContext(ctx, &n, p.q.sql(`SELECT coalesce(sum(count), 0) FROM cluster_presence
		WHERE topic = ?2 AND updated_at >= {now} - CAST(?3 AS BIGINT)`), p.q.nowArg(p.q.clock()), topic, p.opts.TTL.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("presence: count: %w", err)
	}
	return int(n), nil
}

// Counts is every topic watched on some live node, with its viewers over
// every live node (for "Active pets").
func (p *Presence) Counts(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Topic string `db:"topic"`
		N     int64  `db:"n"`
	}
	err := p.q.db.SelectContext(ctx, &rows, p.q.sql(`SELECT topic, sum(count) AS n FROM cluster_presence
		WHERE updated_at >= {now} - CAST(?2 AS BIGINT) GROUP BY topic`), p.q.nowArg(p.q.clock()), p.opts.TTL.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("presence: counts: %w", err)
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.Topic] = int(r.N)
	}
	return out, nil
}

// Sweep deletes the rows no node has refreshed within TTL (those of
// nodes that died) and reports how many. Readers already ignore them:
// Sweep only keeps the table small. The leader calls it.
func (p *Presence) Sweep(ctx context.Context) (int64, error) {
	res, err := p.q.db.ExecContext(ctx, p.q.sql(`DELETE FROM cluster_presence WHERE updated_at < {now} - CAST(?2 AS BIGINT)`),
		p.q.nowArg(p.q.clock()), p.opts.TTL.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("presence: sweep: %w", err)
	}
	return res.RowsAffected()
}

// Start writes changes within Flush and refreshes every Refresh, in a
// goroutine of its own, until Stop. A second Start does nothing.
func (p *Presence) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.loop.Start(p.run)
	return nil
}

// Stop ends the goroutine and deletes this node's rows, so its viewers
// stop counting at once; at most until ctx ends.
func (p *Presence) Stop(ctx context.Context) error {
	if err := p.loop.Stop(ctx); err != nil {
		return err
	}
	if _, err := p.q.db.ExecContext(ctx, p.q.sql(`DELETE FROM cluster_presence WHERE node = ?1`), p.node); err != nil {
		return fmt.Errorf("presence: remove rows: %w", err)
	}
	return nil
}

func (p *Presence) run(done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-done
		cancel()
	}()
	refresh := time.NewTicker(p.opts.Refresh)
	defer refresh.Stop()
	outage := loop.Outage{Log: p.log, Failed: "cannot write presence", Recovered: "writing presence again"}
	for {
		var err error
		select {
		case <-done:
			return
		case <-refresh.C:
			err = p.Refresh(ctx)
		case <-p.wake:
			err = p.Flush(ctx)
			// At most one write per Flush period, however fast viewers
			// come and go.
			t := time.NewTimer(p.opts.Flush)
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
			}
		}
		outage.Record(ctx, err)
	}
}

// inTx runs fn in a transaction.
func (p *Presence) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := p.q.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
