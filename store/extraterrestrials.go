package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
)

// Status is an extraterrestrial's communication status. The zero value means
// it has never tried to phone home.
type Status string

// The communication statuses of the Phone Home seed.
const (
	StatusNone        Status = ""
	StatusPhoningHome Status = "phoning_home"
	StatusSpaceTaxi   Status = "space_taxi_on_the_way"
	StatusNoAnswer    Status = "no_answer"
)

// Statuses lists the statuses a row can hold, in the order pages show them.
var Statuses = []Status{StatusPhoningHome, StatusSpaceTaxi, StatusNoAnswer}

// ParseStatus accepts a stored status name, or "none" for never tried.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusPhoningHome, StatusSpaceTaxi, StatusNoAnswer:
		return st, nil
	case "none":
		return StatusNone, nil
	}
	return "", fmt.Errorf("unknown status %q: want phoning_home, space_taxi_on_the_way, no_answer or none", s)
}

// SeedNames are the ten stranded extraterrestrials of the original demo.
var SeedNames = []string{"Ayala", "Bria", "Chiana", "Correllia", "Dengar", "Harishka", "Jubal", "Korben", "Luminara", "Noranti"}

// Extraterrestrial is one row of the extraterrestrials table.
type Extraterrestrial struct {
	ID                   int64  `db:"id"`
	Name                 string `db:"name"`
	CommunicationStatus  Status `db:"communication_status"`
	CommunicationAttempt int    `db:"communication_attempt"`
	// LastAttemptAt is the zero time when it never tried.
	LastAttemptAt time.Time
}

// etRow is the scan target: sqlx cannot scan into unexported fields.
type etRow struct {
	ID                   int64          `db:"id"`
	Name                 string         `db:"name"`
	CommunicationStatus  sql.NullString `db:"communication_status"`
	CommunicationAttempt int            `db:"communication_attempt"`
	LastAttemptAt        sql.NullInt64  `db:"last_communication_attempt_at"`
}

func (r etRow) extraterrestrial() Extraterrestrial {
	et := Extraterrestrial{
		ID:                   r.ID,
		Name:                 r.Name,
		CommunicationStatus:  Status(r.CommunicationStatus.String),
		CommunicationAttempt: r.CommunicationAttempt,
	}
	if r.LastAttemptAt.Valid {
		et.LastAttemptAt = FromUnixMillis(r.LastAttemptAt.Int64)
	}
	return et
}

const etColumns = "id, name, communication_status, communication_attempt, last_communication_attempt_at"

// ExtraterrestrialFilter selects and pages the list of extraterrestrials.
type ExtraterrestrialFilter struct {
	// Status keeps only rows with this status; nil keeps all.
	Status *Status
	// Query keeps names containing this text (case-insensitive for ASCII).
	Query string
	// Limit is the page size (1…1000).
	Limit int
	// After continues a listing from a NextCursor.
	After Cursor
}

// Cursor is an opaque position in the by-name listing.
type Cursor struct {
	Name string
	ID   int64
}

// IsZero reports whether the cursor is the start of the list.
func (c Cursor) IsZero() bool { return c.ID == 0 }

// String encodes the cursor for a URL.
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.ID, 10) + ":" + c.Name))
}

// ParseCursor decodes a cursor made by Cursor.String; "" is the start.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errors.New("malformed cursor")
	}
	idText, name, ok := strings.Cut(string(raw), ":")
	id, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil || id <= 0 {
		return Cursor{}, errors.New("malformed cursor")
	}
	return Cursor{Name: name, ID: id}, nil
}

// ListExtraterrestrials returns one page ordered by name (then id) and the
// cursor of the next page, zero when this is the last.
func (s *Store) ListExtraterrestrials(ctx context.Context, f ExtraterrestrialFilter) ([]Extraterrestrial, Cursor, error) {
	if !nameText(f.Query) {
		return nil, Cursor{}, nil // no stored name holds it: see nameText
	}
	var where []string
	var args []any
	if f.Status != nil {
		if *f.Status == StatusNone {
			where = append(where, "communication_status IS NULL")
		} else {
			where = append(where, "communication_status = ?")
			args = append(args, string(*f.Status))
		}
	}
	order := "name, id"
	if f.Query != "" && s.Dialect == Postgres {
		// lower() of a "C" name folds ASCII letters only, as SQLite's LIKE
		// does, and the trigram index extraterrestrial_names is on it. The
		// planner chooses between it and the name index by the statistics,
		// which SQLite's sparseName does by hand.
		where = append(where, "lower(name) LIKE ? ESCAPE '\\'")
		args = append(args, "%"+escapeLike(asciiLower(f.Query))+"%")
	} else if f.Query != "" {
		where = append(where, "name LIKE ? ESCAPE '\\'")
		args = append(args, "%"+escapeLike(f.Query)+"%")
		sparse, err := s.sparseName(ctx, f.Query)
		if err != nil {
			return nil, Cursor{}, err
		}
		if sparse {
			// Few names match: the trigram index finds them (a superset: it
			// folds more case than LIKE) and they are sorted. Walking the
			// name index would read every name for a rare one; for a common
			// one it finds a page of matches at once, so it stays.
			where = append(where, "id IN (SELECT rowid FROM extraterrestrial_names WHERE name LIKE ?)")
			args = append(args, "%"+f.Query+"%")
			order = "+name, id"
		}
	}
	if !f.After.IsZero() {
		after := f.After
		if s.Dialect == Postgres {
			after = pgSafeCursor(after)
		}
		where = append(where, "(name, id) > (?, ?)")
		args = append(args, after.Name, after.ID)
	}
	rows, more, err := selectPage[etRow](ctx, s, "extraterrestrials", "SELECT "+etColumns+" FROM extraterrestrials",
		where, args, order, f.Limit)
	if err != nil {
		return nil, Cursor{}, err
	}
	var next Cursor
	if more {
		last := rows[len(rows)-1]
		next = Cursor{Name: last.Name, ID: last.ID}
	}
	out := make([]Extraterrestrial, len(rows))
	for i, r := range rows {
		out[i] = r.extraterrestrial()
	}
	return out, next, nil
}

// sparseMatches is how many matching names make a search "common": below
// it the trigram index and a sort serve it best, above it the name index.
const sparseMatches = 20000

// sparseName reports whether fewer than sparseMatches names contain q, as
// far as the trigram index can tell (false when it cannot serve q).
func (s *Store) sparseName(ctx context.Context, q string) (bool, error) {
	if !trigramSearchable(q) {
		return false, nil
	}
	var n int
	err := s.Reader.GetContext(ctx, &n, `SELECT count(*) FROM (
		SELECT 1 FROM extraterrestrial_names WHERE name LIKE ? LIMIT ?)`, "%"+q+"%", sparseMatches)
	if err != nil {
		return false, fmt.Errorf("search names: %w", err)
	}
	return n < sparseMatches, nil
}

// trigramSearchable reports whether the trigram index can serve a search
// for q: it needs three characters, and a pattern without LIKE's wildcards
// or escapes (those are matched by the plain LIKE alone).
func trigramSearchable(q string) bool {
	return utf8.RuneCountInString(q) >= 3 && !strings.ContainsAny(q, `%_\`)
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// nameText reports whether s can be part of a stored name: valid UTF-8
// without NUL (PostgreSQL's text cannot hold anything else, and phonehome
// writes no name that does). A search for anything else finds nothing, so
// the listings answer it without asking: on SQLite a NUL would end the
// LIKE pattern early and match every name.
func nameText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// pgSafeCursor is a cursor PostgreSQL can take: its text holds neither NUL
// nor invalid UTF-8, which a hand-made ?cursor= may (the names it stores
// never do, so no listing hands such a cursor out). Such a cursor continues
// after every name up to its first such byte: exact for NUL, which sorts
// below every character, and close for an invalid byte. SQLite compares
// the bytes as they are.
func pgSafeCursor(c Cursor) Cursor {
	for i, r := range c.Name {
		if r == 0 || (r == utf8.RuneError && !strings.HasPrefix(c.Name[i:], "\uFFFD")) {
			return Cursor{Name: c.Name[:i], ID: math.MaxInt64}
		}
	}
	return c
}

// asciiLower lower-cases the ASCII letters of s and nothing else: what
// SQLite's LIKE and NOCASE fold, and what PostgreSQL's lower() folds under
// the "C" collation of the name columns.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// GetExtraterrestrial returns one row, or ErrNotFound.
func (s *Store) GetExtraterrestrial(ctx context.Context, id int64) (Extraterrestrial, error) {
	var r etRow
	err := s.Reader.GetContext(ctx, &r, s.Rebind("SELECT "+etColumns+" FROM extraterrestrials WHERE id = ?"), id)
	if errors.Is(err, sql.ErrNoRows) {
		return Extraterrestrial{}, fmt.Errorf("extraterrestrial %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Extraterrestrial{}, fmt.Errorf("get extraterrestrial %d: %w", id, err)
	}
	return r.extraterrestrial(), nil
}

// RecordCallTx stores the outcome of one phone call inside tx and returns the
// updated row: the status, the attempt number and when it happened.
func RecordCallTx(ctx context.Context, tx *sqlx.Tx, id int64, status Status, attempt int, at time.Time) (Extraterrestrial, error) {
	var r etRow
	err := tx.GetContext(ctx, &r, tx.Rebind(`UPDATE extraterrestrials
		SET communication_status = ?, communication_attempt = ?, last_communication_attempt_at = ?
		WHERE id = ? RETURNING `+etColumns),
		string(status), attempt, UnixMillis(at), id)
	if errors.Is(err, sql.ErrNoRows) {
		return Extraterrestrial{}, fmt.Errorf("extraterrestrial %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Extraterrestrial{}, fmt.Errorf("record call of extraterrestrial %d: %w", id, err)
	}
	return r.extraterrestrial(), nil
}

// PhoneHomeEligible is the SQL condition on the extraterrestrials table that
// selects those that may phone home: every one not yet home (it never
// tried, got no answer, or still says phoning home because its call was
// cancelled, deleted or discarded before it connected). Phone Home skips
// those whose call is in flight (the jobs' unique key).
const PhoneHomeEligible = "(communication_status IS NULL OR communication_status <> 'space_taxi_on_the_way')"

// StatusCounts is how many extraterrestrials are in each status.
type StatusCounts struct {
	Never       int `json:"never_tried"`
	PhoningHome int `json:"phoning_home"`
	SpaceTaxi   int `json:"space_taxi_on_the_way"`
	NoAnswer    int `json:"no_answer"`
}

// Total is the number of extraterrestrials.
func (c StatusCounts) Total() int { return c.Never + c.PhoningHome + c.SpaceTaxi + c.NoAnswer }

// CountByStatus counts the extraterrestrials in each status. It reads
// extraterrestrial_counts, which triggers keep exact in every write
// transaction (migration 0007), so it costs the same at a million rows as
// at ten: four rows on SQLite; on PostgreSQL a ledger of changes summed
// (CompactCounts keeps it short).
func (s *Store) CountByStatus(ctx context.Context) (StatusCounts, error) {
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	q := "SELECT status, n FROM extraterrestrial_counts"
	if s.Dialect == Postgres {
		q = "SELECT status, sum(n)::bigint AS n FROM extraterrestrial_counts GROUP BY status"
	}
	if err := s.Reader.SelectContext(ctx, &rows, q); err != nil {
		return StatusCounts{}, fmt.Errorf("count extraterrestrials: %w", err)
	}
	var c StatusCounts
	for _, r := range rows {
		switch Status(r.Status) {
		case StatusNone:
			c.Never = r.N
		case StatusPhoningHome:
			c.PhoningHome = r.N
		case StatusSpaceTaxi:
			c.SpaceTaxi = r.N
		case StatusNoAnswer:
			c.NoAnswer = r.N
		}
	}
	return c, nil
}

// SeedExtraterrestrials inserts the ten seed extraterrestrials when the table
// is empty and reports how many it added.
func (s *Store) SeedExtraterrestrials(ctx context.Context) (int, error) {
	return s.seedIfEmpty(ctx, "extraterrestrials", func(tx *sqlx.Tx) (int, error) {
		for i, name := range SeedNames {
			if _, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO extraterrestrials (name) VALUES (?)"), name); err != nil {
				return i, err
			}
		}
		return len(SeedNames), nil
	})
}

// GenerateExtraterrestrials bulk-inserts n extraterrestrials with generated
// names, in batches of many rows per statement and transaction.
func (s *Store) GenerateExtraterrestrials(ctx context.Context, n int) error {
	err := s.generateRows(ctx, n, 500, 50_000, "INSERT INTO extraterrestrials (name)", 1, nil,
		func(args []any, i int) []any { return append(args, GeneratedName(i)) })
	if err != nil {
		return fmt.Errorf("generate extraterrestrials: %w", err)
	}
	return nil
}

// GeneratedName is the deterministic name of the i-th generated
// extraterrestrial: a seed name and a number, e.g. "Korben-000123".
func GeneratedName(i int) string {
	return fmt.Sprintf("%s-%06d", SeedNames[i%len(SeedNames)], i/len(SeedNames)+1)
}
