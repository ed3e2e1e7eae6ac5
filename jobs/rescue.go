package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

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
