package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// What -sync full costs, on the engine alone and on the whole campaign
// (one op = one job; the same figures are in BENCHMARKS.md):
//
//	go test -run '^$' -bench 'Sync' -benchtime 20000x -count 3 .
var syncModes = []store.Sync{store.SyncNormal, store.SyncFull}

// BenchmarkDrainSync drains no-op jobs with 50 workers (W1's shape).
func BenchmarkDrainSync(b *testing.B) {
	for _, mode := range syncModes {
		b.Run(string(mode), func(b *testing.B) {
			ctx := context.Background()
			st, err := store.OpenWith(ctx, filepath.Join(b.TempDir(), "w1.db"), store.Options{Sync: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			eng, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 50},
				Backoff: jobs.FixedBackoff(0), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := eng.Register(noopWorker{}); err != nil {
				b.Fatal(err)
			}
			params := make([]jobs.InsertParams, b.N)
			for i := range params {
				params[i] = jobs.InsertParams{Args: noopArgs{N: i}}
			}
			if _, err := eng.InsertMany(ctx, params); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			if err := eng.Start(ctx); err != nil {
				b.Fatal(err)
			}
			waitUntilDone(b, func() (bool, error) {
				counts, err := eng.Counts(ctx)
				return counts[jobs.StateCompleted] == b.N, err
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
			b.StopTimer()
			_ = eng.Stop(ctx)
		})
	}
}

// BenchmarkCampaignSync runs Phone Home on b.N extraterrestrials through
// the real server, every call answered at once, from the POST until the
// database says every row is home.
func BenchmarkCampaignSync(b *testing.B) {
	for _, mode := range syncModes {
		b.Run(string(mode), func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "campaign.db")
			ctx := context.Background()
			st, _, err := openMigrated(ctx, path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := st.GenerateExtraterrestrials(ctx, b.N); err != nil {
				b.Fatal(err)
			}
			st.Close()
			app, err := NewApp(ctx, Config{Addr: "127.0.0.1:0", DB: path, Sync: mode, AnswerRate: 1,
				Backoff: jobs.FixedBackoff(0), Poll: time.Second, Grace: 5 * time.Second},
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- app.Run(runCtx) }()
			defer func() { cancel(); <-done }()

			b.ResetTimer()
			start := time.Now()
			resp, err := http.Post(app.URL()+"/api/phone-home", "application/json", nil)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("POST /api/phone-home: %v %v", resp, err)
			}
			resp.Body.Close()
			waitUntilDone(b, func() (bool, error) {
				var home int
				err := app.store.Reader.Get(&home,
					"SELECT count(*) FROM extraterrestrials WHERE communication_status = 'space_taxi_on_the_way'")
				return home == b.N, err
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// waitUntilDone polls done every millisecond for up to ten minutes.
func waitUntilDone(b *testing.B, done func() (bool, error)) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ok, err := done()
		if err != nil {
			b.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("not done within 10 minutes")
		}
		time.Sleep(time.Millisecond)
	}
}

type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct{}

func (noopWorker) Kind() string                          { return "noop" }
func (noopWorker) Work(context.Context, *jobs.Job) error { return nil }
