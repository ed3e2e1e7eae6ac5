// close_test.go holds the tests of Close: it ends every stream, cleanly,
// stalled ones and ones still connecting included, and returns.

package events_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

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
	b := setup(t, events.Config{CloseGrace: failAfter}, "a", "b")
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
	stalled := stalledClient(t, b)
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
