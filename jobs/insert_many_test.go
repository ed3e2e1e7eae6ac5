package jobs_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestInsertManyMatchesOneByOne: a bulk insert (in chunks of many jobs a
// statement) stores exactly what inserting its jobs one by one stores, in
// the same order, across chunk boundaries: unique keys met within the batch
// and already in the table, lookup uniqueness (a period), schedules,
// queues, long runs of one shape (bound once a statement); and job_counts
// stays exact.
func TestInsertManyMatchesOneByOne(t *testing.T) {
	t.Parallel()
	var params []jobs.InsertParams
	for i := range 1234 {
		p := jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(i)}}
		switch {
		case i%7 == 0:
			p.Args = uniqueArgs{Key: fmt.Sprint(i % 21)} // repeats within the batch
		case i%11 == 0:
			p = jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(i % 33)},
				Opts: jobs.InsertOpts{Unique: true, UniquePeriod: time.Hour}} // lookup uniqueness
		case i%13 == 0:
			p.Opts = jobs.InsertOpts{Queue: "other", Priority: 3, ScheduleIn: time.Minute, Tags: []string{"t"}}
		}
		params = append(params, p)
	}
	// Long runs of one shape (the one-value-a-job statements): plain jobs
	// across a chunk boundary, unique jobs repeating keys within a run and
	// across its chunks, a short run between.
	for i := range 2100 {
		params = append(params, jobs.InsertParams{Args: testArgs{Name: fmt.Sprint("run-", i)}})
	}
	for i := range 1100 {
		params = append(params, jobs.InsertParams{Args: uniqueArgs{Key: fmt.Sprint(i % 300)}})
		if i == 500 {
			for k := range 5 {
				params = append(params, jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(k)}, Opts: jobs.InsertOpts{Queue: "other"}})
			}
		}
	}
	seed := []jobs.InsertParams{{Args: uniqueArgs{Key: "7"}}, {Args: testArgs{Name: "0"}, Opts: jobs.InsertOpts{Unique: true, UniquePeriod: time.Hour}}}

	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		for _, reported := range []bool{false, true} {
			t.Run(fmt.Sprintf("reported=%v", reported), func(t *testing.T) {
				t.Parallel()
				insertManyMatchesOneByOne(t, be, seed, params, reported)
			})
		}
	})
}

// insertManyMatchesOneByOne is TestInsertManyMatchesOneByOne with or
// without OnChange (the bulk insert reads the new ids back only to report
// them).
func insertManyMatchesOneByOne(t *testing.T, be storetest.Backend, seed, params []jobs.InsertParams, reported bool) {
	var mu sync.Mutex
	var reportedIDs []int64
	bulk := setup(t, be, options{noStart: true, configure: func(c *jobs.Config) {
		if reported {
			c.OnChange = func(ids []int64) { mu.Lock(); reportedIDs = append(reportedIDs, ids...); mu.Unlock() }
		}
	}})
	if _, err := bulk.eng.InsertMany(bulk.ctx, seed); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	reportedIDs = nil
	mu.Unlock()
	n, err := bulk.eng.InsertMany(bulk.ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if reported {
		var want []int64
		if err := bulk.st.Reader.Select(&want, "SELECT id FROM jobs WHERE id > 2 ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if !slices.Equal(reportedIDs, want) || len(reportedIDs) != n {
			t.Errorf("reported %d ids, inserted %d, the table has %d new", len(reportedIDs), n, len(want))
		}
		mu.Unlock()
	}

	single := setup(t, be, options{noStart: true})
	if _, err := single.eng.InsertMany(single.ctx, seed); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, p := range params {
		res, err := single.eng.Insert(single.ctx, p.Args, p.Opts)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Duplicate {
			want++
		}
	}
	if n != want {
		t.Errorf("InsertMany inserted %d, one by one %d", n, want)
	}
	rows := func(db *sqlx.DB) []string {
		var out []string
		if err := db.Select(&out, `SELECT id || ' ' || state || ' ' || queue || ' ' || kind || ' ' || args || ' ' || priority || ' ' ||
			max_attempts || ' ' || tags || ' ' || coalesce(unique_key, '-') || ' ' || coalesce(unique_by, '-') || ' ' || (scheduled_at - inserted_at)
			FROM jobs ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, exp := rows(bulk.st.Reader), rows(single.st.Reader)
	if len(got) != len(exp) {
		t.Fatalf("%d rows in bulk, %d one by one", len(got), len(exp))
	}
	for i := range got {
		if got[i] != exp[i] {
			t.Fatalf("row %d: bulk %q, one by one %q", i, got[i], exp[i])
		}
	}
	if d := countsMismatch(t, bulk.ctx, bulk.st.Reader); d != "" {
		t.Errorf("job_counts differs from the table:%s", d)
	}
}
