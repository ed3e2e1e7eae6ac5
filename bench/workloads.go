package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// workloadTimeout bounds one system's run of one workload; a system that
// has not finished by then is reported as timed out.
const workloadTimeout = 10 * time.Minute

// stopTimeout bounds a graceful stop.
const stopTimeout = time.Minute

func seq(n int) []int {
	ns := make([]int, n)
	for i := range ns {
		ns[i] = i
	}
	return ns
}

// drain starts q, waits until done is closed (or the timeout) and stops q
// gracefully. It returns the time from Start until Stop returned, when every
// outcome is written.
func drain(ctx context.Context, q queueImpl, done <-chan struct{}, progress func() string) (time.Duration, error) {
	t0 := time.Now()
	if err := q.Start(ctx); err != nil {
		return 0, fmt.Errorf("start: %w", err)
	}
	timer := time.NewTimer(workloadTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = q.Stop(stopCtx)
		return 0, fmt.Errorf("timed out after %s with %s", workloadTimeout, progress())
	}
	stopCtx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if err := q.Stop(stopCtx); err != nil {
		return 0, fmt.Errorf("stop: %w", err)
	}
	return time.Since(t0), nil
}

// checkDrained fails unless every job is finished in the database.
func checkDrained(ctx context.Context, q queueImpl) error {
	pending, err := q.Pending(ctx)
	if err != nil {
		return fmt.Errorf("count unfinished jobs: %w", err)
	}
	if pending != 0 {
		return fmt.Errorf("%d jobs still unfinished in the database after a graceful stop", pending)
	}
	return nil
}

// runW1 inserts n jobs in bulk and drains them with 50 workers running a
// no-op handler. It reports the insert time (s) and the drain rate (jobs/s).
func runW1(ctx context.Context, sys queueSystem, dir string, n int) (map[string]float64, error) {
	var worked atomic.Int64
	done := make(chan struct{})
	h := func(int, int) error {
		if worked.Add(1) == int64(n) {
			close(done)
		}
		return nil
	}
	q, err := sys.openFresh(ctx, dir, "w1", 5, h)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	t0 := time.Now()
	if err := q.InsertMany(ctx, seq(n)); err != nil {
		return nil, fmt.Errorf("bulk insert: %w", err)
	}
	insert := time.Since(t0)
	resetBatches(q)
	took, err := drain(ctx, q, done, func() string { return fmt.Sprintf("%d of %d jobs worked", worked.Load(), n) })
	if err != nil {
		return nil, err
	}
	if err := checkDrained(ctx, q); err != nil {
		return nil, err
	}
	if w := worked.Load(); w != int64(n) {
		return nil, fmt.Errorf("handler ran %d times for %d jobs", w, n)
	}
	m := map[string]float64{
		"insert_s":     insert.Seconds(),
		"insert_rate":  float64(n) / insert.Seconds(),
		"drain_rate":   float64(n) / took.Seconds(),
		"drain_s":      took.Seconds(),
		"jobs":         float64(n),
		"drain_worked": float64(worked.Load()),
	}
	batchMetrics(q, m)
	return m, nil
}

// expectedW2Attempts is how many attempts W2 makes in total for n jobs:
// the hash decides, so it is the same for every system.
func expectedW2Attempts(n, maxAttempts int) int {
	total := 0
	for j := range n {
		for a := 1; a <= maxAttempts; a++ {
			total++
			if succeeds(j, a) {
				break
			}
		}
	}
	return total
}

// runW2 inserts n jobs of at most 5 attempts and no backoff, each attempt
// succeeding with probability 1/5 by a hash of (job, attempt), and drains
// them. It reports attempts/s and the time to drain (s).
func runW2(ctx context.Context, sys queueSystem, dir string, n int) (map[string]float64, error) {
	const maxAttempts = 5
	var attempts, finished atomic.Int64
	var badAttempt atomic.Int64
	done := make(chan struct{})
	h := func(j, attempt int) error {
		attempts.Add(1)
		if attempt < 1 || attempt > maxAttempts {
			badAttempt.Store(int64(attempt))
		}
		ok := succeeds(j, attempt)
		if ok || attempt >= maxAttempts {
			if finished.Add(1) == int64(n) {
				close(done)
			}
		}
		if ok {
			return nil
		}
		return errNoAnswer
	}
	q, err := sys.openFresh(ctx, dir, "w2", maxAttempts, h)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	if err := q.InsertMany(ctx, seq(n)); err != nil {
		return nil, fmt.Errorf("bulk insert: %w", err)
	}
	resetBatches(q)
	took, err := drain(ctx, q, done, func() string {
		return fmt.Sprintf("%d of %d jobs finished, %d attempts", finished.Load(), n, attempts.Load())
	})
	if err != nil {
		return nil, err
	}
	if err := checkDrained(ctx, q); err != nil {
		return nil, err
	}
	if b := badAttempt.Load(); b != 0 {
		return nil, fmt.Errorf("a worker saw attempt number %d, outside 1…%d", b, maxAttempts)
	}
	want := expectedW2Attempts(n, maxAttempts)
	if got := attempts.Load(); got != int64(want) {
		return nil, fmt.Errorf("%d attempts made, %d expected", got, want)
	}
	m := map[string]float64{
		"attempt_rate": float64(attempts.Load()) / took.Seconds(),
		"drain_s":      took.Seconds(),
		"attempts":     float64(attempts.Load()),
	}
	batchMetrics(q, m)
	return m, nil
}

// W3's pause after each job is random, uniform in [w3GapMin, w3GapMin +
// w3GapSpread): long enough for the workers to be idle again and the
// previous outcome written, and spread over a whole 50 ms period so that
// no system's polling (River's is 50 ms) locks onto the inserts, as a fixed
// 20 ms gap did (River's p50 came out at 30.5 ms in every run). The gaps are
// drawn from a PCG seeded with w3Seed, so every system gets the same
// sequence within a run.
const (
	w3GapMin    = 10 * time.Millisecond
	w3GapSpread = 50 * time.Millisecond
)

// w3Gaps returns the count pauses of a W3 run drawn from seed.
func w3Gaps(seed uint64, count int) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 0x5eed_3a7))
	gaps := make([]time.Duration, count)
	for i := range gaps {
		gaps[i] = w3GapMin + time.Duration(rng.Int64N(int64(w3GapSpread)))
	}
	return gaps
}

// runW3 inserts one job at a time, count times, into a started queue with
// idle workers, and measures insert-to-start: from just before the insert
// call to the first line of the handler. It pauses between jobs for the
// random gaps drawn from seed (w3Gaps). It reports p50 and p99 in ms.
func runW3(ctx context.Context, sys queueSystem, dir string, count int, seed uint64) (map[string]float64, error) {
	started := make(chan time.Time, 1)
	h := func(int, int) error {
		select {
		case started <- time.Now():
		default:
		}
		return nil
	}
	q, err := sys.openFresh(ctx, dir, "w3", 5, h)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	if err := q.Start(ctx); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = q.Stop(stopCtx)
		}
	}()
	// Let the system settle (River elects a leader, every system runs its
	// first fetch) before measuring.
	time.Sleep(500 * time.Millisecond)
	const warmup = 3
	gaps := w3Gaps(seed, count+warmup)
	lat := make([]float64, 0, count)
	for i := range count + warmup {
		t0 := time.Now()
		if err := q.Insert(ctx, i); err != nil {
			return nil, fmt.Errorf("insert: %w", err)
		}
		select {
		case t := <-started:
			if i >= warmup {
				lat = append(lat, float64(t.Sub(t0))/float64(time.Millisecond))
			}
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("job %d did not start within 10 s of its insert", i)
		}
		time.Sleep(gaps[i])
	}
	stopped = true
	stopCtx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if err := q.Stop(stopCtx); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if err := checkDrained(ctx, q); err != nil {
		return nil, err
	}
	if len(lat) == 0 {
		return nil, errors.New("no latency measured")
	}
	return map[string]float64{
		"p50_ms": percentile(lat, 50),
		"p99_ms": percentile(lat, 99),
		"max_ms": percentile(lat, 100),
	}, nil
}
