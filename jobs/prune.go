package jobs

import (
	"context"
	"fmt"
)

// pruneBatch is how many jobs one prune transaction deletes: small enough
// that the writer is free again within milliseconds.
const pruneBatch = 1000

// Prune deletes completed, cancelled and discarded jobs that finished more
// than Config.PruneAfter ago (none when it is negative), oldest first, in
// transactions of at most 1,000 rows, so workers' claims and outcomes
// commit between them. Each batch's ids are reported to OnChange (the rows
// are gone). It returns how many jobs it deleted; Prune runs every
// Config.PruneInterval while the engine runs. On a node that does not lead
// (Config.IsLeader) it deletes nothing; leadership is checked before each
// batch, so a node that loses it stops within one batch.
func (e *Engine) Prune(ctx context.Context) (int, error) {
	if e.cfg.PruneAfter < 0 {
		return 0, nil
	}
	cutoff := e.now().Add(-e.cfg.PruneAfter).UnixMilli()
	total := 0
	for e.leading() {
		var ids []int64
		// On SQLite through the finish-time index named (INDEXED BY),
		// whatever the statistics say.
		err := e.db.SelectContext(ctx, &ids, e.d.prune, cutoff, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune finished jobs: %w", err)
		}
		total += len(ids)
		e.changed(ids)
		if len(ids) < pruneBatch {
			break
		}
		select {
		case <-e.stopping:
			return total, nil
		default:
		}
	}
	if total > 0 {
		e.log.Info("pruned finished jobs", "jobs", total, "older_than", e.cfg.PruneAfter)
	}
	return total, nil
}
