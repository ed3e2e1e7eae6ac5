package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// SeedKeeperID is the keeper of the seed pets and of generated ones. Visitors'
// keeper ids are 32 hexadecimal digits, so they never collide with it.
const SeedKeeperID = "seed"

// Keeper is one row of the keepers table: an anonymous visitor known by the
// random id in its cookie, and its treat budget.
type Keeper struct {
	ID string `db:"id"`
	// TreatsLeft is what is left of the current window's treats, as stored:
	// package pets decides when the window is over and the budget refilled.
	TreatsLeft int `db:"treats_left"`
	// WindowStart is when the current treat window began.
	WindowStart time.Time
	CreatedAt   time.Time
}

type keeperRow struct {
	ID          string `db:"id"`
	TreatsLeft  int    `db:"treats_left"`
	WindowStart int64  `db:"treats_window_start"`
	CreatedAt   int64  `db:"created_at"`
}

func (r keeperRow) keeper() Keeper {
	return Keeper{ID: r.ID, TreatsLeft: r.TreatsLeft, WindowStart: FromUnixMillis(r.WindowStart), CreatedAt: FromUnixMillis(r.CreatedAt)}
}

const keeperColumns = "id, treats_left, treats_window_start, created_at"

// EnsureKeeperTx creates the keeper inside tx, with treats treats and a window
// starting now, unless it exists already (then nothing changes).
func EnsureKeeperTx(ctx context.Context, tx *sqlx.Tx, id string, treats int, now time.Time) error {
	ms := UnixMillis(now)
	_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO keepers (id, treats_left, treats_window_start, created_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`), id, treats, ms, ms)
	if err != nil {
		return fmt.Errorf("ensure keeper: %w", err)
	}
	return nil
}

// GetKeeper returns one keeper, or ErrNotFound for one that has never adopted
// a pet nor given a treat.
func (s *Store) GetKeeper(ctx context.Context, id string) (Keeper, error) {
	return getKeeper(ctx, s.Reader, "", id)
}

// GetKeeperTx is GetKeeper inside tx, for a read-then-write: on PostgreSQL
// it locks the row (FOR UPDATE) until tx ends, as SQLite's single writer
// does for the whole transaction, so two treats cannot both spend the last
// one.
func GetKeeperTx(ctx context.Context, tx *sqlx.Tx, id string) (Keeper, error) {
	return getKeeper(ctx, tx, forUpdate(tx), id)
}

// rebinder is a connection or transaction that knows its placeholders.
type rebinder interface {
	sqlx.QueryerContext
	Rebind(string) string
}

// forUpdate is the row-locking clause of a read meant for a write inside
// tx: FOR UPDATE on PostgreSQL, nothing on SQLite (whose IMMEDIATE
// transactions hold the write lock already).
func forUpdate(tx *sqlx.Tx) string {
	if sqlx.BindType(tx.DriverName()) == sqlx.DOLLAR {
		return " FOR UPDATE"
	}
	return ""
}

func getKeeper(ctx context.Context, q rebinder, lock, id string) (Keeper, error) {
	var r keeperRow
	err := sqlx.GetContext(ctx, q, &r, q.Rebind("SELECT "+keeperColumns+" FROM keepers WHERE id = ?"+lock), id)
	if errors.Is(err, sql.ErrNoRows) {
		return Keeper{}, fmt.Errorf("keeper: %w", ErrNotFound)
	}
	if err != nil {
		return Keeper{}, fmt.Errorf("get keeper: %w", err)
	}
	return r.keeper(), nil
}

// SetTreatsTx stores a keeper's treat budget inside tx.
func SetTreatsTx(ctx context.Context, tx *sqlx.Tx, id string, left int, windowStart time.Time) error {
	res, err := tx.ExecContext(ctx, tx.Rebind("UPDATE keepers SET treats_left = ?, treats_window_start = ? WHERE id = ?"),
		left, UnixMillis(windowStart), id)
	if err != nil {
		return fmt.Errorf("set treats: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("keeper: %w", ErrNotFound)
	}
	return nil
}
