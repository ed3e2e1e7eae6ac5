// write.go holds the writer: what the feeds publish on shared streams,
// inserted a batch at a time under the advisory lock, with pg_notify of
// the batch's highest id in the same transaction.

package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/phonehome/phonehome/events"
)

// insertSQL inserts a batch in the order given (WITH ORDINALITY … ORDER
// BY: the identity is drawn row by row in that order, so a node's events
// keep their publish order) and notifies the highest id, delivered to
// every listener at commit.
var insertSQL = insertNotifySQL(`SELECT u.s, u.e, u.k, u.d, $5
	FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS u(s, e, k, d, o)
	ORDER BY u.o`, "max(id)")

// insertNotifySQL is every write into live_events: it inserts the rows of
// source (stream, event, key, data, created_at), then notifies on Channel
// the value of notified, an expression over the inserted ids, delivered to
// every listener at commit.
func insertNotifySQL(source, notified string) string {
	return `WITH ins AS (
	INSERT INTO live_events (stream, event, key, data, created_at)
	` + source + `
	RETURNING id)
SELECT pg_notify('` + Channel + `', ` + notified + `::text) FROM ins`
}

// Bounds of the writer's retries while the database refuses a batch.
const (
	writeRetryMin = 50 * time.Millisecond
	writeRetryMax = 2 * time.Second
	writeAttempts = 8
)

// write is the writer's loop: it waits for something queued, gives the
// first event Batch to be joined by others, and inserts them all. Once
// stopped, it inserts what is left.
func (b *Broker) write(done <-chan struct{}) {
	for {
		select {
		case <-done:
			b.flush(b.take())
			return
		case <-b.wake:
		}
		select {
		case <-done:
		case <-time.After(b.cfg.Batch):
		}
		b.flush(b.take())
	}
}

// flush inserts items in one transaction, retrying while the database
// refuses (a batch is dropped only after writeAttempts), and answers the
// ordered reads among them.
func (b *Broker) flush(items []item) {
	if len(items) == 0 {
		return
	}
	var err error
	delay := writeRetryMin
	for attempt := 1; ; attempt++ {
		if err = b.insert(items); err == nil || attempt >= b.cfg.WriteAttempts {
			break
		}
		b.log.Warn("live events not stored yet; retrying", "events", len(items), "attempt", attempt, "err", err)
		time.Sleep(delay)
		delay = min(delay*2, writeRetryMax)
	}
	if err != nil {
		b.log.Error("live events lost: the database refused them; their streams' pages will resync", "events", len(items), "err", err)
		b.mu.Lock()
		b.lost += len(items)
		for _, it := range items {
			if it.read != nil { // it may have published on any of them
				for s := range b.shared {
					b.resyncDue[s] = true
				}
				break
			}
			b.resyncDue[it.ev.Stream] = true
		}
		b.mu.Unlock()
	}
	for _, it := range items {
		if it.done != nil {
			it.done <- err
		}
	}
}

// insert runs one batch's transaction: the lock, the ordered reads (in
// their place among the events), the insert and its notification.
func (b *Broker) insert(items []item) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockKey)); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	n := len(items)
	streams, names, keys, data := make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n), make([]string, 0, n)
	add := func(stream, event string, key int64, d []byte) {
		streams, names, keys, data = append(streams, stream), append(names, event), append(keys, key), append(data, string(d))
	}
	// Streams that lost events first: their pages reload, and then see
	// this batch's events on top.
	b.mu.Lock()
	var resync []string
	for _, s := range b.Streams() {
		if b.resyncDue[s] {
			resync = append(resync, s)
			add(s, events.ResyncEvent, 0, []byte(events.ResyncEvent))
		}
	}
	b.mu.Unlock()
	for _, it := range items {
		if it.read == nil {
			add(it.ev.Stream, it.ev.Event, it.ev.Key, it.ev.Data)
			continue
		}
		it.read(ctx, func(stream, event string, key int64, d []byte) {
			if len(d) == 0 {
				return
			}
			if b.isShared(stream, event) {
				add(stream, event, key, d)
			} else {
				b.publishLocal(stream, event, key, d)
			}
		})
	}
	if len(streams) > 0 {
		if _, err := tx.ExecContext(ctx, insertSQL, streams, names, keys, data, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	b.mu.Lock()
	for _, s := range resync {
		delete(b.resyncDue, s)
	}
	b.mu.Unlock()
	return nil
}
