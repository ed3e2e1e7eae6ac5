package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// On PostgreSQL a node holds one LISTEN connection, shared by the job
// engine, the lease, the broker and LivePet (pglisten), beside its pool:
// its last statement is LivePet's LISTEN, the last part started.
func TestOneListenConnectionPerNodeOnPostgres(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	startApp(t, Config{DB: db, Node: "node-a"})
	// An observer of one connection, left out of the counts.
	obs := storetest.Open(t, db)
	obs.Writer.SetMaxOpenConns(1)
	count := func(where string) int {
		var n int
		if err := obs.Writer.Get(&n, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`+where); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitUntil(t, 10*time.Second, "one session LISTENs, last on the pets' channel", func() (bool, string) {
		all, pets := count(" AND query LIKE 'LISTEN %'"), count(" AND query = 'LISTEN "+store.PetChannel+"'")
		return all == 1 && pets == 1, fmt.Sprintf("%d sessions LISTEN, %d last on %s", all, pets, store.PetChannel)
	})
	t.Logf("the node holds %d connections (its pool of at most 16, idle ones included, and one LISTEN connection)", count(""))
}
