// inline_test.go holds the tests of r3labs' client reading both paths and
// of ephemeral streams being dropped when idle.

package events_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/phonehome/phonehome/events"
)

// r3labs/sse's own client reads the hub's streams, written by the hub
// itself (hijacked) or by r3labs (a writer that cannot be hijacked): ids,
// names and multi-line data arrive intact, so the wire format is the one
// the library's users expect.
func TestR3labsClientReadsBothPaths(t *testing.T) {
	for _, tt := range []struct {
		name string
		wrap func(http.ResponseWriter) http.ResponseWriter
	}{
		{"hijacked", func(w http.ResponseWriter) http.ResponseWriter { return w }},
		{"through r3labs", func(w http.ResponseWriter) http.ResponseWriter { return flushOnly{w} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hub := events.New(events.Config{})
			hub.Register("s")
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := hub.Serve(tt.wrap(w), r, r.URL.Query().Get("stream"), 0); err != nil {
					http.Error(w, err.Error(), http.StatusNotFound)
				}
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(hub.Close)

			client := sse.NewClient(srv.URL + "/events")
			client.ReconnectStrategy = nil
			got := make(chan *sse.Event, 16)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				_ = client.SubscribeWithContext(ctx, "s", func(ev *sse.Event) {
					if len(ev.Data) > 0 {
						got <- ev
					}
				})
			}()
			waitFor(t, "the client subscribed", func() bool { return hub.Clients()["s"] == 1 })

			want := []struct{ name, data string }{
				{"", "<tr id=\"et-1\">\n  <td>one</td>\n</tr>"},
				{"counts", "phoning 3"},
			}
			ids := make([]int64, len(want))
			for i, w := range want {
				ids[i] = publish(t, hub, "s", w.name, w.data)
			}
			for i, w := range want {
				select {
				case ev := <-got:
					if string(ev.ID) != strconv.FormatInt(ids[i], 10) || string(ev.Event) != w.name || string(ev.Data) != w.data {
						t.Errorf("event %d: id %q event %q data %q; want id %d event %q data %q",
							i, ev.ID, ev.Event, ev.Data, ids[i], w.name, w.data)
					}
				case <-time.After(failAfter):
					t.Fatalf("event %d never arrived", i)
				}
			}
		})
	}
}

// An ephemeral stream (a pet's page) is dropped once it has had no client
// for IdleStreamTTL, window and all; it can be registered again, and a
// client resuming from before that gets a resync.
func TestEphemeralStreamsAreDroppedWhenIdle(t *testing.T) {
	b := setup(t, events.Config{Heartbeat: 5 * time.Millisecond, IdleStreamTTL: 20 * time.Millisecond})
	b.hub.RegisterEphemeral("pet-1", 4)
	b.hub.Register("static")
	first := publish(t, b.hub, "pet-1", "", "one")
	for i := range 10 {
		publish(t, b.hub, "pet-1", "", strconv.Itoa(i))
	}
	resp, cancel := b.get(t, "stream=pet-1", strconv.FormatInt(first-1, 10))
	msgs := messages(t, resp.Body)
	if m := next(t, msgs); m.Event != events.ResyncEvent {
		t.Fatalf("resuming from before a window of 4 gave %q %q, want a resync", m.Event, m.Data)
	}
	waitFor(t, "the client subscribed", func() bool { return b.hub.Clients()["pet-1"] == 1 })
	cancel()
	waitFor(t, "the idle stream dropped", func() bool { return !b.hub.Has("pet-1") })
	if !b.hub.Has("static") {
		t.Fatal("a stream registered with Register was dropped")
	}
	last := b.hub.LastID()
	b.hub.RegisterEphemeral("pet-1", 4)
	resp, cancel = b.get(t, "stream=pet-1", strconv.FormatInt(last-1, 10))
	defer cancel()
	if m := next(t, messages(t, resp.Body)); m.Event != events.ResyncEvent {
		t.Fatalf("resuming into a stream created again gave %q %q, want a resync", m.Event, m.Data)
	}
}
