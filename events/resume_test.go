package events_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

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
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := tr.setup(t, events.Config{})
			b.hub.RegisterWindow("s", events.LongWindow)
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
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tr.proto {
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
}

// A client that reads its replay more slowly than the stream moves (here:
// not at all, while a whole window's worth is published) is not cut off for
// it: it gets a prefix of its replay with no gap, then a resync event, then
// exactly the events published after the resync's id.
func TestSlowReplayEndsInAResync(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := tr.setup(t, events.Config{})
			b.hub.RegisterWindow("s", events.LongWindow)
			if tr.proto == 2 {
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
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tr.proto {
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
}
