package jobs

// The engine's node table, job_nodes: each engine's heartbeat, which nodes
// are alive (Nodes, and the count behind QueueInfo.Nodes) and which are
// dead (for Rescue). The engine writes the table; everything else reads it
// through Nodes.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Node is a running engine (a phonehome process) as its heartbeat row in
// job_nodes shows it.
type Node struct {
	// Name is the node's name (Config.Node).
	Name string
	// Host and PID are the machine and process it runs as.
	Host string
	PID  int
	// StartedAt is when its engine first heartbeat; HeartbeatAt its last.
	StartedAt, HeartbeatAt time.Time
	// Age is how long ago its last heartbeat was by this engine's clock
	// (never negative).
	Age time.Duration
}

// Nodes lists the live nodes on the database, this one included once it
// has started, by name: those whose heartbeat is no older than
// Config.NodeTimeout by this engine's clock, the rule by which Rescue
// judges other hosts' nodes. It reads the database.
func (e *Engine) Nodes(ctx context.Context) ([]Node, error) {
	var rows []nodeRow
	if err := e.reader.SelectContext(ctx, &rows, e.d.nodes); err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	now := e.now()
	out := make([]Node, 0, len(rows))
	for _, n := range rows {
		if e.stale(n, now) {
			continue
		}
		beat := fromMillis(n.HeartbeatAt)
		out = append(out, Node{Name: n.Name, Host: n.Host, PID: n.PID, StartedAt: fromMillis(n.StartedAt),
			HeartbeatAt: beat, Age: max(now.Sub(beat), 0)})
	}
	return out, nil
}

// ErrNodeNameInUse is Start's refusal of a node name that another running
// process serves (Config.Node): two engines under one name would take
// each other's jobs for orphans (the rescue at start takes every job left
// executing under the engine's own name) and lead together.
var ErrNodeNameInUse = errors.New("node name in use")

// CheckNameFree returns ErrNodeNameInUse, saying which process holds the
// name, when job_nodes has a row under this engine's name that another
// process, not judged dead (the rule of Rescue, see dead), still writes. A
// row of this very process (an earlier engine of it that stopped leaving a
// job) or of a dead one is no refusal: the rescue at start takes its jobs.
// Start checks it; an app that starts other parts under the same name
// first (a lease) checks it before them.
func (e *Engine) CheckNameFree(ctx context.Context) error {
	var rows []nodeRow
	if err := e.db.SelectContext(ctx, &rows, e.d.nodes); err != nil {
		return fmt.Errorf("node %s: read nodes: %w", e.cfg.Node, err)
	}
	now := e.now()
	for _, n := range rows {
		if n.Name != e.cfg.Node || e.thisProcess(n) || e.dead(n, now) {
			continue
		}
		return fmt.Errorf("%w: %q is served by a running phonehome, pid %d on %s (last heartbeat %s ago): choose another -node, or stop it first",
			ErrNodeNameInUse, n.Name, n.PID, n.Host, max(now.Sub(fromMillis(n.HeartbeatAt)), 0).Round(time.Second))
	}
	return nil
}

// thisProcess reports whether n is a row this process wrote: its host and
// pid, and its start time where both are known.
func (e *Engine) thisProcess(n nodeRow) bool {
	if n.Host != e.host || n.PID != e.pid {
		return false
	}
	return !n.ProcStart.Valid || !e.procStart.Valid || n.ProcStart.Int64 == e.procStart.Int64
}

// stale reports whether the node's last heartbeat is older than
// Config.NodeTimeout at now.
func (e *Engine) stale(n nodeRow, now time.Time) bool {
	return now.Sub(fromMillis(n.HeartbeatAt)) > e.cfg.NodeTimeout
}

// Statements both dialects share (PostgreSQL's with $N, see dollars).
const (
	heartbeatSQL = `INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at, boot_id, proc_start)
		VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)
		ON CONFLICT (name) DO UPDATE SET host = ?2, pid = ?3, heartbeat_at = ?4, boot_id = ?5, proc_start = ?6`
	nodesSQL      = "SELECT name, host, pid, started_at, heartbeat_at, boot_id, proc_start FROM job_nodes ORDER BY name"
	deleteNodeSQL = "DELETE FROM job_nodes WHERE name = ?"
)

// enroll is the engine's first heartbeat, once its name is its own
// (CheckNameFree).
func (e *Engine) enroll(ctx context.Context) error {
	if err := e.CheckNameFree(ctx); err != nil {
		return err
	}
	return e.heartbeat(ctx)
}

// heartbeat records that this node is alive, and which process it is.
func (e *Engine) heartbeat(ctx context.Context) error {
	now := e.now().UnixMilli()
	_, err := e.db.ExecContext(ctx, e.d.heartbeat, e.cfg.Node, e.host, e.pid, now, sql.NullString{String: e.bootID, Valid: e.bootID != ""}, e.procStart)
	if err != nil {
		return fmt.Errorf("node %s: heartbeat: %w", e.cfg.Node, err)
	}
	return nil
}

// nodeRow is a node's row in job_nodes, as heartbeat writes it.
type nodeRow struct {
	Name        string         `db:"name"`
	Host        string         `db:"host"`
	PID         int            `db:"pid"`
	StartedAt   int64          `db:"started_at"`
	HeartbeatAt int64          `db:"heartbeat_at"`
	BootID      sql.NullString `db:"boot_id"`
	ProcStart   sql.NullInt64  `db:"proc_start"`
}

// dead reports whether the node's executing jobs may be rescued. On this
// host the process decides, known by more than its pid (a pid is reused
// after a reboot, or once pids wrap):
//   - the node ran in an earlier boot of this machine: dead;
//   - its pid is gone: dead at once (a kill -9 and a restart need not wait
//     for the heartbeat to go stale);
//   - its pid lives but started at another time: another process has the
//     pid, the node is dead;
//   - its pid lives and is the same process (boot and start time match):
//     alive, however old its heartbeat (a machine that slept);
//   - the system cannot tell (a row without identity, no /proc): the
//     heartbeat decides, as for other hosts.
//
// Elsewhere, its heartbeat must be older than NodeTimeout. The host name
// must therefore name one machine's process space.
func (e *Engine) dead(n nodeRow, now time.Time) bool {
	stale := e.stale(n, now)
	if n.Host != e.host || n.PID <= 0 || !pidKnown() {
		return stale
	}
	if n.BootID.Valid && e.bootID != "" && n.BootID.String != e.bootID {
		return true
	}
	if !pidAlive(n.PID) {
		return true
	}
	if !n.BootID.Valid || e.bootID == "" || !n.ProcStart.Valid {
		return stale
	}
	start, ok := procStart(n.PID)
	if !ok {
		return stale
	}
	return start != n.ProcStart.Int64
}
