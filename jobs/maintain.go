package jobs

import (
	"context"
	"time"

	"github.com/phonehome/phonehome/internal/loop"
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

// every runs steps, in order, every interval until Stop, in the calling
// goroutine (one of e.loops), with a context that ends at Stop. A step
// that starts failing is logged under its name (loop.Outage), and once
// when it works again; the next step and tick go on.
func (e *Engine) every(interval time.Duration, steps ...step) {
	defer e.loops.Done()
	ctx, cancel := e.stopContext()
	defer cancel()
	// Each step's failures are logged when they start and when the step
	// works again, not at every interval while the database is away.
	outages := make([]loop.Outage, len(steps))
	for i, s := range steps {
		outages[i] = loop.Outage{Log: e.log, Failed: s.name, Recovered: s.name + " works again"}
	}
	loop.Every(e.stopping, interval, func(time.Time) {
		for i, s := range steps {
			outages[i].Record(ctx, s.run(ctx))
		}
	})
}

// step is one named piece of periodic maintenance.
type step struct {
	name string
	run  func(context.Context) error
}

// maintain runs the node's heartbeat until Stop: it records that the node
// is alive, rescues dead nodes' jobs and reloads the queues' settings.
func (e *Engine) maintain() {
	e.every(e.cfg.HeartbeatInterval,
		step{"heartbeat", e.heartbeat},
		step{"rescue", func(ctx context.Context) error { _, err := e.Rescue(ctx); return err }},
		step{"reload queue settings", e.loadQueueSettings})
}

// pruneLoop prunes old finished jobs every PruneInterval until Stop, in its
// own goroutine so that a long prune never delays the heartbeat.
func (e *Engine) pruneLoop() {
	e.every(e.cfg.PruneInterval,
		step{"prune finished jobs", func(ctx context.Context) error { _, err := e.Prune(ctx); return err }})
}

// leaderOnly makes run a step that does nothing while this node does not
// lead (Config.IsLeader).
func (e *Engine) leaderOnly(run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if !e.leading() {
			return nil
		}
		return run(ctx)
	}
}

// compactLoop folds the count ledgers every CompactInterval until Stop
// (PostgreSQL only): the triggers append a row per statement, and every
// count reads the sum of its rows, so left alone the dashboard's counts
// would grow slower with every job. Only the leader runs it (Config.IsLeader);
// were two nodes to believe they lead at once, the fold's advisory lock
// still lets one of them fold and the other skip its turn.
func (e *Engine) compactLoop() {
	e.every(e.cfg.CompactInterval, step{"compact job counts", e.leaderOnly(e.st.CompactCounts)})
}
