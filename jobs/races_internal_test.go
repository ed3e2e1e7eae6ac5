package jobs

// Races that need to stop the engine at one precise point: these tests live
// inside the package to reach the afterClaim step and loadQueueSettings.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// raceArgs are the jobs of these tests; Block makes the worker wait.
type raceArgs struct {
	Block bool `json:"block"`
}

func (raceArgs) Kind() string { return "race" }

type raceWorker struct {
	fn func(ctx context.Context, j *Job) error
}

func (raceWorker) Kind() string                             { return "race" }
func (w raceWorker) Work(ctx context.Context, j *Job) error { return w.fn(ctx, j) }

func newRaceEngine(t *testing.T, st *store.Store, w Worker) *Engine {
	t.Helper()
	e, err := New(st.Writer, Config{
		Queues:       map[string]int{"default": 5},
		PollInterval: 5 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
		Node:         "race-node",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Register(w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	return e
}

// startedRaceEngine is a started race engine, whose jobs complete at once,
// on a new database of be.
func startedRaceEngine(t *testing.T, be storetest.Backend) (*store.Store, *Engine) {
	t.Helper()
	st := be.Open(t)
	e := newRaceEngine(t, st, raceWorker{fn: func(context.Context, *Job) error { return nil }})
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st, e
}

func waitInternal(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

// TestCancelThenRetryRightAfterTheClaim: an operator cancels a job and
// retries it between its claim and the start of its worker. The first run
// must not go on beside the retried one: the cancel reaches it (it never
// starts, or its ctx ends), and the retry is refused while it is running
// here. At no time do two runs of the job overlap.
func TestCancelThenRetryRightAfterTheClaim(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		var running, overlaps, runs atomic.Int32
		release := make(chan struct{})
		e := newRaceEngine(t, st, raceWorker{fn: func(ctx context.Context, j *Job) error {
			var args raceArgs
			if err := j.UnmarshalArgs(&args); err != nil || !args.Block {
				return err
			}
			runs.Add(1)
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer running.Add(-1)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}})
		var once sync.Once
		var retryErr error
		e.afterClaim = func(ids []int64) {
			once.Do(func() {
				ctx := context.Background()
				if _, err := e.CancelJob(ctx, ids[0]); err != nil {
					t.Errorf("cancel: %v", err)
				}
				_, retryErr = e.RetryJob(ctx, ids[0])
			})
		}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		res, err := e.Insert(t.Context(), raceArgs{Block: true}, InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		// The first run is cancelled before it starts; its outcome is dropped.
		waitInternal(t, "the first run recorded", func() bool { return !e.isRunning(res.ID) })
		// Give any second claim every chance: the queue has free slots.
		for range 3 {
			p, err := e.Insert(t.Context(), raceArgs{}, InsertOpts{})
			if err != nil {
				t.Fatal(err)
			}
			waitInternal(t, "a later job claimed", func() bool {
				j, err := Get(t.Context(), st.Reader, p.ID)
				return err == nil && j.State != StateAvailable
			})
		}
		close(release)
		if !errors.Is(retryErr, ErrStateConflict) {
			t.Errorf("retry right after the cancel: %v, want ErrStateConflict (its worker is still here)", retryErr)
		}
		if n := overlaps.Load(); n != 0 {
			t.Errorf("%d overlapping runs of one job (%d runs)", n, runs.Load())
		}
		j, err := Get(t.Context(), st.Reader, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != StateCancelled || j.Attempt != 1 {
			t.Errorf("job %s attempt %d, want cancelled after its one claim", j.State, j.Attempt)
		}
	})
}

// TestPauseWhileSettingsLoad: a pause made while loadQueueSettings is
// between its read and its apply must not be undone by the stale read. Each
// round pauses (or resumes) while loads run in a loop; once the call has
// returned, the queue must stay as it said, through every later load.
func TestPauseWhileSettingsLoad(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st, e := startedRaceEngine(t, be)
		q := e.queues["default"]
		ctx := t.Context()
		stop := make(chan struct{})
		var loads sync.WaitGroup
		loads.Add(1)
		var loaded atomic.Int64
		go func() {
			defer loads.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := e.loadQueueSettings(ctx); err != nil {
					t.Error(err)
					return
				}
				loaded.Add(1)
			}
		}()
		paused := func() bool {
			q.mu.Lock()
			defer q.mu.Unlock()
			return q.paused
		}
		rounds := 400
		if st.Dialect == store.Postgres {
			rounds = 100 // each round is a few round trips to the server
		}
		wrong := 0
		for i := range rounds {
			want := i%2 == 0
			var err error
			if want {
				err = e.PauseQueue(ctx, "default")
			} else {
				err = e.ResumeQueue(ctx, "default")
			}
			if err != nil {
				t.Fatal(err)
			}
			// Through the next two whole loads, the setting must hold.
			until := loaded.Load() + 2
			for loaded.Load() < until {
				if paused() != want {
					wrong++
					break
				}
			}
		}
		close(stop)
		loads.Wait()
		if wrong > 0 {
			t.Errorf("in %d of %d rounds a load undid the pause or resume that had returned", wrong, rounds)
		}
	})
}

// TestRetryBetweenCommitAndForget: a job whose outcome has committed is
// still in the engine's running set until afterRecord forgets it, a moment
// later. A retry in that moment (an operator, or a test that just saw the
// job completed) must go through: only a job an operator cancelled while
// its worker runs is held back. The moment is made to last by putting the
// finished job's run back by hand.
func TestRetryBetweenCommitAndForget(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st, e := startedRaceEngine(t, be)
		res, err := e.Insert(t.Context(), raceArgs{}, InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		waitInternal(t, "the job completed and forgotten", func() bool {
			j, err := Get(t.Context(), st.Reader, res.ID)
			return err == nil && j.State == StateCompleted && !e.isRunning(res.ID)
		})
		e.register([]*Job{{ID: res.ID}}) // as between its commit and forget
		if _, err := e.RetryJob(t.Context(), res.ID); err != nil {
			t.Fatalf("retry a completed job not yet forgotten: %v", err)
		}
	})
}
