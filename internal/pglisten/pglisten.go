// Package pglisten is a process's one LISTEN connection to PostgreSQL.
//
// LISTEN belongs to a session, and a database/sql pool hands its
// connections back between statements, so whoever wants PostgreSQL's
// notifications needs a connection of its own beside the pool. The job
// engine, the maintenance lease, the live-event broker and LivePet each
// want some; a Listener gives them one connection between them: each
// Subscribes its channels with a callback, and the Listener LISTENs on
// every channel subscribed, hands each notification to the callbacks of its
// channel, reconnects with a growing delay when the connection is lost, and
// tells every subscriber after each (re)connection, so that it can make up
// for what was announced while nobody listened.
package pglisten

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/phonehome/phonehome/internal/loop"
)

// Bounds of the reconnection backoff: the first retry comes soon (a
// server restart, a killed session), later ones double up to the max.
const (
	DefaultRetryMin = 50 * time.Millisecond
	DefaultRetryMax = 5 * time.Second
)

// Options tune a Listener. Zero fields take the defaults.
type Options struct {
	// Logger receives the outages: a warning when the connection is lost,
	// an information when it LISTENs again, and a debug line for each
	// failed attempt between them (discarded when nil).
	Logger *slog.Logger
	// RetryMin and RetryMax bound the delay before connecting again
	// (DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
}

// Subscription is one part's interest in the notifications.
type Subscription struct {
	// Channels are the channels to LISTEN on, in this order: plain
	// lower-case identifiers (letters, digits, underscores).
	Channels []string
	// Notify receives each notification on one of Channels. It is called
	// by the Listener's goroutine, which reads no more notifications (for
	// anyone) until it returns: it must not block — signal a goroutine of
	// your own and return.
	Notify func(channel, payload string)
	// Reconnected, when set, is called once the connection LISTENs on
	// Channels: the first time, and again after every reconnection.
	// Whatever was announced meanwhile reached nobody, so a subscriber
	// looks again (re-reads, wakes its loops). Called by the Listener's
	// goroutine, like Notify: it must not block either.
	Reconnected func()
}

// Listener holds one connection LISTENing on every channel subscribed.
// New makes it, Subscribe adds channels (before or after Start), Start
// connects in a goroutine of its own and Stop ends it. The zero value is
// not usable.
type Listener struct {
	db   *sql.DB
	log  *slog.Logger
	opts Options
	loop loop.Loop

	// cfg is how to connect, copied once from a pooled connection; used
	// by the goroutine only.
	cfg *pgx.ConnConfig

	mu     sync.Mutex
	stop   context.CancelFunc // ends the goroutine's context (set by Start)
	subs   []*sub
	heard  map[string]bool // channels LISTENed on the current connection
	conn   uint64          // the current connection's number (0: none yet)
	dirty  bool            // a subscription came since the last LISTENs
	cancel context.CancelFunc
}

// sub is a Subscription and the connection it was last told of.
type sub struct {
	Subscription
	told uint64 // the connection whose LISTENs Reconnected was called after
}

// New is a listener connecting as db's connections do (db must be a pgx
// database/sql pool, such as the store's Writer on PostgreSQL): it never
// needs the URL.
func New(db *sql.DB, opts Options) *Listener {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(DefaultRetryMax, opts.RetryMin)
	}
	return &Listener{db: db, log: opts.Logger, opts: opts, heard: map[string]bool{}}
}

// channelName is what a channel name may be: it goes into LISTEN
// unquoted (so that the session's last statement reads "LISTEN name").
var channelName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Subscribe adds s: from the next LISTEN on (at once when connected), its
// channels' notifications go to s.Notify, and s.Reconnected is called.
// unsubscribe stops the calls (one already under way may still finish);
// the channels stay LISTENed until the connection is next replaced, with
// nobody told. Subscribe refuses a channel that is not a plain name.
func (l *Listener) Subscribe(s Subscription) (unsubscribe func(), err error) {
	if s.Notify == nil {
		return nil, fmt.Errorf("pglisten: subscription without Notify")
	}
	for _, ch := range s.Channels {
		if !channelName.MatchString(ch) {
			return nil, fmt.Errorf("pglisten: channel %q: use lower-case letters, digits and underscores", ch)
		}
	}
	su := &sub{Subscription: s}
	l.mu.Lock()
	l.subs = append(l.subs, su)
	l.dirty = true
	if l.cancel != nil {
		l.cancel() // the wait ends; the goroutine LISTENs on the new channels
	}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			for i, x := range l.subs {
				if x == su {
					l.subs = append(l.subs[:i:i], l.subs[i+1:]...)
					break
				}
			}
		})
	}, nil
}

// Start connects and listens in a goroutine of its own until Stop. A
// second Start does nothing.
func (l *Listener) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The goroutine outlives ctx: Stop ends it, through its own context
	// (which also ends a wait or a connection attempt under way).
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.mu.Lock()
	if l.stop != nil {
		l.mu.Unlock()
		cancel()
		return nil
	}
	l.stop = cancel
	l.mu.Unlock()
	l.loop.Start(func(<-chan struct{}) { l.run(runCtx) })
	return nil
}

// Stop closes the connection and waits for the goroutine, at most until
// ctx ends. Safe more than once, and without Start.
func (l *Listener) Stop(ctx context.Context) error {
	l.mu.Lock()
	if l.stop != nil {
		l.stop()
	}
	l.mu.Unlock()
	return l.loop.Stop(ctx)
}

// run keeps a connection until ctx ends, connecting again after a growing
// delay when it is lost (the delay starts over once one LISTENs). An
// outage is logged twice, however long it lasts: a warning when the
// connection is lost, and an information once one LISTENs again; each
// failed attempt in between is a debug line.
func (l *Listener) run(ctx context.Context) {
	delay := l.opts.RetryMin
	var lostAt time.Time // when the outage under way began; zero: none
	connected := func() {
		delay = l.opts.RetryMin
		if !lostAt.IsZero() {
			l.log.Info("PostgreSQL notifications back", "after", time.Since(lostAt).Round(time.Millisecond))
			lostAt = time.Time{}
		}
	}
	for {
		err := l.session(ctx, connected)
		if ctx.Err() != nil {
			return
		}
		if lostAt.IsZero() {
			lostAt = time.Now()
			l.log.Warn("PostgreSQL notifications lost; each part polls until they are back", "err", err, "retry_in", delay)
		} else {
			l.log.Debug("PostgreSQL notifications still lost", "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, l.opts.RetryMax)
	}
}

// session connects, LISTENs and hands notifications out until the
// connection fails or ctx ends. connected runs once it first LISTENs.
func (l *Listener) session(ctx context.Context, connected func()) error {
	cfg, err := l.config(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	l.mu.Lock()
	l.conn++
	l.heard = map[string]bool{}
	l.dirty = true
	l.mu.Unlock()
	first := true
	for {
		if err := l.listenNew(ctx, conn); err != nil {
			return err
		}
		if first {
			first = false
			connected()
		}
		// The wait ends at a notification, or when Subscribe cancels it
		// to have new channels LISTENed (the connection stays usable: see
		// config).
		waitCtx, cancel := context.WithCancel(ctx)
		l.mu.Lock()
		if l.dirty {
			l.mu.Unlock()
			cancel()
			continue
		}
		l.cancel = cancel
		l.mu.Unlock()
		n, err := conn.WaitForNotification(waitCtx)
		l.mu.Lock()
		l.cancel = nil
		l.mu.Unlock()
		interrupted := waitCtx.Err() != nil
		cancel()
		switch {
		case err != nil && interrupted && ctx.Err() == nil && !conn.IsClosed():
			continue
		case err != nil:
			return err
		case n != nil:
			l.dispatch(n.Channel, n.Payload)
		}
	}
}

// listenNew LISTENs on the channels this connection does not yet, then
// calls Reconnected of each subscription not yet told of this connection.
func (l *Listener) listenNew(ctx context.Context, conn *pgx.Conn) error {
	l.mu.Lock()
	l.dirty = false
	var channels []string
	seen := map[string]bool{}
	for _, s := range l.subs {
		for _, ch := range s.Channels {
			if !l.heard[ch] && !seen[ch] {
				seen[ch] = true
				channels = append(channels, ch)
			}
		}
	}
	l.mu.Unlock()
	// One statement per channel, in the subscriptions' order: tests find
	// a part's session by its last statement.
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	l.mu.Lock()
	for _, ch := range channels {
		l.heard[ch] = true
	}
	var tell []func()
	for _, s := range l.subs {
		if s.told == l.conn || !l.allHeard(s.Channels) {
			continue // told already, or subscribed since the LISTENs above
		}
		s.told = l.conn
		if s.Reconnected != nil {
			tell = append(tell, s.Reconnected)
		}
	}
	l.mu.Unlock()
	for _, f := range tell {
		f()
	}
	return nil
}

// allHeard reports whether the connection LISTENs on every one of
// channels. l.mu is held.
func (l *Listener) allHeard(channels []string) bool {
	for _, ch := range channels {
		if !l.heard[ch] {
			return false
		}
	}
	return true
}

// dispatch hands a notification to every subscription of its channel.
func (l *Listener) dispatch(channel, payload string) {
	l.mu.Lock()
	var to []func(string, string)
	for _, s := range l.subs {
		for _, ch := range s.Channels {
			if ch == channel {
				to = append(to, s.Notify)
				break
			}
		}
	}
	l.mu.Unlock()
	for _, f := range to {
		f(channel, payload)
	}
}

// config returns the settings of the pool's connections (host, user,
// password, TLS…), copied from a pooled pgx connection the first time, so
// the listener connects exactly as the pool does.
func (l *Listener) config(ctx context.Context) (*pgx.ConnConfig, error) {
	if l.cfg != nil {
		return l.cfg.Copy(), nil
	}
	c, err := l.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	err = c.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("not a pgx connection (%T)", dc)
		}
		cfg := pc.Conn().Config().Copy()
		// The copy came with the pooled connection's notification hook:
		// without this, pgx would hand every notification to that other
		// connection's buffer.
		cfg.OnNotification = nil
		// A wait whose context ends only meets a read deadline, which
		// leaves the connection usable (Subscribe interrupts waits),
		// whatever the pool chose (a cancel request would be sent to
		// the server for nothing).
		cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
		}
		l.cfg = cfg
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l.cfg.Copy(), nil
}

// Part is one part of the process (the engine, the lease, the broker,
// LivePet) listening: on the process's shared Listener, or, when it was
// given none (a program or test that builds the part alone), on one of its
// own that it starts and stops with itself. Its methods do nothing on a
// nil *Part, which is what a part has on SQLite.
type Part struct {
	l           *Listener
	own         bool
	unsubscribe func()
}

// For is the Part of a part given shared: shared itself, or, when nil, a
// Listener of the part's own on db with opts.
func For(shared *Listener, db *sql.DB, opts Options) *Part {
	if shared != nil {
		return &Part{l: shared}
	}
	return &Part{l: New(db, opts), own: true}
}

// Start subscribes s, and starts the part's own listener if it has one.
// Call it from the part's Start; a second call does nothing.
func (p *Part) Start(ctx context.Context, s Subscription) error {
	if p == nil || p.unsubscribe != nil {
		return nil
	}
	unsubscribe, err := p.l.Subscribe(s)
	if err != nil {
		return err
	}
	p.unsubscribe = unsubscribe
	if p.own {
		return p.l.Start(ctx)
	}
	return nil
}

// Stop ends the subscription, and stops the part's own listener if it has
// one, at most until ctx ends. Call it from the part's Stop; safe more
// than once, and without Start.
func (p *Part) Stop(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if p.unsubscribe != nil {
		p.unsubscribe()
	}
	if p.own {
		return p.l.Stop(ctx)
	}
	return nil
}
