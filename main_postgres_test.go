package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// migrate, seed and reset work on PostgreSQL, with the password never
// printed (serve: postgres_serve_test.go).
func TestCommandLineOnPostgres(t *testing.T) {
	t.Parallel()
	db := storetest.Postgres(t).Target(t)
	password, _ := storetest.ParseURL(t, db).User.Password()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "migrate", args: []string{"migrate", "-db", db}, wantStdout: "schema at version " + strconv.Itoa(int(store.LatestSchemaVersion()))},
		{name: "seed", args: []string{"seed", "-db", db}, wantStdout: "added 10 seed extraterrestrials"},
		{name: "seed generated", args: []string{"seed", "-db", db, "-ets", "500", "-pets", "300"}, wantStdout: "added 500 extraterrestrials"},
		{name: "reset", args: []string{"reset", "-db", db}, wantStdout: "reset; added 10 seed extraterrestrials and 10 pets"},
		{name: "bad URL", args: []string{"migrate", "-db", "postgres://u:" + password + "@localhost:notaport/x"}, wantCode: 1, wantStderr: "PostgreSQL URL is malformed"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(tt.args...)
		if code != tt.wantCode || !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("%s: phonehome %v: exit %d\nstdout %q\nstderr %q\nwant exit %d, stdout ∋ %q, stderr ∋ %q",
				tt.name, tt.args, code, stdout, stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
		}
		if strings.Contains(stdout+stderr, password) {
			t.Errorf("%s: the password is in the output: %q %q", tt.name, stdout, stderr)
		}
		if code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%s: error is more than one line: %q", tt.name, stderr)
		}
	}
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts, err := st.CountByStatus(context.Background())
	if err != nil || counts.Total() != 10 {
		t.Errorf("after reset: %+v (%v), want 10 extraterrestrials", counts, err)
	}
}
