// The outcome statement of a batch: many jobs' failures, discards and
// completions in one transaction, and errors appended to arrays written
// some other way.
package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestOutcomesOfManyJobsAtOnce runs jobs that fail a number of times of
// their own, in batches of every size up to the queue limit (SQLite pads a
// batch to its statement's size): each job ends with its own outcome and
// its own errors, in order, and the counts stay exact.
func TestOutcomesOfManyJobsAtOnce(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		const n = 45
		b := setup(t, be, options{queues: map[string]int{"default": 40}, noStart: true},
			funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
				var a testArgs
				if err := j.UnmarshalArgs(&a); err != nil {
					return err
				}
				var fails int
				fmt.Sscan(a.Name, &fails)
				if j.Attempt <= fails {
					return fmt.Errorf("job %s fails attempt %d", a.Name, j.Attempt)
				}
				return nil
			}})
		params := make([]jobs.InsertParams, n)
		for i := range params {
			// Job i fails i%5 times; at most 3 attempts, so 3 and 4 are discarded.
			params[i] = jobs.InsertParams{Args: testArgs{Name: fmt.Sprint(i % 5)}, Opts: jobs.InsertOpts{MaxAttempts: 3}}
		}
		if _, err := b.eng.InsertMany(b.ctx, params); err != nil {
			t.Fatal(err)
		}
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitTimeout, func() bool {
			return b.count(t, "SELECT count(*) FROM jobs WHERE state IN ('completed', 'discarded')") == n
		})
		all, err := jobs.List(b.ctx, b.st.Reader, jobs.ListParams{Limit: n})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range all.Jobs {
			var a testArgs
			if err := j.UnmarshalArgs(&a); err != nil {
				t.Fatal(err)
			}
			var fails int
			fmt.Sscan(a.Name, &fails)
			want, attempts := jobs.StateCompleted, fails+1
			if fails >= 3 {
				want, attempts = jobs.StateDiscarded, 3
			}
			if j.State != want || j.Attempt != attempts {
				t.Errorf("job %d (fails %d): %s after %d attempts, want %s after %d", j.ID, fails, j.State, j.Attempt, want, attempts)
			}
			if len(j.Errors) != min(fails, 3) {
				t.Errorf("job %d (fails %d): errors %+v", j.ID, fails, j.Errors)
				continue
			}
			for i, e := range j.Errors {
				if wantErr := fmt.Sprintf("job %d fails attempt %d", fails, i+1); e.Attempt != i+1 || e.Error != wantErr || e.Node != "test-node" {
					t.Errorf("job %d: errors[%d] = %+v, want attempt %d %q on test-node", j.ID, i, e, i+1, wantErr)
				}
			}
		}
		checkCounts(t, b.st)
	})
}

// TestErrorAppendedToAnyArray: an attempt's error is appended to an errors
// array however it was written (with spaces, the empty array with a space),
// and the column stays a JSON array.
func TestErrorAppendedToAnyArray(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			return fmt.Errorf("no answer")
		}})
		old := []string{
			`[]`,
			`[ ]`,
			`[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"first"}]`,
			`[ {"attempt": 1, "at": "2026-01-01T00:00:00Z", "error": "spaced"} ]`,
		}
		ids := make([]int64, len(old))
		for i, o := range old {
			ids[i] = b.insert(t, testArgs{Name: fmt.Sprint(i)}, jobs.InsertOpts{MaxAttempts: 1})
			cast := ""
			if be.Dialect == store.Postgres {
				cast = "::jsonb"
			}
			if _, err := b.st.Writer.Exec(b.st.Writer.Rebind("UPDATE jobs SET errors = ?"+cast+" WHERE id = ?"), o, ids[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			b.waitState(t, id, jobs.StateDiscarded)
			var raw string
			if err := b.st.Reader.Get(&raw, b.st.Reader.Rebind("SELECT errors FROM jobs WHERE id = ?"), id); err != nil {
				t.Fatal(err)
			}
			var got []json.RawMessage
			if err := json.Unmarshal([]byte(raw), &got); err != nil {
				t.Fatalf("errors written over %s: %s is not a JSON array: %v", old[i], raw, err)
			}
			var before []json.RawMessage
			if err := json.Unmarshal([]byte(old[i]), &before); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(before)+1 {
				t.Fatalf("errors written over %s: %s, want one more element", old[i], raw)
			}
			var last jobs.AttemptError
			if err := json.Unmarshal(got[len(got)-1], &last); err != nil || last.Error != "no answer" || last.Attempt != 1 {
				t.Errorf("errors written over %s: last element %s (%v)", old[i], got[len(got)-1], err)
			}
		}
	})
}
