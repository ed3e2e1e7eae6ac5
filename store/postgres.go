package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// IsPostgresURL reports whether a -db value names a PostgreSQL database
// (postgres:// or postgresql://, any case) rather than a SQLite file.
func IsPostgresURL(target string) bool {
	scheme, _, ok := strings.Cut(target, "://")
	if !ok {
		return false
	}
	scheme = strings.ToLower(scheme)
	return scheme == "postgres" || scheme == "postgresql"
}

// Redact is a -db value as messages may show it: a PostgreSQL URL without
// its password (pgx also takes one as ?password=, hidden too), a file path
// as it is.
func Redact(target string) string {
	if !IsPostgresURL(target) {
		return target
	}
	u, err := url.Parse(target)
	if err != nil {
		return "(a malformed PostgreSQL URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// pgPoolSize is how many connections one Store holds open at most: enough
// for the pages, the API and the writers of one process, and far below
// PostgreSQL's default max_connections of 100 with a few nodes.
const pgPoolSize = 16

// pgConnectTimeout bounds a connection attempt when the URL sets none
// (connect_timeout), so an unroutable host fails with a message instead of
// hanging.
const pgConnectTimeout = 10 * time.Second

// IdleInTransactionTimeout is how long a session may hold a transaction
// open without sending anything before the server ends it
// (idle_in_transaction_session_timeout), when the URL sets none. Every
// transaction of phonehome's is a few statements in a row; one left open
// longer belongs to a process that stalls (a paused VM, a frozen or
// half-dead process) and may hold the locks every other node waits for
// (the live events' writer lock, rows of the counts): the server ends it
// and the others go on. The stalled node's own work fails and is done
// again (its outcomes are recorded again).
const IdleInTransactionTimeout = 5 * time.Second

// ApplicationName is the application_name a phonehome process's
// connections give PostgreSQL when the URL sets none ("phonehome/1234"):
// pg_stat_activity then says which process each session belongs to, and
// whether a process's sessions are gone.
func ApplicationName(pid int) string { return "phonehome/" + strconv.Itoa(pid) }

// openPostgres opens a pool on the database the URL names and checks that
// it answers. Every failure is one line that says what to do.
func openPostgres(ctx context.Context, target string) (*Store, error) {
	shown := Redact(target)
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		return nil, fmt.Errorf("the PostgreSQL URL is malformed (%s): write it as postgres://user:password@host:port/database",
			pgParseReason(err))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = ApplicationName(os.Getpid())
	}
	if cfg.RuntimeParams["idle_in_transaction_session_timeout"] == "" {
		cfg.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(IdleInTransactionTimeout.Milliseconds(), 10)
	}
	db := sqlx.NewDb(stdlib.OpenDB(*cfg), "pgx")
	db.SetMaxOpenConns(pgPoolSize)
	db.SetMaxIdleConns(pgPoolSize)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, explainPostgres(shown, cfg, err)
	}
	return &Store{Writer: db, Reader: db, Path: shown, Dialect: Postgres, url: target}, nil
}

// pgParseReason is the part of pgx's parse error that says what is wrong,
// without the URL it quotes (which may hold a password: pgx hides it from
// its own text, but not from the url.Error it wraps).
func pgParseReason(err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if inner := pe.Unwrap(); inner != nil {
			msg = strings.TrimSuffix(msg, " ("+inner.Error()+")")
			var ue *url.Error
			if errors.As(inner, &ue) {
				inner = ue.Err
			}
			msg += " (" + inner.Error() + ")"
		}
	}
	if _, rest, ok := strings.Cut(msg, "`: "); ok {
		msg = rest
	}
	return oneLine(msg)
}

// explainPostgres turns a failed connection or statement into what a person
// should do, by the server's error code where there is one.
func explainPostgres(shown string, cfg *pgx.ConnConfig, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "28P01":
			return fmt.Errorf("%s: the server refused the password of user %q: check the password in the URL", shown, cfg.User)
		case "28000":
			return fmt.Errorf("%s: the server does not let user %q in (%s): check the user in the URL, or the server's pg_hba.conf", shown, cfg.User, pg.Message)
		case "3D000":
			return fmt.Errorf("%s: database %q does not exist: create it (createdb %s, or CREATE DATABASE) or name another in the URL", shown, cfg.Database, cfg.Database)
		case "42501":
			return fmt.Errorf("%s: user %q lacks a permission (%s): GRANT it (the database's owner or a superuser can), or connect as the owner", shown, cfg.User, pg.Message)
		case "53300":
			return fmt.Errorf("%s: the server has no connection left (%s): raise max_connections or stop other clients", shown, pg.Message)
		case "57P03":
			return fmt.Errorf("%s: the server is starting or stopping (%s): try again in a moment", shown, pg.Message)
		}
		return fmt.Errorf("%s: %s (SQLSTATE %s)", shown, pg.Message, pg.Code)
	}
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Errorf("%s: cannot find host %q: check the host in the URL", shown, cfg.Host)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: no answer from the PostgreSQL server at %s within %s: check that it runs and that the URL names the right host and port",
			shown, pgAddr(cfg), cfg.ConnectTimeout)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: connection cancelled", shown)
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%s: cannot reach the PostgreSQL server at %s (%s): check that it runs and that the URL names the right host and port",
			shown, pgAddr(cfg), pgReason(err))
	}
	return fmt.Errorf("%s: %s", shown, oneLine(err.Error()))
}

// pgAddr is where cfg connects: host:port, or the Unix socket's folder.
func pgAddr(cfg *pgx.ConnConfig) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return fmt.Sprintf("%s (Unix socket, port %d)", cfg.Host, cfg.Port)
	}
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}

// pgReason is the innermost cause of a connection error, e.g. "connect:
// connection refused".
func pgReason(err error) string {
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			break
		}
		err = inner
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "dial") {
		msg = msg[i+2:]
	}
	return oneLine(msg)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// pgOpenSQL opens a database/sql pool of its own on the store's PostgreSQL
// database, for golang-migrate (whose Close closes the pool it is given) and
// for Drop.
func (s *Store) pgOpenSQL() (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(s.url)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	return stdlib.OpenDB(*cfg), nil
}

// pgExplain is explainPostgres for a store already open.
func (s *Store) pgExplain(err error) error {
	cfg, perr := pgx.ParseConfig(s.url)
	if perr != nil {
		return err
	}
	return explainPostgres(s.Path, cfg, err)
}

// pgCanCreate reports whether the store's user may create tables in the
// current schema, the first thing a migration does; the message says how
// to give the permission when it may not.
func (s *Store) pgCanCreate(ctx context.Context) error {
	var row struct {
		User   string         `db:"usr"`
		Schema sql.NullString `db:"schema"`
		Create sql.NullBool   `db:"can"`
	}
	err := s.Writer.GetContext(ctx, &row, `SELECT current_user AS usr, current_schema() AS schema,
		has_schema_privilege(current_schema(), 'CREATE') AS can`)
	if err != nil {
		return s.pgExplain(err)
	}
	if !row.Schema.Valid {
		return fmt.Errorf("%s: user %q has no schema to create tables in (search_path names none that exists): create one, or fix search_path", s.Path, row.User)
	}
	if !row.Create.Bool {
		return fmt.Errorf("%s: user %q may not create tables in schema %q: run `phonehome migrate` as the database's owner, or GRANT CREATE ON SCHEMA %s TO %s",
			s.Path, row.User, row.Schema.String, row.Schema.String, row.User)
	}
	return nil
}
