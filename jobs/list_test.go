package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// listStore is a migrated database in a temp dir, for the list's tests and
// benchmarks.
func listStore(tb testing.TB) *store.Store { return storetest.Open(tb, "") }

// listRow is a job as the list tests model it.
type listRow struct {
	id    int64
	state jobs.State
	queue string
	kind  string
}

// seedListRows inserts n jobs whose state, queue and kind cycle
// independently (7 states, 3 queues, 2 kinds), and returns them.
func seedListRows(t *testing.T, st *store.Store, n int) []listRow {
	t.Helper()
	queues := []string{"default", "mailers", "phone_calls"}
	kinds := []string{"email", "speak_and_spell"}
	var rows []listRow
	tx := st.Writer.MustBegin()
	for i := range n {
		r := listRow{state: jobs.States[i%7], queue: queues[i%3], kind: kinds[i%2]}
		err := tx.Get(&r.id, tx.Rebind(`INSERT INTO jobs (state, queue, kind, args, inserted_at, scheduled_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
			r.state, r.queue, r.kind, fmt.Sprintf(`{"n":%d}`, i), time.Now().UnixMilli(), time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestListFiltersAndPagesNewestFirst(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		all := seedListRows(t, st, 130)
		tests := []struct {
			name string
			p    jobs.ListParams
		}{
			{"everything", jobs.ListParams{}},
			{"one state", jobs.ListParams{States: []jobs.State{jobs.StateCompleted}}},
			{"two states", jobs.ListParams{States: []jobs.State{jobs.StateDiscarded, jobs.StateAvailable}}},
			{"a state twice", jobs.ListParams{States: []jobs.State{jobs.StateRetryable, jobs.StateRetryable}}},
			{"queue", jobs.ListParams{Queue: "mailers"}},
			{"kind", jobs.ListParams{Kind: "email"}},
			{"queue and kind", jobs.ListParams{Queue: "phone_calls", Kind: "speak_and_spell"}},
			{"state, queue and kind", jobs.ListParams{States: []jobs.State{jobs.StateScheduled}, Queue: "default", Kind: "email"}},
			{"states and queue", jobs.ListParams{States: []jobs.State{jobs.StateCancelled, jobs.StateExecuting}, Queue: "default"}},
			{"unknown queue", jobs.ListParams{Queue: "nope"}},
			{"a queue spelled like SQL", jobs.ListParams{Queue: "x' OR '1'='1"}},
		}
		for _, tt := range tests {
			for _, limit := range []int{1, 4, 50} {
				t.Run(fmt.Sprintf("%s/limit %d", tt.name, limit), func(t *testing.T) {
					var want []int64
					for _, r := range all {
						if (len(tt.p.States) == 0 || slices.Contains(tt.p.States, r.state)) &&
							(tt.p.Queue == "" || tt.p.Queue == r.queue) && (tt.p.Kind == "" || tt.p.Kind == r.kind) {
							want = append(want, r.id)
						}
					}
					slices.Reverse(want)

					var got []int64
					p := tt.p
					p.Limit = limit
					for pages := 0; ; pages++ {
						if pages > len(all) {
							t.Fatal("the cursor never ends")
						}
						page, err := jobs.List(context.Background(), st.Reader, p)
						if err != nil {
							t.Fatal(err)
						}
						if len(page.Jobs) > limit {
							t.Fatalf("page of %d jobs, limit %d", len(page.Jobs), limit)
						}
						if page.NextCursor != "" && len(page.Jobs) != limit {
							t.Fatalf("a short page (%d of %d) has a next cursor", len(page.Jobs), limit)
						}
						for _, j := range page.Jobs {
							got = append(got, j.ID)
							r := all[slices.IndexFunc(all, func(r listRow) bool { return r.id == j.ID })]
							if j.State != r.state || j.Queue != r.queue || j.Kind != r.kind {
								t.Fatalf("job %d = %s/%s/%s, stored %s/%s/%s", j.ID, j.State, j.Queue, j.Kind, r.state, r.queue, r.kind)
							}
						}
						if page.NextCursor == "" {
							break
						}
						p.Cursor = page.NextCursor
					}
					if !slices.Equal(got, want) {
						t.Errorf("ids %v\nwant %v", got, want)
					}
				})
			}
		}
	})
}

func TestListRejectsBadParams(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		for _, tt := range []struct {
			name string
			p    jobs.ListParams
		}{
			{"garbage cursor", jobs.ListParams{Cursor: "!!!"}},
			{"base64 of something else", jobs.ListParams{Cursor: "aGVsbG8"}},
			{"cursor at zero", jobs.ListParams{Cursor: "YmVmb3JlOjA"}},
			{"unknown state", jobs.ListParams{States: []jobs.State{"running"}}},
			{"negative limit", jobs.ListParams{Limit: -1}},
			{"limit too large", jobs.ListParams{Limit: jobs.MaxListLimit + 1}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := jobs.List(context.Background(), st.Reader, tt.p)
				if !errors.Is(err, jobs.ErrListParams) {
					t.Errorf("err = %v, want ErrListParams", err)
				}
			})
		}
	})
}

// TestListQueriesUseIndexRanges proves the dashboard stays fast on big
// tables: no filter combination scans the table or sorts it. SQLite only:
// the plan it reads is SQLite's EXPLAIN QUERY PLAN, and the statement
// names its index (INDEXED BY), which PostgreSQL's has no hint for.
func TestListQueriesUseIndexRanges(t *testing.T) {
	t.Parallel()
	st := storetest.Open(t, "")
	seedListRows(t, st, 20)
	if _, err := st.Writer.Exec("ANALYZE"); err != nil {
		t.Fatal(err)
	}
	tests := []jobs.ListParams{
		{},
		{Cursor: cursorAfterFirst(t, st, jobs.ListParams{})},
		{States: []jobs.State{jobs.StateCompleted}},
		{States: []jobs.State{jobs.StateCompleted, jobs.StateDiscarded}},
		{Queue: "default"},
		{Kind: "email"},
		{Queue: "default", Kind: "email"},
		{States: []jobs.State{jobs.StateAvailable}, Queue: "default", Cursor: cursorAfterFirst(t, st, jobs.ListParams{Queue: "default"})},
		{States: []jobs.State{jobs.StateAvailable}, Kind: "email"},
	}
	for _, p := range tests {
		t.Run(fmt.Sprintf("%+v", p), func(t *testing.T) {
			plan := jobs.ListPlan(context.Background(), st.Reader, p)
			unfiltered := len(p.States) == 0 && p.Queue == "" && p.Kind == ""
			for i, line := range plan {
				switch {
				case strings.HasPrefix(line, "error"):
					t.Fatal(line)
				// Only the unfiltered list walks the table itself: backwards
				// by rowid, stopping after one page.
				case strings.HasPrefix(line, "SCAN jobs") && !unfiltered:
					t.Errorf("step %q scans the table", line)
				// A sort is allowed only of one state's page (at most
				// limit+1 rows) before the states are merged.
				case strings.Contains(line, "TEMP B-TREE") && (i == 0 || !strings.HasPrefix(plan[i-1], "SCAN (subquery")):
					t.Errorf("step %q sorts more than one page", line)
				}
			}
			if t.Failed() {
				t.Logf("plan:\n%s", strings.Join(plan, "\n"))
			}
		})
	}
}

func cursorAfterFirst(t *testing.T, st *store.Store, p jobs.ListParams) string {
	t.Helper()
	p.Limit = 1
	page, err := jobs.List(context.Background(), st.Reader, p)
	if err != nil || page.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, page)
	}
	return page.NextCursor
}

func TestGetManySkipsMissingIDs(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		rows := seedListRows(t, st, 5)
		got, err := jobs.GetMany(context.Background(), st.Reader, []int64{rows[3].id, 999, rows[1].id})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, j := range got {
			ids = append(ids, j.ID)
		}
		if want := []int64{rows[1].id, rows[3].id}; !slices.Equal(ids, want) {
			t.Errorf("ids %v, want %v", ids, want)
		}
		if got, err := jobs.GetMany(context.Background(), st.Reader, nil); err != nil || got != nil {
			t.Errorf("no ids: %v %v", got, err)
		}
	})
}

// SeedBenchJobs fills the jobs table with n jobs in one INSERT … SELECT over
// a recursive CTE, shaped like a busy queue's history: 90 % completed, the
// rest spread over the other states; four queues (one rare) and eight kinds.
func seedBenchJobs(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	start := time.Now()
	now := time.Now().UnixMilli()
	_, err := st.Writer.Exec(st.Writer.Rebind(`
		WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
		INSERT INTO jobs (state, queue, kind, args, attempt, max_attempts, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at)
		SELECT s.state,
		       CASE WHEN i % 10000 = 0 THEN 'rare' WHEN i % 10 < 6 THEN 'default' WHEN i % 10 < 9 THEN 'phone_calls' ELSE 'mailers' END,
		       'kind_' || (i % 8),
		       '{"n":' || i || '}',
		       CASE WHEN s.state IN ('available', 'scheduled') THEN 0 ELSE 1 END, 20,
		       ?2 - (?1 - i) * 10, ?2 - (?1 - i) * 10,
		       CASE WHEN s.state IN ('available', 'scheduled') THEN NULL ELSE ?2 - (?1 - i) * 10 + 5 END,
		       CASE WHEN s.state = 'completed' THEN ?2 - (?1 - i) * 10 + 7 END,
		       CASE WHEN s.state = 'discarded' THEN ?2 - (?1 - i) * 10 + 7 END,
		       CASE WHEN s.state = 'cancelled' THEN ?2 - (?1 - i) * 10 + 7 END
		FROM (SELECT i, CASE
		        WHEN i % 100 < 90 THEN 'completed'
		        WHEN i % 100 < 93 THEN 'available'
		        WHEN i % 100 < 95 THEN 'scheduled'
		        WHEN i % 100 < 96 THEN 'executing'
		        WHEN i % 100 < 98 THEN 'retryable'
		        WHEN i % 100 < 99 THEN 'discarded'
		        ELSE 'cancelled' END AS state FROM seq) AS s`), n, now)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Writer.Exec("ANALYZE"); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("seeded %d jobs in %s", n, time.Since(start).Round(time.Millisecond))
}

// BenchmarkList1M measures one dashboard page (50 jobs) with 1,000,000 jobs
// in the table, for the filters the dashboard offers; p50-ms is the median.
func BenchmarkList1M(b *testing.B) {
	st := listStore(b)
	seedBenchJobs(b, st, 1_000_000)
	ctx := context.Background()
	deep, err := jobs.List(ctx, st.Reader, jobs.ListParams{Limit: 1000})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		p    jobs.ListParams
	}{
		{"all", jobs.ListParams{}},
		{"all/page 2", jobs.ListParams{Cursor: deep.NextCursor}},
		{"state=completed", jobs.ListParams{States: []jobs.State{jobs.StateCompleted}}},
		{"state=discarded", jobs.ListParams{States: []jobs.State{jobs.StateDiscarded}}},
		{"queue=rare", jobs.ListParams{Queue: "rare"}},
		{"queue=default", jobs.ListParams{Queue: "default"}},
		{"kind=kind_3", jobs.ListParams{Kind: "kind_3"}},
		{"queue=phone_calls,kind=kind_1,state=retryable", jobs.ListParams{Queue: "phone_calls", Kind: "kind_1", States: []jobs.State{jobs.StateRetryable}}},
		{"state=executing,retryable", jobs.ListParams{States: []jobs.State{jobs.StateExecuting, jobs.StateRetryable}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				page, err := jobs.List(ctx, st.Reader, bc.p)
				if err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				if len(page.Jobs) == 0 {
					b.Fatal("empty page")
				}
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

// TestListFilterWithNULMatchesNothing: a queue or kind filter holding a NUL
// byte (hostile input) is an empty page on both databases, not an error
// (PostgreSQL text cannot hold NUL, so its query would fail).
func TestListFilterWithNULMatchesNothing(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		seedListRows(t, st, 5)
		for _, p := range []jobs.ListParams{
			{Kind: "\x00\r\n"},
			{Queue: "default\x00"},
			{Queue: "default", Kind: "email\x00", States: []jobs.State{jobs.StateAvailable, jobs.StateCompleted}},
		} {
			page, err := jobs.List(t.Context(), st.Reader, p)
			if err != nil || len(page.Jobs) != 0 || page.NextCursor != "" {
				t.Errorf("List(%q, %q) = %d jobs, cursor %q, %v; want an empty page", p.Queue, p.Kind, len(page.Jobs), page.NextCursor, err)
			}
		}
	})
}
