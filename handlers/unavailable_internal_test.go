package handlers

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phonehome/phonehome/store"
)

// Only errors that mean "the database cannot be reached now" are a 503;
// a constraint, a missing row or a plain bug keep their status.
func TestClassifyDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"admin shutdown (pg_terminate_backend)", &pgconn.PgError{Code: "57P01"}, 503},
		{"server starting", fmt.Errorf("list: %w", &pgconn.PgError{Code: "57P03"}), 503},
		{"connection failure", &pgconn.PgError{Code: "08006"}, 503},
		{"too many connections", &pgconn.PgError{Code: "53300"}, 503},
		{"cannot connect", &pgconn.ConnectError{}, 503},
		{"connection cut", fmt.Errorf("query: %w", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}), 503},
		{"cut mid-message", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), 503},
		{"bad connection", driver.ErrBadConn, 503},
		{"unique violation", &pgconn.PgError{Code: "23505"}, 500},
		{"syntax error", &pgconn.PgError{Code: "42601"}, 500},
		{"a bug", errors.New("boom"), 500},
		{"not found", store.ErrNotFound, 404},
		{"cancelled by the client", fmt.Errorf("query: %w", context.Canceled), 499},
	} {
		status, msg := classify(c.err)
		if status != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, status, msg, c.want)
		}
		if status == 503 && msg != unavailableMessage {
			t.Errorf("%s: message %q", c.name, msg)
		}
	}
}
