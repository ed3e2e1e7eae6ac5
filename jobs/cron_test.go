package jobs_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// cronArgs are the args of the periodic test job.
type cronArgs struct {
	Report string `json:"report"`
}

func (cronArgs) Kind() string { return "cron" }

var everyMinute = jobs.PeriodicJob{Spec: "* * * * *", Args: cronArgs{Report: "minutely"}, Opts: jobs.InsertOpts{Queue: "reports", Priority: 3}}

func cronOptions(node string, periodic ...jobs.PeriodicJob) options {
	return options{queues: map[string]int{"default": 1}, configure: func(c *jobs.Config) {
		c.Node = node
		c.Periodic = periodic
	}}
}

// cronJobs returns the scheduled_at of every cron job, in id order.
func (b *bundle) cronJobs(t *testing.T) []time.Time {
	t.Helper()
	var ms []int64
	if err := b.st.Reader.SelectContext(b.ctx, &ms, "SELECT scheduled_at FROM jobs WHERE kind = 'cron' ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	out := make([]time.Time, len(ms))
	for i, m := range ms {
		out[i] = time.UnixMilli(m).UTC()
	}
	return out
}

func TestPeriodicJobInsertedOncePerSlot(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be) // the clock at 03:04:05
		// Two nodes with the same periodic job on one database.
		b.eng = newEngine(t, b.st, b.clock, cronOptions("node-a", everyMinute))
		newEngine(t, b.st, b.clock, cronOptions("node-b", everyMinute))

		b.probePolls(t, "default", 2)
		if got := b.cronJobs(t); len(got) != 0 {
			t.Fatalf("cron jobs before the first slot: %v", got)
		}
		slot := time.Date(2030, 1, 2, 3, 5, 0, 0, time.UTC)
		b.clock.Advance(slot.Sub(t0) - time.Millisecond)
		b.probePolls(t, "default", 2)
		if got := b.cronJobs(t); len(got) != 0 {
			t.Fatalf("cron jobs a millisecond before the slot: %v", got)
		}
		b.clock.Advance(time.Millisecond)
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) == 1 })
		b.probePolls(t, "default", 3)
		if got := b.cronJobs(t); len(got) != 1 || !got[0].Equal(slot) {
			t.Fatalf("cron jobs for the 03:05 slot on two nodes: %v, want one at %v", got, slot)
		}
		if list := b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'cron' AND queue = 'reports' AND priority = 3"); list != 1 {
			t.Errorf("the cron job lacks its options")
		}

		b.clock.Advance(time.Minute)
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) == 2 })
		b.probePolls(t, "default", 3)
		if got := b.cronJobs(t); len(got) != 2 {
			t.Errorf("cron jobs after two slots: %v, want 2", got)
		}
	})
}

// TestPeriodicSlotSurvivesRestart: a node started later with a clock
// behind (a restart, or clock skew) does not insert a slot again.
func TestPeriodicSlotSurvivesRestart(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be)
		st, clock := b.st, b.clock
		first := newEngine(t, st, clock, cronOptions("node-a", everyMinute))
		clock.Advance(55 * time.Second) // 03:05:00
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) == 1 })
		if err := first.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}

		behind := &fakeClock{now: t0.Add(50 * time.Second)} // 03:04:55
		b.clock = behind
		b.eng = newEngine(t, st, behind, cronOptions("node-a", everyMinute))
		behind.Advance(5 * time.Second) // its 03:05 slot comes again
		b.probePolls(t, "default", 3)
		if got := b.cronJobs(t); len(got) != 1 {
			t.Fatalf("cron jobs after the restart: %v, want still 1", got)
		}
		behind.Advance(time.Minute)
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) == 2 })
	})
}

func TestPeriodicSpecValidation(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		tests := []struct {
			name string
			p    jobs.PeriodicJob
			ok   bool
		}{
			{name: "five fields", p: jobs.PeriodicJob{Spec: "*/5 * * * *", Args: cronArgs{}}, ok: true},
			{name: "descriptor", p: jobs.PeriodicJob{Spec: "@hourly", Args: cronArgs{}}, ok: true},
			{name: "time zone", p: jobs.PeriodicJob{Spec: "CRON_TZ=Europe/Paris 0 9 * * *", Args: cronArgs{}}, ok: true},
			{name: "every", p: jobs.PeriodicJob{Spec: "@every 1m", Args: cronArgs{}}},
			{name: "six fields", p: jobs.PeriodicJob{Spec: "0 * * * * *", Args: cronArgs{}}},
			{name: "garbage", p: jobs.PeriodicJob{Spec: "soon", Args: cronArgs{}}},
			{name: "no args", p: jobs.PeriodicJob{Spec: "@daily"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := jobs.New(st.Writer, jobs.Config{Periodic: []jobs.PeriodicJob{tt.p}, Logger: slog.New(slog.DiscardHandler)})
				if (err == nil) != tt.ok {
					t.Errorf("New with spec %q: err %v, want ok=%v", tt.p.Spec, err, tt.ok)
				}
			})
		}
	})
}
