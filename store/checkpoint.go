package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"
)

// SQLite copies the write-ahead log back into the database file at a
// checkpoint. Left to itself it does so inside the COMMIT that takes the log
// past 1,000 pages, so one write in a few hundred, whatever it is, waits
// for the copy and its fsyncs: W3 (a job inserted into idle workers)
// measured insert-to-start at 4–5 ms at worst and a p99 of 1.1–1.9 ms
// because of them; 0.9–1.5 ms and 0.8–0.9 ms without.
//
// So a connection of the checkpointer's own copies the log every
// checkpointEvery (PASSIVE: it never waits for the writer or the readers,
// and they never wait for it), and the writer's own checkpoints are put
// off to checkpointAfter pages, a safety net for a log written faster than
// the checkpointer copies it. The log restarts from its beginning at the
// first write after a checkpoint that copied all of it, as before; that
// write syncs the log's new header, so checkpointing much more often (every
// 50 ms was tried) put a sync on most of W3's inserts (p50 0.45 → 0.6 ms).

// checkpointEvery is how often the checkpointer copies the log.
const checkpointEvery = time.Second

// checkpointAfter is the writer's own checkpoint threshold, in pages
// (SQLite's default is 1,000).
const checkpointAfter = 8000

// checkpointer copies the write-ahead log into the database file on a
// connection of its own, every checkpointEvery, until closed.
type checkpointer struct {
	db   *sql.DB
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// startCheckpointer opens the checkpointer's connection to the SQLite file
// at path, with the writer's synchronous setting (a checkpoint syncs as
// that says), and starts it.
func startCheckpointer(ctx context.Context, path string, sync Sync) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(path, []string{"busy_timeout(5000)", "synchronous(" + strings.ToUpper(string(sync)) + ")"}))
	if err != nil {
		return nil, fmt.Errorf("open %s for checkpoints: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s for checkpoints: %w", path, err)
	}
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c, nil
}

// loop checkpoints until stop is closed. A checkpoint that fails (a full
// disk, a database another process holds) is tried again at the next tick;
// the writer's own checkpoints still bound the log meanwhile.
func (c *checkpointer) loop() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			_, _ = c.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// close stops the checkpointer and closes its connection.
func (c *checkpointer) close() error {
	if c == nil {
		return nil
	}
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		err = c.db.Close()
	})
	return err
}
