// resume_test.go holds the tests of resuming from Last-Event-ID: exactly
// what was missed, no gap or duplicate while publishing goes on, a resync
// when the window moved on, a replay longer than the client's queue, and a
// replay read too slowly.

package events_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

// rowData is an event about the size of an extraterrestrial's row.
func rowData(i int) string {
	return fmt.Sprintf(`<tr id="extraterrestrial-%d">%s</tr>`, i, strings.Repeat("x", 300))
}

// transports are the two ways the hub writes a stream: itself, on an
// HTTP/1.1 connection it took over, and through r3labs/sse, on HTTP/2.
var transports = []struct {
	name  string
	setup func(*testing.T, events.Config, ...string) *bench
	proto int
}{
	{"HTTP-1.1", setup, 1},
	{"HTTP-2", setupH2, 2},
}

// longStreamOnEach runs fn once per transport, as a subtest named after it,
// on a new bench with the app's config and a stream "s" with a long window;
// proto is the HTTP major version the transport's responses must have.
func longStreamOnEach(t *testing.T, fn func(t *testing.T, proto int, b *bench)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := tr.setup(t, events.Config{})
			b.hub.RegisterWindow("s", events.LongWindow)
			fn(t, tr.proto, b)
		})
	}
}

// A client resuming further back than it may queue events, with the app's
// real sizes (a long window, the default client buffer), receives every
// event it missed, in order, then the live ones, with no gap and no
// duplicate between the two, though some live ones were published while
// its replay was under way. Before the replay was paged, such a client was
// cut off before its response head (its queue overflowed at join), and its
// EventSource reconnected with the same Last-Event-ID, forever.
func TestResumeFurtherBackThanTheClientBuffer(t *testing.T) {
	for _, tr := range transports {
		for _, back := range []int{1100, 8000} {
			t.Run(fmt.Sprintf("%s/%d back", tr.name, back), func(t *testing.T) {
				if back <= events.DefaultClientBuffer || back >= events.LongWindow {
					t.Fatalf("resuming %d back must lie between the client buffer (%d) and the window (%d)",
						back, events.DefaultClientBuffer, events.LongWindow)
				}
				b := tr.setup(t, events.Config{}) // the app's config: the default client buffer
				b.hub.RegisterWindow("s", events.LongWindow)
				var ids []int64
				for i := range events.LongWindow {
					ids = append(ids, publish(t, b.hub, "s", "", rowData(i)))
				}
				from := len(ids) - 1 - back // the last event the client has
				got, proto := b.subscribeR3(t, "s", ids[from])
				connected(t, got, proto, tr.proto)
				if tr.proto == 2 {
					if p := b.serverProto(t); p != 2 {
						t.Fatalf("the server saw HTTP/%d", p)
					}
				}
				waitFor(t, "the client joined", func() bool { return b.hub.Clients()["s"] == 1 })
				// Published while the replay is going out; few enough that the
				// client's resume point stays inside the window.
				for range 50 {
					ids = append(ids, publish(t, b.hub, "s", "", rowData(len(ids))))
				}
				for i := from + 1; i < len(ids); i++ {
					expectR3(t, next(t, got), ids[i], "", rowData(i))
				}
				id := publish(t, b.hub, "s", "", "live")
				expectR3(t, next(t, got), id, "", "live")
			})
		}
	}
}

// A client of some keys resuming far back gets, from its replay, exactly
// the events about its keys and those about nothing, in order, then live
// ones.
func TestResumeFarBackWithKeys(t *testing.T) {
	longStreamOnEach(t, func(t *testing.T, proto int, b *bench) {
		type sent struct {
			id   int64
			data string
		}
		var all []sent
		for i := range events.LongWindow {
			key := int64(i % 7) // 0: about nothing
			data := rowData(i)
			all = append(all, sent{publishKey(t, b.hub, "s", "", key, data), data})
		}
		from := len(all) - 1 - 8000
		resp, _ := b.get(t, "stream=s&ids=3,5", strconv.FormatInt(all[from].id, 10))
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != proto {
			t.Fatalf("status %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
		}
		msgs := messages(t, resp.Body)
		for i := from + 1; i < len(all); i++ {
			if k := i % 7; k == 0 || k == 3 || k == 5 {
				expect(t, next(t, msgs), all[i].id, "", all[i].data)
			}
		}
		waitFor(t, "the client joined", func() bool { return b.hub.Clients()["s"] == 1 })
		publishKey(t, b.hub, "s", "", 4, "not for it")
		id := publishKey(t, b.hub, "s", "", 5, "for it")
		expect(t, next(t, msgs), id, "", "for it")
	})
}

// A client that reads its replay more slowly than the stream moves (here:
// not at all, while a whole window's worth is published) is not cut off for
// it: it gets a prefix of its replay with no gap, then a resync event, then
// exactly the events published after the resync's id.
func TestSlowReplayEndsInAResync(t *testing.T) {
	longStreamOnEach(t, func(t *testing.T, proto int, b *bench) {
		if proto == 2 {
			// An HTTP/2 client takes in what its receive window allows
			// before the program reads any of it: keep that small, so
			// that not reading holds the replay up.
			h2 := b.client.Transport.(*http.Transport).Clone()
			h2.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10}
			b.client = &http.Client{Transport: h2}
			t.Cleanup(h2.CloseIdleConnections)
		}
		// Far more than socket buffers and an HTTP/2 window hold.
		filler := strings.Repeat("x", 4<<10)
		data := func(i int) string { return fmt.Sprintf("%05d %s", i, filler) }
		var ids []int64
		for i := range events.LongWindow {
			ids = append(ids, publish(t, b.hub, "s", "", data(i)))
		}
		from := len(ids) - 1 - 8000
		resp, _ := b.get(t, "stream=s", strconv.FormatInt(ids[from], 10))
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != proto {
			t.Fatalf("status %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
		}
		waitFor(t, "the client joined", func() bool { return b.hub.Clients()["s"] == 1 })
		for range events.LongWindow { // the window moves past the client
			ids = append(ids, publish(t, b.hub, "s", "", data(len(ids))))
		}

		msgs := messages(t, resp.Body)
		i := from + 1
		var m events.Message
		for {
			m = next(t, msgs)
			if m.Event == events.ResyncEvent {
				break
			}
			expect(t, m, ids[i], "", data(i))
			i++
		}
		if i == from+1 || i >= from+1+8000 {
			t.Errorf("the resync came after %d replayed events; the test meant it to come mid-replay", i-from-1)
		}
		j, found := slices.BinarySearch(ids, m.IDInt())
		if !found {
			t.Fatalf("the resync's id %d is no event's", m.IDInt())
		}
		for j++; j < len(ids); j++ {
			expect(t, next(t, msgs), ids[j], "", data(j))
		}
		if b.hub.Clients()["s"] != 1 {
			t.Fatal("the slow client was cut off")
		}
		id := publish(t, b.hub, "s", "", "live")
		expect(t, next(t, msgs), id, "", "live")
	})
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
