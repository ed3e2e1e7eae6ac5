package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// On PostgreSQL every insert sends pg_notify(notifyChannel, queue) in its
// transaction (see dialect_postgres.go), delivered at commit to every
// session that LISTENs, in this process or another. The listener holds one
// connection of its own for that, outside the database/sql pool (a pooled
// connection goes back to the pool between statements, and LISTEN belongs
// to the session), and wakes the named queue's producer, which then claims
// at once instead of at its next poll. The poll stays: it finds jobs that
// come due (scheduled, retryable), and covers the time the listener is
// reconnecting.

// Bounds of the listener's reconnection backoff.
const (
	listenRetryMin = 50 * time.Millisecond
	listenRetryMax = 5 * time.Second
)

// listen keeps a LISTEN connection until Stop, reconnecting with a growing
// delay when it is lost.
func (e *Engine) listen() {
	defer e.loops.Done()
	ctx, cancel := e.stopContext()
	defer cancel()
	delay := listenRetryMin
	for {
		err := e.listenOnce(ctx, func() { delay = listenRetryMin })
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("job notifications lost; the queues poll until they are back", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, listenRetryMax)
	}
}

// listenOnce connects, LISTENs, and wakes queues as notifications arrive,
// until the connection fails or ctx ends. connected runs once it listens.
func (e *Engine) listenOnce(ctx context.Context, connected func()) error {
	cfg, err := e.listenConfig(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	// The jobs' channel last: tests see that a session listens by its last
	// statement.
	for _, ch := range []string{settingsChannel, notifyChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	connected()
	// Jobs inserted and settings changed while nobody listened were
	// announced to no one.
	for _, q := range e.queues {
		q.signal()
	}
	signal(e.settingsWake)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n == nil {
			continue // pgx returns none when the wait ended without one
		}
		if n.Channel == settingsChannel {
			if _, ok := e.queues[n.Payload]; ok {
				signal(e.settingsWake)
			}
			continue
		}
		if q, ok := e.queues[n.Payload]; ok {
			q.signal()
		}
	}
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

// listenConfig (called by the listener's goroutine only) returns the settings of the writer pool's connections (host,
// user, password, TLS…), taken from a pooled pgx connection, so the
// listener connects exactly as the pool does without the store handing
// out its URL.
func (e *Engine) listenConfig(ctx context.Context) (*pgx.ConnConfig, error) {
	if e.listenCfg != nil {
		return e.listenCfg.Copy(), nil
	}
	c, err := e.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var cfg *pgx.ConnConfig
	err = c.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the writer is not a pgx connection (%T)", dc)
		}
		cfg = pc.Conn().Config().Copy()
		// The pooled connection's notification hook came with the copy:
		// without this, pgx would keep it and hand every notification to
		// that other connection's buffer.
		cfg.OnNotification = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.listenCfg = cfg
	return cfg.Copy(), nil
}
