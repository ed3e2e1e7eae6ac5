package jobs

import "github.com/phonehome/phonehome/internal/pglisten"

// On PostgreSQL every insert sends pg_notify(notifyChannel, queue) in its
// transaction (see dialect_postgres.go), delivered at commit to every
// session that LISTENs, in this process or another. The process's one
// LISTEN connection (pglisten.Listener, shared with the lease, the broker
// and LivePet) hands them to the engine, which wakes the named queue's
// producer: it then claims at once instead of at its next poll. The poll
// stays: it finds jobs that come due (scheduled, retryable), and covers
// the time the listener is reconnecting.

// subscription is what the engine hears (PostgreSQL).
func (e *Engine) subscription() pglisten.Subscription {
	return pglisten.Subscription{
		// The jobs' channel last: tests see that a session listens by its
		// last statement.
		Channels:    []string{settingsChannel, notifyChannel},
		Notify:      e.heard,
		Reconnected: e.relisten,
	}
}

// heard wakes the queue a notification names, or the settings reload.
// It only signals: the listener's goroutine calls it.
func (e *Engine) heard(channel, payload string) {
	q, ok := e.queues[payload]
	switch {
	case !ok:
	case channel == settingsChannel:
		signal(e.settingsWake)
	default:
		q.signal()
	}
}

// relisten runs after the listener (re)connects: jobs inserted and
// settings changed while nobody listened were announced to no one.
func (e *Engine) relisten() {
	for _, q := range e.queues {
		q.signal()
	}
	signal(e.settingsWake)
}

// settingsLoop reloads the queues' stored settings each time the listener
// hears that one changed (PostgreSQL only), until Stop. It runs apart from
// the listener so that a slow reload never delays the job wake-ups, and a
// burst of changes costs one reload, not one each.
func (e *Engine) settingsLoop() {
	defer e.loops.Done()
	ctx, cancel := e.stopContext()
	defer cancel()
	for {
		select {
		case <-e.stopping:
			return
		case <-e.settingsWake:
			if err := e.loadQueueSettings(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("reload queue settings", "err", err)
			}
		}
	}
}

// signal wakes whoever waits on c (a channel of one slot), or leaves the
// wake-up pending for it.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
