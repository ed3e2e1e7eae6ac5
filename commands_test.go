package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// figures are the rows a database holds, to tell that a refused command
// changed nothing.
type figures struct{ extraterrestrials, pets, jobs int }

func figuresOf(t *testing.T, st *store.Store) figures {
	t.Helper()
	ctx := context.Background()
	counts, err := st.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := st.CountPets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var jobs int
	if err := st.Reader.GetContext(ctx, &jobs, "SELECT count(*) FROM jobs"); err != nil {
		t.Fatal(err)
	}
	return figures{counts.Total(), pc.Alive + pc.Dead, jobs}
}

// oneLineContaining fails t unless the command exited with want and said
// one line on stderr holding every one of says.
func oneLineContaining(t *testing.T, args []string, wantCode int, says ...string) {
	t.Helper()
	code, _, stderr := runCLI(args...)
	line := strings.TrimSpace(stderr)
	if code != wantCode || strings.Contains(line, "\n") {
		t.Errorf("phonehome %v: exit %d, stderr %q; want exit %d and one line", args, code, stderr, wantCode)
		return
	}
	for _, s := range says {
		if !strings.Contains(line, s) {
			t.Errorf("phonehome %v said %q; want it to say %q", args, line, s)
		}
	}
}

// reset, seed and migrate on a SQLite file a server holds are refused in
// one line naming the server and saying to stop it first, exit 1; nothing
// of the server's data changes. Once the server has stopped, they work.
func TestCommandsRefuseASQLiteFileAServerHolds(t *testing.T) {
	db := filepath.Join(t.TempDir(), "served.db")
	app := startApp(t, Config{DB: db})
	post(t, app.URL+"/api/phone-home") // jobs whose ids a reset would give again
	before := figuresOf(t, app.store)
	if before.extraterrestrials != 10 || before.jobs == 0 {
		t.Fatalf("served database: %+v", before)
	}
	holder := fmt.Sprintf("pid %d on ", os.Getpid())
	for _, args := range [][]string{
		{"reset", "-db", db},
		{"seed", "-db", db},
		{"seed", "-db", db, "-ets", "5", "-pets", "5"},
		{"migrate", "-db", db},
		{"migrate", "-db", db, "-force", "3"},
	} {
		oneLineContaining(t, args, 1, db+" is in use by a running phonehome", holder, "stop it first", args[0]+":")
	}
	// The server's data is as it was: only its own campaign moved on.
	if after := figuresOf(t, app.store); after.extraterrestrials != before.extraterrestrials || after.pets != before.pets || after.jobs < before.jobs {
		t.Errorf("after the refused commands: %+v, before %+v", after, before)
	}
	getBody(t, app.URL+"/healthz")
	if err := app.stop(); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI("reset", "-db", db); code != 0 || !strings.Contains(stdout, "reset;") {
		t.Errorf("reset after the server stopped: exit %d, %q %q", code, stdout, stderr)
	}
}

// reset on PostgreSQL is refused while a node's heartbeat is fresh, naming
// the node; seed and migrate are not (several nodes share the database,
// and migrations take their own lock). A node that stopped cleanly, or
// whose heartbeat is over a minute old, no longer counts.
func TestResetRefusesAPostgresDatabaseNodesServe(t *testing.T) {
	db := storetest.Postgres(t).Target(t)
	app := startApp(t, Config{DB: db, Node: "guarded-node"})
	before := figuresOf(t, app.store)

	oneLineContaining(t, []string{"reset", "-db", db}, 1, `node "guarded-node" (pid `, "stop it first", "reset:")
	if after := figuresOf(t, app.store); after.extraterrestrials != before.extraterrestrials || after.pets != before.pets || after.jobs < before.jobs {
		t.Errorf("after the refused reset: %+v, before %+v", after, before)
	}
	for _, args := range [][]string{{"seed", "-db", db, "-ets", "5"}, {"migrate", "-db", db}} {
		if code, _, stderr := runCLI(args...); code != 0 {
			t.Errorf("phonehome %v beside a running node: exit %d, %q", args, code, stderr)
		}
	}
	if err := app.stop(); err != nil {
		t.Fatal(err)
	}

	// A killed node's row stays; it counts until its heartbeat is a minute old.
	ctx := context.Background()
	pg, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	now := time.Now()
	insert := "INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at) VALUES ($1, 'elsewhere', 42, $2, $2)"
	if _, err := pg.Writer.ExecContext(ctx, insert, "killed-just-now", now.Add(-5*time.Second).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Writer.ExecContext(ctx, insert, "killed-long-ago", now.Add(-2*time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	oneLineContaining(t, []string{"reset", "-db", db}, 1, `node "killed-just-now" (pid 42 on elsewhere, last heartbeat `, "s ago): stop it first", "stops counting 1m0s after")
	for i := range 6 {
		if _, err := pg.Writer.ExecContext(ctx, insert, fmt.Sprintf("killed-%d", i), now.Add(-time.Second).UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	oneLineContaining(t, []string{"reset", "-db", db}, 1, `served by 7 nodes, "killed-0" (pid 42 on elsewhere, last heartbeat `, `s ago), "killed-1"`,
		`s ago) and 2 more: stop them first`)
	if _, err := pg.Writer.ExecContext(ctx, "DELETE FROM job_nodes WHERE name LIKE 'killed-%' AND name <> 'killed-long-ago'"); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI("reset", "-db", db); code != 0 || !strings.Contains(stdout, "reset;") {
		t.Errorf("reset with only a stale node: exit %d, %q %q", code, stdout, stderr)
	}
}

// A database `phonehome migrate` made gets the seed extraterrestrials and
// pets on its first start, as a new one does; a table that has rows gets
// none.
func TestFirstStartSeedsAMigratedDatabase(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tt := range []struct {
			name string
			seed []string // run after migrate
			want figures
		}{
			{name: "migrated", want: figures{extraterrestrials: 10, pets: 10}},
			{name: "extraterrestrials seeded", seed: []string{"-ets", "3"}, want: figures{extraterrestrials: 3, pets: 10}},
			{name: "pets seeded", seed: []string{"-pets", "4"}, want: figures{extraterrestrials: 10, pets: 4}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				db := b.Target(t)
				if code, _, stderr := runCLI("migrate", "-db", db); code != 0 {
					t.Fatalf("migrate: %d %s", code, stderr)
				}
				if tt.seed != nil {
					if code, _, stderr := runCLI(append([]string{"seed", "-db", db}, tt.seed...)...); code != 0 {
						t.Fatalf("seed: %d %s", code, stderr)
					}
				}
				app := startApp(t, Config{DB: db})
				if got := figuresOf(t, app.store); got.extraterrestrials != tt.want.extraterrestrials || got.pets != tt.want.pets {
					t.Errorf("first start: %+v, want %+v", got, tt.want)
				}
				if err := app.stop(); err != nil {
					t.Fatal(err)
				}
				// A second start adds nothing.
				app = startApp(t, Config{DB: db})
				if got := figuresOf(t, app.store); got.extraterrestrials != tt.want.extraterrestrials || got.pets != tt.want.pets {
					t.Errorf("second start: %+v, want %+v", got, tt.want)
				}
			})
		}
	})
}
