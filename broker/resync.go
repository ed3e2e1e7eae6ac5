// resync.go holds Resync: resync events written by a process that is not
// a node (the seed command), so that every node's pages reload.

package broker

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/phonehome/phonehome/events"
)

// resyncSQL inserts a resync event for each stream of $1, in that order,
// as the writer's own resync events look (key 0, data "resync"), under the
// insert lock in shared mode as PublishTx takes it, and notifies the
// highest id at commit.
var resyncSQL = insertNotifySQL(`SELECT u.s, $2, 0, $2, $3
	FROM (SELECT pg_advisory_xact_lock_shared($4)) AS l, unnest($1::text[]) WITH ORDINALITY AS u(s, o)
	ORDER BY u.o`, "max(id)")

// Resync tells the pages of streams (shared streams) on every node to
// reload their tables, for a change that no node's feed published: rows
// that `phonehome seed` added while nodes serve. It writes one resync
// event per stream to the table, which every node's reader delivers as it
// delivers the nodes' own. db is a pool on the nodes' PostgreSQL database;
// where no node serves, the rows only wait to be trimmed.
func Resync(ctx context.Context, db *sql.DB, streams ...string) error {
	if len(streams) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, resyncSQL, streams, events.ResyncEvent, time.Now().UnixMilli(), int64(lockKey)); err != nil {
		return fmt.Errorf("tell the nodes' pages to reload %v: %w", streams, err)
	}
	return nil
}
