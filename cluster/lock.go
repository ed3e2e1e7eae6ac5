package cluster

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrLocked is what LockSQLite's error matches (errors.Is) when another
// process holds the database's lock.
var ErrLocked = errors.New("the SQLite database is in use by another process")

// LockFile is the lock file LockSQLite takes for the SQLite database at
// path: a file beside it.
func LockFile(path string) string { return path + ".lock" }

// LockSQLite makes this process the only phonehome on the SQLite file at
// path, or says which process already is: two processes on one file
// would each see only their own changes live and both run the
// maintenance. It takes an exclusive flock on LockFile(path) (created if
// needed) and writes this process's id into it for the message of the
// next one. The kernel drops the lock when the process ends, however it
// ends (kill -9 too), so a crash never leaves a stale lock; release drops
// it at a clean stop. The lock file itself stays: deleting it would let a
// process that opened it before the delete lock a file nobody else sees.
//
// flock locks belong to an open file description, so a second
// LockSQLite in the same process is refused too. On systems without flock
// (see lock_other.go) it locks nothing and returns no error: the check
// is a guard, not what keeps the data safe (SQLite's own locks do that).
func LockSQLite(path string) (release func() error, err error) {
	return lockFile(LockFile(path), path)
}

// lockedMessage is the one line a refused process prints.
func lockedMessage(path, holder string) error {
	holder = strings.TrimSpace(holder)
	if holder == "" {
		holder = "its pid not yet written"
	}
	return &LockedError{Path: path, Holder: holder}
}

// LockedError is LockSQLite's refusal (errors.Is ErrLocked): the file and
// who holds it, so that a command other than serve can say what to do in
// its own words (errors.As).
type LockedError struct {
	// Path is the SQLite database's file.
	Path string
	// Holder names the process that holds it, as it wrote itself into the
	// lock file: "pid 1234 on host (since 2026-12-05T23:40:00Z)".
	Holder string
}

// Error is the one line a refused server prints: the file, the holder,
// and what to do.
func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is in use by another phonehome (%s): run one phonehome per SQLite file, or use PostgreSQL (-db postgres://…) to run several nodes",
		e.Path, e.Holder)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// holderText is what this process writes into the lock file: how the next
// process names it.
func holderText() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("pid %d on %s (since %s)\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
}
