// read.go holds the reader: woken by a notification (or the poll), it
// hands the rows after the last it delivered, in id order, to the hub
// with their ids, and waits for the holes it finds. Also the subscription
// to the process's LISTEN connection that wakes it.

package broker

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/internal/pglisten"
)

// holeRetry is how often the reader asks the database whether the
// transactions that may fill a hole still hold the insert lock (pg_locks,
// which takes every lock partition: not to be asked at every wake-up).
// A hole usually fills sooner: the transaction that commits the missing
// rows notifies, which wakes the reader and makes it read again at once.
// Only a hole left by a rollback, which notifies nobody, waits for this.
const holeRetry = 10 * time.Millisecond

// read is the reader's loop.
func (b *Broker) read(done <-chan struct{}) {
	r := reader{b: b, last: b.start, failing: loop.Outage{Log: b.log, Failed: "read live events", Recovered: "reading live events again"}}
	poll := time.NewTicker(b.cfg.Poll)
	defer poll.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-done:
			return
		case <-b.notified:
		case <-poll.C:
		case <-retry:
		}
		retry = nil
		if again := r.catchUp(); again > 0 {
			retry = time.After(again)
		}
	}
}

// reader is the read loop's state.
type reader struct {
	b    *Broker
	last int64 // the last id delivered or skipped
	// holeSince is when the reader first found last+1 missing below a
	// visible id (zero: no hole), and holeHolders the transactions that
	// held the insert lock then: those that may still write the missing
	// ids.
	holeSince   time.Time
	holeHolders []string
	// holeChecked is when the reader last asked whether they still hold it.
	holeChecked time.Time
	// late are the ids skipped after HoleWait while an insert was still
	// under way: should they commit after all, their streams' clients
	// missed them and must resync.
	late []skipped
	// failing logs the reads' outages: once when they start failing, once
	// when they work again, not at every poll while the database is away.
	failing loop.Outage
}

// skipped is a range of ids skipped after HoleWait, and when.
type skipped struct {
	from, to int64
	at       time.Time
}

// lateWatch is how long skipped ids are watched for a late commit.
const lateWatch = time.Minute

// catchUp delivers what follows last, and reports how soon to look again
// (0: when notified or at the next poll).
func (r *reader) catchUp() time.Duration {
	for {
		rows, err := r.rows()
		r.failing.Record(context.Background(), err)
		if err != nil {
			return r.b.cfg.Poll
		}
		again := false
		for _, ev := range rows {
			if ev.ID > r.last+1 {
				next, err := r.hole(ev.ID)
				r.failing.Record(context.Background(), err)
				if err != nil {
					return holeRetry
				}
				if next == wait {
					return holeRetry
				}
				if next == reread {
					again = true
					break
				}
			}
			r.deliver(ev)
		}
		if !again && len(rows) < readPage {
			r.checkLate()
			return 0
		}
	}
}

// What the reader does about a hole.
const (
	wait   = iota // look again shortly
	reread        // the missing rows committed meanwhile: read from them
	skip          // they are gone: go on
)

// holdersSQL lists the transactions of this database that hold the insert
// lock now (virtualtransaction identifies one transaction of one session).
const holdersSQL = `SELECT coalesce(string_agg(virtualtransaction, ','), '') FROM pg_locks
	WHERE locktype = 'advisory' AND classid = 0 AND objid = $1 AND objsubid = 1 AND granted
	  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`

// stillHoldingSQL reports whether any of the transactions $2 still holds
// the insert lock.
const stillHoldingSQL = `SELECT EXISTS (SELECT 1 FROM pg_locks
	WHERE locktype = 'advisory' AND classid = 0 AND objid = $1 AND objsubid = 1 AND granted
	  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND virtualtransaction = ANY($2::text[]))`

// hole decides about the ids between last and next (a visible id). Every
// insert holds the insert lock from before it draws its ids until it
// commits, so a missing id that is still to commit belongs to one of the
// transactions that held the lock when the reader found the hole. The
// reader notes them, and waits until none of them holds it any more: then
// the missing rows either committed (read again) or never will (skip
// them). Transactions that take the lock later never prolong the wait,
// however busy the database. HoleWait bounds it all the same.
func (r *reader) hole(next int64) (int, error) {
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r.holeSince.IsZero() {
		var holders string
		if err := r.b.db.QueryRowContext(ctx, holdersSQL, int64(lockKey)).Scan(&holders); err != nil {
			return wait, err
		}
		r.holeHolders = nil
		if holders != "" {
			r.holeHolders = strings.Split(holders, ",")
		}
		r.holeSince, r.holeChecked = now, now // they hold it: asked just now
	}
	if now.Sub(r.holeSince) >= r.b.cfg.HoleWait {
		r.b.log.Warn("live events skipped: ids missing for too long", "from", r.last+1, "to", next-1)
		r.late = append(r.late, skipped{from: r.last + 1, to: next - 1, at: now})
		r.b.mu.Lock()
		r.b.skipped += next - 1 - r.last
		r.b.mu.Unlock()
		r.resyncTrimmed(r.last + 1)
		r.skip(next)
		return skip, nil
	}
	if len(r.holeHolders) > 0 {
		if now.Sub(r.holeChecked) < holeRetry {
			return wait, nil // woken by another commit: asked a moment ago
		}
		r.holeChecked = now
		var holding bool
		if err := r.b.db.QueryRowContext(ctx, stillHoldingSQL, int64(lockKey), r.holeHolders).Scan(&holding); err != nil {
			return wait, err
		}
		if holding {
			return wait, nil
		}
	}
	var n int
	err := r.b.db.QueryRowContext(ctx, "SELECT count(*) FROM live_events WHERE id > $1 AND id < $2", r.last, next).Scan(&n)
	if err != nil {
		return wait, err
	}
	if n > 0 {
		return reread, nil
	}
	r.resyncTrimmed(r.last + 1)
	r.skip(next)
	return skip, nil
}

// resyncTrimmed makes the streams trimmed past from resync: the missing
// ids may be events this reader had not delivered when they were trimmed
// (it lagged behind the window), not a rolled-back insert.
func (r *reader) resyncTrimmed(from int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := r.b.db.QueryContext(ctx, "SELECT stream FROM live_event_trims WHERE stream <> '*' AND before >= $1", from)
	if err != nil {
		r.b.log.Warn("read live event trims", "err", err)
		return
	}
	defer q.Close()
	for q.Next() {
		var stream string
		if q.Scan(&stream) == nil && r.b.shared[stream] {
			r.b.log.Warn("live events trimmed before this node delivered them: the stream's pages resync", "stream", stream, "from", from)
			r.b.hub.Resync(stream)
		}
	}
}

// checkLate looks for ids skipped after HoleWait that were committed
// after all, and makes their streams' clients resync (they can no longer
// be sent in order).
func (r *reader) checkLate() {
	if len(r.late) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := time.Now()
	kept := r.late[:0]
	for _, s := range r.late {
		q, err := r.b.db.QueryContext(ctx, "SELECT DISTINCT stream FROM live_events WHERE id BETWEEN $1 AND $2", s.from, s.to)
		r.failing.Record(context.Background(), err)
		if err != nil {
			kept = append(kept, s)
			continue
		}
		found := false
		for q.Next() {
			var stream string
			if q.Scan(&stream) == nil && r.b.shared[stream] {
				r.b.log.Warn("live events committed after they were skipped: the stream's pages resync", "stream", stream, "from", s.from, "to", s.to)
				r.b.hub.Resync(stream)
			}
			found = true
		}
		q.Close()
		if !found && now.Sub(s.at) < lateWatch {
			kept = append(kept, s)
		}
	}
	r.late = kept
}

func (r *reader) skip(next int64) {
	r.last = next - 1
	r.holeSince = time.Time{}
}

// deliver hands one row to the hub.
func (r *reader) deliver(ev row) {
	r.last, r.holeSince = ev.ID, time.Time{}
	if !r.b.shared[ev.Stream] {
		return // a stream this node does not share
	}
	if err := r.b.hub.PublishAt(ev.Stream, ev.Event, ev.Key, ev.ID, ev.Data); err != nil {
		r.b.log.Debug("deliver live event", "id", ev.ID, "stream", ev.Stream, "err", err)
	}
}

// rows reads the next page after last.
func (r *reader) rows() ([]row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := r.b.db.QueryContext(ctx, `SELECT id, stream, event, key, data FROM live_events
		WHERE id > $1 ORDER BY id LIMIT $2`, r.last, readPage)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	var out []row
	for q.Next() {
		var ev row
		if err := q.Scan(&ev.ID, &ev.Stream, &ev.Event, &ev.Key, &ev.Data); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, q.Err()
}

// subscription is what the reader hears: each notification carries the
// highest id inserted, which the hub may count as its last (Advance), and
// wakes the reader; so does each (re)connection of the listener, since
// what was inserted while nobody listened was announced to no one.
func (b *Broker) subscription() pglisten.Subscription {
	return pglisten.Subscription{
		Channels: []string{Channel},
		Notify: func(_, payload string) {
			if id, err := strconv.ParseInt(payload, 10, 64); err == nil {
				b.hub.Advance(id)
			}
			loop.Signal(b.notified)
		},
		Reconnected: func() { loop.Signal(b.notified) },
	}
}
