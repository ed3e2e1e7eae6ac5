package events_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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
// its head is in. The client stops at cleanup.
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
// version, failing if the stream ended first.
func connected(t *testing.T, events <-chan item[*sse.Event], proto <-chan int, want int) {
	t.Helper()
	select {
	case p := <-proto:
		if p != want {
			t.Fatalf("the response was HTTP/%d, want HTTP/%d", p, want)
		}
	case it := <-events:
		t.Fatalf("the stream ended before its head arrived: %v", it.err)
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
