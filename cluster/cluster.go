// Package cluster is what several phonehome processes ("nodes") on one
// database need to agree on, beside the jobs themselves:
//
//   - Lease: one node at a time holds a named lease (e.g. "maintenance")
//     and runs what must not run twice (cron, pruning, the pets' death
//     sweep); the others take over when it resigns or dies.
//   - Presence: how many viewers each node has on each topic, summed over
//     the nodes that are alive.
//   - LockSQLite: refuses a second process on one SQLite file, where none
//     of the above can work (each process's hub sees only its own writes).
//
// It owns the tables cluster_leases and cluster_presence (migration 0014)
// and works on both dialects. It does not own the node heartbeat (package
// jobs does), nor decide what the leader runs, nor carry live events
// between nodes: the app wires those.
package cluster

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
)

// NodeName is a name for this process that no other running or earlier
// process shares: the host name, the process id and a short random
// suffix (pids repeat across containers and reboots). The app passes the
// same name to the job engine (jobs.Config.Node), to NewLease and to
// NewPresence, so that every table names a node the same way.
func NodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if len(host) > 150 {
		host = host[:150]
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// queries writes this package's SQL once for both dialects: "?N"
// parameters (PostgreSQL's "$N") and {now}, the time in unix milliseconds.
// {now} is parameter ?1 when the caller drives the clock (tests) and the
// database's own clock otherwise: then every node reads one clock, and a
// node whose clock is wrong cannot take a lease early.
type queries struct {
	db      *sqlx.DB
	dialect store.Dialect
	now     func() time.Time // nil: the database's clock
}

// sql is a statement for the dialect.
func (q queries) sql(s string) string {
	dbNow := "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
	if q.dialect == store.Postgres {
		dbNow = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
	}
	s = strings.ReplaceAll(s, "{now}", "coalesce(CAST(?1 AS BIGINT), "+dbNow+")")
	if q.dialect == store.Postgres {
		s = strings.ReplaceAll(s, "?", "$")
	}
	return s
}

// nowArg is parameter ?1: t, a reading of the caller's clock, or NULL for
// the database's.
func (q queries) nowArg(t time.Time) sql.NullInt64 {
	if q.now == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// clock is the local clock: the caller's, or time.Now, whose monotonic
// reading makes the durations a lease believes in immune to the wall
// clock being set.
func (q queries) clock() time.Time {
	if q.now != nil {
		return q.now()
	}
	return time.Now()
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
