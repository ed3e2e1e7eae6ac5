package jobs_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

func TestParseSearch(t *testing.T) {
	t.Parallel()
	good := []struct {
		q    string
		want []jobs.SearchTerm
	}{
		{"", nil},
		{"   ", nil},
		{"args.name:Korben", []jobs.SearchTerm{{Field: jobs.FieldArgs, Path: []string{"name"}, Value: "Korben"}}},
		{`args.user.name:"Korben Dallas"  tag:campaign`, []jobs.SearchTerm{
			{Field: jobs.FieldArgs, Path: []string{"user", "name"}, Value: "Korben Dallas"},
			{Field: jobs.FieldTag, Value: "campaign"}}},
		{`timeout error:"no \"answer\" \\ here"`, []jobs.SearchTerm{
			{Field: jobs.FieldText, Value: "timeout"},
			{Field: jobs.FieldError, Value: `no "answer" \ here`}}},
		{`args.to:user1* tag:camp*`, []jobs.SearchTerm{
			{Field: jobs.FieldArgs, Path: []string{"to"}, Value: "user1", Prefix: true},
			{Field: jobs.FieldTag, Value: "camp", Prefix: true}}},
		{`"a: b" args.n:""`, []jobs.SearchTerm{{Value: "a: b"}, {Field: jobs.FieldArgs, Path: []string{"n"}, Value: ""}}},
		{`50%_off`, []jobs.SearchTerm{{Value: "50%_off"}}},
	}
	for _, tc := range good {
		got, err := jobs.ParseSearch(tc.q)
		if err != nil {
			t.Errorf("ParseSearch(%q): %v", tc.q, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("ParseSearch(%q) = %+v, want %+v", tc.q, got, tc.want)
			continue
		}
		for i := range got {
			if got[i].Field != tc.want[i].Field || got[i].Value != tc.want[i].Value || got[i].Prefix != tc.want[i].Prefix ||
				!slices.Equal(got[i].Path, tc.want[i].Path) {
				t.Errorf("ParseSearch(%q)[%d] = %+v, want %+v", tc.q, i, got[i], tc.want[i])
			}
			// Written back, a term parses to itself.
			again, err := jobs.ParseSearch(got[i].String())
			if err != nil || len(again) != 1 || again[0].Value != got[i].Value || again[0].Field != got[i].Field {
				t.Errorf("term %+v written as %q parses to %+v, %v", got[i], got[i].String(), again, err)
			}
		}
	}
	bad := map[string]string{
		`args.name:"Korben`:                  "column 11: the quote opened here is never closed",
		`tga:x`:                              `unknown field "tga"`,
		`args:x`:                             "args needs a key",
		`args..a:x`:                          "empty key",
		`tag:`:                               "needs a value",
		`tag: x`:                             "needs a value",
		`ab"c`:                               "a quote inside a bare value",
		`"x\n"`:                              `only \" and \\`,
		`error:""`:                           "empty text",
		`"a""b"`:                             "expected a space",
		strings.Repeat("a ", 9):              "more than 8 terms",
		strings.Repeat("x", 501):             "longer than 500",
		"args.a.b.c.d.e.f.g.h.i:x":           "deeper than 8",
		`"` + strings.Repeat("y", 201) + `"`: "longer than 200",
	}
	for q, want := range bad {
		_, err := jobs.ParseSearch(q)
		if !errors.Is(err, jobs.ErrSearchQuery) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSearch(%q) = %v, want an ErrSearchQuery saying %q", q, err, want)
		}
	}
}

// searchRow is a job for the search tests.
type searchRow struct {
	state, queue, kind, args, tags, errors string
}

func insertSearchRows(t *testing.T, st *store.Store, rows []searchRow) []int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	ids := make([]int64, len(rows))
	for i, r := range rows {
		if r.tags == "" {
			r.tags = "[]"
		}
		if r.errors == "" {
			r.errors = "[]"
		}
		err := st.Writer.GetContext(context.Background(), &ids[i], st.Rebind(
			`INSERT INTO jobs (state, queue, kind, args, tags, errors, inserted_at, scheduled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			r.state, r.queue, r.kind, r.args, r.tags, r.errors, now, now)
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestSearchMatchesArgsTagsAndErrors: each kind of term finds exactly its
// jobs, combined with the state, queue and kind filters, on both databases;
// a visitor's text with SQL or LIKE characters in it is only ever a value.
func TestSearchMatchesArgsTagsAndErrors(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		st := b.Open(t)
		ids := insertSearchRows(t, st, []searchRow{
			{"discarded", "phone_calls", "call", `{"name":"Korben","n":1}`, `["campaign","vip"]`, `[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"no answer"}]`},
			{"completed", "phone_calls", "call", `{"name":"Leeloo","n":2}`, `["campaign"]`, ""},
			{"discarded", "mailers", "email", `{"name":"Korben Dallas","user":{"name":"Ruby"}}`, `[]`, `[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"first"},{"attempt":2,"at":"2026-01-01T00:00:01Z","error":"SMTP timeout"}]`},
			{"available", "default", "call", `{"name":"x'); DROP TABLE jobs; --","n":3}`, `["50%_off"]`, ""},
			{"retryable", "phone_calls", "call", `{"name":"Korben","n":4}`, `["campaign2"]`, `[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"busy line"}]`},
		})
		ctx := context.Background()
		cases := []struct {
			q      string
			filter jobs.ListParams
			want   []int64
		}{
			{"args.name:Korben", jobs.ListParams{}, []int64{ids[4], ids[0]}},
			{`args.name:"Korben Dallas"`, jobs.ListParams{}, []int64{ids[2]}},
			{`args.name:Korb*`, jobs.ListParams{}, []int64{ids[4], ids[2], ids[0]}},
			{`args.name:korben`, jobs.ListParams{}, nil}, // values are exact, case and all
			{"args.n:2", jobs.ListParams{}, []int64{ids[1]}},
			{"args.user.name:Ruby", jobs.ListParams{}, []int64{ids[2]}},
			{"tag:campaign", jobs.ListParams{}, []int64{ids[1], ids[0]}},
			{"tag:campaign*", jobs.ListParams{}, []int64{ids[4], ids[1], ids[0]}},
			{"tag:campaign args.name:Korben", jobs.ListParams{}, []int64{ids[0]}},
			{"timeout", jobs.ListParams{}, []int64{ids[2]}},      // the last error
			{"first", jobs.ListParams{}, nil},                    // an earlier error is not searched
			{"error:ANSWER", jobs.ListParams{}, []int64{ids[0]}}, // case-insensitive
			{"leeloo", jobs.ListParams{}, []int64{ids[1]}},       // free text in args
			{"Korben", jobs.ListParams{States: []jobs.State{jobs.StateDiscarded}}, []int64{ids[2], ids[0]}},
			{"Korben", jobs.ListParams{States: []jobs.State{jobs.StateDiscarded, jobs.StateRetryable}, Queue: "phone_calls"}, []int64{ids[4], ids[0]}},
			{"Korben", jobs.ListParams{Kind: "email"}, []int64{ids[2]}},
			{`"DROP TABLE"`, jobs.ListParams{}, []int64{ids[3]}},
			{`args.name:"x'); DROP TABLE jobs; --"`, jobs.ListParams{}, []int64{ids[3]}},
			{`tag:50%_off`, jobs.ListParams{}, []int64{ids[3]}},
			{`"%"`, jobs.ListParams{}, nil}, // % is a character, not a wildcard (no args hold one)
			{`tag:50*`, jobs.ListParams{}, []int64{ids[3]}},
			{`tag:5_*`, jobs.ListParams{}, nil}, // _ is a character too
			// NUL and other control characters match nothing, on both
			// databases (PostgreSQL cannot bind NUL at all).
			{"\x00\x01", jobs.ListParams{}, nil},
			{"args.name:\x00", jobs.ListParams{}, nil},
			{"tag:\x00*", jobs.ListParams{}, nil},
			{"Korben", jobs.ListParams{Queue: "phone\x00calls"}, nil},
			{"Korben", jobs.ListParams{Kind: "\x00", States: []jobs.State{jobs.StateDiscarded}}, nil},
		}
		for _, tc := range cases {
			terms, err := jobs.ParseSearch(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			page, err := jobs.Search(ctx, st.Reader, jobs.SearchParams{List: tc.filter, Terms: terms})
			if err != nil {
				t.Fatalf("%q %+v: %v", tc.q, tc.filter, err)
			}
			var got []int64
			for _, j := range page.Jobs {
				got = append(got, j.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("search %q %+v = %v, want %v", tc.q, tc.filter, got, tc.want)
			}
			if page.NextCursor != "" || page.Stopped {
				t.Errorf("search %q: a cursor %q (stopped %v) though the table was read to its end", tc.q, page.NextCursor, page.Stopped)
			}
		}
		var n int
		if err := st.Reader.Get(&n, "SELECT count(*) FROM jobs"); err != nil || n != 5 {
			t.Fatalf("the table holds %d jobs (%v) after the searches", n, err)
		}
	})
}

// TestSearchPagesAndStopsAtItsBudget: the scan answers after its row budget
// with what it found and a cursor; following the cursors finds every match
// once, newest first, in pages of the limit.
func TestSearchPagesAndStopsAtItsBudget(t *testing.T) {
	t.Parallel()
	st := storetest.Open(t, "")
	var rows []searchRow
	var want []int64
	for i := range 20_000 {
		args := `{"n":` + itoa(i) + `}`
		if i%997 == 0 {
			args = `{"n":` + itoa(i) + `,"who":"Korben"}`
		}
		rows = append(rows, searchRow{state: "completed", queue: "default", kind: "k", args: args})
	}
	tx := st.Writer.MustBegin()
	now := time.Now().UnixMilli()
	for i, r := range rows {
		res := tx.MustExec(`INSERT INTO jobs (state, queue, kind, args, inserted_at, scheduled_at) VALUES (?, ?, ?, ?, ?, ?)`,
			r.state, r.queue, r.kind, r.args, now, now)
		if i%997 == 0 {
			id, _ := res.LastInsertId()
			want = append(want, id)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(want)
	terms, _ := jobs.ParseSearch("args.who:Korben")
	p := jobs.SearchParams{List: jobs.ListParams{Limit: 7}, Terms: terms, ScanRows: 6_000, Budget: time.Hour}
	var got []int64
	stops := 0
	for calls := 0; ; calls++ {
		if calls > 20 {
			t.Fatal("the cursors never end")
		}
		page, err := jobs.Search(context.Background(), st.Reader, p)
		if err != nil {
			t.Fatal(err)
		}
		if page.Scanned > 6_000+4_000 {
			t.Fatalf("one call scanned %d rows, budget 6,000", page.Scanned)
		}
		if len(page.Jobs) > 7 {
			t.Fatalf("a page of %d jobs, limit 7", len(page.Jobs))
		}
		if page.Stopped {
			stops++
			if len(page.Jobs) == 7 {
				t.Fatalf("a full page says it stopped at its budget")
			}
		}
		for _, j := range page.Jobs {
			got = append(got, j.ID)
		}
		if page.NextCursor == "" {
			break
		}
		p.List.Cursor = page.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Fatalf("following the cursors found %v, want %v", got, want)
	}
	if stops == 0 {
		t.Fatal("the scan never stopped at its budget of 6,000 rows in a table of 20,000")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
