// trim.go holds the table's other readers and its upkeep: a resume's
// history (After) and the trim to the window.

package broker

import (
	"context"
	"database/sql"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/internal/loop"
)

var _ events.History = (*Broker)(nil)

// After is the hub's history of a shared stream: up to limit of its events
// after the id, oldest first, and whether none after it was trimmed.
// The trim point is read after the events: a trim between the two reads
// makes a resume resync rather than miss what was deleted.
func (b *Broker) After(ctx context.Context, stream string, after int64, limit int) ([]events.Event, bool, error) {
	q, err := b.db.QueryContext(ctx, `SELECT id, event, key, data FROM live_events
		WHERE stream = $1 AND id > $2 ORDER BY id LIMIT $3`, stream, after, limit)
	if err != nil {
		return nil, false, err
	}
	defer q.Close()
	var out []events.Event
	for q.Next() {
		var ev events.Event
		if err := q.Scan(&ev.ID, &ev.Event, &ev.Key, &ev.Data); err != nil {
			return nil, false, err
		}
		out = append(out, ev)
	}
	if err := q.Err(); err != nil {
		return nil, false, err
	}
	trimmed, err := b.trimPoint(ctx, stream)
	if err != nil {
		return nil, false, err
	}
	return out, after >= trimmed, nil
}

// trimPoint is the highest id of the stream that may have been deleted.
func (b *Broker) trimPoint(ctx context.Context, stream string) (int64, error) {
	var p sql.NullInt64
	err := b.db.QueryRowContext(ctx, `SELECT max(before) FROM live_event_trims WHERE stream IN ($1, '*')`, stream).Scan(&p)
	return p.Int64, err
}

// trim is the trimmer's loop.
func (b *Broker) trim(done <-chan struct{}) {
	loop.Every(done, b.cfg.TrimEvery, func(time.Time) {
		if b.cfg.IsLeader != nil && !b.cfg.IsLeader() {
			return
		}
		if err := b.Trim(context.Background(), time.Now()); err != nil {
			b.log.Warn("trim live events", "err", err)
		}
	})
}

// Trim deletes each shared stream's events beyond the window as of now:
// those beyond its last Keep, and those older than KeepFor, and records
// how far, in the same transaction. Idempotent: any node may run it.
func (b *Broker) Trim(ctx context.Context, now time.Time) error {
	for _, stream := range b.Streams() {
		if err := b.trimStream(ctx, stream, now); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) trimStream(ctx context.Context, stream string, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// The newest event that goes: the newest beyond the last Keep, or the
	// newest older than KeepFor, whichever is later.
	var cut sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT greatest(
		(SELECT id FROM live_events WHERE stream = $1 ORDER BY id DESC OFFSET $2 LIMIT 1),
		(SELECT max(id) FROM live_events WHERE stream = $1 AND created_at < $3))`,
		stream, b.cfg.Keep, now.Add(-b.cfg.KeepFor).UnixMilli()).Scan(&cut)
	if err != nil || !cut.Valid {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO live_event_trims (stream, before) VALUES ($1, $2)
		ON CONFLICT (stream) DO UPDATE SET before = greatest(live_event_trims.before, excluded.before)`, stream, cut.Int64); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM live_events WHERE stream = $1 AND id <= $2`, stream, cut.Int64); err != nil {
		return err
	}
	return tx.Commit()
}
