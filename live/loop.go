package live

import (
	"context"
	"sync"
)

// loop is the one goroutine of a feed, with the Start/Stop lifecycle every
// feed shares: start runs it once; stop ends it and waits, at most until
// ctx ends. Both are safe to call more than once, and stop without start.
type loop struct {
	mu      sync.Mutex
	started bool
	stopped bool
	done    chan struct{}
	exited  chan struct{}
}

func (l *loop) start(run func(done <-chan struct{})) {
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

func (l *loop) stop(ctx context.Context) error {
	l.mu.Lock()
	if l.stopped || !l.started {
		l.stopped = true
		l.mu.Unlock()
		return nil
	}
	l.stopped = true
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

// signal wakes whoever waits on c, without blocking: c has room for one.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
