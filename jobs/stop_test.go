package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

func TestStopWaitsForRunningJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		started := make(chan struct{})
		release := make(chan struct{})
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
			close(started)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
		id := b.insert(t, testArgs{Name: "slow"}, jobs.InsertOpts{})
		<-started

		stopped := make(chan error, 1)
		var stopReturned atomic.Bool
		go func() {
			err := b.eng.Stop(context.Background())
			stopReturned.Store(true)
			stopped <- err
		}()
		b.waitStopping(t, &stopReturned)
		if stopReturned.Load() {
			t.Fatalf("Stop returned (%v) while a job was still running", <-stopped)
		}
		// Released from another goroutine while Stop waits.
		go close(release)

		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("stop: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Stop did not return after the running job finished")
		}
		// Stop has returned, so the outcome must already be committed.
		j := b.get(t, id)
		if j.State != jobs.StateCompleted || j.Attempt != 1 || len(j.Errors) != 0 {
			t.Errorf("after Stop: state %s attempt %d errors %+v, want completed attempt 1", j.State, j.Attempt, j.Errors)
		}
	})
}

// TestStopCancelsJobsWhenContextEnds: when Stop's ctx ends, running jobs'
// contexts are cancelled; a worker that honours that returns, and its
// attempt, cut short by our own stop, is given back: the job is available
// again with its attempt not counted (not discarded, though it was its
// last), the interruption noted, and no "context canceled" failure.
func TestStopCancelsJobsWhenContextEnds(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		started := make(chan struct{})
		var ctxErr atomic.Value
		first := newEngine(t, st, clock, options{backoff: jobs.FixedBackoff(time.Hour)}, funcWorker{kind: "test", fn: func(ctx context.Context, _ *jobs.Job) error {
			close(started)
			<-ctx.Done()
			ctxErr.Store(ctx.Err())
			return fmt.Errorf("call dropped: %w", ctx.Err())
		}})
		b := &bundle{ctx: t.Context(), st: st, clock: clock, eng: first}
		id := b.insert(t, testArgs{Name: "stubborn but polite"}, jobs.InsertOpts{MaxAttempts: 1})
		<-started

		stopCtx, expire := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		var stopReturned atomic.Bool
		go func() {
			err := b.eng.Stop(stopCtx)
			stopReturned.Store(true)
			stopped <- err
		}()
		// The job cannot return before its context ends, and that needs
		// stopCtx to end: Stop must still be waiting.
		b.waitStopping(t, &stopReturned)
		if stopReturned.Load() {
			t.Fatalf("Stop returned (%v) while a job was running and its context was live", <-stopped)
		}
		expire()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("stop: %v, want nil (the job honoured cancellation)", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Stop did not return after its context ended")
		}
		if err, _ := ctxErr.Load().(error); !errors.Is(err, context.Canceled) {
			t.Errorf("the job's context ended with %v, want context.Canceled", err)
		}
		j := b.get(t, id)
		if j.State != jobs.StateAvailable || j.Attempt != 0 || len(j.Errors) != 1 ||
			!strings.Contains(j.Errors[0].Error, "interrupted") || strings.Contains(j.Errors[0].Error, context.Canceled.Error()) {
			t.Fatalf("after hard stop: state %s attempt %d errors %+v, want available, attempt given back, the interruption noted",
				j.State, j.Attempt, j.Errors)
		}
		if n := b.count(t, "SELECT n FROM job_counts WHERE queue = 'default' AND state = 'available'"); n != 1 {
			t.Errorf("job_counts: %d available, want 1", n)
		}
		// Its only attempt is still there: the next engine runs it.
		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		if j := b.waitState(t, id, jobs.StateCompleted); j.Attempt != 1 {
			t.Errorf("attempt %d, want 1", j.Attempt)
		}
	})
}

// TestStopGraceOverrun: Stop's ctx (the grace period) ends while a worker
// still runs. One that honours cancellation only slowly, but within the
// short wait after it, has its attempt given back and Stop returns nil; one
// that overruns that wait too is left executing, Stop returns an error in
// time, and the next start rescues it with its attempt given back.
func TestStopGraceOverrun(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		var started sync.WaitGroup
		started.Add(2)
		release := make(chan struct{})
		returned := make(chan string, 2)
		first := newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(ctx context.Context, j *jobs.Job) error {
			var args testArgs
			j.UnmarshalArgs(&args)
			started.Done()
			defer func() { returned <- args.Name }()
			switch args.Name {
			case "slow to stop":
				<-ctx.Done()
				time.Sleep(200 * time.Millisecond) // winding down
				return ctx.Err()
			default: // "overrun": ignores ctx
				<-release
				return nil
			}
		}})
		b := &bundle{ctx: t.Context(), st: st, clock: clock, eng: first}
		slow := b.insert(t, testArgs{Name: "slow to stop"}, jobs.InsertOpts{MaxAttempts: 1})
		overrun := b.insert(t, testArgs{Name: "overrun"}, jobs.InsertOpts{MaxAttempts: 1})
		started.Wait()

		const grace = 100 * time.Millisecond
		stopCtx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		begun := time.Now()
		err := first.Stop(stopCtx)
		took := time.Since(begun)
		t.Logf("Stop returned after %s", took)
		if err == nil || !strings.Contains(err.Error(), "left executing") {
			t.Errorf("Stop = %v, want an error naming the job left executing", err)
		}
		// The grace, then at most the engine's 2 s wait for cancelled jobs.
		if limit := grace + 2*time.Second + time.Second; took > limit {
			t.Errorf("Stop took %s, want under %s", took, limit)
		}
		if name := <-returned; name != "slow to stop" {
			t.Errorf("%q returned first", name)
		}
		if j := b.get(t, slow); j.State != jobs.StateAvailable || j.Attempt != 0 {
			t.Errorf("slow to stop: state %s attempt %d errors %+v, want available with its attempt given back", j.State, j.Attempt, j.Errors)
		}
		if j := b.get(t, overrun); j.State != jobs.StateExecuting || j.Attempt != 1 {
			t.Errorf("overrun: state %s attempt %d, want left executing on attempt 1", j.State, j.Attempt)
		}
		if n := b.count(t, "SELECT count(*) FROM job_nodes WHERE name = 'test-node'"); n != 1 {
			t.Errorf("%d node rows, want ours kept (a job is left executing)", n)
		}
		close(release)
		<-returned
		// The outcome of the overrun came after the recorder stopped: it is
		// not recorded; the next start rescues the job and gives the attempt
		// back (MaxAttempts 1: not discarded).
		if j := b.get(t, overrun); j.State != jobs.StateExecuting {
			t.Errorf("overrun after it returned: state %s, want still executing", j.State)
		}
		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		for _, id := range []int64{slow, overrun} {
			if j := b.waitState(t, id, jobs.StateCompleted); j.Attempt != 1 {
				t.Errorf("job %d: attempt %d, want 1 (the interrupted one given back)", id, j.Attempt)
			}
		}
	})
}

func TestStopLeavesJobThatIgnoresCancellation(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		started := make(chan struct{})
		release := make(chan struct{})
		first := newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			close(started)
			<-release // ignores ctx
			return nil
		}})
		b := &bundle{ctx: t.Context(), st: st, clock: clock, eng: first}
		id := b.insert(t, testArgs{Name: "deaf"}, jobs.InsertOpts{})
		<-started

		stopCtx, expire := context.WithCancel(context.Background())
		expire()
		if err := first.Stop(stopCtx); err == nil {
			t.Error("Stop returned nil although a job ignored cancellation")
		}
		close(release)
		if j := b.get(t, id); j.State != jobs.StateExecuting {
			t.Fatalf("state = %s, want executing (left for the next start to rescue)", j.State)
		}

		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		j := b.waitState(t, id, jobs.StateCompleted)
		if j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "interrupted") {
			t.Errorf("attempt %d errors %+v, want attempt 1 after one interruption", j.Attempt, j.Errors)
		}
	})
}
