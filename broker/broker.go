// Package broker carries the live streams' events between the nodes that
// share one PostgreSQL database, with the database as the broker: no other
// service.
//
// A Broker stands between the feeds (package live) and the node's hub
// (package events). An event of a shared stream (the extraterrestrials',
// jobs' and pets' lists) is not handed to the hub: it is queued, and a
// writer inserts what is queued every few milliseconds into the
// live_events table in one statement, with pg_notify of the highest id in
// the same transaction (the notification carries only that id, never the
// data). Every node LISTENs (on the process's one LISTEN connection,
// pglisten); a notification wakes its reader, which selects the rows
// after the last it delivered, in id order, and hands each to its hub
// with the row's id (events.Hub.PublishAt). So
// every client on every node gets the same events with the same ids, in
// the same order, and may resume on any node: from the hub's window, else
// from the table (the broker is the hub's events.History), else resync.
// The reader also polls (every second) in case a notification was lost or
// the LISTEN connection is reconnecting.
//
// Ids are assigned at insert, not at commit. Every batch takes one
// transaction-level advisory lock first, so batches from all nodes follow
// one another and commit in id order: a state read under the lock (see
// Ordered) is published after every event whose change it may not have
// seen. An event written in its change's own transaction (PublishTx) takes
// the lock in shared mode. A hole in the ids (an id missing below one that
// is visible) is then an insert still running, or one rolled back (a
// permanent hole): the reader waits until every transaction that was
// running when it found the hole has ended, then reads again or skips it,
// and waits HoleWait at most.
//
// Events of the other streams (a pet's own stream, the runtime dashboard)
// go straight to the local hub, as do the events Config.Volatile names (a
// figure of this node's own, sent without an id).
//
// The table is trimmed to a window by count and age per stream, and the
// trim point is recorded, so a resume from before it gets resync rather
// than a silent gap.
package broker

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/internal/setting"
)

// Channel is the notification channel: its payload is the highest id a
// transaction inserted.
const Channel = "live_events"

// lockKey is the transaction-level advisory lock every insert takes first:
// exclusive for the writer's batches (pg_advisory_xact_lock), shared for
// PublishTx's events: "lvev" in ASCII.
const lockKey = 0x6c766576

// The defaults of Config.
const (
	DefaultBatch     = 2 * time.Millisecond
	DefaultPoll      = time.Second
	DefaultHoleWait  = 10 * time.Second
	DefaultKeep      = 10000
	DefaultKeepFor   = 10 * time.Minute
	DefaultTrimEvery = 10 * time.Second
	// maxPending bounds what waits for the database: beyond it (the
	// database has been away for a while), new events are dropped.
	maxPending = 1 << 16
	// readPage is the most rows the reader takes at a time.
	readPage = 1000
)

// Hub is what the broker needs of the node's hub; *events.Hub is one.
type Hub interface {
	PublishKey(stream, event string, key int64, data []byte) (int64, error)
	PublishAt(stream, event string, key, id int64, data []byte) error
	PublishVolatile(stream, event string, data []byte) error
	Share(stream string, start int64, history events.History)
	Advance(id int64)
	Resync(stream string)
	Clients() map[string]int
}

var _ Hub = (*events.Hub)(nil)

// Config tunes a Broker. Zero fields take the defaults.
type Config struct {
	// Streams are the shared streams. Every node must share the same.
	Streams []string
	// Volatile, when set, names events of shared streams that stay on
	// this node and are sent without an id (Hub.PublishVolatile): a
	// figure of the node's own, which would alternate with the other
	// nodes' on a shared stream.
	Volatile func(stream, event string) bool
	// Batch is how long the first event queued waits for others before
	// they are inserted together (DefaultBatch).
	Batch time.Duration
	// Poll is how often the reader looks for rows without being notified
	// (DefaultPoll).
	Poll time.Duration
	// HoleWait is the longest the reader waits for a missing id
	// (DefaultHoleWait); it stops waiting as soon as every transaction
	// that could still write it has ended.
	HoleWait time.Duration
	// Keep is how many events of each stream the table keeps at most
	// (DefaultKeep: more than the hub's longest window), KeepFor for how
	// long at most (DefaultKeepFor); TrimEvery is how often it is trimmed
	// (DefaultTrimEvery). A resume from before what is kept gets resync.
	Keep      int
	KeepFor   time.Duration
	TrimEvery time.Duration
	// WriteAttempts is how many times a batch is tried while the database
	// refuses it (8, over about 5 s) before its events are given up; the
	// streams they were on then get a resync event with the next batch
	// that is stored, so no page misses them silently.
	WriteAttempts int
	// IsLeader, when set, makes only the node for which it reports true
	// trim the table (trimming is idempotent: nil trims on every node).
	IsLeader func() bool
	// Logger (slog.Default()).
	Logger *slog.Logger
	// Listener is the process's LISTEN connection, shared with its other
	// parts: the broker subscribes to Channel at Start and leaves at Stop,
	// and whoever made it starts it before and stops it after. Nil: the
	// broker makes one of its own (one more connection).
	Listener *pglisten.Listener
}

// Broker is a live.Publisher that carries the shared streams' events
// between nodes through PostgreSQL (see the package documentation), and
// the hub's events.History of those streams.
type Broker struct {
	db     *sql.DB
	hub    Hub
	cfg    Config
	log    *slog.Logger
	shared map[string]bool

	mu      sync.Mutex
	pending []item
	dropped int
	lost    int // events given up on after WriteAttempts
	// skipped counts the ids the reader skipped after HoleWait while an
	// insert was still under way (reader's goroutine; read under mu).
	skipped int64
	// resyncDue are the shared streams that lost events (given up on, or
	// dropped): the next batch stored starts with a resync event for each.
	resyncDue map[string]bool
	stopped   bool
	wake      chan struct{} // the writer's

	notified chan struct{} // the reader's
	start    int64         // the id the reader starts after

	writer, reader, trimmer loop.Loop
	// listen is the broker's use of Config.Listener.
	listen *pglisten.Part
}

// item is what the writer takes in order: an event, or an ordered read.
type item struct {
	ev   row
	read func(ctx context.Context, publish func(stream, event string, key int64, data []byte))
	done chan error
}

// row is one event of the table.
type row struct {
	ID     int64
	Stream string
	Event  string
	Key    int64
	Data   []byte
}

// New makes a broker for the hub over db (a pgx database/sql pool, such
// as the store's Writer). Start it before the feeds publish.
func New(db *sql.DB, hub Hub, cfg Config) *Broker {
	cfg.Batch = orDefault(cfg.Batch, DefaultBatch)
	cfg.Poll = orDefault(cfg.Poll, DefaultPoll)
	cfg.HoleWait = orDefault(cfg.HoleWait, DefaultHoleWait)
	cfg.KeepFor = orDefault(cfg.KeepFor, DefaultKeepFor)
	cfg.TrimEvery = orDefault(cfg.TrimEvery, DefaultTrimEvery)
	setting.Default(&cfg.Keep, DefaultKeep)
	setting.Default(&cfg.WriteAttempts, writeAttempts)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Broker{
		db: db, hub: hub, cfg: cfg, log: cfg.Logger,
		shared:    map[string]bool{},
		resyncDue: map[string]bool{},
		wake:      make(chan struct{}, 1),
		notified:  make(chan struct{}, 1),
	}
	for _, s := range cfg.Streams {
		b.shared[s] = true
	}
	b.listen = pglisten.For(cfg.Listener, db, pglisten.Options{Logger: cfg.Logger})
	return b
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Start reads where the table is, shares the streams with the hub from
// there, and starts the writer, the subscription to Channel, the reader
// and the trimmer.
func (b *Broker) Start(ctx context.Context) error {
	err := b.db.QueryRowContext(ctx, `SELECT coalesce((SELECT max(id) FROM live_events),
		(SELECT before FROM live_event_trims WHERE stream = '*'), 0)`).Scan(&b.start)
	if err != nil {
		return err
	}
	for _, s := range b.cfg.Streams {
		b.hub.Share(s, b.start, b)
	}
	b.writer.Start(b.write)
	if err := b.listen.Start(ctx, b.subscription()); err != nil {
		return err
	}
	b.reader.Start(b.read)
	b.trimmer.Start(b.trim)
	return nil
}

// Stop inserts what is queued (the writer's last batch), then stops
// everything and waits.
func (b *Broker) Stop(ctx context.Context) error {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	err := b.writer.Stop(ctx)
	return errors.Join(err, b.listen.Stop(ctx), b.reader.Stop(ctx), b.trimmer.Stop(ctx))
}

// Publish publishes an event for every client of the stream.
func (b *Broker) Publish(stream, event string, data []byte) (int64, error) {
	return b.PublishKey(stream, event, 0, data)
}

// PublishKey publishes an event about the row key: on a shared stream, to
// every node (its id is the table's, known once inserted: 0 is returned);
// on another, to this node's hub.
func (b *Broker) PublishKey(stream, event string, key int64, data []byte) (int64, error) {
	if !b.shared[stream] {
		return b.hub.PublishKey(stream, event, key, data)
	}
	if b.cfg.Volatile != nil && b.cfg.Volatile(stream, event) {
		return 0, b.hub.PublishVolatile(stream, event, data)
	}
	if len(data) == 0 {
		return 0, errors.New("publish: empty data")
	}
	return 0, b.enqueue(item{ev: row{Stream: stream, Event: event, Key: key, Data: data}})
}

// Lost counts the events this node gave up on: the database refused them
// WriteAttempts times, or too many were waiting for it. Their streams'
// pages were told to resync.
func (b *Broker) Lost() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lost + b.dropped
}

// Skipped counts the event ids this node's reader gave up waiting for
// (HoleWait) while their insert was still under way: if they committed
// after all, their streams' pages were told to resync.
func (b *Broker) Skipped() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.skipped
}

// Clients counts this node's clients of every stream.
func (b *Broker) Clients() map[string]int { return b.hub.Clients() }

// Ordered runs read in the writer's next transaction, under the lock that
// orders every node's inserts, and inserts what it publishes: so what it
// reads from the database (counts, a job's row) is published after every
// event whose change it may not have seen, and the last word on the
// stream is the latest state. read must be quick (other nodes' inserts
// wait for it) and may run again if the transaction fails; it gets the
// writer's context. Ordered returns once its events are committed (or
// given up on), whatever ctx says: read uses its caller's state, and must
// not run after its caller went on.
func (b *Broker) Ordered(ctx context.Context, read func(ctx context.Context, publish func(stream, event string, key int64, data []byte))) error {
	done := make(chan error, 1)
	if err := b.enqueue(item{read: read, done: done}); err != nil {
		return err
	}
	return <-done
}

func (b *Broker) enqueue(it item) error {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return errors.New("publish: broker stopped")
	}
	if len(b.pending) >= maxPending {
		b.dropped++
		if it.read == nil {
			b.resyncDue[it.ev.Stream] = true
		} else { // it may have published on any of them
			for s := range b.shared {
				b.resyncDue[s] = true
			}
		}
		n := b.dropped
		b.mu.Unlock()
		if n == 1 || n%1000 == 0 {
			b.log.Error("live events dropped: the database has not taken them for a while", "dropped", n)
		}
		return errors.New("publish: too many events waiting for the database")
	}
	b.pending = append(b.pending, it)
	b.mu.Unlock()
	loop.Signal(b.wake)
	return nil
}

// take returns what is queued, in order.
func (b *Broker) take() []item {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.pending
	b.pending = nil
	return items
}

// publishLocal hands an event that does not travel to this node's hub.
func (b *Broker) publishLocal(stream, event string, key int64, data []byte) {
	var err error
	if b.cfg.Volatile != nil && b.cfg.Volatile(stream, event) {
		err = b.hub.PublishVolatile(stream, event, data)
	} else {
		_, err = b.hub.PublishKey(stream, event, key, data)
	}
	if err != nil {
		b.log.Debug("publish local event", "stream", stream, "event", event, "err", err)
	}
}

// isShared reports whether an event travels through the table.
func (b *Broker) isShared(stream, event string) bool {
	return b.shared[stream] && (b.cfg.Volatile == nil || !b.cfg.Volatile(stream, event))
}

// Streams lists the shared streams, sorted.
func (b *Broker) Streams() []string {
	out := make([]string, 0, len(b.shared))
	for s := range b.shared {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
