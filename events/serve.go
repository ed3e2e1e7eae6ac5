// serve.go holds serving a stream to one client: Serve and ServeKeys, taking
// an HTTP/1.1 connection over (its response head, the reader that notices a
// client going away), and the heartbeat sent to every client.

package events

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/phonehome/phonehome/internal/loop"
)

// ErrUnknownStream is returned by Serve for a stream nobody registered.
var ErrUnknownStream = errors.New("unknown stream")

// ErrClosed is returned by Serve once the hub is closed.
var ErrClosed = errors.New("event hub is shutting down")

// MaxKeys is the most keys one client may subscribe to.
const MaxKeys = 1000

// Serve streams one stream to one client. after is the id of the last
// event the client has (from Last-Event-ID, or the id a page was rendered
// at); 0 means none. Missed events still in the window are sent first,
// however many (they are paged from the window, not queued); when some are
// no longer there, a single resync event is sent instead.
//
// An HTTP/1.1 connection is taken over (hijacked) and Serve returns at once,
// the stream living on until the client goes away, is cut off, or the hub
// closes; otherwise Serve streams through w and returns at that point.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, streamName string, after int64) error {
	return h.ServeKeys(w, r, streamName, after, nil)
}

// ServeKeys is Serve for a client that wants only the events published
// with one of keys (and those published without a key); nil keys means
// every event. At most MaxKeys keys.
func (h *Hub) ServeKeys(w http.ResponseWriter, r *http.Request, streamName string, after int64, keys []int64) error {
	h.mu.Lock()
	s := h.streams[streamName]
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if s == nil {
		return ErrUnknownStream
	}
	if len(keys) > MaxKeys {
		return errors.New("too many keys")
	}
	c := &client{stream: s, after: after}
	if keys != nil {
		c.keys = slices.Clip(slices.Compact(slices.Sorted(slices.Values(keys))))
		if c.keys == nil { // asked for no keys: events without a key only
			c.keys = []int64{}
		}
	}

	header := w.Header()
	header.Set("Content-Type", "text/event-stream")
	header.Set("Cache-Control", "no-cache")
	header.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		if conn, _, err := rc.Hijack(); err == nil {
			return h.serveHijacked(conn, header, c)
		}
	}
	return h.serveInline(w, r, rc, c)
}

// serveHijacked writes the response head on a connection taken over from
// net/http and hands the client to its stream. The body is the event
// stream, ended by closing the connection.
func (h *Hub) serveHijacked(conn net.Conn, header http.Header, c *client) error {
	c.conn = conn
	// Deadlines set by the server for the request no longer apply.
	_ = conn.SetDeadline(time.Time{})
	header.Set("Connection", "close")
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = header.Write(&head)
	head.WriteString("\r\n")
	// Join before the head goes out, so that a client that has the head
	// misses nothing published after it; until the head is written, this
	// goroutine is the connection's writer and events wait in the queue.
	c.writing = true
	if !h.join(c) {
		conn.Close()
		return nil
	}
	_ = conn.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
	if _, err := conn.Write(head.Bytes()); err != nil {
		c.mu.Lock()
		c.dead, c.writing, c.queue = true, false, nil
		c.mu.Unlock()
		conn.Close()
		h.leave(c)
		return nil
	}
	go h.write(c) // what was queued meanwhile; it stops when the queue is empty
	go h.watch(c)
	return nil
}

// watch reads a hijacked connection until it fails, which is how a client
// that goes away is noticed, and then removes the client.
func (h *Hub) watch(c *client) {
	buf := make([]byte, 16)
	for {
		if _, err := c.conn.Read(buf); err != nil {
			break
		}
	}
	c.mu.Lock()
	c.dead, c.queue = true, nil
	c.mu.Unlock()
	c.conn.Close()
	h.leave(c)
}

func (h *Hub) heartbeat() {
	defer h.wg.Done()
	loop.Every(h.quit, h.cfg.Heartbeat, func(now time.Time) {
		h.sweep(now)
		for _, s := range h.allStreams() {
			s.mu.Lock()
			for c := range s.clients {
				h.enqueue(c, h.heartbeatWire)
			}
			s.mu.Unlock()
		}
	})
}
