// hub.go holds the Hub itself: its Config and defaults, New and Close, the
// event ids, Publish and its fan-out to a stream's clients, and the
// text/event-stream encoding of an event.

// Package events is phonehome's publish/subscribe hub for server-sent events.
//
// It owns event ids, the resume window, the fan-out and the writing of each
// client's stream. An event is encoded once, in the text/event-stream wire
// format, and the same bytes are queued for every client that wants it. Each
// client has a bounded queue; a client whose queue fills (say, `curl | less`)
// is cut off, so nobody ever waits for it; its browser reconnects with
// Last-Event-ID and resumes, or receives a resync event.
//
// An HTTP/1.1 stream is taken over from net/http (hijacked) once its headers
// are decided: an idle client then costs one small reader goroutine (which
// notices the disconnect) and its socket, and nothing else. Queued events are
// written by a short-lived writer goroutine in one writev per batch, at most
// once per Config.FlushEvery, so a busy stream costs a few system calls per
// client per second rather than one per event.
//
// A connection that cannot be taken over (HTTP/2, as under TLS; a wrapped
// writer) is written by github.com/r3labs/sse/v2 instead, through a private
// r3labs stream per client fed from the same queue (see inline.go); the
// wire format is the same, and r3labs' own client reads both.
//
// A client resuming from Last-Event-ID is sent what it missed from the
// stream's window a page at a time, not through its queue: a replay may be
// longer than the queue (the window of a busy stream is 8,192 events, the
// queue 1,024), and is never a reason to cut a client off. Live events
// follow the replay with no gap and no duplicate. A client that reads its
// replay so slowly that the window moves past it gets a resync event.
//
// A stream may be shared between several processes (Share, shared.go):
// its events then come with ids given from outside (PublishAt; the broker
// reads them from a table every node writes to), so every node sends the
// same events with the same ids, a client may resume on any node, and a
// resume from before the window is read from the stream's History.
//
// A client may ask for a subset of a stream: events published with a key
// (an extraterrestrial's id, say) reach only the clients that subscribed to
// that key, and clients that asked for everything; events without a key
// reach every client.
package events

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/phonehome/phonehome/internal/setting"
)

// ResyncEvent is the name of the event that tells a page its table may have
// missed changes and must be reloaded.
const ResyncEvent = "resync"

// The sizes the app runs with, named so that tests use the same ones.
const (
	// DefaultWindow is Config.Window's default.
	DefaultWindow = 1024
	// DefaultClientBuffer is Config.ClientBuffer's default.
	DefaultClientBuffer = 1024
	// LongWindow is the window of a busy stream whose clients should
	// resume rather than resync after a long gap (RegisterWindow): the
	// app's extraterrestrials stream. At 1,000 changes a second, a page
	// that reconnects within about 8 s resumes instead of reloading its
	// table. It is larger than DefaultClientBuffer, so a resume may replay
	// more events than a client may queue: the replay is paged (see
	// ServeKeys).
	LongWindow = 8192
)

// Config tunes a Hub. Zero fields take the defaults.
type Config struct {
	// Window is how many recent events per stream are kept for
	// Last-Event-ID resume (DefaultWindow).
	Window int
	// ClientBuffer is how many live events may wait for one slow client
	// before it is cut off (DefaultClientBuffer). A resume's replay does
	// not count against it.
	ClientBuffer int
	// Heartbeat is the interval of the comment sent to every client (15 s).
	Heartbeat time.Duration
	// FlushEvery is the shortest interval between two writes to one client
	// (25 ms): the first event after a quiet spell is written at once, and
	// events that arrive meanwhile go out together in the next write. It
	// bounds the system calls a busy stream costs: at most 40 writes a
	// second per client, however many events.
	FlushEvery time.Duration
	// WriteTimeout cuts a client off when a write to it blocks for longer
	// (30 s; at least half of it): a reader that stopped reading and
	// receives too few events to fill its queue. On a stream written by
	// r3labs (HTTP/2), when events have waited that long for the client
	// and it has taken none.
	WriteTimeout time.Duration
	// CloseGrace is how long a client cut off by Close has to take what is
	// queued for it and the end of its response (1 s); one cut for being
	// slow gets no grace.
	CloseGrace time.Duration
	// IdleStreamTTL is how long a stream declared with RegisterEphemeral
	// lives on without clients (1 min); streams are swept at each
	// heartbeat.
	IdleStreamTTL time.Duration
	// Now is the clock used for time-based ids (time.Now).
	Now func() time.Time
	// OnClients, when set, is called (without hub locks held) each time a
	// client joins or leaves a stream, with the stream's new client count:
	// the feed of watcher registries.
	OnClients func(stream string, clients int)
}

// Hub fans events out to the clients of named streams.
type Hub struct {
	cfg Config

	mu      sync.Mutex
	streams map[string]*stream
	lastID  int64
	closed  bool
	// horizon is the highest id known to exist on the shared streams
	// (Advance, PublishAt).
	horizon int64
	// floor is the first id this process issued: a client asking to resume
	// from before it was connected to an earlier process and must resync.
	floor int64

	heartbeatWire *wireEvent
	inline        inline
	quit          chan struct{}
	wg            sync.WaitGroup
}

// wireEvent is an event encoded once, shared by every client it goes to.
type wireEvent struct {
	id   int64
	key  int64 // 0: for every client
	wire []byte
}

// New makes a hub and starts its heartbeat.
func New(cfg Config) *Hub {
	setting.Default(&cfg.Window, DefaultWindow)
	setting.Default(&cfg.ClientBuffer, DefaultClientBuffer)
	setting.Default(&cfg.Heartbeat, 15*time.Second)
	setting.Default(&cfg.FlushEvery, 25*time.Millisecond)
	setting.Default(&cfg.WriteTimeout, 30*time.Second)
	setting.Default(&cfg.CloseGrace, time.Second)
	setting.Default(&cfg.IdleStreamTTL, time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Hub{
		cfg:           cfg,
		streams:       map[string]*stream{},
		quit:          make(chan struct{}),
		heartbeatWire: &wireEvent{wire: []byte(": keep-alive\n\n")},
	}
	h.floor = h.nextID()
	h.lastID = h.floor - 1
	h.wg.Add(1)
	go h.heartbeat()
	return h
}

// nextID returns a time-based id greater than every earlier one, so ids
// keep increasing across restarts. Call with h.mu held, or before sharing h.
func (h *Hub) nextID() int64 {
	id := max(h.lastID+1, h.cfg.Now().UnixMicro())
	h.lastID = id
	return id
}

// Has reports whether a stream has been registered.
func (h *Hub) Has(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[name] != nil
}

// Publish sends data to every client of the stream as one event and keeps it
// in the resume window. It never blocks on a client. Empty data is refused
// (EventSource would dispatch nothing), and carriage returns become newlines
// so data cannot break out of its data: lines.
func (h *Hub) Publish(streamName, eventName string, data []byte) (int64, error) {
	return h.PublishKey(streamName, eventName, 0, data)
}

// PublishKey is Publish for an event about one thing, named by key (> 0):
// it reaches the clients that subscribed to that key and those that want
// the whole stream. Key 0 is Publish: every client gets the event.
func (h *Hub) PublishKey(streamName, eventName string, key int64, data []byte) (int64, error) {
	if err := check(eventName, key, data); err != nil {
		return 0, err
	}
	data = normalizeNewlines(data)
	s := h.stream(streamName)

	s.mu.Lock()
	defer s.mu.Unlock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return 0, errors.New("publish: hub closed")
	}
	if s.history != nil {
		// A time-based id here would outrun the shared ids, and the
		// other nodes would never see the event.
		h.mu.Unlock()
		return 0, errors.New("publish: " + streamName + " is shared: its events come through PublishAt")
	}
	id := h.nextID()
	h.mu.Unlock()
	h.keep(s, &wireEvent{id: id, key: key, wire: encode(id, eventName, data)})
	return id, nil
}

// keep adds ev to its stream's window and queues it for the clients that
// want it. Called with s.mu held.
func (h *Hub) keep(s *stream, ev *wireEvent) {
	s.last = ev.id
	if len(s.window) >= s.size {
		s.evicted = s.window[0].id
		copy(s.window, s.window[1:])
		s.window[len(s.window)-1] = ev
	} else {
		s.window = append(s.window, ev)
	}
	h.fanOut(s, ev)
}

// fanOut queues ev for the stream's clients that want it. A client that
// resumed from an id this hub had not reached yet (a shared stream's
// client coming from a node that was ahead) is not sent what it had.
// Called with s.mu held.
func (h *Hub) fanOut(s *stream, ev *wireEvent) {
	if ev.key == 0 {
		for c := range s.clients {
			if ev.id == 0 || ev.id > c.after {
				h.enqueue(c, ev)
			}
		}
		return
	}
	for c := range s.everything {
		if ev.id > c.after {
			h.enqueue(c, ev)
		}
	}
	for _, c := range s.byKey[ev.key] {
		if ev.id > c.after {
			h.enqueue(c, ev)
		}
	}
}

func normalizeNewlines(b []byte) []byte {
	if !bytes.ContainsRune(b, '\r') {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// encode writes one event in the text/event-stream format: its id, its
// name unless it is the default, one data: line per line, a blank line.
func encode(id int64, name string, data []byte) []byte {
	lines := bytes.Count(data, []byte("\n")) + 1
	b := make([]byte, 0, len(data)+len(name)+lines*len("data: \n")+32)
	if id != 0 { // 0: an event without an id (PublishVolatile)
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
		if !more {
			break
		}
		data = rest
	}
	return append(b, '\n')
}

// Clients reports how many clients each stream has.
func (h *Hub) Clients() map[string]int {
	streams := h.allStreams()
	out := make(map[string]int, len(streams))
	for _, s := range streams {
		s.mu.Lock()
		out[s.name] = len(s.clients)
		s.mu.Unlock()
	}
	return out
}

// LastID is the id of the most recent event of any stream (or just below
// the first this process will issue), for pages to pass back as the point
// their rendered state is from.
func (h *Hub) LastID() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastID
}

// Close disconnects every client and refuses new ones. Register it with the
// HTTP server's shutdown: streams taken over from net/http are not tracked
// by it, and the others would hold shutdown up.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	close(h.quit)
	for _, s := range h.allStreams() {
		s.mu.Lock()
		for c := range s.clients {
			h.cut(c, h.cfg.CloseGrace)
		}
		s.mu.Unlock()
	}
	h.wg.Wait()
}
