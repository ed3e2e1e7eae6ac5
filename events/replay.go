// replay.go holds a resuming client's catch-up: the replay paged from its
// stream's window after Last-Event-ID, or a resync event when what it
// missed is no longer all there.

package events

import "slices"

// replayPage is the most events of a replay taken from the window at a
// time: the stream's lock is held for one page, and a hijacked client's
// page goes out in one writev.
const replayPage = 256

// catchUp starts a resuming client's replay, or queues a resync when what
// it missed is no longer all in the window. The replay itself is paged
// from the window by the client's writer (see page), never queued: it may
// be longer than the client's queue. Called with s.mu held.
func (h *Hub) catchUp(s *stream, c *client, last, floor int64) {
	after := c.after
	if after <= 0 {
		return
	}
	if s.history != nil {
		h.catchUpShared(s, c)
		return
	}
	// Ids below floor-1 come from an earlier process; above last, from nowhere.
	if after < floor-1 || after < s.evicted || after > last {
		c.after = last
		h.enqueue(c, resyncEvent(last))
		return
	}
	if n := len(s.window); n > 0 && s.window[n-1].id > after {
		c.mu.Lock()
		c.paging = true
		c.mu.Unlock()
	}
}

// catchUpShared is catchUp on a shared stream, whose ids are the same on
// every node: a client may resume here from an id another node gave it.
// One from before the window pages its replay from the stream's history
// (see page); one this hub has not reached yet, but which exists (below
// the horizon: another node delivered it first), waits for what follows
// it, fanOut skipping what it already has. Called with s.mu held.
func (h *Hub) catchUpShared(s *stream, c *client) {
	after := c.after
	if after > s.last {
		h.mu.Lock()
		horizon := h.horizon
		h.mu.Unlock()
		if after > horizon {
			c.after = s.last
			h.enqueue(c, resyncEvent(s.last))
		}
		return
	}
	if n := len(s.window); after < s.evicted || n > 0 && s.window[n-1].id > after {
		c.mu.Lock()
		c.paging = true
		c.mu.Unlock()
	}
}

// page appends to buf the next piece of a paging client's replay: up to
// limit of the events after c.after still in its stream's window, those it
// wants. Once the piece reaches the end of the window the client stops
// paging, under the stream's lock, so what is published next is queued for
// it: nothing falls between replay and live events, and nothing is sent
// twice. When the window has moved past the client's position, the piece
// comes from the stream's History (a shared stream), or is a resync event.
// A client that is not paging (or was cut off or is gone) gets nothing.
func (h *Hub) page(c *client, buf []*wireEvent, limit int) []*wireEvent {
	// paging is set only at join, before a writer runs, so once it is off
	// it stays off: the common case costs no stream lock (which every
	// Publish takes) per write.
	c.mu.Lock()
	paging := c.paging
	c.mu.Unlock()
	if !paging || limit <= 0 {
		return buf
	}
	s := c.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	if c.cut || c.dead {
		c.paging = false
	}
	paging = c.paging
	c.mu.Unlock()
	if !paging {
		return buf
	}
	done := false
	switch {
	case c.after < s.evicted && s.history != nil:
		var ok bool
		if buf, ok = h.pageHistory(s, c, buf, limit); !ok {
			c.after = s.last
			buf = append(buf, resyncEvent(s.last))
			done = true
		}
	case c.after < s.evicted:
		h.mu.Lock()
		last := h.lastID
		h.mu.Unlock()
		// Every event of this stream up to last is in the window (Publish
		// holds s.mu from id to window), so the resync covers them all.
		c.after = last
		buf = append(buf, resyncEvent(last))
		done = true
	default:
		i := windowIndex(s.window, c.after+1)
		for n := 0; i < len(s.window) && n < limit; i++ {
			ev := s.window[i]
			c.after = ev.id
			if c.wants(ev.key) {
				buf = append(buf, ev)
				n++
			}
		}
		done = i == len(s.window)
	}
	if done {
		c.mu.Lock()
		c.paging = false
		c.mu.Unlock()
	}
	return buf
}

// windowIndex is the index of the first event of window with an id of at
// least id (len(window) if none).
func windowIndex(window []*wireEvent, id int64) int {
	i, _ := slices.BinarySearchFunc(window, id, func(ev *wireEvent, id int64) int {
		switch {
		case ev.id < id:
			return -1
		case ev.id > id:
			return 1
		}
		return 0
	})
	return i
}

// resyncEvent tells a client it may have missed events up to id.
func resyncEvent(id int64) *wireEvent {
	return &wireEvent{id: id, wire: encode(id, ResyncEvent, []byte("resync"))}
}
