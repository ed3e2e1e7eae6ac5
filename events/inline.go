// inline.go holds the r3labs path: streams that cannot be taken over from
// net/http (HTTP/2, a writer that cannot be hijacked), written through a
// private r3labs/sse stream per client fed from the client's queue.

package events

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
)

// inline writes the streams that cannot be taken over from net/http
// (HTTP/2, or a ResponseWriter that does not support hijacking) with
// r3labs/sse, the library that wrote every stream before the hub learnt to
// write them itself. Each such client gets a private r3labs stream, fed
// from its hub queue without blocking (r3labs blocks a whole stream on its
// slowest subscriber, so clients never share one). Its known traps are set
// aside: no replay log (AutoReplay grows forever), no streams created by
// clients (AutoStream), and multi-line data kept whole (SplitData).
type inline struct {
	once       sync.Once
	server     *sse.Server
	seq        atomic.Int64
	subscribed sync.Map // private stream id → chan struct{}, closed once r3labs has the subscriber
}

func (in *inline) srv(buffer int) *sse.Server {
	in.once.Do(func() {
		srv := sse.New()
		srv.AutoReplay = false
		srv.AutoStream = false
		srv.SplitData = true
		srv.BufferSize = buffer
		srv.Headers = map[string]string{"X-Accel-Buffering": "no"}
		srv.OnSubscribe = func(id string, _ *sse.Subscriber) {
			if ch, ok := in.subscribed.LoadAndDelete(id); ok {
				close(ch.(chan struct{}))
			}
		}
		in.server = srv
	})
	return in.server
}

// serveInline streams one client through r3labs in the handler's
// goroutine: the client joins its hub stream, and its replay and
// everything queued for it are handed to its private r3labs stream once
// r3labs has registered the subscriber (an event sent before would be
// dropped). It returns when the client goes away, is cut off, or the hub
// closes.
//
// r3labs flushes after each event it writes; counting those flushes tells
// how many events handed over are still on their way to the client. That
// paces the replay (a page goes over only while half the client buffer is
// free, so the live events that follow it fit), and it notices a client
// that stopped reading: one with events on their way and none taken for
// Config.WriteTimeout is cut off, as a hijacked client's blocked write is.
func (h *Hub) serveInline(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, c *client) error {
	srv := h.inline.srv(h.cfg.ClientBuffer)
	key := strconv.FormatInt(h.inline.seq.Add(1), 10)
	subscribed := make(chan struct{})
	h.inline.subscribed.Store(key, subscribed)
	defer h.inline.subscribed.Delete(key)
	srv.CreateStream(key)
	// Removed only after ServeHTTP has returned: r3labs would otherwise leave
	// its subscriber's goroutine blocked for ever.
	defer srv.RemoveStream(key)

	c.rc = rc
	c.wake = make(chan struct{}, 1)
	c.done = make(chan struct{})
	// Streams live long: no write deadline (a server WriteTimeout would cut
	// them); a stalled client is noticed by its flushes instead.
	_ = rc.SetWriteDeadline(time.Time{})
	if !h.join(c) {
		return nil
	}
	defer h.leave(c)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// r3labs serves the private stream named in ?stream=; Last-Event-ID has
	// been handled by the hub and must not reach it (it refuses non-numbers).
	r2 := r.Clone(ctx)
	q := r2.URL.Query()
	q.Set("stream", key)
	r2.URL.RawQuery = q.Encode()
	r2.Header.Del("Last-Event-ID")
	out := &flushCounter{ResponseWriter: w, rc: rc, progress: make(chan struct{}, 1)}
	out.last.Store(time.Now().UnixNano())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeHTTP(out, r2)
	}()
	end := func() error {
		cancel()
		<-served
		return nil
	}

	select {
	case <-subscribed:
	case <-served:
		return nil
	case <-c.done:
		return end()
	}
	f := inlineFeed{h: h, srv: srv, key: key, c: c, out: out, handed: 1} // r3labs flushes once after the head
	stall := time.NewTimer(h.cfg.WriteTimeout)
	defer stall.Stop()
	for {
		paging, ok := f.feed()
		if !ok {
			h.cut(c, 0)
			return end()
		}
		// While paging, each event the client takes may make room for
		// the next page.
		var progress <-chan struct{}
		if paging {
			progress = out.progress
		}
		select {
		case <-c.wake:
		case <-progress:
		case <-stall.C:
			idle := time.Since(time.Unix(0, out.last.Load()))
			if f.inFlight() > 0 && idle >= h.cfg.WriteTimeout {
				h.cut(c, 0) // the client stopped reading
				return end()
			}
			stall.Reset(max(h.cfg.WriteTimeout-idle, time.Millisecond))
		case <-served: // the client went away
			return nil
		case <-c.done: // cut off, or the hub is closing
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			if closing {
				f.drain(served)
			}
			return end()
		}
	}
}

// flushCounter is what r3labs writes a private stream to: it counts the
// flushes (one after the head, then one after each event) and notes when
// the last one returned, that is when the client last made room for more.
type flushCounter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	flushes  atomic.Int64
	last     atomic.Int64 // UnixNano of the last flush
	progress chan struct{}
}

// Flush sends what r3labs wrote and counts it.
func (f *flushCounter) Flush() {
	_ = f.rc.Flush()
	f.flushes.Add(1)
	f.last.Store(time.Now().UnixNano())
	select {
	case f.progress <- struct{}{}:
	default:
	}
}

// Unwrap lets an http.ResponseController reach the real writer.
func (f *flushCounter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// inlineFeed hands one inline client's events to its r3labs stream.
type inlineFeed struct {
	h      *Hub
	srv    *sse.Server
	key    string
	c      *client
	out    *flushCounter
	handed int64 // events handed to r3labs, plus one for the head's flush
	replay []*wireEvent
}

// inFlight is how many events handed over r3labs has not written yet.
func (f *inlineFeed) inFlight() int64 { return f.handed - f.out.flushes.Load() }

// feed hands over the replay, as far as there is room for it, then
// everything queued. It reports whether the client is still paging, and
// false in ok when r3labs' buffer was full: the client is too slow.
func (f *inlineFeed) feed() (paging, ok bool) {
	for {
		room := int64(f.h.cfg.ClientBuffer/2) - f.inFlight()
		if room <= 0 {
			break
		}
		f.replay = f.h.page(f.c, f.replay[:0], int(min(room, replayPage)))
		if len(f.replay) == 0 {
			break
		}
		ok := f.publish(f.replay)
		clear(f.replay)
		if !ok {
			return false, false
		}
	}
	c := f.c
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	paging = c.paging
	c.mu.Unlock()
	return paging, f.publish(batch)
}

// publish hands events to r3labs without blocking, reporting false when
// its buffer is full.
func (f *inlineFeed) publish(batch []*wireEvent) bool {
	if len(batch) > 0 && f.inFlight() == 0 {
		// The client's time to take these starts now, not at the last
		// flush, which may be long past on a quiet stream.
		f.out.last.Store(time.Now().UnixNano())
	}
	for _, ev := range batch {
		if !f.srv.TryPublish(f.key, decode(ev.wire)) {
			return false
		}
		f.handed++
	}
	return true
}

// drain hands over what was queued for a client the hub is closing on and
// waits, up to Config.CloseGrace, until r3labs has written it: the stream then
// ends cleanly after its last event.
func (f *inlineFeed) drain(served <-chan struct{}) {
	c := f.c
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	f.publish(batch)
	deadline := time.NewTimer(f.h.cfg.CloseGrace)
	defer deadline.Stop()
	for f.inFlight() > 0 {
		select {
		case <-f.out.progress:
		case <-served:
			return
		case <-deadline.C:
			return
		}
	}
}

// decode turns an encoded event back into r3labs' form: the inline path is
// the rare one, so events are encoded once for the hijacked clients and
// decoded here.
func decode(wire []byte) *sse.Event {
	ev := &sse.Event{}
	var data [][]byte
	for line := range bytes.Lines(wire) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.ID = line[len("id: "):]
		case bytes.HasPrefix(line, []byte("event: ")):
			ev.Event = line[len("event: "):]
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data, line[len("data: "):])
		case bytes.HasPrefix(line, []byte(": ")):
			ev.Comment = line[len(": "):]
		}
	}
	if data != nil {
		ev.Data = bytes.Join(data, []byte("\n"))
	}
	return ev
}
