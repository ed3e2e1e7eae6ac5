package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// A job whose errors and tags columns are valid JSON but not what the
// engine writes (a hand-written UPDATE) is still listed, claimed and run,
// with nothing of the odd columns dropped, and the other jobs of its queue
// run too: one odd row must not stop its queue.
func TestOddErrorsAndTagsColumnsNeitherStopTheQueueNorGetLost(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			return errors.New("boom")
		}})
		odd := b.insert(t, testArgs{Name: "odd"}, jobs.InsertOpts{MaxAttempts: 1})
		plain := b.insert(t, testArgs{Name: "plain"}, jobs.InsertOpts{MaxAttempts: 1})
		// SQLite keeps JSON text as written; jsonb prints it with a space
		// after each colon.
		cast, obj, tags := "", `{"foo":1}`, `{"team":"ops"}`
		if be.Dialect == store.Postgres {
			cast, obj, tags = "::jsonb", `{"foo": 1}`, `{"team": "ops"}`
		}
		if _, err := b.st.Writer.ExecContext(b.ctx, b.st.Writer.Rebind("UPDATE jobs SET errors = ?"+cast+", tags = ?"+cast+" WHERE id = ?"),
			`["x",3,{"foo":1},{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"first"}]`, `{"team":"ops"}`, odd); err != nil {
			t.Fatal(err)
		}
		wantOld := []string{"x", "3", obj, "first"}

		page, err := jobs.List(b.ctx, b.st.Reader, jobs.ListParams{})
		if err != nil || len(page.Jobs) != 2 {
			t.Fatalf("list: %d jobs, %v; want both", len(page.Jobs), err)
		}

		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		b.waitState(t, plain, jobs.StateDiscarded)
		j := b.waitState(t, odd, jobs.StateDiscarded)
		var got []string
		for _, e := range j.Errors {
			got = append(got, e.Error)
		}
		want := append(wantOld, "boom")
		if len(got) != len(want) {
			t.Fatalf("errors %q, want %q", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("errors %q, want %q", got, want)
			}
		}
		if j.Errors[3].Attempt != 1 || j.Errors[4].Attempt != 1 || j.Errors[0].Attempt != 0 {
			t.Errorf("errors %+v: the readable entries keep their attempts", j.Errors)
		}
		if len(j.Tags) != 1 || j.Tags[0] != tags {
			t.Errorf("tags %q, want the column's text as one tag", j.Tags)
		}
	})
}
