// hub_test.go holds the tests of fan-out: every client gets every event, a
// stalled client is cut off without slowing the others, idle streams get
// heartbeats, and clients coming and going leak nothing.

package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

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
	stalled := stalledClient(t, b)
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

func TestHeartbeat(t *testing.T) {
	b := setup(t, events.Config{Heartbeat: 50 * time.Millisecond}, "s")
	lines := rawLines(t, b.open(t, "s").Body)
	expectHeartbeats(t, lines, 2)
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
