package main

// commands.go holds the subcommands that work on the database without
// serving it (migrate, seed, reset) and what keeps them from pulling it
// from under a running server.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/phonehome/phonehome/broker"
	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

// MaxSeedRows is the most rows one `phonehome seed` adds with -ets or
// -pets: ten million is far past what a demo or a benchmark needs (a
// million of either takes seconds), and a typo with a few digits too many
// would otherwise run for hours.
const MaxSeedRows = 10_000_000

// checkSeedCount refuses a -ets or -pets count below 0 or over
// MaxSeedRows.
func checkSeedCount(name string, n int) error {
	switch {
	case n < 0:
		return usageError{fmt.Sprintf("invalid value for -%s: must not be negative", name)}
	case n > MaxSeedRows:
		return usageError{fmt.Sprintf("invalid value for -%s: %d is over the most one seed adds, 10,000,000 (run seed again to add more)", name, n)}
	}
	return nil
}

// holdSQLite takes the SQLite file's lock for the subcommand cmd (migrate,
// seed, reset) and holds it until release, as a server does for as long as
// it serves: a running server refuses the command in one line that names
// it and says to stop it first, and no server starts on the file meanwhile.
// Wiping or migrating a database under a running server would leave it
// serving what is gone, with its pages stale and job ids given twice. A
// path that cannot be a database file is said first, before a lock file is
// made beside it. PostgreSQL takes no lock (see refuseLiveNodes).
func holdSQLite(cmd, path, advice string) (release func(), err error) {
	if store.IsPostgresURL(path) {
		return func() {}, nil
	}
	if err := store.CheckSQLitePath(path); err != nil {
		return nil, err
	}
	unlock, err := lockSQLite(path, slog.New(slog.DiscardHandler))
	var locked *cluster.LockedError
	switch {
	case errors.As(err, &locked):
		return nil, fmt.Errorf("%s: %s is in use by a running phonehome, %s: stop it first, %s",
			cmd, locked.Path, locked.Holder, advice)
	case err != nil:
		return nil, err
	case unlock == nil: // no lock file could be made: opening says what is wrong
		return func() {}, nil
	}
	return func() { _ = unlock() }, nil
}

// refuseLiveNodes refuses to reset a PostgreSQL database that nodes serve:
// those the job engine counts alive at now (jobs.Engine.Nodes: a heartbeat
// in job_nodes no older than jobs.DefaultNodeTimeout). A node that stopped
// cleanly has removed its row; one that was killed stops counting a
// minute after its last heartbeat. A database without the table (never
// migrated that far) has no nodes.
func refuseLiveNodes(ctx context.Context, st *store.Store, now time.Time) error {
	var exists bool
	err := st.Reader.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name = 'job_nodes')`)
	if err != nil || !exists {
		return err
	}
	// An engine that is never started: only its reading of the nodes.
	eng, err := jobs.New(st.Writer, jobs.Config{Reader: st.Reader, Now: func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	nodes, err := eng.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("reset: list the nodes of %s: %w", st.Path, err)
	}
	var live []string
	for _, n := range nodes {
		live = append(live, fmt.Sprintf("%q (pid %d on %s, last heartbeat %s ago)", n.Name, n.PID, n.Host, n.Age.Round(time.Second)))
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("reset: %s is served by node %s: stop it first, then reset (a node that did not stop cleanly stops counting %s after its last heartbeat)",
			st.Path, live[0], jobs.DefaultNodeTimeout)
	}
	named := strings.Join(live[:min(len(live), 5)], ", ")
	if len(live) > 5 {
		named += fmt.Sprintf(" and %d more", len(live)-5)
	}
	return fmt.Errorf("reset: %s is served by %d nodes, %s: stop them first, then reset (a node that did not stop cleanly stops counting %s after its last heartbeat)",
		st.Path, len(live), named, jobs.DefaultNodeTimeout)
}

func migrateCmd(path string, force int, stdout io.Writer) error {
	ctx := context.Background()
	release, err := holdSQLite("migrate", path, "then migrate (a server migrates its database itself when it starts)")
	if err != nil {
		return err
	}
	defer release()
	if force >= 0 {
		st, err := store.Open(ctx, path)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.ForceVersion(force); err != nil {
			return fmt.Errorf("force version %d: %w", force, err)
		}
		fmt.Fprintf(stdout, "%s: schema marked clean at version %d\n", st.Path, force)
		return nil
	}
	st, _, err := openMigrated(ctx, path, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	v, _, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: schema at version %d\n", st.Path, v)
	return nil
}

func seedCmd(path string, ets, petCount int, tick time.Duration, stdout io.Writer) error {
	ctx := context.Background()
	release, err := holdSQLite("seed", path, "then seed")
	if err != nil {
		return err
	}
	defer release()
	st, _, err := openMigrated(ctx, path, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	changed, err := seedRows(ctx, st, ets, petCount, tick, stdout)
	if len(changed) == 0 || st.Dialect != store.Postgres {
		return err
	}
	// Nodes may serve the database meanwhile (on SQLite, seed is refused
	// while a server runs): no feed of theirs published these rows, so
	// their pages of these streams reload (rows and counts). Also after a
	// failure, for the batches committed before it.
	if rerr := broker.Resync(ctx, st.Writer.DB, changed...); rerr != nil {
		fmt.Fprintf(stdout, "%s: the rows are added, but pages open on the nodes show them only after a reload: %v\n", st.Path, rerr)
	}
	return err
}

// seedRows adds what seedCmd was asked to and reports it, and returns the
// live streams whose rows it changed.
func seedRows(ctx context.Context, st *store.Store, ets, petCount int, tick time.Duration, stdout io.Writer) (changed []string, err error) {
	if petCount > 0 {
		start := time.Now()
		err := st.GeneratePets(ctx, petCount, store.GeneratePetsOptions{Now: time.Now(), Lifespan: pets.Rules{Tick: tick}.Lifespan()})
		if err != nil {
			return nil, err
		}
		changed = append(changed, live.PetsStream)
		if err := st.CompactCounts(ctx); err != nil {
			return changed, err
		}
		fmt.Fprintf(stdout, "%s: added %d pets in %s\n", st.Path, petCount, time.Since(start).Round(time.Millisecond))
		if ets == 0 {
			return changed, nil
		}
	}
	if ets == 0 {
		n, err := st.SeedExtraterrestrials(ctx)
		if err != nil {
			return changed, err
		}
		if n > 0 {
			changed = append(changed, live.ExtraterrestrialsStream)
		}
		fmt.Fprintf(stdout, "%s: added %d seed extraterrestrials\n", st.Path, n)
		return changed, nil
	}
	start := time.Now()
	if err := st.GenerateExtraterrestrials(ctx, ets); err != nil {
		return changed, err
	}
	changed = append(changed, live.ExtraterrestrialsStream)
	if err := st.CompactCounts(ctx); err != nil {
		return changed, err
	}
	fmt.Fprintf(stdout, "%s: added %d extraterrestrials in %s\n", st.Path, ets, time.Since(start).Round(time.Millisecond))
	return changed, nil
}

func resetCmd(path string, stdout io.Writer) error {
	ctx := context.Background()
	release, err := holdSQLite("reset", path, "then reset")
	if err != nil {
		return err
	}
	defer release()
	st, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	if st.Dialect == store.Postgres {
		if err := refuseLiveNodes(ctx, st, time.Now()); err != nil {
			st.Close()
			return err
		}
	}
	if err := st.Drop(); err != nil {
		st.Close()
		return fmt.Errorf("drop %s: %w", st.Path, err)
	}
	st.Close()
	st, _, err = openMigrated(ctx, path, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.SeedExtraterrestrials(ctx)
	if err != nil {
		return err
	}
	np, err := st.SeedPetsIfEmpty(ctx, time.Now(), pets.DefaultTick)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: reset; added %d seed extraterrestrials and %d pets\n", st.Path, n, np)
	return nil
}
