// h2_test.go holds the tests of the r3labs path over HTTP/2 (TLS with
// ALPN), read by r3labs' own client: live events, heartbeats, resume and
// resync, a stalled client cut off, and Close.

package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/phonehome/phonehome/events"
)

// setupH2 is setup over TLS with HTTP/2 negotiated by ALPN, as the app
// serves with -tls-cert: the hub cannot take these connections over, so
// r3labs/sse writes the streams. The server sends each request's HTTP
// major version on b.protos.
func setupH2(t *testing.T, cfg events.Config, streams ...string) *bench {
	t.Helper()
	hub := events.New(cfg)
	for _, s := range streams {
		hub.Register(s)
	}
	protos := make(chan int, 64)
	srv := httptest.NewUnstartedServer(serveEvents(hub, protos))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	client := srv.Client()
	t.Cleanup(srv.Close)
	t.Cleanup(client.CloseIdleConnections)
	t.Cleanup(hub.Close)
	return &bench{hub: hub, srv: srv, client: client, protos: protos}
}

// noRetry is a reconnect strategy that never reconnects, so a test sees
// the end of each response instead of r3labs quietly opening another.
type noRetry struct{}

func (noRetry) NextBackOff() time.Duration { return -1 } // backoff.Stop
func (noRetry) Reset()                     {}

// subscribeR3 subscribes to a stream with r3labs/sse's own client over the
// bench's HTTP client, resuming after lastEventID unless it is 0. Events
// arrive on the first channel, then the end (io.EOF for a clean end of
// stream); the response's HTTP major version arrives on the second once
// its head is in, and the second is closed when the subscription ends
// (before its end is sent on the first). The client stops at cleanup.
func (b *bench) subscribeR3(t *testing.T, stream string, lastEventID int64) (<-chan item[*sse.Event], <-chan int) {
	t.Helper()
	client := sse.NewClient(b.srv.URL + "/events")
	client.Connection = b.client
	client.ReconnectStrategy = noRetry{}
	if lastEventID != 0 {
		client.LastEventID.Store([]byte(strconv.FormatInt(lastEventID, 10)))
	}
	proto := make(chan int, 1)
	client.ResponseValidator = func(_ *sse.Client, resp *http.Response) error {
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		proto <- resp.ProtoMajor
		return nil
	}
	ch := make(chan item[*sse.Event], 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := client.SubscribeWithContext(ctx, stream, func(ev *sse.Event) {
			select {
			case ch <- item[*sse.Event]{v: ev}:
			case <-ctx.Done():
			}
		})
		if err == nil {
			err = io.EOF
		}
		close(proto) // after the head's version, if the head came
		select {
		case ch <- item[*sse.Event]{err: err}:
		case <-ctx.Done():
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch, proto
}

// connected waits for a subscription's response head and checks its HTTP
// version, failing if the stream ended first. It waits on proto alone:
// once the head is in, events may be waiting too, and a select on both
// could take the first event for the end (and lose it).
func connected(t *testing.T, events <-chan item[*sse.Event], proto <-chan int, want int) {
	t.Helper()
	select {
	case p, ok := <-proto:
		if !ok {
			t.Fatalf("the stream ended before its head arrived: %v", end(t, events))
		}
		if p != want {
			t.Fatalf("the response was HTTP/%d, want HTTP/%d", p, want)
		}
	case <-time.After(failAfter):
		t.Fatal("no response head")
	}
}

// expectR3 checks that an event read by r3labs' client is the given one.
func expectR3(t *testing.T, ev *sse.Event, id int64, name, data string) {
	t.Helper()
	if string(ev.ID) != strconv.FormatInt(id, 10) || string(ev.Event) != name || string(ev.Data) != data {
		t.Fatalf("got event id=%s event=%q data=%.40q, want id=%d event=%q data=%.40q",
			ev.ID, ev.Event, ev.Data, id, name, data)
	}
}

// serverProto returns the HTTP major version the server saw for the next
// request.
func (b *bench) serverProto(t *testing.T) int {
	t.Helper()
	select {
	case p := <-b.protos:
		return p
	case <-time.After(failAfter):
		t.Fatal("the server saw no request")
	}
	return 0
}

// getH2 opens a stream over the bench's HTTP/2 client and checks that the
// response really is HTTP/2, as the server saw it too.
func (b *bench) getH2(t *testing.T, query, lastEventID string) *http.Response {
	t.Helper()
	resp, _ := b.get(t, query, lastEventID)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("GET %s: status %d over HTTP/%d", query, resp.StatusCode, resp.ProtoMajor)
	}
	if p := b.serverProto(t); p != 2 {
		t.Fatalf("the server saw HTTP/%d", p)
	}
	return resp
}

// Over HTTP/2, r3labs writes the streams: r3labs' own client receives
// ids, names and multi-line data intact, as they are published, one flush
// each (nothing waits for a buffer to fill), and the request and response
// really were HTTP/2.
func TestHTTP2LiveEvents(t *testing.T) {
	b := setupH2(t, events.Config{}, "s")
	got, proto := b.subscribeR3(t, "s", 0)
	connected(t, got, proto, 2)
	if p := b.serverProto(t); p != 2 {
		t.Fatalf("the server saw HTTP/%d", p)
	}
	waitFor(t, "the client joined", func() bool { return b.hub.Clients()["s"] == 1 })
	for _, w := range []struct{ name, data string }{
		{"", "<tr id=\"et-1\">\n  <td>one</td>\n</tr>"},
		{"counts", "phoning 3"},
		{"", "three"},
	} {
		// One at a time: each must arrive before the next is published.
		id := publish(t, b.hub, "s", w.name, w.data)
		expectR3(t, next(t, got), id, w.name, w.data)
	}
}

// Heartbeats reach an idle HTTP/2 stream as comments.
func TestHTTP2Heartbeat(t *testing.T) {
	b := setupH2(t, events.Config{Heartbeat: 50 * time.Millisecond}, "s")
	lines := rawLines(t, b.getH2(t, "stream=s", "").Body)
	expectHeartbeats(t, lines, 2)
}

// Over HTTP/2, a client resuming from inside the window gets what it
// missed, then live events; one resuming from before it gets a resync.
func TestHTTP2ResumeAndResync(t *testing.T) {
	b := setupH2(t, events.Config{Window: 4}, "s")
	var ids []int64
	for i := range 10 {
		ids = append(ids, publish(t, b.hub, "s", "", fmt.Sprintf("e%d", i)))
	}

	resumed, proto := b.subscribeR3(t, "s", ids[7])
	connected(t, resumed, proto, 2)
	expectR3(t, next(t, resumed), ids[8], "", "e8")
	expectR3(t, next(t, resumed), ids[9], "", "e9")

	resynced, proto := b.subscribeR3(t, "s", ids[2])
	connected(t, resynced, proto, 2)
	ev := next(t, resynced)
	if string(ev.Event) != events.ResyncEvent || string(ev.ID) != strconv.FormatInt(ids[9], 10) {
		t.Fatalf("resuming from before the window gave id=%s event=%q, want a %q event with id %d",
			ev.ID, ev.Event, events.ResyncEvent, ids[9])
	}

	waitFor(t, "both clients joined", func() bool { return b.hub.Clients()["s"] == 2 })
	id := publish(t, b.hub, "s", "", "live")
	expectR3(t, next(t, resumed), id, "", "live")
	expectR3(t, next(t, resynced), id, "", "live")
}

// Over HTTP/2, a client that stops reading is cut off without slowing
// anyone: on a busy stream when its buffer fills, and on a quiet one (fewer
// events than its buffer holds, but more bytes than HTTP/2 flow control
// lets through unread) once an event has waited WriteTimeout for it. Before
// the r3labs path watched its flushes, the quiet one was never cut: its
// handler stayed blocked in a write for as long as the client lived.
func TestHTTP2StalledClientIsCutOff(t *testing.T) {
	for _, tt := range []struct {
		name       string
		cfg        events.Config
		n, payload int
	}{
		{"busy stream", events.Config{ClientBuffer: 16}, 600, 32 << 10},
		{"quiet stream", events.Config{WriteTimeout: 300 * time.Millisecond}, 300, 32 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.n*tt.payload < 2*(4<<20) {
				t.Fatal("too few bytes to exhaust the stalled stream's HTTP/2 window (4 MB in Go's client)")
			}
			b := setupH2(t, tt.cfg, "s")
			stalled := b.getH2(t, "stream=s", "") // its body is never read
			waitFor(t, "the stalled client joined", func() bool { return b.hub.Clients()["s"] == 1 })
			healthy := messages(t, b.getH2(t, "stream=s", "").Body)
			waitFor(t, "the healthy client joined", func() bool { return b.hub.Clients()["s"] == 2 })

			filler := strings.Repeat("x", tt.payload)
			data := func(i int) string { return fmt.Sprintf("%04d %s", i, filler) }
			const lead = 8 // published ahead of the healthy reader; below every ClientBuffer
			fail := make(chan error, 1)
			go func() {
				var ids []int64
				got := 0
				receive := func() error {
					select {
					case it := <-healthy:
						if it.err != nil {
							return fmt.Errorf("healthy stream ended after %d events: %w", got, it.err)
						}
						if it.v.IDInt() != ids[got] || it.v.Data != data(got) {
							return fmt.Errorf("healthy event %d: id %s, want %d", got, it.v.ID, ids[got])
						}
						got++
						return nil
					case <-time.After(failAfter):
						return fmt.Errorf("healthy client stuck after %d events", got)
					}
				}
				for i := range tt.n {
					id, err := b.hub.Publish("s", "", []byte(data(i)))
					if err != nil {
						fail <- err
						return
					}
					ids = append(ids, id)
					if i >= lead {
						if err := receive(); err != nil {
							fail <- err
							return
						}
					}
				}
				for got < tt.n {
					if err := receive(); err != nil {
						fail <- err
						return
					}
				}
				fail <- nil
			}()
			select {
			case err := <-fail:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(4 * failAfter):
				t.Fatal("publishing did not finish: something blocked on the stalled client")
			}

			waitFor(t, "the stalled client cut off", func() bool { return b.hub.Clients()["s"] == 1 })
			// Its stream was reset: reading what its client buffered ends in
			// an error, short of everything.
			read := make(chan error, 1)
			var drained int64
			go func() {
				var err error
				drained, err = io.Copy(io.Discard, stalled.Body)
				read <- err
			}()
			select {
			case err := <-read:
				if err == nil {
					t.Error("the stalled stream ended cleanly; a cut-off stream is reset")
				}
				if drained >= int64(tt.n*tt.payload) {
					t.Errorf("the stalled client was sent all %d bytes; it was never stalled", drained)
				}
			case <-time.After(failAfter):
				t.Fatal("the stalled stream never ended")
			}
			// The healthy client is still live.
			id := publish(t, b.hub, "s", "", "after")
			expect(t, next(t, healthy), id, "", "after")
		})
	}
}

// Over HTTP/2, Close delivers the events published before it and then
// ends each stream cleanly: r3labs' client sees the end of the stream, not
// a reset.
func TestHTTP2CloseEndsStreamsCleanly(t *testing.T) {
	// Grace enough for 200 events on a loaded machine (the default 1 s
	// was not, once in a hundred runs).
	b := setupH2(t, events.Config{CloseGrace: failAfter}, "s")
	got, proto := b.subscribeR3(t, "s", 0)
	connected(t, got, proto, 2)
	waitFor(t, "the client joined", func() bool { return b.hub.Clients()["s"] == 1 })
	var ids []int64
	for i := range 200 {
		ids = append(ids, publish(t, b.hub, "s", "", fmt.Sprintf("e%d", i)))
	}
	closeHub(t, b.hub)
	for i, id := range ids {
		expectR3(t, next(t, got), id, "", fmt.Sprintf("e%d", i))
	}
	select {
	case it := <-got:
		if !errors.Is(it.err, io.EOF) {
			t.Fatalf("after the last event: %v %v, want a clean end of stream", it.v, it.err)
		}
	case <-time.After(failAfter):
		t.Fatal("the stream did not end")
	}
	waitFor(t, "the client gone", func() bool { return b.hub.Clients()["s"] == 0 })
}
