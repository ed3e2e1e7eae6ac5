package main

import (
	"net/http"
	"slices"
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
	c := startStreamNodes(t, 2)
	whole, _ := openStream(t, http.DefaultClient, c.URL(1)+"/events?stream=extraterrestrials", "")
	onA, leaveA := openStream(t, http.DefaultClient, c.URL(0)+"/events?stream=extraterrestrials", "")
	phoneHomeAll(t, c.URL(0), streamTotal)

	// The reference: every event with an id, until every row has ended.
	want := idsUntil(t, whole, streamTotal, time.Minute)

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
	if problem := readRows(msgs, total, within, func(m events.Message) (bool, string) {
		if m.ID != "" {
			ids = append(ids, m.ID)
		}
		return m.Event == "" && finalStatus(statusOf(m.Data)), ""
	}); problem != "" {
		t.Fatal(problem)
	}
	return ids
}
