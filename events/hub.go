// Package events is phonehome's publish/subscribe hub for server-sent events.
//
// It owns event ids, the resume window and the fan-out, and uses
// github.com/r3labs/sse/v2 only to write each client's stream. Each connected
// client gets a private r3labs stream, fed without blocking: r3labs blocks a
// whole stream on its slowest subscriber, so sharing one stream would let a
// stalled reader (say, `curl | less`) freeze everyone. A client whose private
// buffer fills is cut off instead; its browser reconnects with
// Last-Event-ID and resumes, or receives a resync event.
package events

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
)

// ResyncEvent is the name of the event that tells a page its table may have
// missed changes and must be reloaded.
const ResyncEvent = "resync"

// Event is one published message.
type Event struct {
	// ID increases across the hub's streams and across restarts.
	ID int64
	// Name is the SSE event name; empty is the default "message".
	Name string
	// Data is the payload, usually an HTML fragment; one data: line per line.
	Data []byte

	idText []byte // ID formatted once for every client
}

// Config tunes a Hub. Zero fields take the defaults.
type Config struct {
	// Window is how many recent events per stream are kept for
	// Last-Event-ID resume (1024).
	Window int
	// ClientBuffer is how many events may wait for one slow client before
	// it is cut off (1024).
	ClientBuffer int
	// Heartbeat is the interval of the comment sent to every client (15 s).
	Heartbeat time.Duration
	// Now is the clock used for time-based ids (time.Now).
	Now func() time.Time
	// OnClients, when set, is called (without hub locks held) each time a
	// client joins or leaves a stream, with the stream's new client count:
	// the feed of watcher registries.
	OnClients func(stream string, clients int)
}

// Hub fans events out to the clients of named streams.
type Hub struct {
	cfg    Config
	server *sse.Server

	mu      sync.Mutex
	streams map[string]*stream
	lastID  int64
	closed  bool
	// floor is the first id this process issued: a client asking to resume
	// from before it was connected to an earlier process and must resync.
	floor int64

	connSeq atomic.Int64
	// pending holds connecting clients until r3labs has registered their
	// subscriber: an event sent before that would be dropped.
	pending sync.Map // private stream id → *client
	quit    chan struct{}
	wg      sync.WaitGroup
}

type stream struct {
	name    string
	mu      sync.Mutex
	window  []Event // the most recent events, oldest first
	evicted int64   // the highest id dropped from the window
	clients map[*client]struct{}
	changes uint64 // counts joins and leaves, under mu

	// reportMu orders OnClients calls: a report older than the last one
	// made is skipped, so the registry's last word is the real count.
	reportMu sync.Mutex
	reported uint64
}

// closeGrace is how long a client cut off by Close has to take the end of
// its response; one cut for being slow gets no grace.
const closeGrace = time.Second

type client struct {
	key     string // the private r3labs stream id
	stream  *stream
	after   int64 // the last event id the client had when it connected
	gone    bool  // set under stream.mu when Serve returns
	cancel  func()
	rc      *http.ResponseController
	cutOnce sync.Once
	dropped atomic.Bool
}

// New makes a hub and starts its heartbeat.
func New(cfg Config) *Hub {
	if cfg.Window <= 0 {
		cfg.Window = 1024
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 1024
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	srv := sse.New()
	srv.AutoReplay = false // we own ids and replay; its log would grow forever
	srv.AutoStream = false // an unknown stream must never be created by a client
	srv.SplitData = true   // multi-line HTML stays whole
	srv.BufferSize = cfg.ClientBuffer
	srv.Headers = map[string]string{"X-Accel-Buffering": "no"}
	h := &Hub{
		cfg:     cfg,
		server:  srv,
		streams: map[string]*stream{},
		quit:    make(chan struct{}),
	}
	srv.OnSubscribe = h.subscribed
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

// Register declares a stream so clients may subscribe to it. Publishing to
// a stream registers it too.
func (h *Hub) Register(name string) {
	h.stream(name)
}

func (h *Hub) stream(name string) *stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.streams[name]
	if s == nil {
		s = &stream{name: name, clients: map[*client]struct{}{}}
		h.streams[name] = s
	}
	return s
}

// Has reports whether a stream has been registered.
func (h *Hub) Has(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[name] != nil
}

// Publish sends data to every client of the stream as one event and keeps it
// in the resume window. It never blocks on a client. Empty data is refused
// (r3labs would end every connection on it), and carriage returns become
// newlines so data cannot break out of its data: lines.
func (h *Hub) Publish(streamName, eventName string, data []byte) (int64, error) {
	if len(data) == 0 {
		return 0, errors.New("publish: empty data")
	}
	if strings.ContainsAny(eventName, "\r\n") {
		return 0, errors.New("publish: event name contains a line break")
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
	ev := Event{ID: h.nextID(), Name: eventName, Data: data}
	h.mu.Unlock()
	ev.idText = []byte(strconv.FormatInt(ev.ID, 10))

	if len(s.window) == h.cfg.Window {
		s.evicted = s.window[0].ID
		s.window = append(s.window[:0], s.window[1:]...)
	}
	s.window = append(s.window, ev)
	for c := range s.clients {
		h.send(c, ev)
	}
	return ev.ID, nil
}

func normalizeNewlines(b []byte) []byte {
	if !bytes.ContainsRune(b, '\r') {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// send hands one event to a client's private stream, cutting the client off
// when its buffer is full. Each client gets its own *sse.Event: r3labs is
// not safe with a shared one.
func (h *Hub) send(c *client, ev Event) {
	if c.dropped.Load() {
		return
	}
	if ev.idText == nil {
		ev.idText = []byte(strconv.FormatInt(ev.ID, 10))
	}
	e := &sse.Event{ID: ev.idText, Data: ev.Data}
	if ev.Name != "" {
		e.Event = []byte(ev.Name)
	}
	if !h.server.TryPublish(c.key, e) {
		h.cut(c, 0)
	}
}

// cut ends a client's connection: its request context is cancelled, and a
// write blocked on a full socket is released by a deadline grace from now.
// A slow client gets no grace; one cut by Close gets closeGrace to receive
// the end of its response, so its stream ends cleanly.
func (h *Hub) cut(c *client, grace time.Duration) {
	c.cutOnce.Do(func() {
		c.dropped.Store(true)
		c.cancel()
		if c.rc != nil {
			_ = c.rc.SetWriteDeadline(time.Now().Add(grace))
		}
	})
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

func (h *Hub) heartbeat() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.quit:
			return
		case <-t.C:
			h.mu.Lock()
			streams := make([]*stream, 0, len(h.streams))
			for _, s := range h.streams {
				streams = append(streams, s)
			}
			h.mu.Unlock()
			for _, s := range streams {
				s.mu.Lock()
				for c := range s.clients {
					if !c.dropped.Load() && !h.server.TryPublish(c.key, &sse.Event{Comment: []byte("keep-alive")}) {
						h.cut(c, 0)
					}
				}
				s.mu.Unlock()
			}
		}
	}
}

// Clients reports how many clients each stream has.
func (h *Hub) Clients() map[string]int {
	h.mu.Lock()
	streams := make([]*stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
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
// HTTP server's shutdown so open streams do not hold shutdown up.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	streams := make([]*stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	close(h.quit)
	for _, s := range streams {
		s.mu.Lock()
		for c := range s.clients {
			h.cut(c, closeGrace)
		}
		s.mu.Unlock()
	}
	h.wg.Wait()
}

// ErrUnknownStream is returned by Serve for a stream nobody registered.
var ErrUnknownStream = errors.New("unknown stream")

// ErrClosed is returned by Serve once the hub is closed.
var ErrClosed = errors.New("event hub is shutting down")

// Serve streams one stream to one client until the client goes away, is cut
// off, or the hub closes. after is the id of the last event the client has
// (from Last-Event-ID, or the id a page was rendered at); 0 means none. Missed
// events still in the window are sent first; when some are no longer there, a
// single resync event is sent instead.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, streamName string, after int64) error {
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

	rc := http.NewResponseController(w)
	// Streams live long: no write deadline (a server WriteTimeout would cut them).
	_ = rc.SetWriteDeadline(time.Time{})

	ctx, cancel := context.WithCancel(r.Context())
	c := &client{
		key:    streamName + "#" + strconv.FormatInt(h.connSeq.Add(1), 10),
		stream: s,
		after:  after,
		cancel: cancel,
		rc:     rc,
	}
	h.server.CreateStream(c.key)
	h.pending.Store(c.key, c)
	defer func() {
		h.pending.Delete(c.key)
		s.mu.Lock()
		c.gone = true
		_, joined := s.clients[c]
		delete(s.clients, c)
		n := len(s.clients)
		var seq uint64
		if joined {
			s.changes++
			seq = s.changes
		}
		s.mu.Unlock()
		cancel()
		h.server.RemoveStream(c.key)
		if joined {
			h.report(s, seq, n)
		}
	}()

	// r3labs serves the private stream named in ?stream=; Last-Event-ID has
	// been handled above and must not reach it (it rejects non-numbers).
	r2 := r.Clone(ctx)
	q := r2.URL.Query()
	q.Set("stream", c.key)
	r2.URL.RawQuery = q.Encode()
	r2.Header.Del("Last-Event-ID")
	h.server.ServeHTTP(w, r2)
	return nil
}

// subscribed runs (on its own goroutine) once r3labs has registered a
// client's subscriber: from here on, events sent to it are delivered. The
// client joins its stream and gets what it missed under the stream's lock,
// so no event can fall between catch-up and live delivery.
func (h *Hub) subscribed(key string, _ *sse.Subscriber) {
	v, ok := h.pending.LoadAndDelete(key)
	if !ok {
		return
	}
	c := v.(*client)
	s := c.stream
	s.mu.Lock()
	if c.gone {
		s.mu.Unlock()
		return
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed { // Close ran while this client connected: it has no place here
		s.mu.Unlock()
		h.cut(c, closeGrace)
		return
	}
	s.clients[c] = struct{}{}
	h.catchUp(s, c, c.after)
	s.changes++
	seq, n := s.changes, len(s.clients)
	s.mu.Unlock()
	h.report(s, seq, n)
}

// catchUp sends a resuming client what it missed. Called with s.mu held, so
// no new event can slip between the catch-up and live delivery.
func (h *Hub) catchUp(s *stream, c *client, after int64) {
	if after <= 0 {
		return
	}
	h.mu.Lock()
	last, floor := h.lastID, h.floor
	h.mu.Unlock()
	// Ids below floor-1 come from an earlier process; above last, from nowhere.
	if after < floor-1 || after < s.evicted || after > last {
		h.send(c, Event{ID: last, Name: ResyncEvent, Data: []byte("resync")})
		return
	}
	for _, ev := range s.window {
		if ev.ID > after {
			h.send(c, ev)
		}
	}
}
