// Package storetest makes the databases of tests: a real SQLite file in a
// test's temporary directory, or a real PostgreSQL database of its own,
// migrated to the current schema. Every package's tests open theirs here,
// so there is one way to do it.
//
// Open is SQLite, always. Backends (and Run) yield SQLite and, when the
// environment variable PHONEHOME_TEST_POSTGRES names a PostgreSQL server
// (scripts/pg-test-server prints it), PostgreSQL too: one table of
// backends that a test runs against, not copies of the test. Without the
// variable the PostgreSQL cases are skipped, except under CI (CI set and not
// "0" or "false"), where a missing server fails the test.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver for Admin

	"github.com/phonehome/phonehome/store"
)

// EnvPostgres is the environment variable naming the PostgreSQL server of
// the tests: a postgres:// URL of a superuser (or a user that may create
// databases and roles). Each test gets a database of its own in it.
const EnvPostgres = "PHONEHOME_TEST_POSTGRES"

// Open opens the SQLite file at path (a new file in tb's temporary
// directory when path is ""), migrates it, and closes it when tb ends.
func Open(tb testing.TB, path string) *store.Store {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "test.db")
	}
	return migrated(tb, path)
}

func migrated(tb testing.TB, target string) *store.Store {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, target)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return st
}

// Backend is one kind of database the tests run on.
type Backend struct {
	// Dialect is the kind of database; its name names the subtest.
	Dialect store.Dialect
	// Server is the URL of the PostgreSQL server (from EnvPostgres); empty
	// for SQLite.
	Server string
}

// Name is the backend's name: "sqlite" or "postgres".
func (b Backend) Name() string { return string(b.Dialect) }

// Backends lists the backends to test: SQLite, and PostgreSQL when
// EnvPostgres names a server. Under CI a missing server fails tb.
func Backends(tb testing.TB) []Backend {
	tb.Helper()
	out := []Backend{{Dialect: store.SQLite}}
	if server := os.Getenv(EnvPostgres); server != "" {
		out = append(out, Backend{Dialect: store.Postgres, Server: server})
	} else if InCI() {
		tb.Errorf("%s is not set: CI runs the PostgreSQL cases too (.ci/run starts scripts/pg-test-server)", EnvPostgres)
	}
	return out
}

// InCI reports whether the tests run under CI, where every backend must be
// there.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// Postgres is the PostgreSQL backend, or skips tb (fails it under CI)
// when EnvPostgres is not set: for tests about PostgreSQL alone.
func Postgres(tb testing.TB) Backend {
	tb.Helper()
	server := os.Getenv(EnvPostgres)
	if server == "" {
		if InCI() {
			tb.Fatalf("%s is not set: CI runs the PostgreSQL cases too (.ci/run starts scripts/pg-test-server)", EnvPostgres)
		}
		tb.Skipf("%s is not set: start a server with `eval \"$(scripts/pg-test-server start)\"` to run this test", EnvPostgres)
	}
	return Backend{Dialect: store.Postgres, Server: server}
}

// Run runs fn once per backend, each as a parallel subtest named after it.
func Run(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends(t) {
		t.Run(b.Name(), func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// RunStore is Run with the set-up every store test shares: fn gets a new
// migrated store of the backend (closed when the subtest ends) and a
// background context.
func RunStore(t *testing.T, fn func(t *testing.T, ctx context.Context, st *store.Store)) {
	t.Helper()
	Run(t, func(t *testing.T, b Backend) { fn(t, context.Background(), b.Open(t)) })
}

// Target is a new, empty database of this backend, dropped when tb ends:
// a file path in tb's temporary directory, or the URL of a new database on
// the PostgreSQL server.
func (b Backend) Target(tb testing.TB) string {
	tb.Helper()
	if b.Dialect != store.Postgres {
		return filepath.Join(tb.TempDir(), "test.db")
	}
	return NewDatabase(tb, b.Server)
}

// Open opens a new database of this backend, migrated, closed when tb ends.
func (b Backend) Open(tb testing.TB) *store.Store {
	tb.Helper()
	return migrated(tb, b.Target(tb))
}

var (
	adminMu sync.Mutex
	admins  = map[string]*sql.DB{}
	dbSeq   atomic.Int64
)

// Admin is a connection pool on the server's own database, shared by the
// tests of this process, for creating databases and roles.
func Admin(tb testing.TB, server string) *sql.DB {
	tb.Helper()
	adminMu.Lock()
	defer adminMu.Unlock()
	if db, ok := admins[server]; ok {
		return db
	}
	db, err := sql.Open("pgx", server)
	if err != nil {
		tb.Fatalf("%s: %v", EnvPostgres, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		db.Close()
		tb.Fatalf("%s: cannot reach the test server (%v): start one with `eval \"$(scripts/pg-test-server start)\"`", EnvPostgres, err)
	}
	admins[server] = db
	return db
}

// NewDatabase creates a database of its own for tb on the server and
// returns its URL; it is dropped (with any connection still open to it)
// when tb ends, so tests can run in parallel and leave nothing behind.
func NewDatabase(tb testing.TB, server string) string {
	tb.Helper()
	admin := Admin(tb, server)
	name := fmt.Sprintf("phonehome_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	return WithDatabase(tb, server, name)
}

// ParseURL is the database URL s parsed, failing tb when it does not parse:
// for tests that read a URL's parts (its database, its password).
func ParseURL(tb testing.TB, s string) *url.URL {
	tb.Helper()
	u, err := url.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// WithDatabase is the server URL with its database (the path) replaced.
func WithDatabase(tb testing.TB, server, database string) string {
	tb.Helper()
	u, err := url.Parse(server)
	if err != nil {
		tb.Fatalf("%s is not a URL: %v", EnvPostgres, err)
	}
	u.Path = "/" + database
	u.RawPath = ""
	return u.String()
}

// Outage takes the PostgreSQL database at dbURL (on server, a superuser's
// URL) away as a server restart would, without touching the other tests'
// databases on the same server: it refuses new connections to it and ends
// every open one (pg_terminate_backend, waiting until each is gone: a
// session still alive would answer the next query). The returned function
// lets connections in again; it also runs when tb ends.
func Outage(tb testing.TB, server, dbURL string) (restore func()) {
	tb.Helper()
	name := strings.TrimPrefix(ParseURL(tb, dbURL).Path, "/")
	admin := Admin(tb, server)
	if _, err := admin.Exec(`ALTER DATABASE "` + name + `" ALLOW_CONNECTIONS false`); err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.Exec(`SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if _, err := admin.Exec(`ALTER DATABASE "` + name + `" ALLOW_CONNECTIONS true`); err != nil {
				tb.Error(err)
			}
		})
	}
	tb.Cleanup(restore)
	return restore
}

// suiteRuns are the names of the tests running RunSuites.
var suiteRuns sync.Map

// InSuites reports whether tb runs under RunSuites: the tests of a
// package's suites run once more on PostgreSQL under it, and every other
// test on SQLite.
func InSuites(tb testing.TB) bool {
	for name := tb.Name(); ; {
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return false
		}
		name = name[:i]
		if _, ok := suiteRuns.Load(name); ok {
			return true
		}
	}
}

// DatabaseFor is the -db of a test that starts a server or opens a store
// by its target: a new PostgreSQL database when tb runs under RunSuites
// (see InSuites), else a new SQLite file named file in tb's temporary
// directory.
func DatabaseFor(tb testing.TB, file string) string {
	tb.Helper()
	if InSuites(tb) {
		return NewDatabase(tb, Postgres(tb).Server)
	}
	return filepath.Join(tb.TempDir(), file)
}

// RunSuites runs each suite, a plain top-level TestX function of the
// caller's package, once more as a subtest of t named after it, on
// PostgreSQL: t is skipped (failed under CI) without a server (see
// Postgres), and the tests under t give their databases to PostgreSQL (see
// InSuites and DatabaseFor). The suites are listed by their names, not copied.
func RunSuites(t *testing.T, suites ...func(*testing.T)) {
	t.Helper()
	Postgres(t)
	suiteRuns.Store(t.Name(), true)
	for _, suite := range suites {
		name := runtime.FuncForPC(reflect.ValueOf(suite).Pointer()).Name()
		t.Run(name[strings.LastIndex(name, ".")+1:], suite)
	}
}
