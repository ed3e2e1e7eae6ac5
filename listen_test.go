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
	oneListens := func(what string) (pid int) {
		waitUntil(t, 10*time.Second, what, func() (bool, string) {
			var pids []int
			if err := obs.Writer.Select(&pids, `SELECT pid FROM pg_stat_activity
				WHERE datname = current_database() AND query LIKE 'LISTEN %'`); err != nil {
				t.Fatal(err)
			}
			pets := count(" AND query = 'LISTEN " + store.PetChannel + "'")
			if len(pids) == 1 {
				pid = pids[0]
			}
			return len(pids) == 1 && pets == 1, fmt.Sprintf("sessions %v LISTEN, %d last on %s", pids, pets, store.PetChannel)
		})
		return pid
	}
	first := oneListens("one session LISTENs, last on the pets' channel")
	t.Logf("the node holds %d connections (its pool of at most 16, idle ones included, and one LISTEN connection)", count(""))

	// Killed, it comes back as one session again, LISTENing on every
	// part's channel.
	if _, err := obs.Writer.Exec("SELECT pg_terminate_backend($1)", first); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the killed session gone", func() (bool, string) {
		n := count(fmt.Sprintf(" AND pid = %d", first))
		return n == 0, fmt.Sprintf("%d", n)
	})
	oneListens("one session LISTENs again")
}
