package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

// TestNodesResumeOnAnotherNode reads the whole stream on node A during a
// campaign, drops the connection mid-campaign and resumes on node B with
// the last event id A sent (the Last-Event-ID header, as a browser's
// EventSource sends it when a load balancer sends it elsewhere). The ids
// are the same on every node, so the two parts together must be exactly
// what a client that stayed on B all along received: no gap, nothing
// twice (or, if B cannot resume that far back, a resync event at once).
func TestNodesResumeOnAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("two real servers and a campaign; not with -short")
	}
	const total = 1000
	c := startNodes(t, 2, total, false, "-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms")
	whole, _ := openStream(t, http.DefaultClient, c.URL(1)+"/events?stream=extraterrestrials", "")
	onA, leaveA := openStream(t, http.DefaultClient, c.URL(0)+"/events?stream=extraterrestrials", "")
	if status, body := faultCall(t, faultClient, "POST", c.URL(0)+"/api/phone-home", "", ""); status != 200 || strings.TrimSpace(body) != fmt.Sprintf(`{"enqueued":%d}`, total) {
		t.Fatalf("phone home on node A: %d %s", status, body)
	}

	// The reference: every event with an id, until every row has ended.
	want := idsUntil(t, whole, total, time.Minute)

	// A third of the way in, leave A.
	var first []string
	deadline := time.After(time.Minute)
	for len(first) < len(want)/3 {
		select {
		case m, ok := <-onA:
			if !ok {
				t.Fatalf("node A's stream ended after %d events", len(first))
			}
			if m.ID != "" {
				first = append(first, m.ID)
			}
		case <-deadline:
			t.Fatalf("node A's stream: %d events within a minute, want %d", len(first), len(want)/3)
		}
	}
	leaveA()
	last := first[len(first)-1]

	// Resume on B; read until its last event is the reference's last.
	onB, _ := openStream(t, http.DefaultClient, c.URL(1)+"/events?stream=extraterrestrials", last)
	var rest []string
	deadline = time.After(time.Minute)
	for len(rest) == 0 || rest[len(rest)-1] != want[len(want)-1] {
		select {
		case m, ok := <-onB:
			if !ok {
				t.Fatalf("node B's stream ended after %d resumed events", len(rest))
			}
			if m.Event == events.ResyncEvent {
				if len(rest) > 0 {
					t.Fatalf("resync after %d resumed events: a resume either replays or resyncs at once", len(rest))
				}
				t.Logf("node B could not resume from %s and said resync (allowed)", last)
				return
			}
			if m.ID != "" {
				rest = append(rest, m.ID)
			}
		case <-deadline:
			t.Fatalf("node B's resumed stream: %d events within a minute, never reaching the last one %s", len(rest), want[len(want)-1])
		}
	}
	got := append(first, rest...)
	if !slices.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("A's %d events then B's %d resumed after %s differ from B's whole stream (%d events) from event %d: got %v…, want %v…",
			len(first), len(rest), last, len(want), i+1, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
	}
	t.Logf("%d events on A, then %d resumed on B after id %s: exactly B's whole stream of %d", len(first), len(rest), last, len(want))
}

// idsUntil reads a whole extraterrestrials stream until total rows have
// ended (home, or no answer after the last attempt) and returns the ids of
// the events it read.
func idsUntil(t *testing.T, msgs <-chan events.Message, total int, within time.Duration) []string {
	t.Helper()
	var ids []string
	ended := 0
	deadline := time.After(within)
	for ended < total {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the stream ended after %d of %d rows ended", ended, total)
			}
			if m.ID != "" {
				ids = append(ids, m.ID)
			}
			if m.Event == "" {
				if finalStatus(statusOf(m.Data)) {
					ended++
				}
			}
		case <-deadline:
			t.Fatalf("only %d of %d rows ended within %s", ended, total, within)
		}
	}
	return ids
}
