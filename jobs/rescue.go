package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Statements both dialects share (PostgreSQL's with $N, see dollars).
const (
	heartbeatSQL = `INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at, boot_id, proc_start)
		VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)
		ON CONFLICT (name) DO UPDATE SET host = ?2, pid = ?3, heartbeat_at = ?4, boot_id = ?5, proc_start = ?6`
	nodesSQL      = "SELECT name, host, pid, heartbeat_at, boot_id, proc_start FROM job_nodes"
	deleteNodeSQL = "DELETE FROM job_nodes WHERE name = ?"
)

// heartbeat records that this node is alive, and which process it is.
func (e *Engine) heartbeat(ctx context.Context) error {
	now := e.now().UnixMilli()
	_, err := e.db.ExecContext(ctx, e.d.heartbeat, e.cfg.Node, e.host, e.pid, now, sql.NullString{String: e.bootID, Valid: e.bootID != ""}, e.procStart)
	if err != nil {
		return fmt.Errorf("node %s: heartbeat: %w", e.cfg.Node, err)
	}
	return nil
}

type nodeRow struct {
	Name        string         `db:"name"`
	Host        string         `db:"host"`
	PID         int            `db:"pid"`
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
	stale := now.Sub(fromMillis(n.HeartbeatAt)) > e.cfg.NodeTimeout
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

// Rescue returns the jobs of dead nodes that were left executing: those
// whose node (attempted_by, never this engine's own) has no row in
// job_nodes, or is dead: on this host, its process is gone (its pid is not
// alive, or belongs to another process: another boot or another start
// time), or, where that cannot be told, and on other hosts, its heartbeat
// is older than Config.NodeTimeout. A job whose first run may still be
// alive is never rescued. The
// interrupted attempt recorded nothing, so it is not counted: the job
// becomes retryable, due now, with its attempt number given back and the
// interruption noted in its errors. A job rescued MaxRescues times is
// discarded instead, as the likely cause of the crashes. Rescue runs at
// Start and at every heartbeat; it reports how many jobs it rescued.
func (e *Engine) Rescue(ctx context.Context) (int, error) {
	return e.rescue(ctx, false)
}

// rescue is Rescue; atStart also rescues the jobs left under this node's
// own name, by an earlier engine with the same name that stopped.
func (e *Engine) rescue(ctx context.Context, atStart bool) (int, error) {
	now := e.now()
	var ids []int64
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		var nodes []nodeRow
		if err := tx.SelectContext(ctx, &nodes, e.d.nodes); err != nil {
			return fmt.Errorf("read nodes: %w", err)
		}
		var dead []string
		for _, n := range nodes {
			if (atStart && n.Name == e.cfg.Node) || (n.Name != e.cfg.Node && e.dead(n, now)) {
				dead = append(dead, n.Name)
			}
		}
		var rescued []jobPlace
		err := tx.SelectContext(ctx, &rescued, e.d.rescue,
			MaxRescues, now.UnixMilli(), now.Format(time.RFC3339Nano), e.d.strs(dead), atStart, e.cfg.Node)
		if err != nil {
			return fmt.Errorf("rescue executing jobs: %w", err)
		}
		d := countDeltas{}
		for _, r := range rescued {
			ids = append(ids, r.ID)
			d.move(r.Queue, StateExecuting, r.State)
		}
		if err := e.applyCounts(ctx, tx, d, nil); err != nil {
			return err
		}
		// The dead nodes' jobs are rescued: forget them (this node's own
		// row stays, it is alive again).
		_, err = tx.ExecContext(ctx, e.d.forgetNodes, e.d.strs(dead), e.cfg.Node)
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(ids) > 0 {
		e.log.Warn("rescued jobs left executing by stopped processes", "jobs", len(ids))
		e.changed(ids)
	}
	return len(ids), nil
}
