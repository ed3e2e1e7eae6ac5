// Package store owns phonehome's database: a SQLite file (the default),
// opened with the settings that keep SQLite fast and free of "database is
// locked", or a PostgreSQL database named by a postgres:// URL. It migrates
// either and holds the typed queries over the application tables, in one
// SQL text where both dialects agree and a small one per dialect where
// they do not. The job table belongs to package jobs, which runs over the
// same connections.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// ErrNotFound is returned when a row asked for by id does not exist.
var ErrNotFound = errors.New("not found")

// Dialect is the kind of database a Store runs on.
type Dialect string

// The dialects a Store speaks.
const (
	// SQLite is one database file, the default.
	SQLite Dialect = "sqlite"
	// Postgres is a PostgreSQL database named by a postgres:// URL.
	Postgres Dialect = "postgres"
)

// Store is the application's database. On SQLite: one writer connection
// that serialises every write transaction, and a pool of read-only
// connections that never block it (WAL mode). On PostgreSQL: one pool,
// which Writer and Reader both name.
type Store struct {
	// Writer is the read-write connection. On SQLite it is a single
	// connection whose transactions begin IMMEDIATE, so a read-then-write
	// transaction never fails with SQLITE_BUSY.
	Writer *sqlx.DB
	// Reader is a pool of read-only connections for pages and the API (on
	// PostgreSQL the same pool as Writer).
	Reader *sqlx.DB
	// Path is the database file, or the PostgreSQL URL with its password
	// hidden: what messages and pages may show.
	Path string
	// Dialect is the kind of database.
	Dialect Dialect

	// url is the PostgreSQL URL as given, password included, for the
	// migration and drop connections; empty on SQLite.
	url string
	// ckpt copies SQLite's write-ahead log into the database file off the
	// writer's commits (checkpoint.go); nil on PostgreSQL.
	ckpt *checkpointer
}

// Sync is how hard SQLite works to make a commit durable (PRAGMA
// synchronous in WAL mode).
type Sync string

const (
	// SyncNormal syncs the WAL at checkpoints only: a commit survives the
	// process being killed (kill -9, a crash), but a power cut or an
	// operating-system crash can lose the last commits (never corrupt the
	// file). The default.
	SyncNormal Sync = "normal"
	// SyncFull syncs the WAL at every commit: a commit also survives a
	// power cut, at the cost of one fsync per transaction.
	SyncFull Sync = "full"
)

// ParseSync reads a -sync value: "normal" or "full".
func ParseSync(s string) (Sync, error) {
	switch Sync(strings.ToLower(s)) {
	case SyncNormal:
		return SyncNormal, nil
	case SyncFull:
		return SyncFull, nil
	}
	return "", fmt.Errorf("%q is not normal or full", s)
}

// Options are the settings Open takes beyond the file's path.
type Options struct {
	// Sync is the durability of a commit on SQLite; empty means
	// SyncNormal. PostgreSQL ignores it: there the server's own settings
	// (synchronous_commit, fsync) decide, and its default makes every
	// commit survive a power cut.
	Sync Sync
}

// writerPragmas are applied to every writer connection through the DSN (a
// PRAGMA run with Exec reaches only one pooled connection); the synchronous
// pragma is added by Open from Options.Sync.
var writerPragmas = []string{
	"journal_mode(WAL)",
	"busy_timeout(5000)",
	"foreign_keys(1)",
	"temp_store(MEMORY)",
	"cache_size(-32000)",
	fmt.Sprintf("wal_autocheckpoint(%d)", checkpointAfter),
}

var readerPragmas = []string{
	"busy_timeout(5000)",
	"query_only(1)",
	"temp_store(MEMORY)",
	"cache_size(-32000)",
}

// Open opens the database target names with the default Options: a
// postgres:// or postgresql:// URL (see IsPostgresURL), or else the path of
// a SQLite file, created if needed and checked to be a SQLite database this
// process can write. It does not migrate: call Migrate before using the
// tables.
func Open(ctx context.Context, target string) (*Store, error) {
	return OpenWith(ctx, target, Options{})
}

// OpenWith is Open with explicit Options.
func OpenWith(ctx context.Context, target string, opts Options) (*Store, error) {
	if IsPostgresURL(target) {
		return openPostgres(ctx, target)
	}
	return openSQLite(ctx, target, opts)
}

// openSQLite opens the SQLite file at path.
func openSQLite(ctx context.Context, path string, opts Options) (*Store, error) {
	sync := opts.Sync
	if sync == "" {
		sync = SyncNormal
	}
	if _, err := ParseSync(string(sync)); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	if err := CheckSQLitePath(path); err != nil {
		return nil, err
	}
	pragmas := append(slices.Clip(writerPragmas), "synchronous("+strings.ToUpper(string(sync))+")")
	writer, err := sqlx.Open("sqlite", dsn(path, pragmas, "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxIdleTime(0)
	writer.SetConnMaxLifetime(0)
	if err := checkWritable(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("%s: %w", path, explain(err))
	}

	reader, err := sqlx.Open("sqlite", dsn(path, readerPragmas, "mode=ro"))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	reader.SetMaxOpenConns(8)
	reader.SetMaxIdleConns(8)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("%s: %w", path, explain(err))
	}
	ckpt, err := startCheckpointer(ctx, path, sync)
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("%s: %w", path, explain(err))
	}
	return &Store{Writer: writer, Reader: reader, Path: path, Dialect: SQLite, ckpt: ckpt}, nil
}

// CheckSQLitePath says, in one line that also says what to do, why path
// cannot be a SQLite database file: it is empty, it is a folder, or its
// folder does not exist, is not a folder or cannot be looked into. A path
// that passes may still fail to open (a file that is not a database, no
// permission to write): OpenWith says so. Callers that make files beside
// the database (its lock) check first.
func CheckSQLitePath(path string) error {
	if path == "" {
		return errors.New("the database path is empty: give -db a file such as phonehome.db")
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a folder, not a database file: give -db a file path such as %s", path, filepath.Join(path, "phonehome.db"))
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("database folder %s does not exist: create it (mkdir -p %s) or choose another -db", dir, dir)
	case errors.Is(err, syscall.ENOTDIR), err == nil && !fi.IsDir():
		return fmt.Errorf("database folder %s is not a folder (a file is in the way): choose another -db", dir)
	case errors.As(err, &pe):
		return fmt.Errorf("database folder %s: %v: check its permissions or choose another -db", dir, pe.Err)
	case err != nil:
		return fmt.Errorf("database folder %s: %v: check it or choose another -db", dir, err)
	}
	return nil
}

// checkWritable makes SQLite read the file header and take a write lock, so a
// file that is not a database, or one on a read-only disk, fails here with a
// clear error instead of at the first write.
func checkWritable(ctx context.Context, db *sqlx.DB) error {
	var mode string
	if err := db.GetContext(ctx, &mode, "PRAGMA journal_mode"); err != nil {
		return err
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS phonehome_probe (x INTEGER) STRICT; DROP TABLE phonehome_probe"); err != nil {
		return err
	}
	return tx.Commit()
}

// explain turns SQLite's terse open errors into what a person should do.
func explain(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "file is not a database"), strings.Contains(msg, "(26)"):
		return fmt.Errorf("not a SQLite database (%v): point -db at another file or move this one away", err)
	case strings.Contains(msg, "readonly"), strings.Contains(msg, "(8)"):
		return fmt.Errorf("cannot write to the database or its folder (%v): check the permissions or choose another -db path", err)
	case strings.Contains(msg, "unable to open"), strings.Contains(msg, "(14)"):
		return fmt.Errorf("cannot open the database file (%v): check that the file and its folder exist and are readable and writable", err)
	}
	return err
}

// dsn builds a modernc.org/sqlite URI with pragmas and extra parameters. The
// "file:" prefix is what makes SQLite honour mode=ro.
func dsn(path string, pragmas []string, extra ...string) string {
	var q []string
	for _, p := range pragmas {
		q = append(q, "_pragma="+url.QueryEscape(p))
	}
	q = append(q, extra...)
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + escaped + "?" + strings.Join(q, "&")
}

// Close closes the connection pools.
func (s *Store) Close() error {
	if s.Reader == s.Writer {
		return s.Writer.Close()
	}
	return errors.Join(s.ckpt.close(), s.Reader.Close(), s.Writer.Close())
}

// Rebind turns an SQL text written with ? placeholders into the store's
// dialect ($1, $2… on PostgreSQL; unchanged on SQLite).
func (s *Store) Rebind(query string) string { return s.Writer.Rebind(query) }

// Ping reports whether the database answers a query, for /healthz.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.Reader.GetContext(ctx, &one, "SELECT 1")
}

// InTx runs fn in one write transaction (IMMEDIATE on SQLite, READ
// COMMITTED on PostgreSQL, where reads meant for a write lock their rows)
// and commits it when fn returns nil; any error rolls everything back.
func (s *Store) InTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.Writer.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// selectPage reads one page of a keyset listing: the rows of query (a
// SELECT … FROM …) that meet every condition of where, in order, at most
// limit of them (1 to 1000; 50 when asked is outside that), and whether
// more follow (one row more is read to tell). what names the listing in
// errors.
func selectPage[R any](ctx context.Context, s *Store, what, query string, where []string, args []any, order string, asked int) (rows []R, more bool, err error) {
	limit := asked
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + order + " LIMIT ?"
	if err := s.Reader.SelectContext(ctx, &rows, s.Rebind(query), append(args, limit+1)...); err != nil {
		return nil, false, fmt.Errorf("list %s: %w", what, err)
	}
	if len(rows) > limit {
		return rows[:limit], true, nil
	}
	return rows, false, nil
}

// UnixMillis converts a time to the integer stored in *_at columns.
func UnixMillis(t time.Time) int64 { return t.UnixMilli() }

// FromUnixMillis converts a stored *_at column back to a UTC time.
func FromUnixMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
