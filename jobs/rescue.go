package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// heartbeat records that this node is alive.
func (e *Engine) heartbeat(ctx context.Context) error {
	now := e.now().UnixMilli()
	_, err := e.db.ExecContext(ctx, `INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at)
		VALUES (?1, ?2, ?3, ?4, ?4)
		ON CONFLICT (name) DO UPDATE SET host = ?2, pid = ?3, heartbeat_at = ?4`,
		e.cfg.Node, e.host, e.pid, now)
	if err != nil {
		return fmt.Errorf("node %s: heartbeat: %w", e.cfg.Node, err)
	}
	return nil
}

type nodeRow struct {
	Name        string `db:"name"`
	Host        string `db:"host"`
	PID         int    `db:"pid"`
	HeartbeatAt int64  `db:"heartbeat_at"`
}

// dead reports whether the node's executing jobs may be rescued. On this
// host the process decides: a node whose process is gone is dead at once
// (a kill -9 and a restart need not wait for the heartbeat to go stale),
// and one whose process lives is not, however old its heartbeat (a machine
// that slept). Elsewhere, its heartbeat must be older than NodeTimeout.
// The host name must therefore name one machine's process space.
func (e *Engine) dead(n nodeRow, now time.Time) bool {
	if n.Host == e.host && n.PID > 0 && pidKnown() {
		return !pidAlive(n.PID)
	}
	return now.Sub(fromMillis(n.HeartbeatAt)) > e.cfg.NodeTimeout
}

// Rescue returns the jobs of dead nodes that were left executing: those
// whose node (attempted_by, never this engine's own) has no row in job_nodes, or whose heartbeat is
// older than Config.NodeTimeout and, for a node on this host, whose process
// is gone. A job whose first run may still be alive is never rescued. The
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
		if err := tx.SelectContext(ctx, &nodes, "SELECT name, host, pid, heartbeat_at FROM job_nodes"); err != nil {
			return fmt.Errorf("read nodes: %w", err)
		}
		var dead []string
		for _, n := range nodes {
			if (atStart && n.Name == e.cfg.Node) || (n.Name != e.cfg.Node && e.dead(n, now)) {
				dead = append(dead, n.Name)
			}
		}
		if dead == nil {
			dead = []string{}
		}
		deadJSON, _ := json.Marshal(dead)
		err := tx.SelectContext(ctx, &ids, `UPDATE jobs SET
			state        = CASE WHEN rescues + 1 >= ?1 THEN 'discarded' ELSE 'retryable' END,
			discarded_at = CASE WHEN rescues + 1 >= ?1 THEN ?2 END,
			attempt      = CASE WHEN rescues + 1 >= ?1 THEN attempt ELSE max(attempt - 1, 0) END,
			rescues      = rescues + 1,
			scheduled_at = ?2,
			errors       = json_insert(errors, '$[#]', json_object(
				'attempt', attempt, 'at', ?3,
				'error', 'interrupted: the process running this attempt (' || coalesce(attempted_by, '?') || ') stopped before it finished'))
			WHERE state = 'executing' AND (?5 OR attempted_by IS NOT ?6) AND (
				attempted_by IS NULL
				OR attempted_by IN (SELECT value FROM json_each(?4))
				OR attempted_by NOT IN (SELECT name FROM job_nodes))
			RETURNING id`,
			MaxRescues, now.UnixMilli(), now.Format(time.RFC3339Nano), string(deadJSON), atStart, e.cfg.Node)
		if err != nil {
			return fmt.Errorf("rescue executing jobs: %w", err)
		}
		// The dead nodes' jobs are rescued: forget them (this node's own
		// row stays, it is alive again).
		_, err = tx.ExecContext(ctx, `DELETE FROM job_nodes WHERE name IN (SELECT value FROM json_each(?1)) AND name != ?2`,
			string(deadJSON), e.cfg.Node)
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
