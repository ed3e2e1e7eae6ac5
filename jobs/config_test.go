// Building and configuring an engine: workers, queues, maintenance
// settings, backoff specs.
package jobs_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

func TestRegister(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		eng, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 1}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Stop(context.Background()) })
		noop := func(context.Context, *jobs.Job) error { return nil }

		if err := eng.Register(funcWorker{kind: "a", fn: noop}); err != nil {
			t.Fatalf("first registration: %v", err)
		}
		if err := eng.Register(funcWorker{kind: "a", fn: noop}); err == nil {
			t.Error("registering kind a twice succeeded, want an error")
		}
		if err := eng.Register(funcWorker{kind: "b", fn: noop}); err != nil {
			t.Errorf("registering kind b: %v", err)
		}
		if err := eng.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := eng.Register(funcWorker{kind: "c", fn: noop}); err == nil {
			t.Error("registering after Start succeeded, want an error")
		}
	})
}

func TestNewRejectsBadQueues(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		tests := []struct {
			name   string
			queues map[string]int
		}{
			{name: "zero limit", queues: map[string]int{"q": 0}},
			{name: "negative limit", queues: map[string]int{"q": -1}},
			{name: "empty name", queues: map[string]int{"": 1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := jobs.New(st.Writer, jobs.Config{Queues: tt.queues}); err == nil {
					t.Errorf("New accepted queues %v", tt.queues)
				}
			})
		}
	})
}

// TestStartAfterFailedStart: Start documents that it rescues and then runs
// the queues; a Start that failed (here: its rescue, with an ended context)
// must not make a later Start report success while doing neither.
func TestStartAfterFailedStart(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		id := b.insert(t, testArgs{Name: "left executing"}, jobs.InsertOpts{})
		if _, err := b.st.Writer.ExecContext(b.ctx, b.st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = 1 WHERE id = ?"), id); err != nil {
			t.Fatal(err)
		}

		ended, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.eng.Start(ended); err == nil {
			t.Fatal("Start with an ended context succeeded, want the rescue's error")
		}
		// The job being executing right after Start proves nothing (a queue
		// may have claimed it again at once); completing proves both the
		// rescue and a running queue.
		if err := b.eng.Start(b.ctx); err == nil {
			b.waitState(t, id, jobs.StateCompleted)
		}
	})
}

func TestParseBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantErr bool
		fixed   time.Duration // when not oban
		oban    bool
	}{
		{name: "oban", in: "oban", oban: true},
		{name: "oban any case", in: "Oban", oban: true},
		{name: "zero", in: "0s", fixed: 0},
		{name: "milliseconds", in: "200ms", fixed: 200 * time.Millisecond},
		{name: "seconds", in: "30s", fixed: 30 * time.Second},
		{name: "negative", in: "-1s", wantErr: true},
		{name: "word", in: "soon", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bo, err := jobs.ParseBackoff(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Errorf("ParseBackoff(%q) succeeded, want an error", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBackoff(%q): %v", tt.in, err)
			}
			for attempt := 1; attempt <= 8; attempt++ {
				got := bo(attempt)
				if tt.oban {
					checkObanRange(t, attempt, got)
				} else if got != tt.fixed {
					t.Errorf("attempt %d: backoff %s, want %s", attempt, got, tt.fixed)
				}
			}
		})
	}
}

// checkObanRange checks 15 s + 2^attempt s, plus at most 10 %.
func checkObanRange(t *testing.T, attempt int, got time.Duration) {
	t.Helper()
	base := time.Duration(15+1<<min(attempt, 20)) * time.Second
	if got < base || float64(got) > 1.1*float64(base) {
		t.Errorf("attempt %d: backoff %s outside [%s, %s]", attempt, got, base, time.Duration(1.1*float64(base)))
	}
}

func TestObanBackoff(t *testing.T) {
	t.Parallel()
	a := jobs.ObanBackoff(rand.New(rand.NewPCG(1, 2)))
	b := jobs.ObanBackoff(rand.New(rand.NewPCG(1, 2)))
	jittered := false
	for _, attempt := range []int{1, 2, 3, 4, 5, 10, 20, 25, 100} {
		got := a(attempt)
		checkObanRange(t, attempt, got)
		if again := b(attempt); again != got {
			t.Errorf("attempt %d: same seed gave %s and %s", attempt, got, again)
		}
		if got != time.Duration(15+1<<min(attempt, 20))*time.Second {
			jittered = true
		}
	}
	if !jittered {
		t.Error("no jitter in any backoff")
	}
	// The first retries are about 17, 19, 23 and 31 s apart.
	for attempt, want := range map[int]time.Duration{1: 17 * time.Second, 2: 19 * time.Second, 3: 23 * time.Second, 4: 31 * time.Second} {
		if got := a(attempt); got < want || float64(got) > 1.1*float64(want) {
			t.Errorf("attempt %d: %s, want about %s", attempt, got, want)
		}
	}
}

func TestNewRejectsBadMaintenanceSettings(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		_, err := jobs.New(st.Writer, jobs.Config{HeartbeatInterval: time.Minute, NodeTimeout: time.Minute})
		if err == nil {
			t.Error("New accepted a node timeout shorter than two heartbeats")
		}
	})
}
