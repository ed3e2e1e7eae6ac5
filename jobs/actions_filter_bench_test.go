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

	"github.com/phonehome/phonehome/internal/jobfill"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// fillMillion writes rows jobs in one statement, the mix of the jobs
// dashboard's benchmark without its rare kind, and one job in seven tagged
// campaign.
func fillMillion(tb testing.TB, st *store.Store, rows int) {
	tb.Helper()
	mix := jobfill.Dashboard
	mix.RareKind, mix.TagEvery = "", 7
	if err := jobfill.Fill(context.Background(), st, rows, mix); err != nil {
		tb.Fatal(err)
	}
	if err := jobs.Recount(context.Background(), st.Writer); err != nil {
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
