package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// handler is the work every system's worker does for the job carrying
// argument n on its attempt-th attempt (1-based). It returns nil for a
// success and an error for a failed attempt.
type handler func(n, attempt int) error

// queueImpl is one job queue opened on a fresh database file, with one
// worker kind registered whose Work calls the handler it was opened with.
type queueImpl interface {
	// InsertMany inserts one job per n, in one bulk operation.
	InsertMany(ctx context.Context, ns []int) error
	// Insert inserts one job the way an application would, in its own
	// transaction, and lets the queue know about it.
	Insert(ctx context.Context, n int) error
	// Start starts the workers.
	Start(ctx context.Context) error
	// Stop stops the workers gracefully: it returns once every started job
	// has finished and its outcome is written.
	Stop(ctx context.Context) error
	// Pending counts the jobs that are not finished (completed or
	// discarded) yet.
	Pending(ctx context.Context) (int, error)
	// Close closes the database.
	Close() error
}

// queueSystem is one job queue under test.
type queueSystem struct {
	// Name is the column header in BENCHMARKS.md.
	Name string
	// Settings says how it was configured, for BENCHMARKS.md.
	Settings string
	// Open opens the queue on a new database file at path, with jobs of at
	// most maxAttempts attempts and no backoff, and 50 workers running h.
	Open func(ctx context.Context, path string, maxAttempts int, h handler) (queueImpl, error)
}

// openFresh opens the system's queue for the workload name on a database
// of its own (dbTarget), as Open does.
func (s queueSystem) openFresh(ctx context.Context, dir, name string, maxAttempts int, h handler) (queueImpl, error) {
	target, err := dbTarget(ctx, dir, name)
	if err != nil {
		return nil, err
	}
	q, err := s.Open(ctx, target, maxAttempts, h)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return q, nil
}

// workers is the concurrency every system gets.
const workers = 50

// queueSystems are the systems W1–W3 run on, in table order.
var queueSystems = []queueSystem{phonehomeSystem, riverSystem, backliteSystem}

// campaignPeer is the queue the campaign scenario runs against: River, on
// the same kind of database as phonehome.
var campaignPeer = riverSystem

// discardLogger drops every record; every system gets one, so none pays
// for logging.
var discardLogger = slog.New(slog.DiscardHandler)

// peerPragmas are the SQLite settings of the peers' connections: the same
// as phonehome's writer (store/db.go), so the file behaves the same.
var peerPragmas = []string{
	"journal_mode(WAL)",
	"synchronous(NORMAL)",
	"busy_timeout(5000)",
	"foreign_keys(1)",
	"temp_store(MEMORY)",
	"cache_size(-32000)",
}

// sqliteDSN builds a modernc.org/sqlite DSN for path with pragmas.
func sqliteDSN(path string, pragmas []string) string {
	q := make([]string, 0, len(pragmas))
	for _, p := range pragmas {
		q = append(q, "_pragma="+url.QueryEscape(p))
	}
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + escaped + "?" + strings.Join(q, "&")
}

// openPeerDB opens a peer's SQLite file with the peers' pragmas on one
// connection, the fair setting for SQLite queues (REFERENCE.md §3).
func openPeerDB(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", sqliteDSN(path, peerPragmas))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// splitmix64 is a fast, well-mixing 64-bit hash.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// succeeds says whether attempt number attempt of job n succeeds: with
// probability 1/5, the same for every system.
func succeeds(n, attempt int) bool {
	return splitmix64(uint64(n)<<8|uint64(attempt&0xff))%5 == 0
}

// errNoAnswer is the failure of an attempt that did not succeed.
var errNoAnswer = fmt.Errorf("no answer")
