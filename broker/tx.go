// tx.go holds PublishTx: an event written by the transaction that makes
// the change it shows, for changes whose next step may be taken by
// another node as soon as they commit.

package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// publishTxSQL takes the insert lock in shared mode (so that the reader
// waits for this transaction's ids while it is open, without making
// inserting transactions wait for each other), then inserts the events in
// the order given and notifies the highest id at commit. The lock is taken
// before the ids are drawn (the join needs its row first).
var publishTxSQL = insertNotifySQL(`SELECT $1, $2, u.k, u.d, $5
	FROM (SELECT pg_advisory_xact_lock_shared($6)) AS l, unnest($3::bigint[], $4::text[]) WITH ORDINALITY AS u(k, d, o)
	ORDER BY u.o`, "max(id)")

// PublishTx writes events about rows of a shared stream in tx, the
// transaction that makes the changes they show (keys[i]'s event is
// data[i]), in one statement and in that order: they are delivered to
// every node once tx commits, and never if it rolls back.
//
// Publish writes an event after its change has committed, in a batch of
// its own. That is enough for the order of one node's changes, but not
// when another node may change the same row as soon as this change
// commits: a call that fails here is retried at once by another node, and
// that node's event could reach the table before this one. Written in the
// change's transaction, an event's id is drawn before the change commits,
// so before any later change's event exists: every row's events reach
// every page in the order of its changes.
func (b *Broker) PublishTx(ctx context.Context, tx *sqlx.Tx, stream, event string, keys []int64, data [][]byte) error {
	if !b.shared[stream] {
		return fmt.Errorf("publish in a transaction: %q is not a shared stream", stream)
	}
	if len(keys) != len(data) {
		return fmt.Errorf("publish in a transaction: %d keys for %d events", len(keys), len(data))
	}
	if len(keys) == 0 {
		return nil
	}
	texts := make([]string, len(data))
	for i, d := range data {
		if len(d) == 0 {
			return errors.New("publish: empty data")
		}
		texts[i] = string(d)
	}
	_, err := tx.ExecContext(ctx, publishTxSQL, stream, event, keys, texts, time.Now().UnixMilli(), int64(lockKey))
	if err != nil {
		return fmt.Errorf("publish %d events in a transaction: %w", len(keys), err)
	}
	return nil
}
