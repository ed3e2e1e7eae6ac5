package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// fillMillion writes rows jobs in one statement, the mix of bench/dash.go's
// fillJobs: 90 % completed, 4 % discarded (with an error), 2 % available,
// 1.5 % retryable, 1.5 % scheduled, 0.9 % cancelled, 0.1 % executing; three
// queues; five kinds.
func fillMillion(tb testing.TB, st *store.Store, rows int) {
	tb.Helper()
	now := time.Now().UnixMilli()
	_, err := st.Writer.Exec(`
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1),
g AS (SELECT x, x % 1000 AS b, ?2 - (?1 - x) * 10 AS t FROM c)
INSERT INTO jobs (id, state, queue, kind, args, priority, attempt, max_attempts, errors, tags,
                  inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, cancelled_at, discarded_at)
SELECT x,
  CASE WHEN b < 900 THEN 'completed' WHEN b < 940 THEN 'discarded' WHEN b < 960 THEN 'available'
       WHEN b < 975 THEN 'retryable' WHEN b < 990 THEN 'scheduled' WHEN b < 999 THEN 'cancelled'
       ELSE 'executing' END,
  CASE x % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'phone_calls' ELSE 'mailers' END,
  CASE x % 5 WHEN 0 THEN 'speak_and_spell' WHEN 1 THEN 'send_email' WHEN 2 THEN 'resize_image'
       WHEN 3 THEN 'sync_account' ELSE 'bench' END,
  json_object('n', x, 'to', 'user' || (x % 9973) || '@example.com'),
  x % 10,
  CASE WHEN b < 900 THEN 1 WHEN b < 940 THEN 5 WHEN b < 960 THEN 0 ELSE 2 END,
  5,
  CASE WHEN b >= 900 AND b < 940 THEN json_array(json_object('attempt', 5, 'at', '2026-11-22T10:00:00Z',
       'error', 'no answer')) ELSE '[]' END,
  CASE WHEN x % 7 = 0 THEN '["campaign"]' ELSE '[]' END,
  t,
  CASE WHEN b >= 975 AND b < 990 THEN t + 3600000 ELSE t END,
  CASE WHEN b >= 940 AND b < 960 THEN NULL ELSE t + 5 END,
  CASE WHEN b >= 940 AND b < 960 THEN NULL ELSE 'bench/1' END,
  CASE WHEN b < 900 THEN t + 7 END,
  CASE WHEN b >= 990 AND b < 999 THEN t + 7 END,
  CASE WHEN b >= 900 AND b < 940 THEN t + 7 END
FROM g`, rows, now)
	if err != nil {
		tb.Fatal(err)
	}
	if err := jobs.Recount(context.Background(), st.Writer); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Writer.Exec("ANALYZE"); err != nil {
		tb.Fatal(err)
	}
}

type liveArgs struct{ N int }

func (liveArgs) Kind() string { return "live" }

// TestActOnFilterAtScale measures an action on a filter at
// $PHONEHOME_BULK_JOBS jobs (skipped when unset; 1000000 for the README's
// figures): "retry all discarded in phone_calls" and "cancel all retryable
// and scheduled" while a worker runs a stream of small jobs (one inserted
// every 2 ms), and reports how long each batch held the writer and how
// long the worker's jobs took from insert to completion before and during
// the action.
//
//	PHONEHOME_BULK_JOBS=1000000 go test -run TestActOnFilterAtScale -v ./jobs/
func TestActOnFilterAtScale(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("PHONEHOME_BULK_JOBS"))
	if rows == 0 {
		t.Skip("set PHONEHOME_BULK_JOBS (e.g. 1000000) to measure")
	}
	st := listStore(t)
	t0 := time.Now()
	fillMillion(t, st, rows)
	t.Logf("filled %d jobs in %v", rows, time.Since(t0).Round(time.Millisecond))

	var mu sync.Mutex
	var lat []time.Duration
	recording := false
	e, err := jobs.New(st.Writer, jobs.Config{
		Reader: st.Reader, Queues: map[string]int{"live": 10}, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), PruneAfter: -1,
		OnEvent: func(ev jobs.Event) {
			if ev.Kind == jobs.EventStop && ev.Job.Kind == "live" {
				mu.Lock()
				if recording {
					lat = append(lat, ev.At.Sub(ev.Job.InsertedAt))
				}
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Register(funcWorker{kind: "live", fn: func(ctx context.Context, j *jobs.Job) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	stop := make(chan struct{})
	var producer sync.WaitGroup
	producer.Add(1)
	go func() {
		defer producer.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := e.Insert(ctx, liveArgs{N: n}, jobs.InsertOpts{Queue: "live"}); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	window := func(d time.Duration, during func()) []time.Duration {
		mu.Lock()
		lat, recording = nil, true
		mu.Unlock()
		if during != nil {
			during()
		} else {
			time.Sleep(d)
		}
		mu.Lock()
		defer mu.Unlock()
		recording = false
		out := slices.Clone(lat)
		slices.Sort(out)
		return out
	}
	report := func(name string, l []time.Duration) {
		if len(l) == 0 {
			t.Logf("%s: no live job finished", name)
			return
		}
		t.Logf("%s: %d live jobs, insert→completed p50 %v, p99 %v, max %v", name, len(l),
			l[len(l)/2].Round(time.Microsecond), l[len(l)*99/100].Round(time.Microsecond), l[len(l)-1].Round(time.Microsecond))
	}
	time.Sleep(500 * time.Millisecond) // the queue warm
	report("before (3 s, no action)", window(3*time.Second, nil))
	for _, tc := range []struct {
		a jobs.FilterAction
		f jobs.Filter
	}{
		{jobs.FilterRetry, jobs.Filter{States: []jobs.State{jobs.StateDiscarded}, Queue: "phone_calls"}},
		{jobs.FilterCancel, jobs.Filter{States: []jobs.State{jobs.StateRetryable, jobs.StateScheduled}}},
		{jobs.FilterDelete, jobs.Filter{States: []jobs.State{jobs.StateCompleted}, Kind: "bench", Terms: mustTerms(t, "tag:campaign")}},
	} {
		tc0 := time.Now()
		n, err := e.CountFilter(ctx, tc.a, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		count := time.Since(tc0)
		var res jobs.FilterProgress
		var took time.Duration
		l := window(0, func() {
			t1 := time.Now()
			res, err = e.ActOnFilter(ctx, tc.a, tc.f, jobs.FilterOptions{})
			took = time.Since(t1)
		})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%s %+v", tc.a, tc.f)
		t.Logf("%s: counted %d in %v; changed %d in %v, %d batches, writer held max %v, mean %v",
			name, n, count.Round(time.Microsecond), res.Changed, took.Round(time.Millisecond), res.Batches,
			res.MaxHold.Round(time.Microsecond), (res.TotalHold / time.Duration(max(res.Batches, 1))).Round(time.Microsecond))
		report("  during it", l)
		if res.Changed != n {
			t.Errorf("%s: changed %d, counted %d", name, res.Changed, n)
		}
	}
	close(stop)
	producer.Wait()
}

func mustTerms(t *testing.T, q string) []jobs.SearchTerm {
	t.Helper()
	terms, err := jobs.ParseSearch(q)
	if err != nil {
		t.Fatal(err)
	}
	return terms
}
