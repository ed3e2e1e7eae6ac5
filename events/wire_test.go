// wire_test.go holds the tests of what goes on the wire: the response
// head and event format, data that cannot break out of its lines, refused
// empty data, and unknown streams.

package events_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/events"
)

func TestWireFormat(t *testing.T) {
	b := setup(t, events.Config{}, "rows", "other")
	resp := b.open(t, "rows")
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	lines := rawLines(t, resp.Body)

	row := publish(t, b.hub, "rows", "", "<tr id=\"x-1\">\n<td>a</td>\n</tr>")
	counts := publish(t, b.hub, "rows", "counts", "n=1")
	tests := []struct {
		name  string
		id    int64
		event string
		data  []string
	}{
		{"multi-line unnamed", row, "", []string{`<tr id="x-1">`, "<td>a</td>", "</tr>"}},
		{"named", counts, "counts", []string{"n=1"}},
	}
	for _, tt := range tests {
		got := block(t, lines)
		var ids, evs, data []string
		for _, line := range got {
			if strings.Contains(line, "\r") {
				t.Errorf("%s: carriage return on the wire: %q", tt.name, line)
			}
			field, value, ok := strings.Cut(line, ": ")
			switch {
			case !ok:
				t.Errorf("%s: malformed line %q", tt.name, line)
			case field == "id":
				ids = append(ids, value)
			case field == "event":
				evs = append(evs, value)
			case field == "data":
				data = append(data, value)
			default:
				t.Errorf("%s: unexpected field in %q", tt.name, line)
			}
		}
		if want := []string{strconv.FormatInt(tt.id, 10)}; !equal(ids, want) {
			t.Errorf("%s: id lines %q, want %q", tt.name, ids, want)
		}
		var wantEv []string
		if tt.event != "" {
			wantEv = []string{tt.event}
		}
		if !equal(evs, wantEv) {
			t.Errorf("%s: event lines %q, want %q", tt.name, evs, wantEv)
		}
		if !equal(data, tt.data) {
			t.Errorf("%s: data lines %q, want %q", tt.name, data, tt.data)
		}
	}

	// Ids strictly increase across publishes and across streams, and each
	// client sees the id Publish returned.
	rows := messages(t, b.open(t, "rows").Body)
	other := messages(t, b.open(t, "other").Body)
	last := counts
	for i := range 10 {
		stream := []string{"rows", "other"}[i%2]
		data := fmt.Sprintf("e%d", i)
		id := publish(t, b.hub, stream, "", data)
		if id <= last {
			t.Fatalf("publish %d: id %d not above %d", i, id, last)
		}
		if got := b.hub.LastID(); got != id {
			t.Errorf("LastID = %d after publishing %d", got, id)
		}
		last = id
		ch := rows
		if stream == "other" {
			ch = other
		}
		expect(t, next(t, ch), id, "", data)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCarriageReturnsCannotBreakOutOfData(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	lines := rawLines(t, b.open(t, "s").Body)
	tests := []struct {
		name string
		data string
		want []string // data lines on the wire
	}{
		{"lone and paired CR", "a\rb\r\nc", []string{"a", "b", "c"}},
		{"event injection", "x\r\nevent: evil\r\ndata: y", []string{"x", "event: evil", "data: y"}},
		{"id injection", "x\rid: 1\r\rretry: 1", []string{"x", "id: 1", "", "retry: 1"}},
		{"trailing CR", "z\r", []string{"z", ""}},
	}
	for _, tt := range tests {
		id := publish(t, b.hub, "s", "", tt.data)
		got := block(t, lines)
		want := []string{"id: " + strconv.FormatInt(id, 10)}
		for _, d := range tt.want {
			want = append(want, "data: "+d)
		}
		// Field order within an event does not matter to a browser; the
		// id first and data lines in order is what the hub writes.
		if !equal(got, want) {
			t.Errorf("%s: wire lines %q, want %q", tt.name, got, want)
		}
	}

	// The same through the parser: one unnamed message whose data is the text.
	b2 := setup(t, events.Config{}, "s")
	msgs := messages(t, b2.open(t, "s").Body)
	id := publish(t, b2.hub, "s", "", "x\r\nevent: evil\r\ndata: y")
	expect(t, next(t, msgs), id, "", "x\nevent: evil\ndata: y")
}

func TestEmptyDataIsRefusedAndStreamsGoOn(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	msgs := messages(t, b.open(t, "s").Body)
	before := b.hub.LastID()
	for _, data := range [][]byte{nil, {}} {
		if id, err := b.hub.Publish("s", "", data); err == nil {
			t.Errorf("Publish(%q) = %d, nil; want an error", data, id)
		}
		if id, err := b.hub.Publish("s", "named", data); err == nil {
			t.Errorf("Publish(named, %q) = %d, nil; want an error", data, id)
		}
	}
	if got := b.hub.LastID(); got != before {
		t.Errorf("refused publishes moved LastID from %d to %d", before, got)
	}
	id := publish(t, b.hub, "s", "", "still here")
	expect(t, next(t, msgs), id, "", "still here")
	if n := b.hub.Clients()["s"]; n != 1 {
		t.Errorf("clients = %d, want 1", n)
	}
}

func TestUnknownStreamIsNotCreated(t *testing.T) {
	b := setup(t, events.Config{}, "known")
	for _, query := range []string{"stream=nope", "stream=", ""} {
		resp, _ := b.get(t, query, "")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), events.ErrUnknownStream.Error()) {
			t.Errorf("GET ?%s: status %d body %q, want 404 %q", query, resp.StatusCode, body, events.ErrUnknownStream)
		}
	}
	if b.hub.Has("nope") || b.hub.Has("") {
		t.Error("Serve created an unknown stream")
	}
	if _, ok := b.hub.Clients()["nope"]; ok {
		t.Error("Clients lists an unknown stream")
	}
	if !b.hub.Has("known") {
		t.Error("registered stream missing")
	}
}
