package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// queueInfo is the named queue as engine eng reports it.
func queueInfo(t *testing.T, eng *jobs.Engine, name string) jobs.QueueInfo {
	t.Helper()
	qs, err := eng.Queues(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("queue %q not in %+v", name, qs)
	return jobs.QueueInfo{}
}

func TestPauseAndResumeQueue(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be)
		st, clock := b.st, b.clock
		opts := options{queues: map[string]int{"default": 2, "other": 1}}
		b.eng = newEngine(t, st, clock, opts, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})

		if err := b.eng.PauseQueue(b.ctx, "default"); err != nil {
			t.Fatal(err)
		}
		id := b.insert(t, testArgs{Name: "waits"}, jobs.InsertOpts{})
		b.probePolls(t, "other", 3)
		if j := b.get(t, id); j.State != jobs.StateAvailable {
			t.Fatalf("job in a paused queue is %s, want available", j.State)
		}
		if q := queueInfo(t, b.eng, "default"); !q.Paused || q.Counts[jobs.StateAvailable] != 1 {
			t.Errorf("queue info %+v, want paused with 1 available", q)
		}

		// A new engine on the same database (a restart) starts it paused.
		if err := b.eng.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}
		b.eng = newEngine(t, st, clock, opts, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		if q := queueInfo(t, b.eng, "default"); !q.Paused {
			t.Errorf("after a restart the queue is not paused: %+v", q)
		}
		b.probePolls(t, "other", 2)
		if j := b.get(t, id); j.State != jobs.StateAvailable {
			t.Fatalf("after a restart the paused queue ran its job: %s", j.State)
		}

		if err := b.eng.ResumeQueue(b.ctx, "default"); err != nil {
			t.Fatal(err)
		}
		b.waitState(t, id, jobs.StateCompleted)
		if q := queueInfo(t, b.eng, "default"); q.Paused {
			t.Errorf("resumed queue still paused: %+v", q)
		}

		for _, err := range []error{
			b.eng.PauseQueue(b.ctx, "nope"),
			b.eng.ResumeQueue(b.ctx, "nope"),
			b.eng.ScaleQueue(b.ctx, "nope", 3),
		} {
			if !errors.Is(err, jobs.ErrUnknownQueue) {
				t.Errorf("action on an unknown queue: %v, want ErrUnknownQueue", err)
			}
		}
	})
}

func TestScaleQueue(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		w := newGateWorker()
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		opts := options{queues: map[string]int{"default": 1, "other": 1}}
		b.eng = newEngine(t, st, clock, opts, w)

		for range 5 {
			b.insert(t, testArgs{Name: "scaled"}, jobs.InsertOpts{})
		}
		<-w.started
		b.probePolls(t, "other", 2)
		if len(w.started) != 0 {
			t.Fatalf("%d more jobs started with limit 1", len(w.started))
		}
		if err := b.eng.ScaleQueue(b.ctx, "default", 3); err != nil {
			t.Fatal(err)
		}
		<-w.started
		<-w.started
		b.probePolls(t, "other", 2)
		if len(w.started) != 0 {
			t.Fatalf("more than 3 jobs started with limit 3")
		}
		if q := queueInfo(t, b.eng, "default"); q.Limit != 3 || q.Running != 3 || q.Counts[jobs.StateExecuting] != 3 || q.Counts[jobs.StateAvailable] != 2 {
			t.Errorf("queue info %+v, want limit 3, 3 running and executing, 2 available", q)
		}
		for _, bad := range []int{0, -1, jobs.MaxQueueLimit + 1} {
			if err := b.eng.ScaleQueue(b.ctx, "default", bad); err == nil {
				t.Errorf("scale to %d accepted", bad)
			}
		}

		// Scale down and restart: the stored limit wins over Config.Queues.
		if err := b.eng.ScaleQueue(b.ctx, "default", 2); err != nil {
			t.Fatal(err)
		}
		close(w.release)
		waitFor(t, waitTimeout, func() bool {
			return b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'test' AND state = 'completed'") == 5
		})
		if err := b.eng.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}
		b.eng = newEngine(t, st, clock, opts)
		if q := queueInfo(t, b.eng, "default"); q.Limit != 2 {
			t.Errorf("after a restart limit %d, want the stored 2", q.Limit)
		}
	})
}

func TestQueueSettingsReachOtherNodes(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		opts := func(node string) options {
			return options{configure: func(c *jobs.Config) {
				c.Node = node
				c.HeartbeatInterval = 5 * time.Millisecond
				c.NodeTimeout = time.Hour
			}}
		}
		a := newEngine(t, st, clock, opts("node-a"))
		other := newEngine(t, st, clock, opts("node-b"))
		if err := a.PauseQueue(t.Context(), "default"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitTimeout, func() bool { return queueInfo(t, other, "default").Paused })
		if err := a.ScaleQueue(t.Context(), "default", 7); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitTimeout, func() bool { return queueInfo(t, other, "default").Limit == 7 })
	})
}

// TestCountsFollowEveryChange: the counts kept by triggers equal a full
// count of the table after inserts, claims, every outcome, operator actions
// and deletes.
func TestCountsFollowEveryChange(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		b := setup(t, be, options{queues: map[string]int{"default": 2, "other": 2}}, w,
			funcWorker{kind: "fails", fn: func(context.Context, *jobs.Job) error { return errors.New("no") }})
		check := func(when string) {
			t.Helper()
			want := jobsPerState(t, b, "")
			got, err := b.eng.Counts(b.ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range jobs.States {
				if got[s] != want[s] {
					t.Errorf("%s: Counts()[%s] = %d, the table has %d", when, s, got[s], want[s])
				}
			}
			for _, queue := range []string{"default", "other"} {
				want := jobsPerState(t, b, queue)
				q := queueInfo(t, b.eng, queue)
				for _, s := range jobs.States {
					if q.Counts[s] != want[s] {
						t.Errorf("%s: queue %s counts[%s] = %d, the table has %d", when, queue, s, q.Counts[s], want[s])
					}
				}
			}
		}
		check("empty")
		running := b.insert(t, testArgs{Name: "a"}, jobs.InsertOpts{})
		<-w.started
		b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{ScheduleIn: time.Hour, Queue: "other"})
		failed := b.insert(t, testArgs{kind: "fails"}, jobs.InsertOpts{Queue: "other", MaxAttempts: 2})
		b.waitState(t, failed, jobs.StateDiscarded)
		b.eng.PauseQueue(b.ctx, "other")
		b.insert(t, testArgs{Name: "waits"}, jobs.InsertOpts{Queue: "other"})
		check("one executing, one scheduled, one discarded, one available")
		if _, err := b.eng.RetryJob(b.ctx, failed); err != nil {
			t.Fatal(err)
		}
		check("after a retry")
		if _, err := b.eng.CancelJob(b.ctx, running); err != nil {
			t.Fatal(err)
		}
		check("after a cancel")
		if n, err := b.eng.DeleteJobs(b.ctx, []int64{failed, running}); err != nil || n != 2 {
			t.Fatalf("delete: %d %v", n, err)
		}
		check("after deletes")
		b.eng.PauseQueue(b.ctx, "default")
		close(w.release)
		// A raw UPDATE around the engine is not counted (migration 0011: the
		// engine counts its own state changes); Recount makes the counts exact.
		if _, err := b.st.Writer.ExecContext(b.ctx, "UPDATE jobs SET queue = 'default' WHERE queue = 'other'"); err != nil {
			t.Fatal(err)
		}
		if err := jobs.Recount(b.ctx, b.st.Writer); err != nil {
			t.Fatal(err)
		}
		check("after moving jobs to another queue and a recount")
	})
}

func jobsPerState(t *testing.T, b *bundle, queue string) map[jobs.State]int {
	t.Helper()
	rows, err := b.st.Reader.QueryContext(b.ctx,
		b.st.Reader.Rebind("SELECT state, count(*) FROM jobs WHERE ? = '' OR queue = ? GROUP BY state"), queue, queue)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[jobs.State]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		m[jobs.State(s)] = n
	}
	return m
}
