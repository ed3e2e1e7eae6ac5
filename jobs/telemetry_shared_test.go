package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/jobs"
)

// totals sums a throughput series.
func totals(points []jobs.ThroughputPoint) (completed, failed int) {
	for _, p := range points {
		completed += p.Completed
		failed += p.Failed
	}
	return completed, failed
}

// timingTotal is the window's total of the series named name (zero when
// the series is not listed).
func timingTotal(series []jobs.TimingSeries, name string) jobs.TimingPoint {
	for _, s := range series {
		if s.Name == name {
			return s.Total
		}
	}
	return jobs.TimingPoint{}
}

// TestChartsCountEveryNode: with two nodes on one PostgreSQL database,
// each node's Throughput and Timings (the jobs dashboard's charts) count
// the attempts of both, within a few seconds; a node that restarts under
// the same name still counts what its earlier process ran.
func TestChartsCountEveryNode(t *testing.T) {
	t.Parallel()
	url := pgDatabase(t)
	ok := funcWorker{kind: "ok", fn: func(context.Context, *jobs.Job) error { return nil }}
	fail := funcWorker{kind: "fail", fn: func(context.Context, *jobs.Job) error { return errors.New("no answer") }}
	// Each node runs a queue of its own, so each attempt's node is known.
	_, a := pgNode(t, url, jobs.Config{Node: "node-a", Queues: map[string]int{"qa": 5}}, ok, fail)
	bStore, b := pgNode(t, url, jobs.Config{Node: "node-b", Queues: map[string]int{"qb": 5}}, ok, fail)
	for range 10 {
		if _, err := a.Insert(t.Context(), testArgs{kind: "ok"}, jobs.InsertOpts{Queue: "qa"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 7 {
		if _, err := a.Insert(t.Context(), testArgs{kind: "fail"}, jobs.InsertOpts{Queue: "qb", MaxAttempts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	counts := func(e *jobs.Engine) bool {
		c, f := totals(e.Throughput())
		tm := e.Timings(0)
		qa, qb := timingTotal(tm.Queues, "qa"), timingTotal(tm.Queues, "qb")
		ok, fail := timingTotal(tm.Kinds, "ok"), timingTotal(tm.Kinds, "fail")
		return c == 10 && f == 7 && qa.Count == 10 && qa.Failed == 0 && qb.Count == 7 && qb.Failed == 7 &&
			ok.Count == 10 && fail.Count == 7 && fail.Failed == 7
	}
	testwait.Until(t, 15*time.Second, "node A's charts counting node B's attempts", func() bool { return counts(a) })
	testwait.Until(t, 15*time.Second, "node B's charts counting node A's attempts", func() bool { return counts(b) })

	// Node B restarts (a new process, the same name): what it ran before
	// is read back from the table.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	bStore.Close()
	_, b2 := pgNode(t, url, jobs.Config{Node: "node-b", Queues: map[string]int{"qb": 5}}, ok, fail)
	testwait.Until(t, 15*time.Second, "the restarted node B's charts counting both nodes' attempts", func() bool { return counts(b2) })
}
