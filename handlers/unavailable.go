package handlers

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// unavailableMessage is what a request is told while the database cannot
// be reached: the pool reconnects by itself, so trying again works once the
// server is back.
const unavailableMessage = "the database is unavailable right now: try again in a moment"

// unavailableRetryAfter is the Retry-After of a 503, in seconds.
const unavailableRetryAfter = "2"

// databaseUnavailable reports an error that means the database cannot be
// reached right now, rather than that the request is wrong or the code is:
// PostgreSQL down, restarting, out of connections, or a connection cut (by
// the network, a restart, or pg_terminate_backend). Such a request is
// answered 503; the pool opens new connections for the next one, so the
// app recovers by itself when the server is back.
func databaseUnavailable(err error) bool {
	// Whatever stops a new connection (the server down, or refusing this
	// database or user now) comes wrapped in a ConnectError, first.
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case strings.HasPrefix(pg.Code, "08"): // connection exception
			return true
		case pg.Code == "57P01", pg.Code == "57P02", pg.Code == "57P03": // admin or crash shutdown; cannot connect now
			return true
		case pg.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var op *net.OpError
	switch {
	case errors.As(err, &op):
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	case pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	// pgx's error for a connection it has already closed after a failure has
	// no type of its own.
	return strings.Contains(err.Error(), "conn closed")
}
