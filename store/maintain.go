package store

import (
	"context"
	"fmt"
	"os"

	"github.com/jmoiron/sqlx"
)

// CompactCounts folds the ledgers of extraterrestrial_counts and
// job_counts into one row per status, and per queue and state, on
// PostgreSQL, where the count triggers append a row for every statement
// that changes a count (migrations 0004 and 0007) so that writers never
// wait on one counter row. Readers sum the rows, so their answer is the
// same before and after; only its cost shrinks. The fold is one statement
// per table: rows appended meanwhile by other transactions are not in its
// snapshot and stay for the next fold. A transaction-scoped advisory lock
// keeps two folds from running at once. On SQLite, whose triggers update
// the counters in place, it does nothing.
//
// Whoever writes much calls it now and then (the seed commands after they
// insert; the job engine's maintenance, once it runs on PostgreSQL).
func (s *Store) CompactCounts(ctx context.Context) error {
	if s.Dialect != Postgres {
		return nil
	}
	err := s.InTx(ctx, func(tx *sqlx.Tx) error {
		var got bool
		if err := tx.GetContext(ctx, &got, "SELECT pg_try_advisory_xact_lock(hashtext('phonehome.compact_counts'))"); err != nil || !got {
			return err // another fold is running: it does the work
		}
		for _, q := range []string{
			`WITH gone AS (DELETE FROM extraterrestrial_counts RETURNING status, n)
			INSERT INTO extraterrestrial_counts (status, n) SELECT status, sum(n) FROM gone GROUP BY status`,
			`WITH gone AS (DELETE FROM job_counts RETURNING queue, state, n)
			INSERT INTO job_counts (queue, state, n) SELECT queue, state, sum(n) FROM gone GROUP BY queue, state`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("compact counts: %w", err)
	}
	return nil
}

// Size is how much disk the database takes, for the runtime dashboard.
type Size struct {
	// Bytes is the SQLite file, or the PostgreSQL database
	// (pg_database_size: tables, indexes and TOAST of every schema).
	Bytes int64
	// WALBytes is SQLite's -wal file; 0 on PostgreSQL, whose write-ahead
	// log belongs to the whole server.
	WALBytes int64
}

// Size measures the database: the file sizes on SQLite, pg_database_size
// on PostgreSQL.
func (s *Store) Size(ctx context.Context) (Size, error) {
	if s.Dialect == Postgres {
		var n int64
		if err := s.Reader.GetContext(ctx, &n, "SELECT pg_database_size(current_database())"); err != nil {
			return Size{}, fmt.Errorf("database size: %w", err)
		}
		return Size{Bytes: n}, nil
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		return Size{}, fmt.Errorf("database size: %w", err)
	}
	size := Size{Bytes: fi.Size()}
	if fi, err := os.Stat(s.Path + "-wal"); err == nil {
		size.WALBytes = fi.Size()
	}
	return size, nil
}
