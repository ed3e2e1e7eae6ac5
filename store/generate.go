package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// seedIfEmpty runs seed in a transaction when table has no rows, and
// returns how many rows seed added: the seed data of a new database, never
// added twice (0 when the table has rows). The check and the insert are
// atomic: on SQLite the transaction takes the write lock at its start
// (IMMEDIATE); on PostgreSQL, where nodes starting together on a new
// database all seed it, an advisory lock held to the commit makes them
// take turns, and the next one's check (a statement of its own under READ
// COMMITTED, so it reads what was committed before it began) sees the
// rows and adds none.
func (s *Store) seedIfEmpty(ctx context.Context, table string, seed func(tx *sqlx.Tx) (int, error)) (int, error) {
	added := 0
	err := s.InTx(ctx, func(tx *sqlx.Tx) error {
		if s.Dialect == Postgres {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "phonehome seed "+table); err != nil {
				return err
			}
		}
		// EXISTS, not count(*): a start reads one row of a table of millions.
		var has bool
		if err := tx.GetContext(ctx, &has, "SELECT EXISTS (SELECT 1 FROM "+table+")"); err != nil {
			return err
		}
		if has {
			return nil
		}
		var err error
		added, err = seed(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("seed %s: %w", table, err)
	}
	return added, nil
}

// generateRows bulk-inserts n generated rows, the way both generators
// (GenerateExtraterrestrials, GeneratePets) fill a large table quickly:
// insert is the statement up to VALUES, cols the values of one row;
// perStatement rows go in one statement (the full ones through one
// prepared statement a transaction) and perTx rows in one transaction.
// begin, when set, runs first in every transaction; row appends row i's
// values to args and returns them. A failed transaction's rows are not
// retried: the error is returned as it is.
func (s *Store) generateRows(ctx context.Context, n, perStatement, perTx int, insert string, cols int,
	begin func(tx *sqlx.Tx) error, row func(args []any, i int) []any) error {
	tuple := "(" + strings.Repeat("?,", cols-1) + "?)"
	stmtFor := func(k int) string {
		var b strings.Builder
		b.WriteString(insert)
		b.WriteString(" VALUES ")
		for i := range k {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(tuple)
		}
		return s.Rebind(b.String())
	}
	full := stmtFor(perStatement)
	args := make([]any, 0, perStatement*cols)
	for done := 0; done < n; {
		err := s.InTx(ctx, func(tx *sqlx.Tx) error {
			if begin != nil {
				if err := begin(tx); err != nil {
					return err
				}
			}
			stmt, err := tx.PrepareContext(ctx, full)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for end := min(n, done+perTx); done < end; {
				k := min(perStatement, end-done)
				args = args[:0]
				for i := range k {
					args = row(args, done+i)
				}
				if k == perStatement {
					_, err = stmt.ExecContext(ctx, args...)
				} else {
					_, err = tx.ExecContext(ctx, stmtFor(k), args...)
				}
				if err != nil {
					return err
				}
				done += k
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
