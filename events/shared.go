// shared.go holds shared streams: streams whose events come, with their
// ids, from outside the hub (the broker, which reads them in id order from
// a table every node writes to), so that every node's hub sends the same
// events with the same ids, a client may resume on any node, and a resume
// from before the window is read from the table (History). Also events
// without an id (PublishVolatile) and each stream's last id.

package events

import (
	"context"
	"errors"
	"strings"
	"time"
)

// historyTimeout bounds one page of a resume read from History.
const historyTimeout = 5 * time.Second

// ErrReplayed is PublishAt's answer for an event whose id is not above
// the stream's last: it was delivered already (or skipped), and is
// ignored.
var ErrReplayed = errors.New("publish: id not above the stream's last")

// Event is an event of a shared stream as History keeps it.
type Event struct {
	ID    int64
	Event string // "" for the default "message"
	Key   int64
	Data  []byte
}

// History is where a shared stream's past events are kept beyond the
// hub's window (the broker's table).
type History interface {
	// After returns up to limit events of stream with ids above after,
	// oldest first. ok is false when some events after it may be gone
	// (trimmed, or before the history began): the client must resync.
	After(ctx context.Context, stream string, after int64, limit int) (events []Event, ok bool, err error)
}

// Share makes a stream shared: from now on its events come with their ids
// through PublishAt (ids from Publish or PublishKey would not be the same
// on every node), and a client resuming from before its window has its
// replay read from history. start is the id the stream is at: the last
// event that this hub will not be given, so a page rendered now resumes
// from it. Share it before it has clients: what its window held is
// dropped.
func (h *Hub) Share(name string, start int64, history History) {
	s := h.stream(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = history
	// The shared ids are the table's, not the hub's time-based ones (which
	// run ahead of them): the stream starts over from start.
	s.last, s.evicted = start, start
	s.window = s.window[:0]
	h.Advance(start)
}

// Advance tells the hub that events with ids up to id exist on its shared
// streams, delivered or not (the broker hears of them by notification
// before it reads them): a client resuming from such an id, which another
// node gave it, waits here for what follows instead of getting resync.
func (h *Hub) Advance(id int64) {
	h.mu.Lock()
	h.horizon = max(h.horizon, id)
	h.mu.Unlock()
}

// PublishAt publishes an event of a shared stream with the id it was
// given (key as in PublishKey). Ids must increase per stream: one that is
// not above the stream's last is refused with ErrReplayed, so an event
// read twice is sent once.
func (h *Hub) PublishAt(streamName, eventName string, key, id int64, data []byte) error {
	if err := check(eventName, key, data); err != nil {
		return err
	}
	if id <= 0 {
		return errors.New("publish: id must be positive")
	}
	data = normalizeNewlines(data)
	s, err := h.lockShared(streamName, id)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if id <= s.last {
		return ErrReplayed
	}
	h.keep(s, &wireEvent{id: id, key: key, wire: encode(id, eventName, data)})
	return nil
}

// PublishVolatile sends an event without an id to the stream's clients
// connected now, and keeps nothing: a figure of this node's own, such as
// its throughput chart, on a shared stream (an id of its own would mix
// with the shared ones; the next one replaces it anyway). Its clients'
// Last-Event-ID is not moved by it, and a resume never replays it.
func (h *Hub) PublishVolatile(streamName, eventName string, data []byte) error {
	if err := check(eventName, 0, data); err != nil {
		return err
	}
	data = normalizeNewlines(data)
	s, err := h.lockShared(streamName, 0)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	h.fanOut(s, &wireEvent{wire: encode(0, eventName, data)})
	return nil
}

// lockShared is the stream a publish on a shared stream writes to, locked:
// the caller unlocks s.mu. It first raises the hub's horizon to id (0 for
// an event without one), the highest id the other nodes have given, and
// fails once the hub is closed.
func (h *Hub) lockShared(streamName string, id int64) (*stream, error) {
	s := h.stream(streamName)
	s.mu.Lock()
	h.mu.Lock()
	closed := h.closed
	h.horizon = max(h.horizon, id)
	h.mu.Unlock()
	if closed {
		s.mu.Unlock()
		return nil, errors.New("publish: hub closed")
	}
	return s, nil
}

// StreamLastID is the id of the stream's latest event: the point a page
// showing the stream is rendered from, which it passes back to resume. On
// a shared stream it is the same on every node for the same events; on
// another, at least the stream's latest id. An unknown stream has the
// hub's LastID.
func (h *Hub) StreamLastID(name string) int64 {
	h.mu.Lock()
	s := h.streams[name]
	last := h.lastID
	h.mu.Unlock()
	if s == nil {
		return last
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.history != nil {
		return s.last
	}
	// A local stream's ids are the hub's: its last id is the hub's, which
	// catchUp accepts (and the stream's own could be older than the floor
	// of a stream created since).
	return last
}

// Resync tells every client of a stream to reload (a resync event at the
// stream's last id) and makes every resume from before now resync too:
// the stream missed an event that cannot be sent in its place any more
// (the broker skipped an id that was committed after all).
func (h *Hub) Resync(name string) {
	s := h.stream(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evicted = s.last
	s.window = s.window[:0]
	ev := resyncEvent(s.last)
	for c := range s.clients {
		h.enqueue(c, ev)
	}
}

// check refuses what cannot be sent as an event.
func check(eventName string, key int64, data []byte) error {
	if len(data) == 0 {
		return errors.New("publish: empty data")
	}
	if strings.ContainsAny(eventName, "\r\n") {
		return errors.New("publish: event name contains a line break")
	}
	if key < 0 {
		return errors.New("publish: negative key")
	}
	return nil
}

// pageHistory appends to buf the next piece of a paging client's replay
// read from its shared stream's history: events after c.after up to the
// window's start (those after it are in the window). ok is false when
// they cannot all be had: the client gets resync. Called with s.mu held,
// which it releases while reading (the read may take a while; Publish
// must not wait for it; only the pager moves c.after).
func (h *Hub) pageHistory(s *stream, c *client, buf []*wireEvent, limit int) ([]*wireEvent, bool) {
	after, upTo, history := c.after, s.evicted, s.history
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	evs, ok, err := history.After(ctx, s.name, after, limit)
	cancel()
	s.mu.Lock()
	if err != nil || !ok {
		return buf, false
	}
	n := 0
	for _, ev := range evs {
		if ev.ID <= after || ev.ID > upTo {
			break
		}
		n++
		c.after = ev.ID
		if c.wants(ev.Key) {
			buf = append(buf, &wireEvent{id: ev.ID, key: ev.Key, wire: encode(ev.ID, ev.Event, normalizeNewlines(ev.Data))})
		}
	}
	// Events up to the window's start were delivered here, so history has
	// them unless trimmed: none means they are gone.
	return buf, n > 0
}
