package migrations_test

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/migrations"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"

	_ "modernc.org/sqlite"
)

// Both dialects carry the same versions, each with its down migration, so
// a schema version names the same tables on either.
func TestDialectsHaveTheSameVersions(t *testing.T) {
	t.Parallel()
	sqliteVersions, pgVersions := store.SchemaVersions(store.SQLite), store.SchemaVersions(store.Postgres)
	if len(sqliteVersions) == 0 || !slices.Equal(sqliteVersions, pgVersions) {
		t.Errorf("sqlite/ has versions %v, postgres/ %v: every migration needs its twin", sqliteVersions, pgVersions)
	}
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		ups, _ := fs.Glob(migrations.All, string(d)+"/*.up.sql")
		downs, _ := fs.Glob(migrations.All, string(d)+"/*.down.sql")
		for _, up := range ups {
			if !slices.Contains(downs, strings.TrimSuffix(up, ".up.sql")+".down.sql") {
				t.Errorf("%s has no down migration", up)
			}
		}
		if len(ups) != len(downs) {
			t.Errorf("%s: %d up and %d down migrations", d, len(ups), len(downs))
		}
	}
}

// column is what the comparison knows of a column: its type family (the Go
// types that scan it are the same within a family) and whether it may be
// NULL.
type column struct {
	Family  string
	NotNull bool
}

// index is an index's table, key columns ("<expr>" for an expression),
// and whether it is unique and partial.
type index struct {
	Table   string
	Columns string
	Unique  bool
	Partial bool
}

// schema is a database's tables, indexes (besides primary keys), primary
// keys and triggers, by name.
type schema struct {
	Tables   map[string]map[string]column
	Indexes  map[string]index
	Keys     map[string]string // table → primary key columns
	Triggers map[string]string // trigger → table
}

// newSchema is an empty schema, ready to be filled from a database.
func newSchema() schema {
	return schema{Tables: map[string]map[string]column{}, Indexes: map[string]index{}, Keys: map[string]string{}, Triggers: map[string]string{}}
}

// deliberate are the differences between the dialects that are meant, and
// why. Anything else the comparison finds is a mistake in one folder.
var deliberate = map[string]string{
	// SQLite's FTS5 trigram table (with its shadow tables and the triggers
	// that keep it) is a GIN pg_trgm index of the same name on PostgreSQL.
	"table extraterrestrial_names":          "FTS5 table on SQLite, GIN index on PostgreSQL",
	"index extraterrestrial_names":          "FTS5 table on SQLite, GIN index on PostgreSQL",
	"trigger extraterrestrial_names_insert": "keeps the FTS5 table; PostgreSQL keeps its index itself",
	"trigger extraterrestrial_names_delete": "keeps the FTS5 table; PostgreSQL keeps its index itself",
	"trigger extraterrestrial_names_rename": "keeps the FTS5 table; PostgreSQL keeps its index itself",
	"index pets_by_name":                    "(name, id) on a NOCASE name on SQLite; (lower(name), id) on a \"C\" name on PostgreSQL: the same order",
	"key job_counts":                        "counters updated in place on SQLite; a ledger of changes, summed, on PostgreSQL",
	"key extraterrestrial_counts":           "counters updated in place on SQLite; a ledger of changes, summed, on PostgreSQL",
	"trigger jobs_count_update":             "a job's state change is counted by the engine on SQLite (0011: a row trigger cost more than the engine's per-batch deltas); a statement-level ledger trigger on PostgreSQL, which takes no hot lock",
	"column job_queues.paused":              "0/1 INTEGER on SQLite, boolean on PostgreSQL: Go's bool scans both",
	"column schema_migrations.version":      "golang-migrate's own table: uint64 on SQLite, bigint NOT NULL on PostgreSQL",
	"column schema_migrations.dirty":        "golang-migrate's own table",
	"key schema_migrations":                 "golang-migrate's own table",
	"index version_unique":                  "golang-migrate's own table: a unique index on SQLite, the primary key on PostgreSQL",
	"table sqlite_sequence":                 "SQLite's AUTOINCREMENT bookkeeping; identity sequences on PostgreSQL",
	"table extraterrestrial_names_data":     "FTS5 shadow table",
	"table extraterrestrial_names_idx":      "FTS5 shadow table",
	"table extraterrestrial_names_docsize":  "FTS5 shadow table",
	"table extraterrestrial_names_config":   "FTS5 shadow table",
}

// family maps a declared column type to the Go types that scan it.
func family(declared string) string {
	switch t := strings.ToLower(declared); {
	case t == "integer", t == "bigint", t == "smallint", t == "uint64":
		return "integer"
	case t == "text", t == "jsonb", t == "character varying":
		return "text" // JSON is checked TEXT on SQLite, jsonb here: both scan into string and []byte
	case t == "bool", t == "boolean":
		return "bool"
	default:
		return t
	}
}

func sqliteSchema(t *testing.T, db *sqlx.DB) schema {
	t.Helper()
	s := newSchema()
	var objects []struct {
		Type  string         `db:"type"`
		Name  string         `db:"name"`
		Table string         `db:"tbl_name"`
		SQL   sql.NullString `db:"sql"`
	}
	if err := db.Select(&objects, "SELECT type, name, tbl_name, sql FROM sqlite_master"); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		switch o.Type {
		case "table":
			var cols []struct {
				Name    string `db:"name"`
				Type    string `db:"type"`
				NotNull bool   `db:"notnull"`
				PK      int    `db:"pk"`
			}
			if err := db.Select(&cols, "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid", o.Name); err != nil {
				t.Fatal(err)
			}
			s.Tables[o.Name] = map[string]column{}
			var key []string
			for _, c := range cols {
				s.Tables[o.Name][c.Name] = column{Family: family(c.Type), NotNull: c.NotNull || c.PK > 0}
				if c.PK > 0 {
					key = append(key, c.Name)
				}
			}
			if len(key) > 0 {
				s.Keys[o.Name] = strings.Join(key, ",")
			}
		case "index":
			if !o.SQL.Valid { // a PRIMARY KEY or UNIQUE constraint's own
				continue
			}
			var cols []sql.NullString
			if err := db.Select(&cols, "SELECT name FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno", o.Name); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range cols {
				names = append(names, cmp.Or(c.String, "<expr>"))
			}
			sqlText := strings.ToUpper(o.SQL.String)
			s.Indexes[o.Name] = index{Table: o.Table, Columns: strings.Join(names, ","),
				Unique: strings.HasPrefix(sqlText, "CREATE UNIQUE"), Partial: strings.Contains(sqlText, " WHERE ")}
		case "trigger":
			s.Triggers[o.Name] = o.Table
		}
	}
	return s
}

func postgresSchema(t *testing.T, db *sqlx.DB) schema {
	t.Helper()
	s := newSchema()
	var cols []struct {
		Table    string `db:"table_name"`
		Name     string `db:"column_name"`
		Type     string `db:"data_type"`
		Nullable string `db:"is_nullable"`
	}
	if err := db.Select(&cols, `SELECT c.table_name, c.column_name, c.data_type, c.is_nullable
		FROM information_schema.columns AS c JOIN information_schema.tables AS t USING (table_schema, table_name)
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'`); err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		if s.Tables[c.Table] == nil {
			s.Tables[c.Table] = map[string]column{}
		}
		s.Tables[c.Table][c.Name] = column{Family: family(c.Type), NotNull: c.Nullable == "NO"}
	}
	var idx []struct {
		Name    string `db:"name"`
		Table   string `db:"tbl"`
		Columns string `db:"cols"`
		Unique  bool   `db:"uniq"`
		Partial bool   `db:"partial"`
		Primary bool   `db:"pk"`
	}
	if err := db.Select(&idx, `SELECT c.relname AS name, t.relname AS tbl, ix.indisunique AS uniq,
			ix.indpred IS NOT NULL AS partial, ix.indisprimary AS pk,
			(SELECT string_agg(CASE WHEN k.attnum = 0 THEN '<expr>' ELSE a.attname::text END, ',' ORDER BY k.ord)
			 FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
			 LEFT JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = k.attnum
			 WHERE k.ord <= ix.indnkeyatts) AS cols
		FROM pg_index AS ix JOIN pg_class AS c ON c.oid = ix.indexrelid JOIN pg_class AS t ON t.oid = ix.indrelid
		WHERE t.relnamespace = current_schema()::regnamespace`); err != nil {
		t.Fatal(err)
	}
	for _, i := range idx {
		if i.Primary {
			s.Keys[i.Table] = i.Columns
			continue
		}
		s.Indexes[i.Name] = index{Table: i.Table, Columns: i.Columns, Unique: i.Unique, Partial: i.Partial}
	}
	var trig []struct {
		Name  string `db:"tgname"`
		Table string `db:"relname"`
	}
	if err := db.Select(&trig, `SELECT tg.tgname, c.relname FROM pg_trigger AS tg JOIN pg_class AS c ON c.oid = tg.tgrelid
		WHERE c.relnamespace = current_schema()::regnamespace AND NOT tg.tgisinternal`); err != nil {
		t.Fatal(err)
	}
	for _, tr := range trig {
		s.Triggers[tr.Name] = tr.Table
	}
	return s
}

// differences lists what differs between two schemas, each as "kind name:
// what", leaving out the deliberate ones, and which deliberate ones it met.
func differences(lite, pg schema) (out []string, met map[string]bool) {
	met = map[string]bool{}
	add := func(key, what string) {
		if _, ok := deliberate[key]; ok {
			met[key] = true
			return
		}
		out = append(out, key+": "+what)
	}
	for _, name := range union(lite.Tables, pg.Tables) {
		l, lok := lite.Tables[name]
		p, pok := pg.Tables[name]
		if !lok || !pok {
			add("table "+name, fmt.Sprintf("on SQLite %v, on PostgreSQL %v", lok, pok))
			continue
		}
		for _, c := range union(l, p) {
			if l[c] != p[c] {
				add("column "+name+"."+c, fmt.Sprintf("SQLite %+v, PostgreSQL %+v", l[c], p[c]))
			}
		}
		if lite.Keys[name] != pg.Keys[name] {
			add("key "+name, fmt.Sprintf("SQLite (%s), PostgreSQL (%s)", lite.Keys[name], pg.Keys[name]))
		}
	}
	for _, name := range union(lite.Indexes, pg.Indexes) {
		if l, p := lite.Indexes[name], pg.Indexes[name]; l != p {
			add("index "+name, fmt.Sprintf("SQLite %+v, PostgreSQL %+v", l, p))
		}
	}
	for _, name := range union(lite.Triggers, pg.Triggers) {
		if l, p := lite.Triggers[name], pg.Triggers[name]; l != p {
			add("trigger "+name, fmt.Sprintf("on table %q on SQLite, %q on PostgreSQL", l, p))
		}
	}
	return out, met
}

func union[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestSchemasAreEquivalent migrates a SQLite file and a PostgreSQL database
// to the latest version and compares what they hold: the same tables with
// the same columns (types that scan into the same Go types, the same
// NULLs), the same primary keys, the same indexes on the same columns, the
// same triggers, save the differences listed in deliberate.
func TestSchemasAreEquivalent(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t).Open(t)
	lite := storetest.Open(t, "")
	litesSchema, pgSchema := sqliteSchema(t, lite.Writer), postgresSchema(t, pg.Writer)
	if len(litesSchema.Tables) < 10 || len(pgSchema.Tables) < 10 {
		t.Fatalf("too few tables to compare: %d on SQLite, %d on PostgreSQL", len(litesSchema.Tables), len(pgSchema.Tables))
	}
	diffs, met := differences(litesSchema, pgSchema)
	for _, d := range diffs {
		t.Error(d)
	}
	// A deliberate difference that is gone is a stale excuse: remove it.
	for key, why := range deliberate {
		if !met[key] {
			t.Errorf("%s no longer differs (%s): take it out of deliberate", key, why)
		}
	}
	// The comparison sees a difference when there is one.
	pgSchema.Tables["jobs"]["priority"] = column{Family: "text"}
	delete(pgSchema.Indexes, "jobs_fetch")
	if got, _ := differences(litesSchema, pgSchema); len(got) != 2 {
		t.Errorf("a changed column and a missing index gave %q", got)
	}
}

// TestMigrationsGoDownAndUpAgain runs every migration down to nothing and
// up again, on both dialects: each down undoes its up completely, or the
// second up fails.
func TestMigrationsGoDownAndUpAgain(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		target := b.Target(t)
		var m *migrate.Migrate
		source, err := iofs.New(migrations.For(string(b.Dialect)), ".")
		if err != nil {
			t.Fatal(err)
		}
		if b.Dialect == store.Postgres {
			db := sql.OpenDB(stdlib.GetConnector(mustParse(t, target)))
			driver, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{})
			if err != nil {
				t.Fatal(err)
			}
			m, err = migrate.NewWithInstance("iofs", source, "pgx5", driver)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(target))
			if err != nil {
				t.Fatal(err)
			}
			driver, err := sqlite.WithInstance(db, &sqlite.Config{})
			if err != nil {
				t.Fatal(err)
			}
			m, err = migrate.NewWithInstance("iofs", source, "sqlite", driver)
			if err != nil {
				t.Fatal(err)
			}
		}
		defer m.Close()
		for i, step := range []func() error{m.Up, m.Down, m.Up} {
			if err := step(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		v, dirty, err := m.Version()
		if err != nil || dirty || v != store.LatestSchemaVersion() {
			t.Errorf("after down and up: version %d dirty %v err %v", v, dirty, err)
		}
	})
}

func mustParse(t *testing.T, url string) pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return *cfg
}
