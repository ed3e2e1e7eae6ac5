// Package loop is the one goroutine of a part that runs in the background
// (a feed, the stats collector), with the lifecycle every such part shares:
// Start runs it once; Stop ends it and waits, at most until ctx ends. Every
// is the periodic loop such a goroutine runs.
package loop

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Loop runs one goroutine. The zero Loop is ready to Start.
type Loop struct {
	mu      sync.Mutex
	started bool
	stopped bool
	done    chan struct{}
	exited  chan struct{}
}

// Start runs run in a goroutine of its own; run returns when done closes.
// A second Start, or a Start after Stop, does nothing.
func (l *Loop) Start(run func(done <-chan struct{})) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.stopped {
		return
	}
	l.started = true
	l.done, l.exited = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.exited)
		run(l.done)
	}()
}

// Stop closes done and waits for run to return, at most until ctx ends. It
// is safe to call more than once, and without Start.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	wasRunning := l.started && !l.stopped
	l.stopped = true
	if !wasRunning {
		l.mu.Unlock()
		return nil
	}
	close(l.done)
	exited := l.exited
	l.mu.Unlock()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Signal wakes whoever waits on c without blocking: c has room for one
// wake-up, and one is enough however many changes it stands for.
func Signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Every calls tick with the time of each tick, every interval, until done
// closes: the periodic loop of a background part. A tick that runs long
// delays the next one rather than queueing ticks behind it (time.Ticker).
func Every(done <-chan struct{}, interval time.Duration, tick func(now time.Time)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			tick(now)
		}
	}
}

// Outage logs the outages of a background part's repeated step: the first
// failure of an outage as a warning with its error, and the first success
// after it as information. The failures in between, and a failure while
// ctx is cancelled (the part stopping), are not logged. The zero Outage
// (with Log, Failed and Recovered set) starts with no outage; it is used by
// the one goroutine that runs the step.
type Outage struct {
	// Log receives the two messages.
	Log *slog.Logger
	// Failed is the warning at an outage's start; Recovered the
	// information at its end.
	Failed, Recovered string

	failing bool
}

// Record notes the result of one run of the step.
func (o *Outage) Record(ctx context.Context, err error) {
	switch {
	case err != nil && !o.failing && ctx.Err() == nil:
		o.failing = true
		o.Log.Warn(o.Failed, "err", err)
	case err == nil && o.failing:
		o.failing = false
		o.Log.Info(o.Recovered)
	}
}
