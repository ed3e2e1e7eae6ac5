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
// A client may ask for a subset of a stream: events published with a key
// (an extraterrestrial's id, say) reach only the clients that subscribed to
// that key, and clients that asked for everything; events without a key
// reach every client.
package events

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
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

type stream struct {
	name    string
	mu      sync.Mutex
	size    int          // how many events the window keeps
	window  []*wireEvent // the most recent events, oldest first
	evicted int64        // the highest id dropped from the window
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

// closeGrace is how long a client cut off by Close has to take the end of
// its response; one cut for being slow gets no grace.
const closeGrace = time.Second

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

// replayPage is the most events of a replay taken from the window at a
// time: the stream's lock is held for one page, and a hijacked client's
// page goes out in one writev.
const replayPage = 256

// New makes a hub and starts its heartbeat.
func New(cfg Config) *Hub {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = DefaultClientBuffer
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 25 * time.Millisecond
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.IdleStreamTTL <= 0 {
		cfg.IdleStreamTTL = time.Minute
	}
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
			clients:    map[*client]struct{}{},
			everything: map[*client]struct{}{},
			byKey:      map[int64][]*client{},
		}
		if like != nil {
			s.size, s.ephemeral = like.size, like.ephemeral
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
	if len(data) == 0 {
		return 0, errors.New("publish: empty data")
	}
	if strings.ContainsAny(eventName, "\r\n") {
		return 0, errors.New("publish: event name contains a line break")
	}
	if key < 0 {
		return 0, errors.New("publish: negative key")
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
	id := h.nextID()
	h.mu.Unlock()
	ev := &wireEvent{id: id, key: key, wire: encode(id, eventName, data)}

	if len(s.window) >= s.size {
		s.evicted = s.window[0].id
		copy(s.window, s.window[1:])
		s.window[len(s.window)-1] = ev
	} else {
		s.window = append(s.window, ev)
	}
	if key == 0 {
		for c := range s.clients {
			h.enqueue(c, ev)
		}
		return id, nil
	}
	for c := range s.everything {
		h.enqueue(c, ev)
	}
	for _, c := range s.byKey[key] {
		h.enqueue(c, ev)
	}
	return id, nil
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
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, '\n')
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

// page appends to buf the next piece of a paging client's replay: up to
// limit of the events after c.after still in its stream's window, those it
// wants. Once the piece reaches the end of the window the client stops
// paging, under the stream's lock, so what is published next is queued for
// it: nothing falls between replay and live events, and nothing is sent
// twice. When the window has moved past the client's position, the piece
// is a resync event instead. A client that is not paging (or was cut off
// or is gone) gets nothing.
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
	if c.after < s.evicted {
		h.mu.Lock()
		last := h.lastID
		h.mu.Unlock()
		// Every event of this stream up to last is in the window (Publish
		// holds s.mu from id to window), so the resync covers them all.
		buf = append(buf, resyncEvent(last))
		done = true
	} else {
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

// cut ends a client's connection. A slow client gets no grace: its
// connection is closed now, releasing a blocked write. One cut by Close
// gets closeGrace to receive what is queued and then a clean end of stream.
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

func (h *Hub) allStreams() []*stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	streams := make([]*stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	return streams
}

func (h *Hub) heartbeat() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.quit:
			return
		case now := <-t.C:
			h.sweep(now)
			for _, s := range h.allStreams() {
				s.mu.Lock()
				for c := range s.clients {
					h.enqueue(c, h.heartbeatWire)
				}
				s.mu.Unlock()
			}
		}
	}
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

// catchUp starts a resuming client's replay, or queues a resync when what
// it missed is no longer all in the window. The replay itself is paged
// from the window by the client's writer (see page), never queued: it may
// be longer than the client's queue. Called with s.mu held.
func (h *Hub) catchUp(s *stream, c *client, last, floor int64) {
	after := c.after
	if after <= 0 {
		return
	}
	// Ids below floor-1 come from an earlier process; above last, from nowhere.
	if after < floor-1 || after < s.evicted || after > last {
		h.enqueue(c, resyncEvent(last))
		return
	}
	if n := len(s.window); n > 0 && s.window[n-1].id > after {
		c.mu.Lock()
		c.paging = true
		c.mu.Unlock()
	}
}
