package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/phonehome/phonehome/migrations"
)

// ErrDirty means a migration failed half-way and left the schema in a state
// that needs a person to look at it.
var ErrDirty = errors.New("dirty migration")

// SchemaVersion reports the migration version the database is at (0 when
// none has run) and whether the last migration failed half-way.
func (s *Store) SchemaVersion(ctx context.Context) (version uint, dirty bool, err error) {
	var exists int
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
	if s.Dialect == Postgres {
		q = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
	}
	if err := s.Writer.GetContext(ctx, &exists, q); err != nil {
		if s.Dialect == Postgres {
			return 0, false, s.pgExplain(err)
		}
		return 0, false, err
	}
	if exists == 0 {
		return 0, false, nil
	}
	var row struct {
		Version int64 `db:"version"`
		Dirty   bool  `db:"dirty"`
	}
	err = s.Writer.GetContext(ctx, &row, "SELECT version, dirty FROM schema_migrations LIMIT 1")
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return uint(row.Version), row.Dirty, nil
}

// LatestSchemaVersion is the highest migration this binary carries (the
// same for both dialects: a test holds their folders in step).
func LatestSchemaVersion() uint {
	return slices.Max(append(SchemaVersions(SQLite), 0))
}

// SchemaVersions lists the versions of a dialect's up migrations, in order.
func SchemaVersions(d Dialect) []uint {
	entries, _ := fs.ReadDir(migrations.For(string(d)), ".")
	var versions []uint
	re := regexp.MustCompile(`^(\d+)_.*\.up\.sql$`)
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 32)
			versions = append(versions, uint(n))
		}
	}
	slices.Sort(versions)
	return versions
}

// Migrate applies every embedded migration the database lacks. It refuses a
// database whose last migration failed (ErrDirty) or that a newer phonehome
// created, with a message that says what to do.
func (s *Store) Migrate(ctx context.Context) error {
	version, dirty, err := s.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version of %s: %w", s.Path, err)
	}
	if dirty {
		return fmt.Errorf("%w: %s stopped half-way through migration %d; restore a backup, or repair the schema by hand and run `phonehome migrate -force %d`",
			ErrDirty, s.Path, version, version-1)
	}
	latest := LatestSchemaVersion()
	if version > latest {
		other := "file"
		if s.Dialect == Postgres {
			other = "database"
		}
		return fmt.Errorf("%s has schema version %d but this phonehome knows only up to %d: run a newer phonehome, or point -db at another %s", s.Path, version, latest, other)
	}
	if version == latest {
		return nil
	}
	if s.Dialect == Postgres {
		if err := s.pgCanCreate(ctx); err != nil {
			return err
		}
	}
	return s.withMigrate(func(m *migrate.Migrate) error {
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			if s.Dialect == Postgres {
				return fmt.Errorf("migrate %s: %s", s.Path, oneLine(err.Error()))
			}
			return fmt.Errorf("migrate %s: %w", s.Path, err)
		}
		return nil
	})
}

// ForceVersion marks the schema as being at version v and clean, without
// running anything: the way out of a dirty migration repaired by hand.
func (s *Store) ForceVersion(v int) error {
	return s.withMigrate(func(m *migrate.Migrate) error { return m.Force(v) })
}

// Drop removes every table, including the migration bookkeeping. On
// SQLite virtual tables go first, taking their shadow tables with them
// (golang-migrate's own Drop trips over those), then the rest in any order:
// foreign keys are off on this connection. On PostgreSQL every table of the
// current schema goes (CASCADE), with the trigger functions the migrations
// made there; extensions stay.
func (s *Store) Drop() error {
	if s.Dialect == Postgres {
		return s.dropPostgres(context.Background())
	}
	db, err := sql.Open("sqlite", dsn(s.Path, dropPragmas, "_txlock=immediate"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	for _, which := range []string{
		"sql LIKE 'CREATE VIRTUAL TABLE%'",
		"name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
	} {
		var names []string
		rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'table' AND "+which)
		if err != nil {
			return err
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return err
			}
			names = append(names, name)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, name := range names {
			if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+quoteIdent(name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// quoteIdent quotes an SQL identifier read from the schema.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// dropPragmas are the writer's without foreign keys, so that tables can be
// dropped in any order, referenced ones included.
var dropPragmas = slices.DeleteFunc(slices.Clone(writerPragmas), func(p string) bool {
	return strings.HasPrefix(p, "foreign_keys")
})

// dropPostgres is Drop on PostgreSQL, in one transaction.
func (s *Store) dropPostgres(ctx context.Context) error {
	return s.InTx(ctx, func(tx *sqlx.Tx) error {
		var tables, functions []string
		if err := tx.SelectContext(ctx, &tables,
			"SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"); err != nil {
			return s.pgExplain(err)
		}
		if err := tx.SelectContext(ctx, &functions, `SELECT p.oid::regprocedure::text FROM pg_proc AS p
			WHERE p.pronamespace = current_schema()::regnamespace AND p.prorettype = 'trigger'::regtype
			AND NOT EXISTS (SELECT 1 FROM pg_depend AS d WHERE d.objid = p.oid AND d.deptype = 'e')`); err != nil {
			return s.pgExplain(err)
		}
		if len(tables) > 0 {
			if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(tables, ", ")+" CASCADE"); err != nil {
				return s.pgExplain(err)
			}
		}
		for _, f := range functions {
			if _, err := tx.ExecContext(ctx, "DROP FUNCTION IF EXISTS "+f+" CASCADE"); err != nil {
				return s.pgExplain(err)
			}
		}
		return nil
	})
}

// withMigrate gives golang-migrate its own connection: its Close closes the
// *sql.DB it was handed, which must not be the writer. On PostgreSQL it
// holds an advisory lock while it migrates, so nodes that start together
// migrate one after the other.
func (s *Store) withMigrate(fn func(m *migrate.Migrate) error) error {
	if s.Dialect == Postgres {
		db, err := s.pgOpenSQL()
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(2)
		driver, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{})
		if err != nil {
			db.Close()
			return fmt.Errorf("migrate driver: %w", s.pgExplain(err))
		}
		return s.runMigrate(driver, "pgx5", fn)
	}
	return s.withMigrateOn(dsn(s.Path, writerPragmas, "_txlock=immediate"), fn)
}

func (s *Store) withMigrateOn(dataSource string, fn func(m *migrate.Migrate) error) error {
	db, err := sql.Open("sqlite", dataSource)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	driver, err := sqlite.WithInstance(db, &sqlite.Config{})
	if err != nil {
		db.Close()
		return fmt.Errorf("migrate driver: %w", err)
	}
	return s.runMigrate(driver, "sqlite", fn)
}

// runMigrate runs fn with a golang-migrate instance over driver and the
// store's dialect's folder of migrations; it closes driver.
func (s *Store) runMigrate(driver database.Driver, name string, fn func(m *migrate.Migrate) error) error {
	source, err := iofs.New(migrations.For(string(s.Dialect)), ".")
	if err != nil {
		driver.Close()
		return fmt.Errorf("migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", source, name, driver)
	if err != nil {
		driver.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	defer m.Close()
	return fn(m)
}
