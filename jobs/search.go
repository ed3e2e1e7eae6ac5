package jobs

// Search: the job list filtered by what a visitor types ("args.name:Korben
// tag:campaign timeout"), answered by a bounded scan with a cursor.
//
// Why a scan and not an index: args and errors are free-form JSON, so no
// index of SQLite's answers "args.name is Korben" for every name a worker
// may use, and a full-text index would be written by every insert and every
// failed attempt, on the engine's hot path. Instead the scan walks the same
// index ranges as the list ((state, id), (queue, id), (kind, id), merged
// newest first), so the state, queue and kind filters narrow it first, and
// it reads at most searchBudgetRows rows and spends at most searchBudget
// time per request before it answers with what it found and a cursor to
// the id it reached. A page therefore costs the same at 1,000,000 jobs as at
// 1,000, and a rare match deep in the table is reached by following the
// cursor ("search older").

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
)

// ErrSearchQuery is wrapped by ParseSearch's errors: the query, not the
// database, is wrong. Its message says what and where.
var ErrSearchQuery = errors.New("invalid search query")

// Limits of a search query.
const (
	// MaxSearchLength is the longest query, in characters.
	MaxSearchLength = 500
	// MaxSearchTerms is how many terms one query may AND together.
	MaxSearchTerms = 8
	// maxArgsDepth is how deep an args path may reach (args.a.b.c…).
	maxArgsDepth = 8
)

// The fields a search term may name.
const (
	// FieldText (no field) matches free text in the args (keys and values)
	// or in the last error.
	FieldText = ""
	// FieldArgs matches one value of the args, by its path.
	FieldArgs = "args"
	// FieldTag matches a job that has this tag.
	FieldTag = "tag"
	// FieldError matches text in the last error.
	FieldError = "error"
)

// SearchTerm is one term of a query; every term of a query must match.
type SearchTerm struct {
	// Field is FieldText, FieldArgs, FieldTag or FieldError.
	Field string
	// Path is the args path of FieldArgs ("args.user.name" is
	// ["user","name"]).
	Path []string
	// Value is the value or text to match, unquoted.
	Value string
	// Prefix: the value ended in an unquoted "*", and matches values that
	// start with it (FieldArgs and FieldTag).
	Prefix bool
}

// String writes the term back as a query would say it.
func (t SearchTerm) String() string {
	v := t.Value
	if v == "" || strings.ContainsAny(v, " \t\"\\*:") {
		v = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
	}
	if t.Prefix {
		v += "*"
	}
	switch t.Field {
	case FieldArgs:
		return "args." + strings.Join(t.Path, ".") + ":" + v
	case FieldText:
		return v
	}
	return t.Field + ":" + v
}

// ParseSearch parses a search query. The grammar:
//
//	query = { " " } [ term { " "+ term } ] { " " }
//	term  = [ field ":" ] value
//	field = "tag" | "error" | "args" "." key { "." key }
//	key   = 1*( letter | digit | "_" | "-" )
//	value = bare | quoted
//	bare  = 1*( any character but space and '"' ), an ending "*" a prefix
//	quoted= '"' { any character but '"' and '\' | '\"' | '\\' } '"'
//
// A bare term whose text before its first ":" is a word must name a field
// (so "tga:x" is an error, not free text); to search free text holding a
// colon, quote it. Terms are ANDed. An error wraps ErrSearchQuery and
// names the column where the query went wrong.
func ParseSearch(q string) ([]SearchTerm, error) {
	if utf8.RuneCountInString(q) > MaxSearchLength {
		return nil, fmt.Errorf("%w: longer than %d characters", ErrSearchQuery, MaxSearchLength)
	}
	if !utf8.ValidString(q) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrSearchQuery)
	}
	p := searchParser{s: q}
	var terms []SearchTerm
	for {
		p.spaces()
		if p.done() {
			break
		}
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
		if len(terms) > MaxSearchTerms {
			return nil, fmt.Errorf("%w: more than %d terms", ErrSearchQuery, MaxSearchTerms)
		}
		if !p.done() && !p.atSpace() {
			return nil, p.errorf("expected a space between terms")
		}
	}
	return terms, nil
}

type searchParser struct {
	s string
	i int // byte offset
}

func (p *searchParser) done() bool { return p.i >= len(p.s) }

func (p *searchParser) atSpace() bool {
	r, _ := utf8.DecodeRuneInString(p.s[p.i:])
	return unicode.IsSpace(r)
}

func (p *searchParser) spaces() {
	for !p.done() && p.atSpace() {
		_, n := utf8.DecodeRuneInString(p.s[p.i:])
		p.i += n
	}
}

func (p *searchParser) errorf(format string, a ...any) error {
	col := utf8.RuneCountInString(p.s[:p.i]) + 1
	return fmt.Errorf("%w at column %d: %s", ErrSearchQuery, col, fmt.Sprintf(format, a...))
}

// term parses one term at p.i.
func (p *searchParser) term() (SearchTerm, error) {
	start := p.i
	// A field is a word (letters, digits, _ - .) followed by ":".
	j := p.i
	for j < len(p.s) && isFieldByte(p.s[j]) {
		j++
	}
	var t SearchTerm
	if j > p.i && j < len(p.s) && p.s[j] == ':' {
		field := p.s[p.i:j]
		switch {
		case field == FieldTag, field == FieldError:
			t.Field = field
		case strings.HasPrefix(field, "args."):
			t.Field = FieldArgs
			t.Path = strings.Split(field[len("args."):], ".")
			if len(t.Path) > maxArgsDepth {
				return t, p.errorf("args path %q is deeper than %d keys", field, maxArgsDepth)
			}
			for _, k := range t.Path {
				if k == "" {
					return t, p.errorf("args path %q has an empty key: write args.key or args.key.subkey", field)
				}
			}
		case field == FieldArgs:
			return t, p.errorf("args needs a key: args.name:Korben")
		default:
			return t, p.errorf("unknown field %q: use args.KEY:, tag:, error: or free text (quote text that holds a colon)", field)
		}
		p.i = j + 1
		if p.done() || p.atSpace() {
			return t, p.errorf("%s: needs a value", field)
		}
	}
	v, quoted, err := p.value()
	if err != nil {
		return t, err
	}
	if !quoted && strings.HasSuffix(v, "*") && (t.Field == FieldArgs || t.Field == FieldTag) {
		t.Prefix, v = true, strings.TrimSuffix(v, "*")
	}
	if v == "" && (t.Field == FieldText || t.Field == FieldError) {
		p.i = start
		return t, p.errorf("empty text matches everything: leave it out")
	}
	if utf8.RuneCountInString(v) > 200 {
		p.i = start
		return t, p.errorf("a value is longer than 200 characters")
	}
	t.Value = v
	return t, nil
}

func isFieldByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.'
}

// value parses a bare or quoted value at p.i.
func (p *searchParser) value() (v string, quoted bool, err error) {
	if p.s[p.i] != '"' {
		start := p.i
		for !p.done() && !p.atSpace() {
			if p.s[p.i] == '"' {
				return "", false, p.errorf(`a quote inside a bare value: quote the whole value ("…")`)
			}
			p.i++
		}
		return p.s[start:p.i], false, nil
	}
	open := p.i
	p.i++
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		switch c {
		case '"':
			p.i++
			return b.String(), true, nil
		case '\\':
			if p.i+1 < len(p.s) && (p.s[p.i+1] == '"' || p.s[p.i+1] == '\\') {
				b.WriteByte(p.s[p.i+1])
				p.i += 2
				continue
			}
			return "", true, p.errorf(`only \" and \\ may follow a backslash in quotes`)
		}
		b.WriteByte(c)
		p.i++
	}
	p.i = open
	return "", true, p.errorf("the quote opened here is never closed")
}

// SearchParams selects one page of a search: the list's filters and cursor
// with the terms of a query.
type SearchParams struct {
	// List holds the state, queue and kind filters, the cursor and the
	// page size, as for List.
	List ListParams
	// Terms are the parsed query (ParseSearch); none lists as List does.
	Terms []SearchTerm
	// ScanRows bounds how many rows one call reads (searchBudgetRows when
	// zero); Budget bounds its time (searchBudget when zero). Tests lower
	// them.
	ScanRows int
	Budget   time.Duration
}

// SearchPage is one page of a search.
type SearchPage struct {
	Jobs []*Job
	// NextCursor continues below the last job listed, or below the last
	// row scanned when the scan stopped at its budget; "" when the table
	// was scanned to its end.
	NextCursor string
	// Scanned is how many rows this call read.
	Scanned int
	// Stopped: the scan stopped at its budget before the page was full;
	// older matches may follow NextCursor.
	Stopped bool
	// ReachedID is the lowest id the scan read (0 when it read none).
	ReachedID int64
}

// Search budgets: at most this many rows, or this long, per call.
const (
	searchBudgetRows = 200_000
	searchBudget     = 25 * time.Millisecond
	// searchChunk is how many rows one statement scans.
	searchChunk = 4_000
)

// Search returns the newest jobs matching p's filters and terms, up to a
// page, reading at most p's budget of rows (see the top of search.go). The
// values of the terms reach SQL only as bound parameters; on PostgreSQL
// (the db's driver binds with $N) the conditions use jsonb operators.
func Search(ctx context.Context, db sqlx.QueryerContext, p SearchParams) (SearchPage, error) {
	if len(p.Terms) == 0 {
		page, err := List(ctx, db, p.List)
		return SearchPage{Jobs: page.Jobs, NextCursor: page.NextCursor}, err
	}
	limit := p.List.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	if limit < 1 || limit > MaxListLimit {
		return SearchPage{}, fmt.Errorf("%w: limit %d is outside 1…%d", ErrListParams, limit, MaxListLimit)
	}
	before, err := ParseListCursor(p.List.Cursor)
	if err != nil {
		return SearchPage{}, err
	}
	states, err := listStates(p.List.States)
	if err != nil {
		return SearchPage{}, err
	}
	maxRows, budget := p.ScanRows, p.Budget
	if maxRows <= 0 {
		maxRows = searchBudgetRows
	}
	if budget <= 0 {
		budget = searchBudget
	}
	pg := isPostgres(db)
	cond, condArgs := searchConds(pg, p.Terms)
	f := scanFilter{states: states, queue: p.List.Queue, kind: p.List.Kind, pg: pg}
	start := time.Now()
	var out SearchPage
	for {
		chunk := min(searchChunk, maxRows-out.Scanned)
		// The matches of this chunk, one more than the page still needs.
		need := limit + 1 - len(out.Jobs)
		inner, innerArgs := f.scan(jobColumns, before, chunk)
		q := "SELECT " + jobColumns + " FROM (" + inner + ") AS s WHERE " + cond + " ORDER BY id DESC LIMIT ?"
		args := append(append(innerArgs, condArgs...), need)
		var rows []jobRow
		if err := sqlx.SelectContext(ctx, db, &rows, rebind(pg, q), args...); err != nil {
			return SearchPage{}, fmt.Errorf("search jobs: %w", err)
		}
		for i := range rows {
			j := rows[i].job()
			out.Jobs = append(out.Jobs, j)
		}
		if len(out.Jobs) > limit {
			// A full page and one more: the next page starts below the
			// last job of this one.
			out.Jobs = out.Jobs[:limit]
			out.NextCursor = listCursor(out.Jobs[limit-1].ID)
			out.Scanned += chunk // an upper bound: the chunk was read up to the match
			return out, nil
		}
		// How far this chunk reached: its row count and lowest id (an
		// index-only read of the same range).
		idsQ, idsArgs := f.scan("id", before, chunk)
		var reach struct {
			N   int           `db:"n"`
			Min sql.NullInt64 `db:"low"`
		}
		if err := sqlx.GetContext(ctx, db, &reach, rebind(pg, "SELECT count(*) AS n, min(id) AS low FROM ("+idsQ+") AS r"), idsArgs...); err != nil {
			return SearchPage{}, fmt.Errorf("search jobs: %w", err)
		}
		out.Scanned += reach.N
		if reach.Min.Valid {
			out.ReachedID = reach.Min.Int64
			before = reach.Min.Int64
		}
		if reach.N < chunk {
			return out, nil // the end of the table: no next page
		}
		if out.Scanned >= maxRows || time.Since(start) >= budget {
			out.Stopped = true
			out.NextCursor = listCursor(before)
			return out, nil
		}
	}
}

// scanFilter is the state, queue and kind part of a search or of an action
// on a filter: which index ranges a scan walks.
type scanFilter struct {
	states      []State
	queue, kind string
	pg          bool
}

// scan is a statement reading cols of the newest n rows below id before (0:
// from the top) that pass the filter, newest first, walking the list's
// indexes as List does (one backward range per state, merged); n < 0 reads
// every such row, unordered (for counts, with one state at most).
func (f scanFilter) scan(cols string, before int64, n int) (string, []any) {
	part := func(state *State) (string, []any) {
		q, a := f.backwardRange(cols, before, state)
		if n < 0 {
			return q, a
		}
		return q + " ORDER BY id DESC LIMIT ?", append(a, n)
	}
	if len(f.states) == 0 {
		return part(nil)
	}
	if len(f.states) == 1 {
		return part(&f.states[0])
	}
	var parts []string
	var all []any
	for i := range f.states {
		q, a := part(&f.states[i])
		parts = append(parts, "SELECT * FROM ("+q+") AS p"+fmt.Sprint(i))
		all = append(all, a...)
	}
	return "SELECT * FROM (" + strings.Join(parts, " UNION ALL ") + ") AS u ORDER BY id DESC LIMIT ?", append(all, n)
}

// backwardRange is the SELECT of cols over one backward index range, the one
// List and every scan walk: the rows of state (nil: of any state) below id
// before (0: from the top) that pass the queue and kind filter, without an
// order or a limit. Its arguments are a new slice, the caller's to extend.
//
// Without a state it names the filter's own index, whatever the statistics
// say: a backward walk of the table stops after a page only when the filter
// is common. (SQLite only: PostgreSQL has no such hint, and its planner
// weighs the filter's frequency.)
func (f scanFilter) backwardRange(cols string, before int64, state *State) (string, []any) {
	var conds []string
	var args []any
	if state != nil {
		conds, args = []string{"state = ?"}, []any{string(*state)}
	}
	c, a := queueKindConds(f.pg, f.queue, f.kind)
	conds, args = append(conds, c...), append(args, a...)
	if before > 0 {
		conds = append(conds, "id < ?")
		args = append(args, before)
	}
	q := "SELECT " + cols + " FROM jobs"
	switch {
	case state != nil, f.pg:
	case f.kind != "":
		q += " INDEXED BY jobs_list_kind"
	case f.queue != "":
		q += " INDEXED BY jobs_list_queue"
	}
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	return q, args
}

func slicesClone(a []any) []any { return append([]any(nil), a...) }

// searchConds is the WHERE condition of terms (ANDed), over the columns of
// a row of jobs, with its arguments. Values are bound, never spliced; an
// args path is made only of the key characters the grammar allows and is
// bound too.
func searchConds(pg bool, terms []SearchTerm) (string, []any) {
	var conds []string
	var args []any
	for _, t := range terms {
		if strings.ContainsRune(t.Value, 0) {
			// A term holding NUL matches nothing: PostgreSQL text cannot
			// hold NUL (binding one fails), and SQLite's LIKE reads a
			// pattern only up to its first NUL, so "%\x00…" would match
			// every job.
			conds = append(conds, "false")
			continue
		}
		switch t.Field {
		case FieldArgs:
			if pg {
				// #>> with a text[] path: the value as text ('true', '3', 'Korben').
				op := "= ?"
				v := any(t.Value)
				if t.Prefix {
					op, v = `LIKE ? ESCAPE '\'`, likePrefix(t.Value)
				}
				conds = append(conds, "(args #>> CAST(? AS text[])) "+op)
				args = append(args, pgTextArray(t.Path), v)
			} else {
				op := "= ?"
				v := any(t.Value)
				if t.Prefix {
					// GLOB is case-sensitive, as = is; LIKE is not.
					op, v = "GLOB ?", globPrefix(t.Value)
				}
				conds = append(conds, "CAST(json_extract(args, ?) AS TEXT) "+op)
				args = append(args, sqlitePath(t.Path), v)
			}
		case FieldTag:
			switch {
			case pg && t.Prefix:
				conds = append(conds, `EXISTS (SELECT 1 FROM jsonb_array_elements_text(tags) AS tg(v) WHERE tg.v LIKE ? ESCAPE '\')`)
				args = append(args, likePrefix(t.Value))
			case pg:
				conds = append(conds, "tags @> jsonb_build_array(CAST(? AS text))")
				args = append(args, t.Value)
			case t.Prefix:
				conds = append(conds, "EXISTS (SELECT 1 FROM json_each(tags) WHERE value GLOB ?)")
				args = append(args, globPrefix(t.Value))
			default:
				conds = append(conds, "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)")
				args = append(args, t.Value)
			}
		case FieldError:
			if pg {
				conds = append(conds, `(errors -> -1 ->> 'error') ILIKE ? ESCAPE '\'`)
			} else {
				conds = append(conds, `json_extract(errors, '$[#-1].error') LIKE ? ESCAPE '\'`)
			}
			args = append(args, likeContains(t.Value))
		default:
			if pg {
				conds = append(conds, `(CAST(args AS text) ILIKE ? ESCAPE '\' OR (errors -> -1 ->> 'error') ILIKE ? ESCAPE '\')`)
			} else {
				conds = append(conds, `(args LIKE ? ESCAPE '\' OR json_extract(errors, '$[#-1].error') LIKE ? ESCAPE '\')`)
			}
			args = append(args, likeContains(t.Value), likeContains(t.Value))
		}
	}
	if len(conds) == 0 {
		return "1 = 1", nil
	}
	return strings.Join(conds, " AND "), args
}

// sqlitePath is a JSON path of keys for json_extract: $."a"."b". Keys hold
// only [A-Za-z0-9_-] (the grammar), so quoting them is enough.
func sqlitePath(keys []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, k := range keys {
		b.WriteString(`."` + k + `"`)
	}
	return b.String()
}

// pgTextArray is keys as a PostgreSQL text[] literal, bound as a parameter.
func pgTextArray(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = `"` + k + `"`
	}
	return "{" + strings.Join(q, ",") + "}"
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func likeContains(s string) string { return "%" + likeEscaper.Replace(s) + "%" }

func likePrefix(s string) string { return likeEscaper.Replace(s) + "%" }

// globPrefix is s as a GLOB prefix pattern: its special characters each in
// a one-character class.
func globPrefix(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[':
			b.WriteString("[" + string(r) + "]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String() + "*"
}

// isPostgres tells whether db binds parameters as $N (PostgreSQL).
func isPostgres(db any) bool {
	if d, ok := db.(interface{ DriverName() string }); ok {
		return sqlx.BindType(d.DriverName()) == sqlx.DOLLAR
	}
	return false
}

func rebind(pg bool, q string) string {
	if pg {
		return sqlx.Rebind(sqlx.DOLLAR, q)
	}
	return q
}
