package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Species is the kind of animal a pet is.
type Species string

// The species a pet can be; the migration's CHECK lists the same.
const (
	SpeciesCat     Species = "cat"
	SpeciesDog     Species = "dog"
	SpeciesFish    Species = "fish"
	SpeciesFox     Species = "fox"
	SpeciesRabbit  Species = "rabbit"
	SpeciesTurtle  Species = "turtle"
	SpeciesCrab    Species = "crab"
	SpeciesOwl     Species = "owl"
	SpeciesPhoenix Species = "phoenix"
)

// AllSpecies lists every species, in the order forms show them.
var AllSpecies = []Species{SpeciesCat, SpeciesDog, SpeciesFish, SpeciesFox, SpeciesRabbit, SpeciesTurtle, SpeciesCrab, SpeciesOwl, SpeciesPhoenix}

// ParseSpecies accepts the name of a species.
func ParseSpecies(s string) (Species, error) {
	for _, sp := range AllSpecies {
		if string(sp) == s {
			return sp, nil
		}
	}
	return "", fmt.Errorf("unknown species %q: want one of cat, dog, fish, fox, rabbit, turtle, crab, owl, phoenix", s)
}

// Pet is one row of the pets table: what is stored, not what is derived.
// Package pets derives age, hunger and death from these times.
type Pet struct {
	ID       int64
	KeeperID string
	Name     string
	Species  Species
	BornAt   time.Time
	// HungerBase is the hunger at HungerAt (birth, or the last feed or treat).
	HungerBase int
	HungerAt   time.Time
	// DiedAt is the instant of death once the death sweep has recorded it,
	// the zero time before.
	DiedAt    time.Time
	UpdatedAt time.Time
}

// petRow is the scan target of the pets table.
type petRow struct {
	ID         int64         `db:"id"`
	KeeperID   string        `db:"keeper_id"`
	Name       string        `db:"name"`
	Species    string        `db:"species"`
	BornAt     int64         `db:"born_at"`
	HungerBase int           `db:"hunger_base"`
	HungerAt   int64         `db:"hunger_at"`
	DiedAt     sql.NullInt64 `db:"died_at"`
	UpdatedAt  int64         `db:"updated_at"`
}

func (r petRow) pet() Pet {
	p := Pet{
		ID: r.ID, KeeperID: r.KeeperID, Name: r.Name, Species: Species(r.Species),
		BornAt: FromUnixMillis(r.BornAt), HungerBase: r.HungerBase, HungerAt: FromUnixMillis(r.HungerAt),
		UpdatedAt: FromUnixMillis(r.UpdatedAt),
	}
	if r.DiedAt.Valid {
		p.DiedAt = FromUnixMillis(r.DiedAt.Int64)
	}
	return p
}

func petsOf(rows []petRow) []Pet {
	out := make([]Pet, len(rows))
	for i, r := range rows {
		out[i] = r.pet()
	}
	return out
}

const petColumns = "id, keeper_id, name, species, born_at, hunger_base, hunger_at, died_at, updated_at"

// NewPet is what adopting a pet stores.
type NewPet struct {
	KeeperID string
	Name     string
	Species  Species
	BornAt   time.Time
	Hunger   int
}

// InsertPetTx adds a pet inside tx and returns its row. The keeper must exist
// (EnsureKeeperTx).
func InsertPetTx(ctx context.Context, tx *sqlx.Tx, p NewPet) (Pet, error) {
	born := UnixMillis(p.BornAt)
	var r petRow
	err := tx.GetContext(ctx, &r, tx.Rebind(`INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING `+petColumns),
		p.KeeperID, p.Name, string(p.Species), born, p.Hunger, born, born)
	if err != nil {
		return Pet{}, fmt.Errorf("insert pet: %w", err)
	}
	return r.pet(), nil
}

// GetPet returns one pet, or ErrNotFound.
func (s *Store) GetPet(ctx context.Context, id int64) (Pet, error) {
	return getPet(ctx, s.Reader, "", id)
}

// GetPetTx is GetPet inside tx, for a read-then-write on the writer: on
// PostgreSQL it locks the row (FOR UPDATE) until tx ends, so two feeds of
// one pet follow each other as they do on SQLite.
func GetPetTx(ctx context.Context, tx *sqlx.Tx, id int64) (Pet, error) {
	return getPet(ctx, tx, forUpdate(tx), id)
}

func getPet(ctx context.Context, q rebinder, lock string, id int64) (Pet, error) {
	var r petRow
	err := sqlx.GetContext(ctx, q, &r, q.Rebind("SELECT "+petColumns+" FROM pets WHERE id = ?"+lock), id)
	if errors.Is(err, sql.ErrNoRows) {
		return Pet{}, fmt.Errorf("pet %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Pet{}, fmt.Errorf("get pet %d: %w", id, err)
	}
	return r.pet(), nil
}

// GetPets returns the pets with these ids that exist, in id order.
func (s *Store) GetPets(ctx context.Context, ids []int64) ([]Pet, error) {
	const chunk = 500
	out := make([]Pet, 0, len(ids))
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(len(ids), start+chunk)]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		q := "SELECT " + petColumns + " FROM pets WHERE id IN (?" + strings.Repeat(",?", len(part)-1) + ") ORDER BY id"
		var rows []petRow
		if err := s.Reader.SelectContext(ctx, &rows, s.Rebind(q), args...); err != nil {
			return nil, fmt.Errorf("get pets: %w", err)
		}
		out = append(out, petsOf(rows)...)
	}
	return out, nil
}

// SetPetHungerTx stores, inside tx, a pet's hunger as of at (a feed or a
// treat) and returns the updated row.
func SetPetHungerTx(ctx context.Context, tx *sqlx.Tx, id int64, hunger int, at time.Time) (Pet, error) {
	ms := UnixMillis(at)
	var r petRow
	err := tx.GetContext(ctx, &r, tx.Rebind("UPDATE pets SET hunger_base = ?, hunger_at = ?, updated_at = ? WHERE id = ? RETURNING "+petColumns),
		hunger, ms, ms, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Pet{}, fmt.Errorf("pet %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Pet{}, fmt.Errorf("set hunger of pet %d: %w", id, err)
	}
	return r.pet(), nil
}

// KillDuePetsTx records, inside tx, the death of at most limit living pets
// whose lifespan has run out by now, oldest first, and returns them. Each
// dies at born_at + lifespan, the instant its life ran out, whenever the
// sweep notices.
func KillDuePetsTx(ctx context.Context, tx *sqlx.Tx, now time.Time, lifespan time.Duration, limit int) ([]Pet, error) {
	span := lifespan.Milliseconds()
	var rows []petRow
	err := tx.SelectContext(ctx, &rows, tx.Rebind(`UPDATE pets SET died_at = born_at + ?, updated_at = ?
		WHERE id IN (SELECT id FROM pets WHERE died_at IS NULL AND born_at <= ? ORDER BY born_at LIMIT ?)
		RETURNING `+petColumns),
		span, UnixMillis(now), UnixMillis(now)-span, limit)
	if err != nil {
		return nil, fmt.Errorf("kill due pets: %w", err)
	}
	return petsOf(rows), nil
}

// PetFilter selects and pages the list of all pets.
type PetFilter struct {
	// Alive keeps only living (true) or dead (false) pets; nil keeps all.
	// A pet counts as dead once the death sweep has recorded it.
	Alive *bool
	// Query keeps names that start with this text (case-insensitive for
	// ASCII), listed in name order; without it, pets are listed newest first.
	Query string
	// Limit is the page size (1…1000; 50 otherwise).
	Limit int
	// After continues a listing from a NextCursor.
	After Cursor
}

// ListPets returns one page of pets and the cursor of the next page, zero
// when this is the last: newest first, or in name order when searching.
func (s *Store) ListPets(ctx context.Context, f PetFilter) ([]Pet, Cursor, error) {
	if !nameText(f.Query) {
		return nil, Cursor{}, nil // no stored name holds it: see nameText
	}
	var where []string
	var args []any
	if f.Alive != nil {
		if *f.Alive {
			where = append(where, "died_at IS NULL")
		} else {
			where = append(where, "died_at IS NOT NULL")
		}
	}
	order := "id DESC"
	if f.Query != "" && s.Dialect == Postgres {
		// The same as below on a "C" name whose index is lower(name):
		// lower() folds ASCII letters only there, as NOCASE does.
		where = append(where, `lower(name) LIKE ? ESCAPE '\'`)
		args = append(args, escapeLike(asciiLower(f.Query))+"%")
		order = "lower(name), id"
		if !f.After.IsZero() {
			after := pgSafeCursor(f.After)
			where = append(where, "(lower(name), id) > (?, ?)")
			args = append(args, asciiLower(after.Name), after.ID)
		}
	} else if f.Query != "" {
		// A prefix, so the NOCASE name index answers it at any table size.
		where = append(where, `name LIKE ? ESCAPE '\'`)
		args = append(args, escapeLike(f.Query)+"%")
		order = "name, id"
		if !f.After.IsZero() {
			where = append(where, "(name, id) > (?, ?)")
			args = append(args, f.After.Name, f.After.ID)
		}
	} else if !f.After.IsZero() {
		where = append(where, "id < ?")
		args = append(args, f.After.ID)
	}
	rows, more, err := selectPage[petRow](ctx, s, "pets", "SELECT "+petColumns+" FROM pets", where, args, order, f.Limit)
	if err != nil {
		return nil, Cursor{}, err
	}
	var next Cursor
	if more {
		last := rows[len(rows)-1]
		next = Cursor{ID: last.ID}
		if f.Query != "" {
			next.Name = last.Name
		}
	}
	return petsOf(rows), next, nil
}

// KeeperPets returns a keeper's pets, newest first, at most limit.
func (s *Store) KeeperPets(ctx context.Context, keeperID string, limit int) ([]Pet, error) {
	var rows []petRow
	err := s.Reader.SelectContext(ctx, &rows,
		s.Rebind("SELECT "+petColumns+" FROM pets WHERE keeper_id = ? ORDER BY id DESC LIMIT ?"), keeperID, limit)
	if err != nil {
		return nil, fmt.Errorf("keeper's pets: %w", err)
	}
	return petsOf(rows), nil
}

// PetCounts is how many pets are alive and dead, as recorded.
type PetCounts struct {
	Alive int `json:"alive"`
	Dead  int `json:"dead"`
}

// Total is the number of pets.
func (c PetCounts) Total() int { return c.Alive + c.Dead }

// CountPets counts the living and the dead pets (from the partial indexes).
func (s *Store) CountPets(ctx context.Context) (PetCounts, error) {
	var c PetCounts
	err := s.Reader.QueryRowxContext(ctx, `SELECT
		(SELECT count(*) FROM pets WHERE died_at IS NULL),
		(SELECT count(*) FROM pets WHERE died_at IS NOT NULL)`).Scan(&c.Alive, &c.Dead)
	if err != nil {
		return PetCounts{}, fmt.Errorf("count pets: %w", err)
	}
	return c, nil
}

// SeedPet is one of the named pets a new database starts with.
type SeedPet struct {
	Name    string
	Species Species
}

// SeedPets are the ten pets of a new database, one per species and a second cat.
var SeedPets = []SeedPet{
	{"Mochi", SpeciesCat}, {"Biscuit", SpeciesDog}, {"Bubbles", SpeciesFish}, {"Ember", SpeciesFox},
	{"Clover", SpeciesRabbit}, {"Shelly", SpeciesTurtle}, {"Pinchy", SpeciesCrab}, {"Hoot", SpeciesOwl},
	{"Blaze", SpeciesPhoenix}, {"Pepper", SpeciesCat},
}

// SeedPetsIfEmpty adds the ten seed pets, owned by the seed keeper, when there
// are no pets, and reports how many it added. Their births are spread over
// the last few hundred ticks of length tick, and their hunger varies, so a new
// database shows pets of different ages and appetites.
func (s *Store) SeedPetsIfEmpty(ctx context.Context, now time.Time, tick time.Duration) (int, error) {
	return s.seedIfEmpty(ctx, "pets", func(tx *sqlx.Tx) (int, error) {
		if err := EnsureKeeperTx(ctx, tx, SeedKeeperID, 5, now); err != nil {
			return 0, err
		}
		for i, sp := range SeedPets {
			born := now.Add(-time.Duration(i*i*37+3) * tick)
			// Fed a while ago: hunger 0…450 then, and rising since.
			fed := now.Add(-time.Duration(i*7) * tick)
			if fed.Before(born) {
				fed = born
			}
			ms := UnixMillis(fed)
			_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)`), SeedKeeperID, sp.Name, string(sp.Species), UnixMillis(born), (i*173)%451, ms, ms)
			if err != nil {
				return i, err
			}
		}
		return len(SeedPets), nil
	})
}

// GeneratePetsOptions shapes the pets GeneratePets makes.
type GeneratePetsOptions struct {
	// Now is the present: births fall before it.
	Now time.Time
	// Lifespan is how long a pet lives. Births are spread evenly over the
	// last 1.1 lifespans, older pets first (ids grow with adoption time, as
	// they do for adopted pets), so ages vary from newborn to dead: about one
	// pet in eleven is inserted with its death already recorded.
	Lifespan time.Duration
	// Rand is the random source; nil uses a fixed seed, so runs repeat.
	Rand *rand.Rand
}

// GeneratePets bulk-inserts n pets with generated names and species, owned by
// the seed keeper, many rows per statement and many statements per
// transaction.
func (s *Store) GeneratePets(ctx context.Context, n int, o GeneratePetsOptions) error {
	// 250 rows of 8 columns a statement: measured faster than 1,000 (a smaller
	// program), and far below SQLite's limit of 32,766 parameters.
	const perStatement = 250
	const perTx = 100_000
	rng := o.Rand
	if rng == nil {
		rng = rand.New(rand.NewPCG(1, 2))
	}
	now := UnixMillis(o.Now)
	span := o.Lifespan.Milliseconds()
	if span <= 0 {
		return errors.New("generate pets: lifespan must be positive")
	}
	window := span + span/10

	err := s.generateRows(ctx, n, perStatement, perTx,
		"INSERT INTO pets (keeper_id, name, species, born_at, hunger_base, hunger_at, died_at, updated_at)", 8,
		func(tx *sqlx.Tx) error { return EnsureKeeperTx(ctx, tx, SeedKeeperID, 5, o.Now) },
		func(args []any, i int) []any {
			// Evenly spread and increasing, with a little jitter: appending
			// to the born_at index is much faster than inserting at random.
			born := now - window + int64(float64(window)*(float64(i)+rng.Float64())/float64(n))
			var died any
			last := now
			if born+span <= now {
				died = born + span
				last = born + span
			}
			fed := born + rng.Int64N(last-born+1)
			return append(args, SeedKeeperID, GeneratedPetName(i), string(SeedPets[i%len(SeedPets)].Species),
				born, rng.IntN(501), fed, died, fed)
		})
	if err != nil {
		return fmt.Errorf("generate pets: %w", err)
	}
	return nil
}

// GeneratedPetName is the deterministic name of the i-th generated pet: a
// seed pet's name and a number, e.g. "Ember-000123".
func GeneratedPetName(i int) string {
	return fmt.Sprintf("%s-%06d", SeedPets[i%len(SeedPets)].Name, i/len(SeedPets)+1)
}

// dbNowMillis is the database's clock in unix milliseconds, the clock
// package cluster writes cluster_presence with: every node compares ages
// on one clock, whatever its own says.
func dbNowMillis(d Dialect) string {
	if d == Postgres {
		return "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
	}
	return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
}

// PresenceElsewhere sums, for each topic that starts with prefix, the
// viewers the nodes other than node have on it: the rows of
// cluster_presence (package cluster's table, read only here) refreshed
// within ttl on the database's clock, as cluster.Presence's own reads
// count them. This node's own rows are left out because its own count is
// known at once in memory, while its row follows only within the
// presence's flush period. topic, when not empty, asks for that topic
// alone.
func (s *Store) PresenceElsewhere(ctx context.Context, node, prefix, topic string, ttl time.Duration) (map[string]int, error) {
	where, args := "topic LIKE ?", []any{prefix + "%"}
	if topic != "" {
		where, args = "topic = ?", []any{topic}
	}
	var rows []struct {
		Topic string `db:"topic"`
		N     int64  `db:"n"`
	}
	q := `SELECT topic, sum(count) AS n FROM cluster_presence
		WHERE ` + where + ` AND node <> ? AND updated_at >= ` + dbNowMillis(s.Dialect) + ` - ?
		GROUP BY topic`
	if err := s.Reader.SelectContext(ctx, &rows, s.Rebind(q), append(args, node, ttl.Milliseconds())...); err != nil {
		return nil, fmt.Errorf("viewers on other nodes: %w", err)
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.Topic] = int(r.N)
	}
	return out, nil
}

// PetChannel is the PostgreSQL LISTEN/NOTIFY channel of pets changed by
// keepers: the payload is "<pet id> <node>", sent in the transaction of the
// change, so every node hears of it once it is committed.
const PetChannel = "phonehome_pets"

// NotifyPetTx announces, inside tx, that pet id changed on node: delivered
// to every listener when tx commits, never if it rolls back. PostgreSQL
// only.
func NotifyPetTx(ctx context.Context, tx *sqlx.Tx, id int64, node string) error {
	if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", PetChannel, fmt.Sprintf("%d %s", id, node)); err != nil {
		return fmt.Errorf("notify pet %d: %w", id, err)
	}
	return nil
}
