package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
)

// BenchmarkDrain measures draining no-op jobs with 50 workers (one op = one
// job), with the schema as migrated and without its write-side extras, to
// price them:
//
//	go test -run '^$' -bench Drain -benchtime 20000x ./jobs/
func BenchmarkDrain(b *testing.B) {
	variants := []struct {
		name string
		drop string
	}{
		{name: "schema", drop: ""},
		{name: "no-prune-index", drop: "DROP INDEX jobs_finished;"},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			st := openStore(b)
			if v.drop != "" {
				if _, err := st.Writer.Exec(v.drop); err != nil {
					b.Fatal(err)
				}
			}
			eng, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 50}, Backoff: jobs.FixedBackoff(0),
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := eng.Register(probeWorker{}); err != nil {
				b.Fatal(err)
			}
			took := drainAll(b, eng, jobs.InsertOpts{}, func(counts map[jobs.State]int) bool {
				if v.drop != "" {
					var n int
					st.Reader.Get(&n, "SELECT count(*) FROM jobs WHERE state = 'completed'")
					counts[jobs.StateCompleted] = n
				}
				return counts[jobs.StateCompleted] == b.N
			})
			b.ReportMetric(float64(b.N)/took.Seconds(), "jobs/s")
		})
	}
}

// BenchmarkRetries measures W2 of issue 3: jobs with 5 attempts and zero
// backoff whose attempts succeed with probability 1/5 by a hash of job id
// and attempt (one op = one job; attempts/s is the figure to compare):
//
//	go test -run '^$' -bench Retries -benchtime 10000x ./jobs/
func BenchmarkRetries(b *testing.B) {
	st := openStore(b)
	var attempts atomic.Int64
	eng, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 50}, Backoff: jobs.FixedBackoff(0),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	err = eng.Register(funcWorker{kind: "probe", fn: func(_ context.Context, j *jobs.Job) error {
		attempts.Add(1)
		if (uint64(j.ID)*2654435761+uint64(j.Attempt)*40503)%5 == 0 {
			return nil
		}
		return errors.New("no answer")
	}})
	if err != nil {
		b.Fatal(err)
	}
	took := drainAll(b, eng, jobs.InsertOpts{MaxAttempts: 5}, func(counts map[jobs.State]int) bool {
		return counts[jobs.StateCompleted]+counts[jobs.StateDiscarded] == b.N
	})
	b.ReportMetric(float64(attempts.Load())/took.Seconds(), "attempts/s")
}

// drainAll inserts b.N probe jobs with opts, then times the engine from its
// start until done says the counts show every job finished, and stops it.
func drainAll(b *testing.B, eng *jobs.Engine, opts jobs.InsertOpts, done func(map[jobs.State]int) bool) time.Duration {
	b.Helper()
	params := make([]jobs.InsertParams, b.N)
	for i := range params {
		params[i] = jobs.InsertParams{Args: probeArgs{N: int64(i)}, Opts: opts}
	}
	if _, err := eng.InsertMany(context.Background(), params); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if err := eng.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	for {
		counts, err := eng.Counts(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if done(counts) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	took := time.Since(start)
	eng.Stop(context.Background())
	return took
}
