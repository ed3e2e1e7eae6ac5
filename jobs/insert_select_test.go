package jobs_test

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"

	"github.com/phonehome/phonehome/store/storetest"
)

// callArgs are args with an id among other fields, and text that
// encoding/json escapes, so the bulk insert must reproduce Go's encoding.
type callArgs struct {
	Note string `json:"note"`
	ID   int64  `json:"target_id"`
	Tag  string `json:"tag,omitempty"`
}

func (callArgs) Kind() string { return "call" }

func (callArgs) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Unique: true, MaxAttempts: 4, Queue: "calls"}
}

func callOf(id int64) jobs.Args { return callArgs{Note: "<ring & ring>", ID: id} }

// selectIDs selects the ids of a JSON array, in order, per dialect.
var selectIDs = map[store.Dialect]string{
	store.SQLite:   "SELECT value FROM json_each(?) ORDER BY key",
	store.Postgres: "SELECT value::bigint FROM jsonb_array_elements_text(?::jsonb) WITH ORDINALITY AS e (value, key) ORDER BY key",
}

// rows are the jobs as an insert writes them (all but the id), one line
// each, in id order.
func (b *bundle) rows(t *testing.T) []string {
	t.Helper()
	var rows []string
	err := b.st.Reader.SelectContext(t.Context(), &rows, `SELECT concat_ws(' | ', state, queue, kind, args, priority,
		max_attempts, tags, coalesce(unique_key, 'no key'), inserted_at, scheduled_at) FROM jobs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// Every job of a bulk insert is the very row Insert writes for the same
// args and options: args JSON, unique key and all.
func TestInsertSelectWritesWhatInsertWrites(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name string
			opts jobs.InsertOpts
		}{
			{name: "the args' own options (unique)"},
			{name: "priority, tags, later", opts: jobs.InsertOpts{Priority: 3, Tags: []string{"a", "<b>"}, ScheduleIn: time.Minute}},
		}
		ids := []int64{1, 2, 30, 9_007_199_254_740_993}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bulk := setup(t, be, options{noStart: true})
				n, err := bulk.eng.InsertSelect(t.Context(), jobs.InsertSelect{
					Args: callOf, Opts: tt.opts, Select: selectIDs[be.Dialect], SelectArgs: []any{idsJSON(ids)},
				})
				if err != nil || n != len(ids) {
					t.Fatalf("InsertSelect = %d, %v; want %d", n, err, len(ids))
				}
				one := setup(t, be, options{noStart: true})
				for _, id := range ids {
					if _, err := one.eng.Insert(t.Context(), callOf(id), tt.opts); err != nil {
						t.Fatal(err)
					}
				}
				got, want := bulk.rows(t), one.rows(t)
				if !slices.Equal(got, want) {
					t.Errorf("bulk rows differ from Insert's:\n got %+v\nwant %+v", got, want)
				}
				if strings.Contains(want[0], "no key") {
					t.Errorf("Insert wrote no unique key: the test proves nothing about keys")
				}
			})
		}
	})
}

// A row whose job is in flight gets none; the rest get one each, reported
// to the subscribers with their real ids; a second run inserts nothing.
func TestInsertSelectSkipsJobsInFlightAndReportsTheNewOnes(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		var mu sync.Mutex
		var heard []int64
		b.eng.Subscribe(func(ids []int64) {
			mu.Lock()
			heard = append(heard, ids...)
			mu.Unlock()
		})
		inFlight := b.insert(t, callOf(2), jobs.InsertOpts{})
		p := jobs.InsertSelect{Args: callOf, Select: selectIDs[b.st.Dialect], SelectArgs: []any{"[1, 2, 3]"}}
		n, err := b.eng.InsertSelect(t.Context(), p)
		if err != nil || n != 2 {
			t.Fatalf("InsertSelect = %d, %v; want 2 (id 2 is in flight)", n, err)
		}
		var want []int64
		if err := b.st.Reader.SelectContext(t.Context(), &want, b.st.Reader.Rebind("SELECT id FROM jobs WHERE id != ? ORDER BY id"), inFlight); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := slices.Sorted(slices.Values(heard))
		mu.Unlock()
		if !slices.Equal(got, append([]int64{inFlight}, want...)) {
			t.Errorf("subscribers heard %v, want the single insert %d and the bulk %v", got, inFlight, want)
		}
		if n, err := b.eng.InsertSelect(t.Context(), p); err != nil || n != 0 {
			t.Errorf("second InsertSelect = %d, %v; want 0: every call is in flight", n, err)
		}
	})
}

func TestInsertSelectRefusesWhatItCannotWriteAsInsertWould(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		noID := func(int64) jobs.Args { return testArgs{Name: "x"} }
		for name, p := range map[string]jobs.InsertSelect{
			"no args":             {Select: selectIDs[store.SQLite]},
			"unique for a period": {Args: callOf, Opts: jobs.InsertOpts{UniquePeriod: time.Hour}, Select: selectIDs[store.SQLite]},
			"args without the id": {Args: noID, Select: selectIDs[store.SQLite]},
		} {
			p.SelectArgs = []any{"[1]"}
			if n, err := b.eng.InsertSelect(t.Context(), p); err == nil {
				t.Errorf("%s: InsertSelect = %d, nil; want an error", name, n)
			}
		}
		if n := b.count(t, "SELECT count(*) FROM jobs"); n != 0 {
			t.Errorf("%d jobs inserted by refused calls", n)
		}
	})
}

func TestUnsubscribedFunctionsHearNothingMore(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		var mu sync.Mutex
		var first, second int
		stop := b.eng.Subscribe(func(ids []int64) { mu.Lock(); first += len(ids); mu.Unlock() })
		b.eng.Subscribe(func(ids []int64) { mu.Lock(); second += len(ids); mu.Unlock() })
		b.insert(t, testArgs{Name: "a"}, jobs.InsertOpts{})
		stop()
		b.insert(t, testArgs{Name: "b"}, jobs.InsertOpts{})
		mu.Lock()
		defer mu.Unlock()
		if first != 1 || second != 2 {
			t.Errorf("first heard %d, second %d; want 1 and 2", first, second)
		}
	})
}

func idsJSON(ids []int64) string {
	b, _ := json.Marshal(ids) // int64s always encode
	return string(b)
}
