package jobs_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/migrations"

	"github.com/phonehome/phonehome/store/storetest"
)

// TestJobIDsAreNeverReused: deleting the newest job does not hand its id to
// the next insert (a stale /jobs/{id} page must not reach another job).
func TestJobIDsAreNeverReused(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		first := b.insert(t, testArgs{Name: "first"}, jobs.InsertOpts{})
		newest := b.insert(t, testArgs{Name: "newest"}, jobs.InsertOpts{})
		if err := b.eng.DeleteJob(b.ctx, newest); err != nil {
			t.Fatal(err)
		}
		next := b.insert(t, testArgs{Name: "next"}, jobs.InsertOpts{})
		if next <= newest {
			t.Errorf("after deleting job %d the next insert got id %d: ids reused (first was %d)", newest, next, first)
		}
		if _, err := jobs.Get(b.ctx, b.st.Reader, newest); err == nil {
			t.Errorf("the deleted id %d reads as a job again", newest)
		}
		// The same through InsertMany and a deletion of every job.
		if _, err := b.eng.DeleteJobs(b.ctx, []int64{first, next}); err != nil {
			t.Fatal(err)
		}
		if n, err := b.eng.InsertMany(b.ctx, []jobs.InsertParams{{Args: testArgs{Name: "a"}}, {Args: testArgs{Name: "b"}}}); err != nil || n != 2 {
			t.Fatalf("insert many: %d, %v", n, err)
		}
		if low := b.count(t, "SELECT min(id) FROM jobs"); int64(low) <= next {
			t.Errorf("after deleting every job the next id is %d, want above %d", low, next)
		}
		if n := b.count(t, "SELECT count(*) FROM job_counts WHERE queue = 'default' AND state = 'available' AND n = 2"); n != 1 {
			t.Error("job_counts do not say 2 available jobs")
		}
	})
}

// TestAutoincrementSurvivesMigrationsAndReset: the migration keeps jobs,
// their ids and exact counts; down and up again work; and the reset path
// (Store.Drop, then Migrate) works beside sqlite_sequence, which cannot be
// dropped, and starts ids afresh. SQLite only: AUTOINCREMENT and
// sqlite_sequence are how SQLite keeps ids unique (migration 0009);
// PostgreSQL's identity sequence does it by itself, and
// TestJobIDsAreNeverReused covers both.
func TestAutoincrementSurvivesMigrationsAndReset(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := storetest.Open(t, filepath.Join(t.TempDir(), "ids.db"))
	b := &bundle{ctx: ctx, st: st, clock: newFakeClock()}
	b.eng = newEngine(t, st, b.clock, options{noStart: true})
	for range 3 {
		b.insert(t, testArgs{Name: "kept"}, jobs.InsertOpts{})
	}
	// 0011 and 0009 down (the table without AUTOINCREMENT, with 0010's
	// indexes and triggers) and up again: rows, ids, indexes, triggers and
	// counts as before, the sequence seeded. (0010 leaves the jobs table
	// alone.)
	schema := func() string {
		var s string
		if err := st.Writer.GetContext(ctx, &s, `SELECT group_concat(name || ': ' || coalesce(sql, ''), ';') FROM
			(SELECT name, sql FROM sqlite_schema WHERE tbl_name = 'jobs' AND type IN ('index', 'trigger') ORDER BY name)`); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := schema()
	for _, file := range []string{"0011_jobs_hot_path.down.sql", "0009_jobs_autoincrement.down.sql",
		"0009_jobs_autoincrement.up.sql", "0011_jobs_hot_path.up.sql"} {
		sqlText, err := fs.ReadFile(migrations.FS, file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Writer.ExecContext(ctx, string(sqlText)); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if _, err := st.Writer.ExecContext(ctx, "DELETE FROM jobs WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	var seq int64
	if err := st.Writer.GetContext(ctx, &seq, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'"); err != nil || seq != 3 {
		t.Fatalf("sqlite_sequence for jobs: %d, %v; want 3", seq, err)
	}
	if got := schema(); got != before || got == "" {
		t.Errorf("indexes and triggers %q, want %q", got, before)
	}
	if n := b.count(t, "SELECT n FROM job_counts WHERE queue = 'default' AND state = 'available'"); n != 2 {
		t.Errorf("count %d available, want 2", n)
	}
	if id := b.insert(t, testArgs{Name: "after"}, jobs.InsertOpts{}); id != 4 {
		t.Errorf("new id %d, want 4", id)
	}

	// The reset path: drop everything, migrate again.
	if err := st.Drop(); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate after drop: %v", err)
	}
	res, err := b.eng.Insert(context.Background(), testArgs{Name: "fresh"}, jobs.InsertOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != 1 {
		t.Errorf("first id after a reset %d, want 1", res.ID)
	}
}
