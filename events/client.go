// client.go holds one client of a stream: what it subscribed to, its
// bounded queue, the writer of a hijacked connection, and cutting a client
// off.

package events

import (
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

type client struct {
	stream *stream
	keys   []int64 // sorted; nil wants every event
	// after is the last event id the client had when it connected, then,
	// while it catches up, the last one its replay has covered. Under
	// stream.mu.
	after int64

	// conn is the hijacked connection; nil when the stream is written
	// through the ResponseWriter (see serveInline).
	conn net.Conn
	// wake and done drive serveInline.
	wake chan struct{}
	done chan struct{}
	rc   *http.ResponseController

	mu       sync.Mutex
	queue    []*wireEvent
	deadline time.Time // the write deadline last set (writer only)
	writing  bool      // a writer goroutine owns the connection's writes
	cut      bool      // cut off: write what is queued (Close) or nothing, then close
	closing  bool      // cut by Close, with grace (inline clients drain their queue)
	dead     bool      // the connection failed or was closed: queue nothing more
	left     bool      // removed from its stream (under stream.mu)
	// paging: the client is catching up from its stream's window (a
	// resume), a page at a time, rather than through its queue. Nothing is
	// queued for it meanwhile: every event published is in the window, and
	// the pager reaches it. So a replay of any length fits, however small
	// the queue, and a client that reads its replay slowly is not cut off
	// for it (if the window moves past it, it gets a resync). Set at join,
	// cleared by the pager once it reached the end of the window; both
	// under stream.mu, so an event published is either in the replay or
	// queued, never both or neither.
	paging bool
}

// wants reports whether a client subscribed to events with this key.
func (c *client) wants(key int64) bool {
	if key == 0 || c.keys == nil {
		return true
	}
	_, ok := slices.BinarySearch(c.keys, key)
	return ok
}

// enqueue queues one event for a client without ever blocking, and starts
// its writer. A client whose queue is full is cut off.
func (h *Hub) enqueue(c *client, ev *wireEvent) {
	c.mu.Lock()
	if c.dead || c.cut || c.paging { // a paging client's pager reaches ev in the window
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= h.cfg.ClientBuffer {
		c.mu.Unlock()
		h.cut(c, 0)
		return
	}
	c.queue = append(c.queue, ev)
	start := c.conn != nil && !c.writing
	if start {
		c.writing = true
	}
	c.mu.Unlock()
	switch {
	case start:
		go h.write(c)
	case c.wake != nil:
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// write is a hijacked client's writer: it writes the next page of its
// replay, or everything queued, in one writev, waits FlushEvery so that
// what arrives meanwhile goes out together, and exits once the replay is
// over and the queue is empty. Only one runs per client.
func (h *Hub) write(c *client) {
	var bufs net.Buffers
	var replay []*wireEvent
	for {
		replay = replay[:0]
		c.mu.Lock()
		if c.paging { // the stream's lock comes before the client's
			c.mu.Unlock()
			replay = h.page(c, replay, replayPage)
			c.mu.Lock()
		}
		batch := c.queue
		c.queue = nil
		paging := c.paging
		if len(replay) == 0 && len(batch) == 0 && !paging || c.dead {
			c.writing = false
			closeNow := c.cut && !c.dead
			c.mu.Unlock()
			if closeNow {
				c.conn.Close()
			}
			return
		}
		// A cut client keeps the deadline of its grace. Otherwise the
		// deadline is moved only when half of it is used up: resetting a
		// timer per write for every client costs more than the write.
		if now := time.Now(); !c.cut && now.After(c.deadline.Add(-h.cfg.WriteTimeout/2)) {
			c.deadline = now.Add(h.cfg.WriteTimeout)
			_ = c.conn.SetWriteDeadline(c.deadline)
		}
		c.mu.Unlock()

		bufs = bufs[:0]
		for _, ev := range replay { // the replay comes before anything queued after it
			bufs = append(bufs, ev.wire)
		}
		for _, ev := range batch {
			bufs = append(bufs, ev.wire)
		}
		clear(replay)
		clear(batch)
		if _, err := bufs.WriteTo(c.conn); err != nil {
			c.mu.Lock()
			c.dead, c.writing, c.queue = true, false, nil
			c.mu.Unlock()
			c.conn.Close() // the reader goroutine sees it and removes the client
			return
		}
		bufs = bufs[:cap(bufs)]
		clear(bufs) // do not keep events alive while waiting
		// A replay goes out as fast as the client takes it.
		if !paging {
			time.Sleep(h.cfg.FlushEvery)
		}
	}
}

// cut ends a client's connection. A slow client gets no grace: its
// connection is closed now, releasing a blocked write. One cut by Close
// gets Config.CloseGrace to receive what is queued and then a clean end of
// stream.
func (h *Hub) cut(c *client, grace time.Duration) {
	c.mu.Lock()
	if c.cut || c.dead {
		c.mu.Unlock()
		return
	}
	c.cut = true
	c.closing = grace > 0
	if c.conn == nil {
		c.mu.Unlock()
		close(c.done)
		_ = c.rc.SetWriteDeadline(time.Now().Add(grace))
		return
	}
	if grace > 0 && c.writing {
		// The writer writes what is queued, then closes the connection.
		_ = c.conn.SetWriteDeadline(time.Now().Add(grace))
		c.mu.Unlock()
		return
	}
	c.queue = nil
	c.mu.Unlock()
	c.conn.Close()
}
