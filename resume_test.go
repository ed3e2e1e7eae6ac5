package main

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
)

// TestResumeFarBackThroughTheApp resumes the extraterrestrials stream of
// the real app (its real window and client buffer) from 1,100 and from
// 8,000 events back, further than a client may queue: the response is an
// event stream with every event the page missed, in order, exactly as a
// client that never left saw them, then live ones. Before the replay was
// paged, the server closed such a connection before its response head, and
// a browser's EventSource reconnected with the same Last-Event-ID, forever.
func TestResumeFarBackThroughTheApp(t *testing.T) {
	app := startApp(t, Config{})
	watcher := app.subscribe(t) // sees every event, as a page that never left

	ctx := context.Background()
	ets, _, err := app.store.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 100})
	if err != nil || len(ets) == 0 {
		t.Fatalf("the seeded extraterrestrials: %d, %v", len(ets), err)
	}
	// Status changes as the job engine reports them: through the feed,
	// which renders each row and publishes it.
	const changes = 8100
	change := func(i int) {
		et := ets[i%len(ets)]
		et.CommunicationStatus = store.StatusPhoningHome
		et.CommunicationAttempt = i%5 + 1
		et.LastAttemptAt = time.Now()
		app.calls.Changed(et)
	}
	var seen []events.Message
	rows := 0
	for i := range changes {
		change(i)
		if i%256 != 255 && i != changes-1 {
			continue
		}
		// In steps well below its buffer, so the watcher is never cut off.
		for rows <= i {
			select {
			case m, ok := <-watcher:
				if !ok {
					t.Fatalf("the watching stream ended after %d events", len(seen))
				}
				seen = append(seen, m)
				if m.Event == "" {
					rows++
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the watching stream stalled after %d of %d rows", rows, changes)
			}
		}
	}
	for _, back := range []int{1100, 8000} {
		t.Run(strconv.Itoa(back)+" back", func(t *testing.T) {
			if back <= events.DefaultClientBuffer || back >= events.LongWindow {
				t.Fatalf("%d back is not between the client buffer (%d) and the window (%d)",
					back, events.DefaultClientBuffer, events.LongWindow)
			}
			from := len(seen) - 1 - back
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, app.URL+"/events?stream="+live.ExtraterrestrialsStream, nil)
			req.Header.Set("Last-Event-ID", seen[from].ID)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("resuming %d events back: %v", back, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("resuming %d events back: status %d, %q", back, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			got := eventstest.Messages(resp.Body, 64)
			receive := func() events.Message {
				t.Helper()
				select {
				case m, ok := <-got:
					if !ok {
						t.Fatal("the resumed stream ended")
					}
					return m
				case <-time.After(10 * time.Second):
					t.Fatal("the resumed stream stalled")
				}
				return events.Message{}
			}
			for i := from + 1; i < len(seen); i++ {
				m := receive()
				if m.ID != seen[i].ID || m.Event != seen[i].Event || m.Data != seen[i].Data {
					t.Fatalf("event %d of %d missed: id %s event %q, want id %s event %q",
						i-from, len(seen)-1-from, m.ID, m.Event, seen[i].ID, seen[i].Event)
				}
			}
			// Then live events: a new change arrives (counts may come first).
			et := ets[0]
			et.CommunicationStatus = store.StatusSpaceTaxi
			et.CommunicationAttempt = 5
			app.calls.Changed(et)
			for {
				m := receive()
				if m.Event == live.CountsEvent {
					continue
				}
				if m.IDInt() <= seen[len(seen)-1].IDInt() || statusOf(m.Data) != "space_taxi_on_the_way" {
					t.Fatalf("after the replay: id %s %q, want the new change", m.ID, statusOf(m.Data))
				}
				break
			}
		})
	}
}
