package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for the databases' admin and counts
)

// pgServer is the PostgreSQL server of -pg (a postgres:// URL of a user that
// may create databases), or "" when the queues run on SQLite files.
var pgServer string

// onPostgres says whether this invocation measures on PostgreSQL.
func onPostgres() bool { return pgServer != "" }

// pgDatabases are the databases made for the current measurement, dropped
// by dropDatabases when it ends.
var pgDatabases struct {
	sync.Mutex
	names []string
}

// dbTarget is the database a system opens for one measurement: a file named
// name+".db" in dir on SQLite; on PostgreSQL a new, empty database on
// pgServer (dropped when the measurement ends), as its URL.
func dbTarget(ctx context.Context, dir, name string) (string, error) {
	if !onPostgres() {
		return filepath.Join(dir, name+".db"), nil
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	db := "bench_" + name + "_" + hex.EncodeToString(b[:])
	if err := pgAdmin(ctx, "CREATE DATABASE "+db); err != nil {
		return "", err
	}
	pgDatabases.Lock()
	pgDatabases.names = append(pgDatabases.names, db)
	pgDatabases.Unlock()
	return pgURL(db)
}

// dropDatabases drops the databases dbTarget made since the last call.
func dropDatabases(ctx context.Context) error {
	pgDatabases.Lock()
	names := pgDatabases.names
	pgDatabases.names = nil
	pgDatabases.Unlock()
	for _, db := range names {
		if err := pgAdmin(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			return err
		}
	}
	return nil
}

// pgURL is pgServer's URL with its database replaced by db.
func pgURL(db string) (string, error) {
	u, err := url.Parse(pgServer)
	if err != nil {
		return "", fmt.Errorf("-pg: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

// pgAdmin runs one statement on pgServer's own database.
func pgAdmin(ctx context.Context, stmt string) error {
	db, err := sql.Open("pgx", pgServer)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// pgSetting reads one server setting (e.g. fsync), for the report.
func pgSetting(ctx context.Context, name string) string {
	db, err := sql.Open("pgx", pgServer)
	if err != nil {
		return "unknown"
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return "unknown"
	}
	return v
}

// pgVersion is the server's version string, short.
func pgVersion(ctx context.Context) string {
	v := pgSetting(ctx, "server_version")
	if i := strings.IndexByte(v, ' '); i > 0 {
		v = v[:i]
	}
	return "PostgreSQL " + v
}

// countOn runs a count query on the database at target, read-only on a
// SQLite file, and over a plain connection on PostgreSQL.
func countOn(ctx context.Context, target, query string) (int, error) {
	var db *sql.DB
	var err error
	if onPostgres() {
		db, err = sql.Open("pgx", target)
		query = strings.ReplaceAll(query, " IS NOT '", " IS DISTINCT FROM '")
	} else {
		db, err = sql.Open("sqlite", sqliteDSN(target, []string{"query_only(1)", "busy_timeout(5000)"}))
	}
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, query).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", query, err)
	}
	return n, nil
}

// pgAdminCount runs one count query on pgServer's own database.
func pgAdminCount(ctx context.Context, query string, n *int) error {
	db, err := sql.Open("pgx", pgServer)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRowContext(ctx, query).Scan(n)
}
