package cluster

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/setting"
	"github.com/phonehome/phonehome/store"
)

// DefaultNodeTimeout is how old a node's heartbeat may be before Nodes
// leaves it out: the job engine's own default (jobs.DefaultNodeTimeout),
// past which it rescues the node's jobs.
const DefaultNodeTimeout = time.Minute

// Node is a running phonehome process, as the job engine's heartbeat row
// (job_nodes) shows it.
type Node struct {
	// Name is the node's name (see NodeName).
	Name string `json:"name"`
	// Host and PID are the machine and process it runs as.
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// StartedAt is when its engine first heartbeat; HeartbeatAt its last.
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	// Age is how long ago its last heartbeat was, by the clock Nodes
	// reads (never negative).
	Age time.Duration `json:"age"`
}

// RegistryOptions are a Registry's settings.
type RegistryOptions struct {
	// Timeout is how old a heartbeat may be for its node to count as
	// alive (DefaultNodeTimeout); pass the job engine's NodeTimeout.
	Timeout time.Duration
	// Now is the clock; nil reads the database's, the clock the
	// heartbeats are compared with elsewhere too. Tests pass one they move.
	Now func() time.Time
}

// Registry lists the nodes running on a database. It only reads: the
// rows are the job engine's heartbeats (table job_nodes, written every
// jobs.Config.HeartbeatInterval and removed at a clean stop or when a
// survivor rescues a dead node's jobs), so every node that runs jobs is
// listed and no second heartbeat repeats the same facts.
type Registry struct {
	q       queries
	timeout time.Duration
}

// NewRegistry is the registry of the nodes on db (the store's Reader will
// do).
func NewRegistry(db *sqlx.DB, dialect store.Dialect, opts RegistryOptions) *Registry {
	setting.Default(&opts.Timeout, DefaultNodeTimeout)
	return &Registry{q: queries{db: db, dialect: dialect, now: opts.Now}, timeout: opts.Timeout}
}

// Nodes lists the live nodes (a heartbeat no older than the timeout) by
// name, each with its heartbeat's age.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	var rows []struct {
		Name        string `db:"name"`
		Host        string `db:"host"`
		PID         int    `db:"pid"`
		StartedAt   int64  `db:"started_at"`
		HeartbeatAt int64  `db:"heartbeat_at"`
		Now         int64  `db:"now"`
	}
	err := r.q.db.SelectContext(ctx, &rows, r.q.sql(`SELECT name, host, pid, started_at, heartbeat_at, {now} AS now
		FROM job_nodes WHERE heartbeat_at >= {now} - CAST(?2 AS BIGINT)`), r.q.nowArg(r.q.clock()), r.timeout.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	out := make([]Node, 0, len(rows))
	for _, n := range rows {
		out = append(out, Node{Name: n.Name, Host: n.Host, PID: n.PID, StartedAt: fromMillis(n.StartedAt),
			HeartbeatAt: fromMillis(n.HeartbeatAt), Age: max(time.Duration(n.Now-n.HeartbeatAt)*time.Millisecond, 0)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
