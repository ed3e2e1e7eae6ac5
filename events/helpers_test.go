// helpers_test.go holds what the tests share: a hub served over a real
// HTTP server (bench), requests to it, readers of its streams, waiting on
// a condition with a deadline, and publishing and checking events.

package events_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/internal/testwait"
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
	testwait.Until(t, failAfter, what, cond)
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

// stalledClient opens a raw connection to stream s, sends the request and
// never reads a byte, and returns once the hub counts it as a client.
func stalledClient(t *testing.T, b *bench) net.Conn {
	t.Helper()
	stalled, err := net.Dial("tcp", b.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	if _, err := io.WriteString(stalled, "GET /events?stream=s HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stalled client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
	return stalled
}

// expectHeartbeats reads an idle stream's lines until n keep-alive
// comments have come, failing on anything but those and blank lines.
func expectHeartbeats(t *testing.T, lines <-chan item[string], n int) {
	t.Helper()
	for beats := 0; beats < n; {
		switch line := next(t, lines); line {
		case ": keep-alive":
			beats++
		case "":
		default:
			t.Fatalf("idle stream sent %q", line)
		}
	}
}
