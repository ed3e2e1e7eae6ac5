package events_test

import (
	"fmt"
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
