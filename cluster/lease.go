package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/store"
)

// LeaseChannel is the PostgreSQL channel a resigning leader notifies, with
// the lease's name as the payload, so the other nodes campaign at once
// instead of waiting for the row to expire.
const LeaseChannel = "phonehome_lease"

// DefaultLeaseTTL is how long a lease lasts without renewal when
// NewLease is given no TTL.
const DefaultLeaseTTL = 15 * time.Second

// LeaseOptions are a Lease's settings beyond its name, node and TTL.
type LeaseOptions struct {
	// RenewEvery is how often the holder renews the lease and the others
	// try to take it (TTL/3): a holder has two more tries before it stops
	// believing it leads.
	RenewEvery time.Duration
	// Margin is how long before the lease's end on the database the holder
	// stops believing it leads (TTL/5): room for the clocks' rates and for
	// a maintenance step that began just before (see Lease).
	Margin time.Duration
	// Now is the clock of the rows and of the belief; nil (the default,
	// and what several real nodes need) uses the database's clock for the
	// rows and this process's monotonic clock for the belief. Tests pass
	// a clock they move.
	Now func() time.Time
	// OnChange is called with true when this node becomes the leader and
	// with false when it stops being one (lost, expired or resigned), from
	// the lease's goroutine, in order; it must return quickly.
	OnChange func(leading bool)
	// Logger receives the failures to renew (slog.Default()).
	Logger *slog.Logger
	// Listener is the process's LISTEN connection on PostgreSQL, shared
	// with its other parts: the lease subscribes to LeaseChannel at Start
	// and leaves at Stop, and whoever made it starts it before and stops
	// it after. Nil: the lease makes one of its own (one more
	// connection). Unused on SQLite.
	Listener *pglisten.Listener
}

// Lease is one node's side of a named lease that one node at a time
// holds: the leader. Start campaigns for it and renews it every
// RenewEvery; Stop resigns (expires the row and, on PostgreSQL, notifies
// LeaseChannel so another node takes over at once). A node that dies
// without resigning loses the lease when its row expires, TTL after its
// last renewal.
//
// Two leaders never overlap. The holder believes it leads (IsLeader) only
// until TTL − Margin after it sent the last renewal that succeeded, by
// its own monotonic clock, and IsLeader compares that deadline with the
// clock at every call, so the belief ends on time whatever the lease's
// goroutine is doing. The renewal wrote an expiry of at least send time +
// TTL on the database's clock (the statement ran after it was sent), and
// another node takes the row only once the database's clock has passed
// that expiry: so a leader that cannot reach the database stops believing
// Margin before anyone else may start. A renewal that hangs is cancelled
// after RenewEvery. Callers check IsLeader before each step of
// leader-only work and keep each step shorter than Margin. The argument
// assumes the database's clock is not stepped forward by more than Margin
// while a lease runs (NTP slews small corrections; it does not step them).
type Lease struct {
	q        queries
	name     string
	node     string
	ttl      time.Duration
	opts     LeaseOptions
	log      *slog.Logger
	loop     loop.Loop
	wake     chan struct{}
	reportMu sync.Mutex
	reported bool
	// listen is the lease's use of opts.Listener on PostgreSQL; nil on
	// SQLite.
	listen *pglisten.Part

	mu    sync.Mutex
	until time.Time // the belief's end on q.clock; zero when not leading
	term  int64
}

// NewLease is the lease called name, held in the table cluster_leases of
// db (the store's Writer) for the node named node (see NodeName), lasting
// ttl (DefaultLeaseTTL when zero) past each renewal.
func NewLease(db *sqlx.DB, dialect store.Dialect, name, node string, ttl time.Duration, opts LeaseOptions) (*Lease, error) {
	if name == "" || len(name) > 100 {
		return nil, fmt.Errorf("lease name %q: 1 to 100 bytes", name)
	}
	if node == "" || len(node) > 200 {
		return nil, fmt.Errorf("lease node %q: 1 to 200 bytes", node)
	}
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	if ttl < 30*time.Millisecond {
		return nil, fmt.Errorf("lease TTL %s is too short", ttl)
	}
	if opts.RenewEvery <= 0 {
		opts.RenewEvery = ttl / 3
	}
	if opts.Margin <= 0 {
		opts.Margin = ttl / 5
	}
	if opts.RenewEvery >= ttl-opts.Margin {
		return nil, fmt.Errorf("lease renewal every %s must come before the belief ends (TTL %s − margin %s)", opts.RenewEvery, ttl, opts.Margin)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	l := &Lease{
		q:    queries{db: db, dialect: dialect, now: opts.Now},
		name: name, node: node, ttl: ttl, opts: opts,
		log:  log.With("lease", name, "node", node),
		wake: make(chan struct{}, 1),
	}
	if dialect == store.Postgres {
		l.listen = pglisten.For(opts.Listener, db.DB, pglisten.Options{Logger: l.log})
	}
	return l, nil
}

// Name is the lease's name.
func (l *Lease) Name() string { return l.name }

// Node is the name of the node this Lease campaigns for.
func (l *Lease) Node() string { return l.node }

// IsLeader reports whether this node holds the lease now, and will for
// at least Margin more. It reads no database: it is cheap enough to call
// before every step of leader-only work.
func (l *Lease) IsLeader() bool {
	l.mu.Lock()
	until := l.until
	l.mu.Unlock()
	return !until.IsZero() && l.q.clock().Before(until)
}

// Term is the lease's term when this node last took or renewed it: a
// number that grows with every change of holder, which leader-only
// writes can carry as a fencing token. Zero before the first election.
func (l *Lease) Term() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term
}

// Campaign takes the lease if it is free or expired, or renews it if
// this node holds it, in one statement, and reports whether this node
// leads. Start's goroutine calls it every RenewEvery; tests call it to
// step a lease by hand. On an error the belief is left as it was (it
// ends by itself at its deadline).
func (l *Lease) Campaign(ctx context.Context) (bool, error) {
	sent := l.q.clock()
	// A late answer is still safe (the belief counts from sent), but a
	// statement that hangs must not keep the goroutine from reporting a
	// lost lead: it gets one renewal period.
	ctx, cancel := context.WithTimeout(ctx, l.opts.RenewEvery)
	defer cancel()
	// The WHERE of DO UPDATE lets this node in only when the row is its
	// own or expired; otherwise no row comes back. PostgreSQL locks the
	// conflicting row and evaluates the WHERE on its latest version, and
	// SQLite has one writer, so two nodes never both get a row.
	var term int64
	err := l.q.db.QueryRowContext(ctx, l.q.sql(`INSERT INTO cluster_leases (name, node, term, acquired_at, expires_at)
		VALUES (?2, ?3, 1, {now}, {now} + CAST(?4 AS BIGINT))
		ON CONFLICT (name) DO UPDATE SET
			node        = excluded.node,
			term        = CASE WHEN cluster_leases.node = excluded.node THEN cluster_leases.term ELSE cluster_leases.term + 1 END,
			acquired_at = CASE WHEN cluster_leases.node = excluded.node THEN cluster_leases.acquired_at ELSE excluded.acquired_at END,
			expires_at  = excluded.expires_at
		WHERE cluster_leases.node = excluded.node OR cluster_leases.expires_at < excluded.acquired_at
		RETURNING term`), l.q.nowArg(sent), l.name, l.node, l.ttl.Milliseconds()).Scan(&term)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, sql.ErrNoRows):
		l.until = time.Time{}
		return false, nil
	case err != nil:
		return !l.until.IsZero() && l.q.clock().Before(l.until), fmt.Errorf("lease %s: campaign: %w", l.name, err)
	}
	l.until, l.term = sent.Add(l.ttl-l.opts.Margin), term
	return l.q.clock().Before(l.until), nil
}

// Resign gives the lease up if this node holds it: it expires the row
// and, on PostgreSQL, notifies LeaseChannel in the same statement, so the
// other nodes campaign at once. The row stays (expired) rather than being
// deleted, so the next holder's term still counts on from this one's.
// This node stops believing it leads before the statement is sent.
func (l *Lease) Resign(ctx context.Context) error {
	l.mu.Lock()
	l.until = time.Time{}
	l.mu.Unlock()
	l.report()
	query := `UPDATE cluster_leases SET expires_at = 0 WHERE name = ?1 AND node = ?2`
	if l.q.dialect == store.Postgres {
		query = `WITH gone AS (UPDATE cluster_leases SET expires_at = 0 WHERE name = $1 AND node = $2 RETURNING name)
			SELECT pg_notify('` + LeaseChannel + `', name) FROM gone`
	}
	if _, err := l.q.db.ExecContext(ctx, query, l.name, l.node); err != nil {
		return fmt.Errorf("lease %s: resign: %w", l.name, err)
	}
	return nil
}

// Holder is the node holding the lease now by the database's rows, or ""
// when none does (no row, or an expired one): for dashboards.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	var node string
	err := l.q.db.QueryRowContext(ctx, l.q.sql(`SELECT node FROM cluster_leases WHERE name = ?2 AND expires_at >= {now}`),
		l.q.nowArg(l.q.clock()), l.name).Scan(&node)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lease %s: holder: %w", l.name, err)
	}
	return node, nil
}

// Start campaigns at once and then every RenewEvery in a goroutine of its
// own, until Stop; on PostgreSQL the listener (LeaseOptions.Listener)
// hears LeaseChannel meanwhile, so a resignation elsewhere wakes it. A
// second Start does nothing.
func (l *Lease) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// A resignation of this lease's holder wakes the campaign, and so
	// does each (re)connection of the listener: a resignation while it
	// was down went unheard.
	err := l.listen.Start(ctx, pglisten.Subscription{
		Channels: []string{LeaseChannel},
		Notify: func(_, payload string) {
			if payload == l.name {
				loop.Signal(l.wake)
			}
		},
		Reconnected: func() { loop.Signal(l.wake) },
	})
	if err != nil {
		return err
	}
	l.loop.Start(l.run)
	return nil
}

// Stop ends the goroutine, then resigns (see Resign), at most until ctx
// ends. Safe to call more than once, and without Start.
func (l *Lease) Stop(ctx context.Context) error {
	if err := errors.Join(l.loop.Stop(ctx), l.listen.Stop(ctx)); err != nil {
		return err
	}
	return l.Resign(ctx)
}

// report calls OnChange when the belief differs from what it last told.
func (l *Lease) report() {
	l.reportMu.Lock()
	defer l.reportMu.Unlock()
	if leading := l.IsLeader(); leading != l.reported {
		l.reported = leading
		if leading {
			l.log.Info("leading", "term", l.Term())
		} else {
			l.log.Info("not leading")
		}
		if l.opts.OnChange != nil {
			l.opts.OnChange(leading)
		}
	}
}

func (l *Lease) run(done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stop also cancels a campaign in flight.
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	outage := loop.Outage{Log: l.log, Failed: "cannot reach the database to campaign", Recovered: "campaigning again"}
	for {
		_, err := l.Campaign(ctx)
		outage.Record(ctx, err)
		l.report()
		wait := l.opts.RenewEvery
		// Wake at the belief's end too, so OnChange(false) comes on time
		// when renewals fail (with a clock of its own, a test steps it).
		if l.opts.Now == nil && l.IsLeader() {
			l.mu.Lock()
			if left := time.Until(l.until); left < wait {
				wait = left
			}
			l.mu.Unlock()
		}
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			return
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
	}
}
