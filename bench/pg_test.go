package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// The command written into BENCHMARKS.md never carries the server's
// credentials.
func TestRedactCommandHidesTheServer(t *testing.T) {
	url := "postgres://postgres:s3cret@127.0.0.1:5432/postgres?sslmode=disable"
	for _, cmd := range []string{"go run . -pg " + url + " -only w1", "go run . -pg=" + url} {
		got := redactCommand(cmd)
		if strings.Contains(got, "s3cret") || strings.Contains(got, "127.0.0.1") {
			t.Errorf("redactCommand(%q) = %q: the URL shows", cmd, got)
		}
		if !strings.Contains(got, "$PHONEHOME_TEST_POSTGRES") {
			t.Errorf("redactCommand(%q) = %q: says nothing of where the server is", cmd, got)
		}
	}
}

// W1 on PostgreSQL, both systems, a small size: each run's database is made
// and dropped again, and each system works every job once.
func TestW1OnPostgres(t *testing.T) {
	server := os.Getenv("PHONEHOME_TEST_POSTGRES")
	if server == "" {
		t.Skip("PHONEHOME_TEST_POSTGRES is not set (scripts/pg-test-server start)")
	}
	pgServer = server
	t.Cleanup(func() { pgServer = "" })
	ctx := context.Background()
	for _, sys := range pgQueueSystems {
		m, err := runW1(ctx, sys, t.TempDir(), 500)
		if dropErr := dropDatabases(ctx); dropErr != nil {
			t.Fatal(dropErr)
		}
		if err != nil {
			t.Fatalf("%s: %v", sys.Name, err)
		}
		if m["drain_worked"] != 500 {
			t.Fatalf("%s worked %v jobs of 500", sys.Name, m["drain_worked"])
		}
	}
	var left int
	if err := pgAdminCount(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE 'bench\\_%'", &left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d bench databases left on the server", left)
	}
}
