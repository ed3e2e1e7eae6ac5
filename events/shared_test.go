// shared_test.go holds the tests of shared streams: events published with
// the ids they were given, replays refused, events without an id, each
// stream's last id, a client coming from a node that was ahead, and a
// resume read from History beyond the window (over both transports).
// The broker package tests the same over PostgreSQL with several nodes.

package events_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/phonehome/phonehome/events"
)

// sliceHistory is a History kept in memory: the events given, and the
// highest id trimmed.
type sliceHistory struct {
	mu      sync.Mutex
	events  []events.Event
	trimmed int64
}

func (h *sliceHistory) add(ev events.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *sliceHistory) After(_ context.Context, _ string, after int64, limit int) ([]events.Event, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []events.Event
	for _, ev := range h.events {
		if ev.ID > after && len(out) < limit {
			out = append(out, ev)
		}
	}
	return out, after >= h.trimmed, nil
}

// publishAt publishes on a shared stream and keeps the event in hist.
func publishAt(t *testing.T, hub *events.Hub, hist *sliceHistory, id int64, data string) {
	t.Helper()
	if err := hub.PublishAt("s", "", 0, id, []byte(data)); err != nil {
		t.Fatal(err)
	}
	hist.add(events.Event{ID: id, Data: []byte(data)})
}

// A shared stream takes the ids it is given, in order: a replayed one is
// refused, its own time-based ids are refused, its last id is the last
// given (another stream keeps the hub's), and an event without an id
// reaches the clients connected without moving their Last-Event-ID. Over
// both transports.
func TestASharedStreamKeepsTheIDsItIsGiven(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { sharedStreamKeepsIDs(t, tr.setup(t, events.Config{}, "s", "local")) })
	}
}

func sharedStreamKeepsIDs(t *testing.T, b *bench) {
	hist := &sliceHistory{}
	b.hub.Share("s", 100, hist)
	if got := b.hub.StreamLastID("s"); got != 100 {
		t.Fatalf("StreamLastID after Share = %d, want 100", got)
	}
	c := messages(t, b.open(t, "s").Body)
	waitFor(t, "subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
	publishAt(t, b.hub, hist, 101, "one")
	if err := b.hub.PublishAt("s", "", 0, 101, []byte("again")); !errors.Is(err, events.ErrReplayed) {
		t.Errorf("a replayed id: %v, want ErrReplayed", err)
	}
	if _, err := b.hub.Publish("s", "", []byte("time-based")); err == nil {
		t.Error("Publish on a shared stream was accepted")
	}
	if err := b.hub.PublishVolatile("s", "chart", []byte("mine")); err != nil {
		t.Fatal(err)
	}
	publishAt(t, b.hub, hist, 105, "two")
	expect(t, next(t, c), 101, "", "one")
	if m := next(t, c); m.ID != "" || m.Event != "chart" || m.Data != "mine" {
		t.Errorf("volatile event %+v, want chart \"mine\" without an id", m)
	}
	expect(t, next(t, c), 105, "", "two")
	if got := b.hub.StreamLastID("s"); got != 105 {
		t.Errorf("StreamLastID = %d, want 105", got)
	}
	local := publish(t, b.hub, "local", "", "x")
	if got := b.hub.StreamLastID("local"); got != local {
		t.Errorf("StreamLastID(local) = %d, want %d", got, local)
	}

	// A resume never replays the volatile event.
	r := messages(t, b.serveFrom(t, "s", "100").Body)
	expect(t, next(t, r), 101, "", "one")
	expect(t, next(t, r), 105, "", "two")
}

// A client resuming from an id this hub has not delivered yet, which
// another node gave it, gets what follows it and nothing it had; one from
// an id nobody announced gets resync.
func TestAClientFromANodeAheadWaitsForWhatFollows(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	hist := &sliceHistory{}
	b.hub.Share("s", 100, hist)
	publishAt(t, b.hub, hist, 101, "one")
	b.hub.Advance(103) // the notification of 102 and 103 came first

	ahead := messages(t, b.serveFrom(t, "s", "102").Body)
	bogus := messages(t, b.serveFrom(t, "s", "999").Body)
	if m := next(t, bogus); m.Event != events.ResyncEvent {
		t.Fatalf("a client from an id nobody announced got %+v, want resync", m)
	}
	waitFor(t, "subscribed", func() bool { return b.hub.Clients()["s"] == 2 })
	publishAt(t, b.hub, hist, 102, "two")
	publishAt(t, b.hub, hist, 103, "three")
	expect(t, next(t, ahead), 103, "", "three")
}

// A resume from before the window is read from History, then the window
// follows with no gap or duplicate; one from before what History keeps
// gets resync. Over both transports.
func TestASharedResumeBeyondTheWindowReadsHistory(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := tr.setup(t, events.Config{Window: 4})
			b.hub.Register("s")
			hist := &sliceHistory{trimmed: 1002}
			b.hub.Share("s", 1000, hist)
			const n = 700 // more than a replay page
			for i := range n {
				publishAt(t, b.hub, hist, int64(1001+i), "e"+strconv.Itoa(i))
			}
			r := messages(t, b.serveFrom(t, "s", "1002").Body)
			for i := 2; i < n; i++ {
				expect(t, next(t, r), int64(1001+i), "", "e"+strconv.Itoa(i))
			}
			publishAt(t, b.hub, hist, 5000, "live")
			expect(t, next(t, r), 5000, "", "live")

			old := messages(t, b.serveFrom(t, "s", "1001").Body)
			if m := next(t, old); m.Event != events.ResyncEvent || m.IDInt() != 5000 {
				t.Fatalf("a resume from before the trim point got %+v, want resync at 5000", m)
			}
		})
	}
}

// serveFrom opens a stream resuming after last (a Last-Event-ID).
func (b *bench) serveFrom(t *testing.T, stream, last string) *http.Response {
	t.Helper()
	resp, _ := b.get(t, "stream="+stream, last)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s from %s: %s", stream, last, resp.Status)
	}
	return resp
}
