package store_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

func TestIsPostgresURL(t *testing.T) {
	t.Parallel()
	for target, want := range map[string]bool{
		"postgres://u@h/db": true, "postgresql://h/db": true, "POSTGRES://h/db": true,
		"phonehome.db": false, "/var/lib/phonehome/postgres.db": false, "postgres.db": false,
		"file:postgres://x": false, "sqlite://x": false, "": false,
	} {
		if got := store.IsPostgresURL(target); got != want {
			t.Errorf("IsPostgresURL(%q) = %v, want %v", target, got, want)
		}
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	t.Parallel()
	for _, target := range []string{
		"postgres://alice:s3cret@db.example:5432/phonehome",
		"postgres://alice@db.example/phonehome?password=s3cret&sslmode=disable",
		"postgresql://alice:s3cret@[::1]:bad/phonehome",
	} {
		if got := store.Redact(target); strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q", target, got)
		}
	}
	if got := store.Redact("data/phonehome.db"); got != "data/phonehome.db" {
		t.Errorf("a file path changed: %q", got)
	}
}

// checkOneLine fails unless err is a single line that contains want and
// none of the password.
func checkOneLine(t *testing.T, what string, err error, want, password string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: opened", what)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, want) || strings.ContainsAny(msg, "\r\n") || (password != "" && strings.Contains(msg, password)) {
		t.Errorf("%s: error %q, want one line with %q and no password", what, msg, want)
	}
}

// What a person gets for a bad -db URL, without a server: one line that
// says what to do, and never the password.
func TestOpenExplainsBadPostgresURLs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := store.Open(ctx, "postgres://alice:s3cret@localhost:notaport/phonehome")
	checkOneLine(t, "malformed URL", err, "write it as postgres://user:password@host:port/database", "s3cret")

	// A port nobody listens on: taken, then given back.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = store.Open(ctx, "postgres://alice:s3cret@"+addr+"/phonehome?sslmode=disable")
	checkOneLine(t, "no server", err, "cannot reach the PostgreSQL server at "+addr, "s3cret")

	_, err = store.Open(ctx, "postgres://alice:s3cret@no-such-host.invalid/phonehome")
	checkOneLine(t, "unknown host", err, `cannot find host "no-such-host.invalid"`, "s3cret")
}

// What a person gets from a real server that says no: a wrong password, a
// database that does not exist, one they may not connect to, and one they
// may not create tables in.
func TestOpenExplainsWhatTheServerRefuses(t *testing.T) {
	t.Parallel()
	b := storetest.Postgres(t)
	ctx := context.Background()
	admin := storetest.Admin(t, b.Server)
	server, err := url.Parse(b.Server)
	if err != nil {
		t.Fatal(err)
	}
	as := func(user, password, database string) string {
		u := *server
		u.User = url.UserPassword(user, password)
		u.Path = "/" + database
		return u.String()
	}
	wrong := as(server.User.Username(), "not-the-password", strings.TrimPrefix(server.Path, "/"))
	_, err = store.Open(ctx, wrong)
	checkOneLine(t, "wrong password", err, "refused the password", "not-the-password")

	_, err = store.Open(ctx, storetest.WithDatabase(t, b.Server, "phonehome_no_such_database"))
	checkOneLine(t, "no such database", err, `database "phonehome_no_such_database" does not exist`, "")

	// A role of our own, dropped after the databases it may use (cleanups
	// run last first).
	role := fmt.Sprintf("phonehome_test_role_%d", os.Getpid())
	if _, err := admin.Exec("CREATE ROLE " + role + " LOGIN PASSWORD 'role-secret'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP ROLE IF EXISTS " + role) })

	closed := storetest.NewDatabase(t, b.Server)
	closedName := strings.TrimPrefix(storetest.ParseURL(t, closed).Path, "/")
	if _, err := admin.Exec("REVOKE CONNECT ON DATABASE " + closedName + " FROM PUBLIC"); err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(ctx, as(role, "role-secret", closedName))
	checkOneLine(t, "no CONNECT", err, "lacks a permission", "role-secret")

	// PostgreSQL 15 lets only the owner create in a database's public schema.
	readOnly := storetest.NewDatabase(t, b.Server)
	st, err := store.Open(ctx, as(role, "role-secret", strings.TrimPrefix(storetest.ParseURL(t, readOnly).Path, "/")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Migrate(ctx)
	checkOneLine(t, "no CREATE", err, `may not create tables in schema "public": run `+"`phonehome migrate`"+` as the database's owner, or GRANT CREATE ON SCHEMA public TO `+role, "role-secret")
}

// Drop leaves an empty database that migrates again, on both dialects.
func TestDropThenMigrate(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if _, err := st.SeedExtraterrestrials(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.Drop(); err != nil {
			t.Fatal(err)
		}
		if v, _, err := st.SchemaVersion(ctx); err != nil || v != 0 {
			t.Fatalf("after Drop: version %d, %v", v, err)
		}
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := st.CountByStatus(ctx)
		if err != nil || c.Total() != 0 {
			t.Errorf("after Drop and Migrate: %+v, %v", c, err)
		}
		if n, err := st.SeedExtraterrestrials(ctx); err != nil || n != 10 {
			t.Errorf("seed after Drop: %d, %v", n, err)
		}
		if size, err := st.Size(ctx); err != nil || size.Bytes == 0 {
			t.Errorf("Size = %+v, %v", size, err)
		}
		if err := st.Ping(ctx); err != nil {
			t.Error(err)
		}
	})
}

// A process's sessions are named after it in pg_stat_activity
// (application_name "phonehome/PID"), unless the URL names them.
func TestSessionsAreNamedAfterTheProcess(t *testing.T) {
	url := storetest.Postgres(t).Target(t)
	for _, tt := range []struct{ url, want string }{
		{url, store.ApplicationName(os.Getpid())},
		{url + "&application_name=mine", "mine"},
	} {
		st := storetest.Open(t, tt.url)
		var got string
		if err := st.Reader.Get(&got, "SELECT current_setting('application_name')"); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("application_name %q, want %q", got, tt.want)
		}
	}
}

// A session that holds a transaction open without a word (a stalled
// process) is ended by the server after IdleInTransactionTimeout, or what
// the URL sets, so that the locks it holds cannot stop the other nodes.
func TestAStalledTransactionIsEnded(t *testing.T) {
	url := storetest.Postgres(t).Target(t)
	st := storetest.Open(t, url)
	var got string
	if err := st.Reader.Get(&got, "SELECT current_setting('idle_in_transaction_session_timeout')"); err != nil {
		t.Fatal(err)
	}
	if got != "5s" {
		t.Errorf("idle_in_transaction_session_timeout %q, want 5s (IdleInTransactionTimeout)", got)
	}

	st = storetest.Open(t, url+"&idle_in_transaction_session_timeout=200")
	ctx := t.Context()
	tx, err := st.Writer.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var pid int
	if err := tx.GetContext(ctx, &pid, "SELECT pg_backend_pid()"); err != nil {
		t.Fatal(err)
	}
	// The transaction now holds a lock another session would wait for.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(42)"); err != nil {
		t.Fatal(err)
	}
	admin := storetest.Admin(t, storetest.Postgres(t).Server)
	testwait.Until(t, 10*time.Second, "the stalled session to be ended", func() bool {
		var n int
		if err := admin.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if _, err := tx.ExecContext(ctx, "SELECT 1"); err == nil {
		t.Error("the ended transaction still answers")
	}
	// Its lock is free: another session takes it at once.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := st.Writer.ExecContext(lctx, "SELECT pg_advisory_lock(42), pg_advisory_unlock(42)"); err != nil {
		t.Errorf("the stalled session's lock is still held: %v", err)
	}
}
