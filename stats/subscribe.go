package stats

import (
	"context"
	"time"

	"github.com/phonehome/phonehome/internal/loop"
)

// subscriber is one receiver of samples.
type subscriber struct {
	id      int
	watched func() bool
	fn      func(Snapshot)
}

// Subscribe adds a receiver of samples: while watched reports true (someone
// is looking, such as the dashboard's streams having clients), every
// sample is full and is handed to fn, on the Collector's goroutine (or the
// caller's of Sample). The returned function removes it again.
func (c *Collector) Subscribe(watched func() bool, fn func(Snapshot)) (unsubscribe func()) {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	c.nextID++
	id := c.nextID
	c.subs = append(c.subs, subscriber{id: id, watched: watched, fn: fn})
	return func() {
		c.subsMu.Lock()
		defer c.subsMu.Unlock()
		for i, s := range c.subs {
			if s.id == id {
				c.subs = append(c.subs[:i:i], c.subs[i+1:]...)
				return
			}
		}
	}
}

// watching are the subscribers whose watched reports true now.
func (c *Collector) watching() []subscriber {
	c.subsMu.Lock()
	subs := c.subs
	c.subsMu.Unlock()
	var out []subscriber
	for _, s := range subs {
		if s.watched() {
			out = append(out, s)
		}
	}
	return out
}

// Start starts sampling every Interval until Stop. A second Start, or a
// Start after Stop, does nothing.
func (c *Collector) Start(ctx context.Context) error {
	c.loop.Start(func(done <-chan struct{}) {
		loop.Every(done, c.cfg.Interval, func(time.Time) {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Interval*5)
			c.Sample(ctx)
			cancel()
		})
	})
	return nil
}

// Stop stops the sampling loop and waits for it, at most until ctx ends.
// It is safe to call more than once, and without Start.
func (c *Collector) Stop(ctx context.Context) error { return c.loop.Stop(ctx) }
