package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// logWatch is a slog handler that keeps the messages it is given, so a
// test can wait for the engine to say it did something (here: skip a slot)
// instead of sleeping.
type logWatch struct {
	mu   sync.Mutex
	msgs []string
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *logWatch) WithGroup(string) slog.Handler            { return w }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}

// count is how many times msg was logged.
func (w *logWatch) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

const slotSkipped = "periodic job paused: slot skipped"

func watchedCron(node string, w *logWatch, periodic ...jobs.PeriodicJob) options {
	o := cronOptions(node, periodic...)
	o.configure = func(c *jobs.Config) {
		c.Node = node
		c.Periodic = periodic
		c.Logger = slog.New(w)
	}
	return o
}

// TestPausedCronSkipsSlotsAcrossARestart: a paused entry's slots are
// skipped, also by an engine started after the pause (it is stored), and
// a resumed entry inserts from its next slot on, without making up for the
// skipped ones.
func TestPausedCronSkipsSlotsAcrossARestart(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be) // the clock at 03:04:05
		w := &logWatch{}
		first := newEngine(t, b.st, b.clock, watchedCron("node-a", w, everyMinute))
		if err := first.PauseCron(b.ctx, "cron"); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(55 * time.Second) // the 03:05 slot
		waitFor(t, waitTimeout, func() bool { return w.count(slotSkipped) == 1 })
		if got := b.cronJobs(t); len(got) != 0 {
			t.Fatalf("a paused entry inserted %v", got)
		}
		if err := first.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}

		// A restart: the new engine knows of the pause only from the database.
		w2 := &logWatch{}
		b.eng = newEngine(t, b.st, b.clock, watchedCron("node-a", w2, everyMinute))
		entries, err := b.eng.CronEntries(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || !entries[0].Paused || entries[0].NextRunAt != nil || entries[0].LastRunAt != nil {
			t.Fatalf("entries after the restart: %+v, want one paused, never run, no next run", entries)
		}
		b.clock.Advance(time.Minute) // 03:06
		waitFor(t, waitTimeout, func() bool { return w2.count(slotSkipped) == 1 })
		if got := b.cronJobs(t); len(got) != 0 {
			t.Fatalf("a paused entry inserted %v after a restart", got)
		}

		if err := b.eng.ResumeCron(b.ctx, "cron"); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(time.Minute) // 03:07
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) == 1 })
		slot := time.Date(2030, 1, 2, 3, 7, 0, 0, time.UTC)
		if got := b.cronJobs(t); !got[0].Equal(slot) {
			t.Errorf("resumed entry's job at %v, want its next slot %v", got[0], slot)
		}
		entries, err = b.eng.CronEntries(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		e := entries[0]
		if e.Paused || e.LastRunAt == nil || !e.LastRunAt.Equal(slot) || e.NextRunAt == nil || !e.NextRunAt.Equal(slot.Add(time.Minute)) || len(e.Recent) != 1 {
			t.Errorf("entry after its run: %+v, want running, last run %v, next %v, one recent job", e, slot, slot.Add(time.Minute))
		}
		if w2.count(slotSkipped) != 1 {
			t.Errorf("a resumed entry still skipped slots")
		}
	})
}

// TestRunCronInsertsNowOutsideTheSchedule: Run now inserts one job now,
// also for a paused entry, and leaves the schedule's slots as they were.
func TestRunCronInsertsNowOutsideTheSchedule(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be) // the clock at 03:04:05
		w := &logWatch{}
		b.eng = newEngine(t, b.st, b.clock, watchedCron("node-a", w, everyMinute))
		changed := make(chan []int64, 8)
		defer b.eng.Subscribe(func(ids []int64) { changed <- ids })()

		if err := b.eng.PauseCron(b.ctx, "cron"); err != nil {
			t.Fatal(err)
		}
		res, err := b.eng.RunCron(b.ctx, "cron")
		if err != nil || res.Duplicate || res.ID == 0 {
			t.Fatalf("run now: %+v, %v", res, err)
		}
		if got := b.cronJobs(t); len(got) != 1 || !got[0].Equal(t0) {
			t.Fatalf("jobs after run now: %v, want one at %v", got, t0)
		}
		select {
		case ids := <-changed:
			if len(ids) != 1 || ids[0] != res.ID {
				t.Errorf("subscribers heard of %v, want [%d]", ids, res.ID)
			}
		case <-time.After(waitTimeout):
			t.Fatal("subscribers did not hear of the job run now")
		}
		entries, err := b.eng.CronEntries(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e := entries[0]; e.LastRunAt == nil || !e.LastRunAt.Equal(t0) || len(e.Recent) != 1 || e.Recent[0] != res.ID || !e.Paused {
			t.Errorf("entry after run now: %+v", e)
		}
		// Resumed, the 03:05 slot still comes: run now did not claim it.
		if err := b.eng.ResumeCron(b.ctx, "cron"); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(55 * time.Second)
		waitFor(t, waitTimeout, func() bool { return len(b.cronJobs(t)) == 2 })

		if _, err := b.eng.RunCron(b.ctx, "nope"); !errors.Is(err, jobs.ErrUnknownCron) {
			t.Errorf("run an unknown entry: %v, want ErrUnknownCron", err)
		}
		if err := b.eng.PauseCron(b.ctx, "nope"); !errors.Is(err, jobs.ErrUnknownCron) {
			t.Errorf("pause an unknown entry: %v, want ErrUnknownCron", err)
		}
	})
}

// TestRunCronUniqueDuplicate: an entry with unique options run twice while
// its first job is in flight inserts nothing the second time and names the
// job in the way.
func TestRunCronUniqueDuplicate(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := bare(t, be)
		st, clock := b.st, b.clock
		unique := jobs.PeriodicJob{Name: "nightly.report", Spec: "@daily", Args: cronArgs{Report: "daily"},
			Opts: jobs.InsertOpts{Queue: "reports", Unique: true}}
		b.eng = newEngine(t, st, clock, cronOptions("node-a", unique))
		first, err := b.eng.RunCron(b.ctx, "nightly.report")
		if err != nil || first.Duplicate {
			t.Fatalf("first run: %+v %v", first, err)
		}
		second, err := b.eng.RunCron(b.ctx, "nightly.report")
		if err != nil || !second.Duplicate || second.ID != first.ID {
			t.Fatalf("second run: %+v %v, want a duplicate of %d", second, err, first.ID)
		}
		if got := b.cronJobs(t); len(got) != 1 {
			t.Errorf("jobs: %v, want 1", got)
		}
	})
}

func TestCronNames(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		a := jobs.PeriodicJob{Spec: "@hourly", Args: cronArgs{Report: "a"}}
		b := jobs.PeriodicJob{Spec: "@daily", Args: cronArgs{Report: "b"}, Description: "the daily one"}
		c := jobs.PeriodicJob{Name: "weekly", Spec: "@weekly", Args: cronArgs{Report: "c"}}
		eng := newEngine(t, st, clock, cronOptions("node-a", a, b, c))
		entries, err := eng.CronEntries(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name)
		}
		if strings.Join(names, " ") != "cron cron-2 weekly" || entries[1].Description != "the daily one" || entries[0].Queue != "default" {
			t.Errorf("entries: %+v, want names cron, cron-2, weekly", entries)
		}
		for _, bad := range []string{"has space", "slash/y", strings.Repeat("x", 101), "<b>"} {
			_, err := jobs.New(st.Writer, jobs.Config{Periodic: []jobs.PeriodicJob{{Name: bad, Spec: "@daily", Args: cronArgs{}}},
				Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				t.Errorf("name %q accepted", bad)
			}
		}
	})
}

func TestDescribeSpec(t *testing.T) {
	t.Parallel()
	for spec, want := range map[string]string{
		"0 9 * * *":                      "every day at 09:00 UTC",
		"@daily":                         "every day at 00:00 UTC",
		"@hourly":                        "every hour at minute 00 UTC",
		"30 * * * *":                     "every hour at minute 30 UTC",
		"* * * * *":                      "every minute UTC",
		"*/5 * * * *":                    "every 5 minutes UTC",
		"15 */2 * * *":                   "every 2 hours at minute 15 UTC",
		"30 3 * * 1-5":                   "at 03:30 on Monday to Friday UTC",
		"0 8 * * 6,0":                    "at 08:00 on Saturday and Sunday UTC",
		"0 0 1 * *":                      "at 00:00 on day 1 of the month UTC",
		"@yearly":                        "at 00:00 on day 1 of the month in January UTC",
		"CRON_TZ=Europe/Paris 0 9 * * *": "every day at 09:00 Europe/Paris",
		"1,2 3-4 * * *":                  "at minute 1,2 of hour 3-4 UTC",
		"soon":                           "soon",
		"":                               "",
	} {
		if got := jobs.DescribeSpec(spec); got != want {
			t.Errorf("DescribeSpec(%q) = %q, want %q", spec, got, want)
		}
	}
}
