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
// goroutine: the client joins its hub stream, and everything queued for it
// is handed to its private r3labs stream once r3labs has registered the
// subscriber (an event sent before would be dropped). It returns when the
// client goes away or is cut off.
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
	// Streams live long: no write deadline (a server WriteTimeout would cut them).
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
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeHTTP(w, r2)
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
	for {
		if !h.handOver(srv, key, c) {
			h.cut(c, 0)
			return end()
		}
		select {
		case <-c.wake:
		case <-served: // the client went away
			return nil
		case <-c.done: // cut off, or the hub is closing
			return end()
		}
	}
}

// handOver moves what is queued for an inline client to its r3labs
// stream, reporting false when that stream's buffer is full (the client
// is too slow).
func (h *Hub) handOver(srv *sse.Server, key string, c *client) bool {
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, ev := range batch {
		if !srv.TryPublish(key, decode(ev.wire)) {
			return false
		}
	}
	return true
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
