package jobs

import (
	"context"
	"time"
)

// maintain runs the node's periodic work until Stop: every heartbeat it
// records that the node is alive, rescues dead nodes' jobs and reloads the
// queues' settings; every prune interval it prunes old finished jobs.
func (e *Engine) maintain() {
	defer e.loops.Done()
	beat := time.NewTicker(e.cfg.HeartbeatInterval)
	defer beat.Stop()
	prune := time.NewTicker(e.cfg.PruneInterval)
	defer prune.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-e.stopping:
			return
		case <-beat.C:
			if err := e.heartbeat(ctx); err != nil {
				e.log.Error("heartbeat", "err", err)
			}
			if _, err := e.Rescue(ctx); err != nil {
				e.log.Error("rescue", "err", err)
			}
			if err := e.loadQueueSettings(ctx); err != nil {
				e.log.Error("reload queue settings", "err", err)
			}
		case <-prune.C:
			if _, err := e.Prune(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("prune finished jobs", "err", err)
			}
		}
	}
}
