package loop

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

func TestStartRunsOnceAndStopWaits(t *testing.T) {
	var l Loop
	if err := l.Stop(context.Background()); err != nil { // Stop without Start
		t.Fatal(err)
	}
	var m Loop
	runs := make(chan struct{}, 2)
	returned := make(chan struct{})
	run := func(done <-chan struct{}) {
		runs <- struct{}{}
		<-done
		close(returned)
	}
	m.Start(run)
	m.Start(run)
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	default:
		t.Fatal("Stop returned before the loop did")
	}
	if len(runs) != 1 {
		t.Errorf("%d runs, want 1", len(runs))
	}
	m.Start(run) // after Stop: nothing
	if err := m.Stop(context.Background()); err != nil || len(runs) != 1 {
		t.Errorf("Start after Stop ran again (%d runs), err %v", len(runs), err)
	}
}

func TestStopGivesUpWhenCtxEnds(t *testing.T) {
	var l Loop
	release := make(chan struct{})
	l.Start(func(<-chan struct{}) { <-release })
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := l.Stop(ctx); err != context.DeadlineExceeded {
		t.Errorf("Stop of a stuck loop = %v, want the deadline", err)
	}
}

func TestEveryTicksUntilDone(t *testing.T) {
	done := make(chan struct{})
	ticks := make(chan time.Time)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		Every(done, time.Millisecond, func(now time.Time) { ticks <- now })
	}()
	deadline := time.After(10 * time.Second)
	for range 3 {
		select {
		case <-ticks:
		case <-deadline:
			t.Fatal("Every did not tick three times")
		}
	}
	close(done)
	for {
		select {
		case <-ticks: // a tick already under way
		case <-returned:
			return
		case <-deadline:
			t.Fatal("Every did not return once done closed")
		}
	}
}

func TestOutageLogsItsStartAndEndOnce(t *testing.T) {
	var buf bytes.Buffer
	o := Outage{
		Log:       slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})),
		Failed:    "down",
		Recovered: "up",
	}
	live, stopped := context.Background(), cancelled()
	down := errors.New("no answer")
	o.Record(live, nil)     // no outage: nothing
	o.Record(stopped, down) // stopping: not an outage
	o.Record(live, down)    // the outage starts
	o.Record(live, down)    // still the same outage
	o.Record(live, nil)     // it ends
	o.Record(live, nil)
	want := "level=WARN msg=down err=\"no answer\"\nlevel=INFO msg=up\n"
	if buf.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", buf.String(), want)
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
