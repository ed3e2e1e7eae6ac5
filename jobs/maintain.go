package jobs

import (
	"context"
	"time"
)

// stopContext is a context that ends when the engine stops.
func (e *Engine) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-e.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// maintain runs the node's heartbeat until Stop: it records that the node
// is alive, rescues dead nodes' jobs and reloads the queues' settings.
func (e *Engine) maintain() {
	defer e.loops.Done()
	beat := time.NewTicker(e.cfg.HeartbeatInterval)
	defer beat.Stop()
	ctx, cancel := e.stopContext()
	defer cancel()
	for {
		select {
		case <-e.stopping:
			return
		case <-beat.C:
			if err := e.heartbeat(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("heartbeat", "err", err)
			}
			if _, err := e.Rescue(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("rescue", "err", err)
			}
			if err := e.loadQueueSettings(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("reload queue settings", "err", err)
			}
		}
	}
}

// pruneLoop prunes old finished jobs every PruneInterval until Stop, in its
// own goroutine so that a long prune never delays the heartbeat.
func (e *Engine) pruneLoop() {
	defer e.loops.Done()
	tick := time.NewTicker(e.cfg.PruneInterval)
	defer tick.Stop()
	ctx, cancel := e.stopContext()
	defer cancel()
	for {
		select {
		case <-e.stopping:
			return
		case <-tick.C:
			if _, err := e.Prune(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("prune finished jobs", "err", err)
			}
		}
	}
}
