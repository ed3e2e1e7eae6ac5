package main

import (
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for openTestDB
	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// The root tests' own look at a database beside the server, on either
// backend: the few queries that must differ by dialect (the catalogue) are
// here; the rest are written to run on both.

// openTestDB opens target (a SQLite file, or a postgres:// URL) for the
// test's own queries, closed when the test ends.
func openTestDB(t *testing.T, target string) *sqlx.DB {
	t.Helper()
	if !store.IsPostgresURL(target) {
		db, err := sqlx.Open("sqlite", "file:"+target+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, err := sqlx.Open("pgx", target)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(2)
	t.Cleanup(func() { db.Close() })
	return db
}

// dialectOf is the dialect a connection speaks, by its driver.
func dialectOf(db *sqlx.DB) store.Dialect {
	if db.DriverName() == "sqlite" {
		return store.SQLite
	}
	return store.Postgres
}

// tableNames lists the database's tables by name, the migrations' own
// included: SQLite's from sqlite_master (without its internal ones), and
// PostgreSQL's of the current schema.
func tableNames(t *testing.T, db *sqlx.DB) []string {
	t.Helper()
	query := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
	if dialectOf(db) == store.Postgres {
		query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
	}
	var tables []string
	if err := db.Select(&tables, query); err != nil {
		t.Fatal(err)
	}
	return tables
}

// ledgerSums are the count tables as their readers see them: on PostgreSQL
// they are ledgers whose rows the maintenance folds now and then (the sums
// stay), so a checksum of their rows would change with nothing done.
var ledgerSums = map[string]string{
	"job_counts":              "SELECT queue, state, sum(n) FROM job_counts GROUP BY queue, state HAVING sum(n) <> 0",
	"extraterrestrial_counts": "SELECT status, sum(n) FROM extraterrestrial_counts GROUP BY status HAVING sum(n) <> 0",
}

// appDatabaseFor is the -db of an app a test starts without one: a new
// PostgreSQL database for the tests TestAppOnPostgres runs, a new SQLite
// file otherwise.
func appDatabaseFor(t *testing.T) string {
	return storetest.DatabaseFor(t, "phonehome.db")
}
