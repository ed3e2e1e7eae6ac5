package events_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

// failAfter bounds every wait in these tests. It is only ever a failure
// timeout: nothing passes or fails on how fast something happened.
const failAfter = 10 * time.Second

// bench is a hub served over a real HTTP server, as the app serves it.
type bench struct {
	hub    *events.Hub
	srv    *httptest.Server
	client *http.Client
	protos chan int // setupH2 only: each request's HTTP major version
}

// setup starts a hub with cfg behind an httptest server and registers the
// streams. Cleanup closes the hub before the server so open streams end
// first (httptest's Close waits for every request).
func setup(t *testing.T, cfg events.Config, streams ...string) *bench {
	t.Helper()
	hub := events.New(cfg)
	for _, s := range streams {
		hub.Register(s)
	}
	srv := httptest.NewServer(serveEvents(hub, nil))
	tr := &http.Transport{}
	t.Cleanup(srv.Close)
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(hub.Close)
	return &bench{hub: hub, srv: srv, client: &http.Client{Transport: tr}}
}

// serveEvents is the test servers' /events handler, parsing what the app's
// does: ?stream=, Last-Event-ID (or ?last_event_id=) and ?ids=. When
// protos is set, each request's HTTP major version is sent on it.
func serveEvents(hub *events.Hub, protos chan<- int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if protos != nil {
			select {
			case protos <- r.ProtoMajor:
			default:
			}
		}
		var after int64
		text := r.Header.Get("Last-Event-ID")
		if text == "" {
			text = r.URL.Query().Get("last_event_id")
		}
		if text != "" {
			n, err := strconv.ParseInt(text, 10, 64)
			if err != nil {
				http.Error(w, "bad last event id", http.StatusBadRequest)
				return
			}
			after = n
		}
		// ?ids=1,2,3 subscribes to those keys, as the app's /events does.
		var keys []int64
		if r.URL.Query().Has("ids") {
			keys = []int64{}
			for _, p := range strings.Split(r.URL.Query().Get("ids"), ",") {
				if p == "" {
					continue
				}
				n, err := strconv.ParseInt(p, 10, 64)
				if err != nil {
					http.Error(w, "bad id", http.StatusBadRequest)
					return
				}
				keys = append(keys, n)
			}
		}
		err := hub.ServeKeys(w, r, r.URL.Query().Get("stream"), after, keys)
		switch {
		case errors.Is(err, events.ErrUnknownStream):
			http.Error(w, err.Error(), http.StatusNotFound)
		case errors.Is(err, events.ErrClosed):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

// get sends GET /events?query with an optional Last-Event-ID header and
// returns the response once its headers arrived. The request and body are
// released at cleanup; cancel ends the request earlier.
func (b *bench) get(t *testing.T, query, lastEventID string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events?"+query, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", query, err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return resp, cancel
}

// open connects to a stream, checks it is an event stream, and waits until
// the hub counts the client (so it will receive what is published next).
func (b *bench) open(t *testing.T, stream string) *http.Response {
	t.Helper()
	before := b.hub.Clients()[stream]
	resp, _ := b.get(t, "stream="+stream, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream %s: status %d", stream, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	waitFor(t, "client subscribed to "+stream, func() bool { return b.hub.Clients()[stream] == before+1 })
	return resp
}

// waitFor polls cond until it holds, failing the test after failAfter.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// item is one thing a background reader saw: a message or the end.
type item[T any] struct {
	v   T
	err error
}

// pump reads next in a goroutine until it errors, handing each value over a
// channel. The goroutine stops at cleanup even if nobody drains it.
func pump[T any](t *testing.T, next func() (T, error)) <-chan item[T] {
	ch := make(chan item[T], 64)
	done := make(chan struct{})
	go func() {
		for {
			v, err := next()
			select {
			case ch <- item[T]{v, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// Runs before the body is closed (cleanups are LIFO): the reader then
	// fails and the goroutine returns instead of blocking on a full channel.
	t.Cleanup(func() { close(done) })
	return ch
}

// messages parses an event stream with the package's reader.
func messages(t *testing.T, body io.Reader) <-chan item[events.Message] {
	r := events.NewReader(body)
	return pump(t, r.Next)
}

// rawLines splits a stream on "\n" only, keeping any "\r", so a stray
// carriage return (a line break to a browser) shows up in a test.
func rawLines(t *testing.T, body io.Reader) <-chan item[string] {
	br := bufio.NewReader(body)
	return pump(t, func() (string, error) {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(line, "\n"), nil
	})
}

// next returns the next value, failing if the stream ended or nothing came.
func next[T any](t *testing.T, ch <-chan item[T]) T {
	t.Helper()
	select {
	case it := <-ch:
		if it.err != nil {
			t.Fatalf("stream ended: %v", it.err)
		}
		return it.v
	case <-time.After(failAfter):
		t.Fatal("nothing received in time")
	}
	var zero T
	return zero
}

// end waits for the stream to end and returns its error, failing if
// anything else arrives first or it does not end.
func end[T any](t *testing.T, ch <-chan item[T]) error {
	t.Helper()
	select {
	case it := <-ch:
		if it.err == nil {
			t.Fatalf("received %v, want the stream to end", it.v)
		}
		return it.err
	case <-time.After(failAfter):
		t.Fatal("stream did not end")
	}
	return nil
}

// block reads the lines of the next event on the wire, skipping comment-only
// blocks, without the blank line that ends it.
func block(t *testing.T, lines <-chan item[string]) []string {
	t.Helper()
	var out []string
	for {
		line := next(t, lines)
		switch {
		case line == "" && len(out) > 0:
			return out
		case line == "" || strings.HasPrefix(line, ":"):
		default:
			out = append(out, line)
		}
	}
}

func publish(t *testing.T, hub *events.Hub, stream, name, data string) int64 {
	t.Helper()
	id, err := hub.Publish(stream, name, []byte(data))
	if err != nil {
		t.Fatalf("publish %q to %s: %v", data, stream, err)
	}
	return id
}

// expect checks that a message is the given event.
func expect(t *testing.T, m events.Message, id int64, name, data string) {
	t.Helper()
	if m.IDInt() != id || m.Event != name || m.Data != data {
		t.Fatalf("got event id=%s event=%q data=%q, want id=%d event=%q data=%q",
			m.ID, m.Event, m.Data, id, name, data)
	}
}

func TestWireFormat(t *testing.T) {
	b := setup(t, events.Config{}, "rows", "other")
	resp := b.open(t, "rows")
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	lines := rawLines(t, resp.Body)

	row := publish(t, b.hub, "rows", "", "<tr id=\"x-1\">\n<td>a</td>\n</tr>")
	counts := publish(t, b.hub, "rows", "counts", "n=1")
	tests := []struct {
		name  string
		id    int64
		event string
		data  []string
	}{
		{"multi-line unnamed", row, "", []string{`<tr id="x-1">`, "<td>a</td>", "</tr>"}},
		{"named", counts, "counts", []string{"n=1"}},
	}
	for _, tt := range tests {
		got := block(t, lines)
		var ids, evs, data []string
		for _, line := range got {
			if strings.Contains(line, "\r") {
				t.Errorf("%s: carriage return on the wire: %q", tt.name, line)
			}
			field, value, ok := strings.Cut(line, ": ")
			switch {
			case !ok:
				t.Errorf("%s: malformed line %q", tt.name, line)
			case field == "id":
				ids = append(ids, value)
			case field == "event":
				evs = append(evs, value)
			case field == "data":
				data = append(data, value)
			default:
				t.Errorf("%s: unexpected field in %q", tt.name, line)
			}
		}
		if want := []string{strconv.FormatInt(tt.id, 10)}; !equal(ids, want) {
			t.Errorf("%s: id lines %q, want %q", tt.name, ids, want)
		}
		var wantEv []string
		if tt.event != "" {
			wantEv = []string{tt.event}
		}
		if !equal(evs, wantEv) {
			t.Errorf("%s: event lines %q, want %q", tt.name, evs, wantEv)
		}
		if !equal(data, tt.data) {
			t.Errorf("%s: data lines %q, want %q", tt.name, data, tt.data)
		}
	}

	// Ids strictly increase across publishes and across streams, and each
	// client sees the id Publish returned.
	rows := messages(t, b.open(t, "rows").Body)
	other := messages(t, b.open(t, "other").Body)
	last := counts
	for i := range 10 {
		stream := []string{"rows", "other"}[i%2]
		data := fmt.Sprintf("e%d", i)
		id := publish(t, b.hub, stream, "", data)
		if id <= last {
			t.Fatalf("publish %d: id %d not above %d", i, id, last)
		}
		if got := b.hub.LastID(); got != id {
			t.Errorf("LastID = %d after publishing %d", got, id)
		}
		last = id
		ch := rows
		if stream == "other" {
			ch = other
		}
		expect(t, next(t, ch), id, "", data)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCarriageReturnsCannotBreakOutOfData(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	lines := rawLines(t, b.open(t, "s").Body)
	tests := []struct {
		name string
		data string
		want []string // data lines on the wire
	}{
		{"lone and paired CR", "a\rb\r\nc", []string{"a", "b", "c"}},
		{"event injection", "x\r\nevent: evil\r\ndata: y", []string{"x", "event: evil", "data: y"}},
		{"id injection", "x\rid: 1\r\rretry: 1", []string{"x", "id: 1", "", "retry: 1"}},
		{"trailing CR", "z\r", []string{"z", ""}},
	}
	for _, tt := range tests {
		id := publish(t, b.hub, "s", "", tt.data)
		got := block(t, lines)
		want := []string{"id: " + strconv.FormatInt(id, 10)}
		for _, d := range tt.want {
			want = append(want, "data: "+d)
		}
		// Field order within an event does not matter to a browser; the
		// id first and data lines in order is what the hub writes.
		if !equal(got, want) {
			t.Errorf("%s: wire lines %q, want %q", tt.name, got, want)
		}
	}

	// The same through the parser: one unnamed message whose data is the text.
	b2 := setup(t, events.Config{}, "s")
	msgs := messages(t, b2.open(t, "s").Body)
	id := publish(t, b2.hub, "s", "", "x\r\nevent: evil\r\ndata: y")
	expect(t, next(t, msgs), id, "", "x\nevent: evil\ndata: y")
}

func TestEmptyDataIsRefusedAndStreamsGoOn(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	msgs := messages(t, b.open(t, "s").Body)
	before := b.hub.LastID()
	for _, data := range [][]byte{nil, {}} {
		if id, err := b.hub.Publish("s", "", data); err == nil {
			t.Errorf("Publish(%q) = %d, nil; want an error", data, id)
		}
		if id, err := b.hub.Publish("s", "named", data); err == nil {
			t.Errorf("Publish(named, %q) = %d, nil; want an error", data, id)
		}
	}
	if got := b.hub.LastID(); got != before {
		t.Errorf("refused publishes moved LastID from %d to %d", before, got)
	}
	id := publish(t, b.hub, "s", "", "still here")
	expect(t, next(t, msgs), id, "", "still here")
	if n := b.hub.Clients()["s"]; n != 1 {
		t.Errorf("clients = %d, want 1", n)
	}
}

func TestUnknownStreamIsNotCreated(t *testing.T) {
	b := setup(t, events.Config{}, "known")
	for _, query := range []string{"stream=nope", "stream=", ""} {
		resp, _ := b.get(t, query, "")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), events.ErrUnknownStream.Error()) {
			t.Errorf("GET ?%s: status %d body %q, want 404 %q", query, resp.StatusCode, body, events.ErrUnknownStream)
		}
	}
	if b.hub.Has("nope") || b.hub.Has("") {
		t.Error("Serve created an unknown stream")
	}
	if _, ok := b.hub.Clients()["nope"]; ok {
		t.Error("Clients lists an unknown stream")
	}
	if !b.hub.Has("known") {
		t.Error("registered stream missing")
	}
}

func TestFanOut(t *testing.T) {
	b := setup(t, events.Config{}, "a", "b")
	var feeds []<-chan item[events.Message]
	for range 3 {
		feeds = append(feeds, messages(t, b.open(t, "a").Body))
	}
	other := messages(t, b.open(t, "b").Body)

	const n = 100
	ids := make([]int64, n)
	for i := range n {
		ids[i] = publish(t, b.hub, "a", "", fmt.Sprintf("event %d", i))
	}
	for c, feed := range feeds {
		for i := range n {
			m := next(t, feed)
			if m.IDInt() != ids[i] || m.Data != fmt.Sprintf("event %d", i) {
				t.Fatalf("client %d, event %d: got id=%s data=%q, want id=%d", c, i, m.ID, m.Data, ids[i])
			}
		}
	}
	// The other stream's first event is its own: it saw none of a's.
	marker := publish(t, b.hub, "b", "", "only b")
	expect(t, next(t, other), marker, "", "only b")
}

func TestStalledClientIsCutOffWithoutSlowingOthers(t *testing.T) {
	b := setup(t, events.Config{ClientBuffer: 16}, "s")

	// A client that sends its request and never reads a byte.
	stalled, err := net.Dial("tcp", b.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	if _, err := io.WriteString(stalled, "GET /events?stream=s HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stalled client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
	healthy := messages(t, b.open(t, "s").Body)

	// Far more than socket buffers plus the client's queues can absorb.
	const (
		n       = 300
		lead    = 8 // published ahead of the healthy reader; below ClientBuffer
		payload = 64 << 10
	)
	filler := strings.Repeat("x", payload)
	data := func(i int) string { return fmt.Sprintf("%04d %s", i, filler) }

	// Publish paced by the healthy reader only: if the stalled client could
	// hold up Publish or the healthy stream, this loop would never finish.
	type result struct {
		ids  []int64
		got  []events.Message
		fail error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		receive := func() bool {
			select {
			case it := <-healthy:
				if it.err != nil {
					r.fail = fmt.Errorf("healthy stream ended after %d events: %w", len(r.got), it.err)
					return false
				}
				r.got = append(r.got, it.v)
				return true
			case <-time.After(failAfter):
				r.fail = fmt.Errorf("healthy client stuck after %d events", len(r.got))
				return false
			}
		}
		for i := range n {
			id, err := b.hub.Publish("s", "", []byte(data(i)))
			if err != nil {
				r.fail = err
				return
			}
			r.ids = append(r.ids, id)
			if i >= lead && !receive() {
				return
			}
		}
		for len(r.got) < n {
			if !receive() {
				return
			}
		}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(4 * failAfter):
		t.Fatal("publishing did not finish: something blocked on the stalled client")
	}
	if r.fail != nil {
		t.Fatal(r.fail)
	}
	for i, m := range r.got {
		if m.IDInt() != r.ids[i] || m.Data != data(i) {
			t.Fatalf("healthy event %d: id %s (want %d), data %.10q", i, m.ID, r.ids[i], m.Data)
		}
	}

	waitFor(t, "stalled client cut off", func() bool { return b.hub.Clients()["s"] == 1 })
	// Its connection is closed: reading what the kernel buffered ends.
	if err := stalled.SetReadDeadline(time.Now().Add(failAfter)); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 12)
	if _, err := io.ReadFull(stalled, head); err != nil || string(head) != "HTTP/1.1 200" {
		t.Fatalf("stalled client's response starts %q, %v", head, err)
	}
	drained, err := io.Copy(io.Discard, stalled)
	if drained >= n*payload {
		t.Errorf("the stalled client was sent all %d bytes; it was never stalled", drained)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("stalled client's connection was never closed")
	}
	// The healthy client is still live.
	id := publish(t, b.hub, "s", "", "after")
	expect(t, next(t, healthy), id, "", "after")
}

func TestResumeSendsExactlyWhatWasMissed(t *testing.T) {
	tests := []struct {
		name string
		// connect passes the resume point the way a client would.
		connect func(t *testing.T, b *bench, after int64) *http.Response
	}{
		{"Last-Event-ID header", func(t *testing.T, b *bench, after int64) *http.Response {
			resp, _ := b.get(t, "stream=s", strconv.FormatInt(after, 10))
			return resp
		}},
		{"last_event_id query", func(t *testing.T, b *bench, after int64) *http.Response {
			resp, _ := b.get(t, "stream=s&last_event_id="+strconv.FormatInt(after, 10), "")
			return resp
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, events.Config{}, "s")
			var ids []int64
			for i := range 5 {
				ids = append(ids, publish(t, b.hub, "s", "", fmt.Sprintf("old %d", i)))
			}
			msgs := messages(t, tt.connect(t, b, ids[1]).Body)
			for i := 2; i < 5; i++ {
				expect(t, next(t, msgs), ids[i], "", fmt.Sprintf("old %d", i))
			}
			waitFor(t, "client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
			for i := range 3 {
				id := publish(t, b.hub, "s", "", fmt.Sprintf("live %d", i))
				expect(t, next(t, msgs), id, "", fmt.Sprintf("live %d", i))
			}
		})
	}
}

// While events keep being published, a resuming client still gets every
// event after its id exactly once, in order: none falls between catch-up
// and live delivery.
func TestResumeDuringPublishingHasNoGapsOrDuplicates(t *testing.T) {
	for round := range 5 { // the join falls at a different point each time
		t.Run(strconv.Itoa(round), resumeDuringPublishing)
	}
}

func resumeDuringPublishing(t *testing.T) {
	const most = 1 << 15 // the window and client buffer hold every event
	b := setup(t, events.Config{Window: most, ClientBuffer: most}, "s")
	var ids []int64
	for i := range 10 {
		ids = append(ids, publish(t, b.hub, "s", "", fmt.Sprintf("e%d", i)))
	}
	resumeFrom := 4

	// Publish without pause until the client has joined and a few more
	// events have gone out live, so its joining happens mid-publishing.
	published := make(chan []int64, 1)
	go func() {
		ids := append([]int64(nil), ids...)
		defer func() { published <- ids }()
		live := -1
		for len(ids) < most && live < 100 {
			id, err := b.hub.Publish("s", "", []byte(fmt.Sprintf("e%d", len(ids))))
			if err != nil {
				t.Errorf("publish %d: %v", len(ids), err)
				return
			}
			ids = append(ids, id)
			if live >= 0 {
				live++
			} else if b.hub.Clients()["s"] == 1 {
				live = 0
			}
		}
	}()
	resp, _ := b.get(t, "stream=s", strconv.FormatInt(ids[resumeFrom], 10))
	msgs := messages(t, resp.Body)
	select {
	case ids = <-published:
	case <-time.After(failAfter):
		t.Fatal("publishing did not finish")
	}
	if len(ids) >= most {
		t.Fatalf("the client had not joined after %d events", len(ids))
	}
	for i := resumeFrom + 1; i < len(ids); i++ {
		expect(t, next(t, msgs), ids[i], "", fmt.Sprintf("e%d", i))
	}
	id := publish(t, b.hub, "s", "", "last")
	expect(t, next(t, msgs), id, "", "last")
}

func TestResync(t *testing.T) {
	// A case publishes n events (ids[0] … ids[n-1]) with a window of 4, then
	// resumes from after(ids, start), start being the hub's LastID before
	// the first publish; 0 means no Last-Event-ID.
	tests := []struct {
		name   string
		n      int
		after  func(ids []int64, start int64) int64
		resync bool
		replay []int // indexes of the events replayed
	}{
		{"first event, long evicted", 10, func(ids []int64, _ int64) int64 { return ids[0] }, true, nil},
		{"just before the window", 10, func(ids []int64, _ int64) int64 { return ids[4] }, true, nil},
		{"the last evicted event", 10, func(ids []int64, _ int64) int64 { return ids[5] }, false, []int{6, 7, 8, 9}},
		{"inside the window", 10, func(ids []int64, _ int64) int64 { return ids[7] }, false, []int{8, 9}},
		{"up to date", 10, func(ids []int64, _ int64) int64 { return ids[9] }, false, nil},
		{"before this hub existed", 10, func([]int64, int64) int64 { return 1 }, true, nil},
		{"before this hub existed, nothing evicted", 2, func([]int64, int64) int64 { return 1 }, true, nil},
		{"just before this hub's first id", 2, func(_ []int64, start int64) int64 { return start - 1 }, true, nil},
		{"this hub's start, nothing evicted", 2, func(_ []int64, start int64) int64 { return start }, false, []int{0, 1}},
		{"in the future", 10, func(ids []int64, _ int64) int64 { return ids[9] + 1_000_000_000 }, true, nil},
		{"in the future, nothing evicted", 2, func(ids []int64, _ int64) int64 { return ids[1] + 1 }, true, nil},
		{"no events yet, up to date", 0, func(_ []int64, start int64) int64 { return start }, false, nil},
		{"no id", 10, func([]int64, int64) int64 { return 0 }, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, events.Config{Window: 4}, "s")
			start := b.hub.LastID()
			var ids []int64
			for i := range tt.n {
				ids = append(ids, publish(t, b.hub, "s", "", fmt.Sprintf("e%d", i)))
			}
			header := ""
			if after := tt.after(ids, start); after != 0 {
				header = strconv.FormatInt(after, 10)
			}
			resp, _ := b.get(t, "stream=s", header)
			msgs := messages(t, resp.Body)
			if tt.resync {
				m := next(t, msgs)
				if m.Event != events.ResyncEvent || m.IDInt() < b.hub.LastID() {
					t.Fatalf("first event id=%s event=%q data=%q, want a %q event with id >= %d",
						m.ID, m.Event, m.Data, events.ResyncEvent, b.hub.LastID())
				}
			}
			for _, i := range tt.replay {
				expect(t, next(t, msgs), ids[i], "", fmt.Sprintf("e%d", i))
			}
			// Nothing else was sent: the next event is a live one.
			waitFor(t, "client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
			id := publish(t, b.hub, "s", "", "live")
			expect(t, next(t, msgs), id, "", "live")
		})
	}
}

func TestHeartbeat(t *testing.T) {
	b := setup(t, events.Config{Heartbeat: 50 * time.Millisecond}, "s")
	lines := rawLines(t, b.open(t, "s").Body)
	for beats := 0; beats < 2; {
		switch line := next(t, lines); line {
		case ": keep-alive":
			beats++
		case "":
		default:
			t.Fatalf("idle stream sent %q", line)
		}
	}
}

// connectAll opens clients on the given streams and checks each is live.
func connectAll(t *testing.T, b *bench, streams ...string) []<-chan item[events.Message] {
	t.Helper()
	var feeds []<-chan item[events.Message]
	for _, s := range streams {
		feeds = append(feeds, messages(t, b.open(t, s).Body))
	}
	published := map[string]int64{}
	for i, s := range streams {
		id, ok := published[s]
		if !ok {
			id = publish(t, b.hub, s, "", "before close")
			published[s] = id
		}
		expect(t, next(t, feeds[i]), id, "", "before close")
	}
	return feeds
}

// closeHub runs Close, failing if it does not return.
func closeHub(t *testing.T, hub *events.Hub) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		hub.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(failAfter):
		t.Fatal("Close did not return")
	}
}

func TestCloseEndsStreams(t *testing.T) {
	b := setup(t, events.Config{}, "a", "b")
	feeds := connectAll(t, b, "a", "a", "b")
	closeHub(t, b.hub)
	for _, feed := range feeds {
		end(t, feed) // ended (how cleanly: TestCloseEndsStreamsCleanly)
	}
	waitFor(t, "clients gone", func() bool {
		c := b.hub.Clients()
		return c["a"] == 0 && c["b"] == 0
	})

	resp, _ := b.get(t, "stream=a", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), events.ErrClosed.Error()) {
		t.Errorf("GET after Close: status %d body %q, want 503 %q", resp.StatusCode, body, events.ErrClosed)
	}
	if _, err := b.hub.Publish("a", "", []byte("late")); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if _, err := b.hub.Publish("new", "", []byte("late")); err == nil {
		t.Error("Publish to a new stream after Close succeeded")
	}
	b.hub.Close() // a second Close is harmless
}

// A shutdown ends each healthy stream as a complete HTTP response (the
// terminating chunk is written), so clients see a clean end of stream, not
// a truncated transfer (curl: "transfer closed with outstanding read data").
func TestCloseEndsStreamsCleanly(t *testing.T) {
	b := setup(t, events.Config{}, "a", "b")
	feeds := connectAll(t, b, "a", "a", "b")
	closeHub(t, b.hub)
	for i, feed := range feeds {
		if err := end(t, feed); !errors.Is(err, io.EOF) {
			t.Errorf("client %d: stream ended with %v, want a clean EOF", i, err)
		}
	}
}

// Close also ends a stream whose client stopped reading and whose write is
// blocked on a full socket.
func TestCloseEndsStalledStreams(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	stalled, err := net.Dial("tcp", b.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	if _, err := io.WriteString(stalled, "GET /events?stream=s HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stalled client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
	// More than the socket buffers hold, fewer
	// than the default ClientBuffer, so the client is stuck but not cut.
	filler := []byte(strings.Repeat("x", 64<<10))
	for range 200 {
		if _, err := b.hub.Publish("s", "", filler); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.hub.Clients()["s"]; n != 1 {
		t.Fatalf("clients = %d before Close, want the stalled one", n)
	}
	closeHub(t, b.hub)
	waitFor(t, "stalled client gone", func() bool { return b.hub.Clients()["s"] == 0 })
	// Its response ends: cut short, or complete if the last writes fitted
	// (the connection may then stay open, idle, as any finished request's).
	if err := stalled.SetReadDeadline(time.Now().Add(failAfter)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(stalled), nil)
	if err != nil {
		t.Fatalf("stalled client's response: %v", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("stalled client's response did not end after Close")
	}
}

func TestChurnLeaksNothing(t *testing.T) {
	b := setup(t, events.Config{Heartbeat: 20 * time.Millisecond}, "s")
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	base := settle()

	const clients, batch = 200, 20
	for start := 0; start < clients; start += batch {
		var cancels []context.CancelFunc
		var bodies []io.Closer
		for range batch {
			resp, cancel := b.get(t, "stream=s", "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			cancels = append(cancels, cancel)
			bodies = append(bodies, resp.Body)
		}
		// Half the batches leave while still connecting, half once counted.
		if start/batch%2 == 1 {
			waitFor(t, "batch subscribed", func() bool { return b.hub.Clients()["s"] == batch })
			publish(t, b.hub, "s", "", "hello")
		}
		for i := range cancels {
			cancels[i]()
			bodies[i].Close()
		}
		waitFor(t, "batch gone", func() bool { return b.hub.Clients()["s"] == 0 })
	}
	b.client.CloseIdleConnections()

	const margin = 3
	var now int
	deadline := time.Now().Add(failAfter)
	for now = settle(); now > base+margin; now = settle() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before churn, %d after\n%s", base, now, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A page rendered at LastID and connecting after some events were published
// still gets them.
func TestEventsBetweenRenderAndConnectAreKept(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	publish(t, b.hub, "s", "", "already on the page")
	rendered := b.hub.LastID()
	var ids []int64
	for i := range 3 {
		ids = append(ids, publish(t, b.hub, "s", "", fmt.Sprintf("after render %d", i)))
	}
	resp, _ := b.get(t, "stream=s&last_event_id="+strconv.FormatInt(rendered, 10), "")
	msgs := messages(t, resp.Body)
	for i, id := range ids {
		expect(t, next(t, msgs), id, "", fmt.Sprintf("after render %d", i))
	}
	waitFor(t, "client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
	id := publish(t, b.hub, "s", "", "live")
	expect(t, next(t, msgs), id, "", "live")

	// A fresh hub's LastID is just below its first id: a page rendered
	// before any event misses nothing either.
	b2 := setup(t, events.Config{}, "s")
	rendered = b2.hub.LastID()
	first := publish(t, b2.hub, "s", "", "first")
	resp, _ = b2.get(t, "stream=s&last_event_id="+strconv.FormatInt(rendered, 10), "")
	expect(t, next(t, messages(t, resp.Body)), first, "", "first")
}

// Close must end every stream, including those of clients that were still
// connecting when it ran.
func TestCloseEndsStreamsOfConnectingClients(t *testing.T) {
	for round := range 20 {
		b := setup(t, events.Config{}, "s")
		const connecting = 16
		type conn struct {
			status int
			feed   <-chan item[events.Message]
		}
		conns := make(chan conn, connecting)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range connecting {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/events?stream=s", nil)
				resp, err := b.client.Do(req)
				if err != nil {
					return // cut before its headers: ended, as it should
				}
				t.Cleanup(func() { resp.Body.Close() })
				c := conn{status: resp.StatusCode}
				if c.status == http.StatusOK {
					c.feed = messages(t, resp.Body)
				}
				conns <- c
			}()
		}
		close(start)
		waitFor(t, "some client subscribed", func() bool { return b.hub.Clients()["s"] > 0 })
		b.hub.Close()
		wg.Wait()
		close(conns)
		for c := range conns {
			if c.status != http.StatusOK {
				continue
			}
			select {
			case it := <-c.feed:
				if it.err == nil {
					t.Fatalf("round %d: received %+v after Close", round, it.v)
				}
			case <-time.After(failAfter):
				t.Fatalf("round %d: a client that connected while Close ran is still streaming (clients: %v)",
					round, b.hub.Clients())
			}
		}
	}
}

// watchers records what OnClients reports, in the order the calls run, as
// a watcher registry fed by it would see it.
type watchers struct {
	mu   sync.Mutex
	last map[string]int
}

func (w *watchers) report(stream string, n int) {
	runtime.Gosched() // a registry does some work before it records
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[string]int{}
	}
	w.last[stream] = n
}

func (w *watchers) latest(stream string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[stream]
}

func TestOnClientsReportsJoinsAndLeaves(t *testing.T) {
	var w watchers
	b := setup(t, events.Config{OnClients: w.report}, "s")
	var cancels []context.CancelFunc
	for i := 1; i <= 3; i++ {
		_, cancel := b.get(t, "stream=s", "")
		cancels = append(cancels, cancel)
		waitFor(t, fmt.Sprintf("%d watchers reported", i), func() bool { return w.latest("s") == i })
	}
	for i, cancel := range cancels {
		cancel()
		want := len(cancels) - 1 - i
		waitFor(t, fmt.Sprintf("%d watchers reported", want), func() bool { return w.latest("s") == want })
	}
}

// However joins and leaves interleave, the last count reported for a stream
// is its real count: a registry fed by OnClients must not be left thinking
// a stream is watched when nobody is (or the reverse).
func TestOnClientsLastReportIsTheRealCount(t *testing.T) {
	var w watchers
	b := setup(t, events.Config{OnClients: w.report}, "s")
	const clients, batch = 1000, 20
	for start := 0; start < clients; start += batch {
		var wg sync.WaitGroup
		for range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events?stream=s", nil)
				resp, err := b.client.Do(req)
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				resp.Body.Close() // leave at once, racing the join
			}()
		}
		wg.Wait()
		waitFor(t, "batch gone", func() bool { return b.hub.Clients()["s"] == 0 })
		// Every join reported has its leave reported once the client is
		// gone; give stragglers time, then the last word must be 0.
		waitFor(t, "the last report to be 0", func() bool { return w.latest("s") == 0 })
	}
}

// OnClients runs without hub locks held, as documented: a registry may call
// the hub from it (here Clients; Publish would do as well).
func TestOnClientsMayCallTheHub(t *testing.T) {
	var hub atomic.Pointer[events.Hub]
	stuck := make(chan int, 16) // counts reported from a callback that could not call the hub
	var w watchers
	b := setup(t, events.Config{OnClients: func(stream string, n int) {
		returned := make(chan struct{})
		go func() {
			hub.Load().Clients()
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(failAfter / 2): // let go, or the hub stays deadlocked
			stuck <- n
		}
		w.report(stream, n)
	}}, "s")
	hub.Store(b.hub)
	_, cancel := b.get(t, "stream=s", "")
	waitFor(t, "the join reported", func() bool { return w.latest("s") == 1 })
	cancel()
	waitFor(t, "the leave reported", func() bool { return w.latest("s") == 0 })
	close(stuck)
	for n := range stuck {
		t.Errorf("OnClients(s, %d) ran with the stream locked: calling Clients from it deadlocks", n)
	}
}
