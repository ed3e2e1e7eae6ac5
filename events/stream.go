// stream.go holds a named stream: its resume window and its clients,
// declaring it (Register, RegisterWindow, RegisterEphemeral), dropping an
// idle ephemeral one, clients joining and leaving, and the OnClients
// reports of its client count.

package events

import (
	"slices"
	"sync"
	"time"
)

type stream struct {
	name    string
	mu      sync.Mutex
	size    int          // how many events the window keeps
	window  []*wireEvent // the most recent events, oldest first
	evicted int64        // the highest id dropped from the window
	// last is the id of the stream's latest event (at creation, the hub's
	// last id): what a page showing this stream resumes from.
	last int64
	// history, set by Share, makes the stream shared: its ids come from
	// outside (PublishAt) and a resume from before its window is read
	// from history.
	history History
	clients map[*client]struct{}
	// everything holds the clients that want every event; byKey, those
	// that subscribed to some keys, by key.
	everything map[*client]struct{}
	byKey      map[int64][]*client
	changes    uint64 // counts joins and leaves, under mu
	// ephemeral streams are dropped after IdleStreamTTL without clients;
	// idleSince is when the last client left, removed when it was dropped.
	ephemeral bool
	idleSince time.Time
	removed   bool

	// reportMu orders OnClients calls: a report older than the last one
	// made is skipped, so the registry's last word is the real count.
	reportMu sync.Mutex
	reported uint64
}

// Register declares a stream so clients may subscribe to it. Publishing to
// a stream registers it too.
func (h *Hub) Register(name string) {
	h.stream(name)
}

// RegisterWindow declares a stream whose resume window keeps the last
// window events instead of Config.Window: 1 for a stream whose every event
// replaces the previous one, more for a busy stream whose clients should
// resume rather than resync after a longer gap. It may be called again to
// change the size.
func (h *Hub) RegisterWindow(name string, window int) {
	s := h.stream(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size = max(window, 1)
	if n := len(s.window) - s.size; n > 0 {
		s.evicted = s.window[n-1].id
		s.window = slices.Clone(s.window[n:])
	}
}

// RegisterEphemeral declares a stream that lives while it is used, with a
// window of window events: once it has had no client for
// Config.IdleStreamTTL it is dropped, window and all (a pet's page: one
// stream for each pet anybody looks at). A client resuming from before the
// stream was created again gets a resync.
func (h *Hub) RegisterEphemeral(name string, window int) {
	h.RegisterWindow(name, window)
	s := h.stream(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ephemeral = true
	if len(s.clients) == 0 && s.idleSince.IsZero() {
		s.idleSince = time.Now()
	}
}

func (h *Hub) stream(name string) *stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streamLocked(name, nil)
}

// streamLocked returns the named stream, creating it (like the dropped
// stream was, when like is set) if needed. Events published before it was
// created were never in its window: a client resuming from before then
// gets a resync. Call with h.mu held.
func (h *Hub) streamLocked(name string, like *stream) *stream {
	s := h.streams[name]
	if s == nil {
		s = &stream{
			name:       name,
			size:       h.cfg.Window,
			evicted:    h.lastID,
			last:       h.lastID,
			clients:    map[*client]struct{}{},
			everything: map[*client]struct{}{},
			byKey:      map[int64][]*client{},
		}
		if like != nil {
			s.size, s.ephemeral = like.size, like.ephemeral
			s.history = like.history
		}
		h.streams[name] = s
	}
	return s
}

// sweep drops the ephemeral streams that have had no client for
// IdleStreamTTL.
func (h *Hub) sweep(now time.Time) {
	for _, s := range h.allStreams() {
		s.mu.Lock()
		if s.ephemeral && len(s.clients) == 0 && !s.idleSince.IsZero() && now.Sub(s.idleSince) > h.cfg.IdleStreamTTL {
			h.mu.Lock()
			if h.streams[s.name] == s {
				delete(h.streams, s.name)
			}
			h.mu.Unlock()
			s.removed = true
			s.window = nil
		}
		s.mu.Unlock()
	}
}

func (h *Hub) allStreams() []*stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	streams := make([]*stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	return streams
}

// join adds a client to its stream and queues what it missed, under the
// stream's lock so no event can fall between catch-up and live delivery.
// It reports false when the hub closed meanwhile.
func (h *Hub) join(c *client) bool {
	s := c.stream
	s.mu.Lock()
	for s.removed { // swept while this client connected: join its successor
		s.mu.Unlock()
		h.mu.Lock()
		s = h.streamLocked(s.name, s)
		h.mu.Unlock()
		c.stream = s
		s.mu.Lock()
	}
	h.mu.Lock()
	closed, last, floor := h.closed, h.lastID, h.floor
	h.mu.Unlock()
	if closed { // Close ran while this client connected: it has no place here
		s.mu.Unlock()
		return false
	}
	s.idleSince = time.Time{}
	s.clients[c] = struct{}{}
	if c.keys == nil {
		s.everything[c] = struct{}{}
	}
	for _, k := range c.keys {
		s.byKey[k] = append(s.byKey[k], c)
	}
	h.catchUp(s, c, last, floor)
	s.changes++
	seq, n := s.changes, len(s.clients)
	s.mu.Unlock()
	h.report(s, seq, n)
	return true
}

// leave removes a client from its stream, once.
func (h *Hub) leave(c *client) {
	s := c.stream
	s.mu.Lock()
	if c.left {
		s.mu.Unlock()
		return
	}
	c.left = true
	delete(s.clients, c)
	delete(s.everything, c)
	for _, k := range c.keys {
		list := s.byKey[k]
		if i := slices.Index(list, c); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(s.byKey, k)
		} else {
			s.byKey[k] = list
		}
	}
	if len(s.clients) == 0 {
		s.idleSince = time.Now()
	}
	s.changes++
	seq, n := s.changes, len(s.clients)
	s.mu.Unlock()
	h.report(s, seq, n)
}

// report tells OnClients a stream's client count after its change number
// seq. Called without locks held; a report overtaken by a newer one is
// skipped.
func (h *Hub) report(s *stream, seq uint64, clients int) {
	if h.cfg.OnClients == nil {
		return
	}
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	if seq <= s.reported {
		return
	}
	s.reported = seq
	h.cfg.OnClients(s.name, clients)
}
