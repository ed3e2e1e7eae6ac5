package main

// app_cluster.go holds what NewApp wires for several nodes on one
// PostgreSQL database (and refuses on SQLite): the node's name, the
// maintenance lease, the broker of the live streams, LivePet's presence,
// the list of nodes for the dashboard, and the SQLite file's lock.

import (
	"context"
	"errors"
	"log/slog"

	"github.com/phonehome/phonehome/broker"
	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
)

// livePublisher is what the feeds publish through. On SQLite (one node)
// it is the hub. On PostgreSQL, where several nodes may share the
// database, it is a broker that carries the shared streams' events to
// every node through the database, with the same ids everywhere (package
// broker); it is also returned (nil on SQLite), to be started before the
// feeds and to report its losses. isLeader, when set, keeps the table's
// trimming to one node.
func livePublisher(st *store.Store, hub *events.Hub, isLeader func() bool, ln *pglisten.Listener, logger *slog.Logger) (live.Publisher, *broker.Broker) {
	if st.Dialect != store.Postgres {
		return hub, nil
	}
	b := broker.New(st.Writer.DB, hub, broker.Config{
		Streams:  live.SharedStreams(),
		Volatile: live.NodeLocal,
		IsLeader: isLeader,
		Logger:   logger,
		Listener: ln,
	})
	return b, b
}

// liveEventLosses is the stats' LiveEvents source over the broker (nil
// without one: SQLite).
func liveEventLosses(b *broker.Broker) func() stats.LiveEvents {
	if b == nil {
		return nil
	}
	return func() stats.LiveEvents { return stats.LiveEvents{Lost: int64(b.Lost()), Skipped: b.Skipped()} }
}

// leaseRunner runs the lease with the app's other runners: Start campaigns
// once before returning, so a node that finds the lease free leads before
// the engine and the pets start (the pets' catch-up on deaths at start is
// the leader's); Stop resigns, so another node takes over at once.
type leaseRunner struct{ *cluster.Lease }

// Start campaigns once, then starts the lease's goroutine (see leaseRunner).
func (r leaseRunner) Start(ctx context.Context) error {
	if _, err := r.Campaign(ctx); err != nil {
		return err
	}
	return r.Lease.Start(ctx)
}

// lockSQLite makes this process the only server of a SQLite file: a
// second one would see only its own changes live and run the maintenance
// twice (cluster.LockSQLite). It is refused in one line naming the other
// process. A lock file that cannot be made (a read-only folder) is no
// refusal: opening the store then says what is wrong. PostgreSQL takes
// no lock: several nodes may serve one database.
func lockSQLite(db string, logger *slog.Logger) (unlock func() error, err error) {
	if store.IsPostgresURL(db) {
		return nil, nil
	}
	unlock, err = cluster.LockSQLite(db)
	switch {
	case errors.Is(err, cluster.ErrLocked):
		return nil, err
	case err != nil:
		logger.Debug("no lock beside the SQLite file", "err", err)
		return nil, nil
	}
	return unlock, nil
}

// livePetNodes makes LivePet one over every node of a PostgreSQL database
// (see pets.Config.Presence): this node's viewers go to a cluster.Presence,
// returned to be started before the sim and stopped after it (its Stop
// deletes this node's rows, so the others stop counting them at once; a
// node that dies stops counting within the TTL). On SQLite it does
// nothing and returns nil: one process serves a file (LockSQLite), so its
// own streams are every viewer there is, and presence would only add a
// write every 250 ms to the one writer.
func livePetNodes(st *store.Store, node string, logger *slog.Logger, cfg *pets.Config) (*cluster.Presence, error) {
	if st.Dialect != store.Postgres {
		return nil, nil
	}
	ttl := 3 * cluster.DefaultPresenceRefresh
	p, err := cluster.NewPresence(st.Writer, st.Dialect, node, cluster.PresenceOptions{TTL: ttl, Logger: logger})
	if err != nil {
		return nil, err
	}
	cfg.Presence, cfg.Node, cfg.PresenceTTL = p, node, ttl
	return p, nil
}
