package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestEachAttemptNamesItsNode: with several nodes, the job says which one
// ran it: attempted_by for the latest attempt, and each failed attempt's
// error names the node that ran it, on both databases; so does the error a
// rescue records for an attempt its dead node left executing.
func TestEachAttemptNamesItsNode(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be)
		b.eng = newEngine(t, b.st, b.clock, options{configure: func(c *jobs.Config) { c.Node = "node-x" }},
			funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return errors.New("no answer") }})
		id := b.insert(t, testArgs{}, jobs.InsertOpts{MaxAttempts: 1})
		j := b.waitState(t, id, jobs.StateDiscarded)
		if j.AttemptedBy != "node-x" || len(j.Errors) != 1 || j.Errors[0].Node != "node-x" {
			t.Fatalf("attempted by %q, errors %+v; want node-x in both", j.AttemptedBy, j.Errors)
		}

		// A node that died with a job executing: the rescue's error names it.
		rescued := b.insert(t, testArgs{kind: "other"}, jobs.InsertOpts{Queue: "elsewhere"})
		b.executingOn(t, rescued, "node-gone")
		if _, err := b.eng.Rescue(b.ctx); err != nil {
			t.Fatal(err)
		}
		j = b.get(t, rescued)
		if len(j.Errors) != 1 || j.Errors[0].Node != "node-gone" || j.AttemptedBy != "node-gone" {
			t.Fatalf("rescued: attempted by %q, errors %+v; want node-gone in both", j.AttemptedBy, j.Errors)
		}
	})
}
