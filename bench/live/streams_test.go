//go:build linux

package live

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestStreamClientsResumeACutStream: a server that ends the stream after
// five events gets the client back at once with Last-Event-ID 5, and the
// client ends with every event once, in order.
func TestStreamClientsResumeACutStream(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		from := int64(1)
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			from = n + 1
		}
		// Raw, as the hub writes its streams (no chunked encoding).
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
		for id := from; id < from+5; id++ {
			fmt.Fprintf(buf, "id: %d\ndata: <tr id=\"extraterrestrial-%d\"><td class=\"num\">1</td></tr>\n\n", id, id)
		}
		buf.Flush()
		if from > 1 {
			<-done // the second stream stays open
		}
	}))
	defer close(done)
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	got := make(chan RowEvent, 20)
	clients, err := DialStreams([]int{port}, 1, "/events", func(ev RowEvent) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer clients.Close()
	deadline := time.After(10 * time.Second)
	for want := int64(1); want <= 10; want++ {
		select {
		case ev := <-got:
			if ev.ID != want || ev.Row != want {
				t.Fatalf("event %d: got id %d row %d", want, ev.ID, ev.Row)
			}
		case <-deadline:
			t.Fatalf("only %d events arrived", want-1)
		}
	}
	rows, resyncs, cut := clients.Stats()
	if rows != 10 || resyncs != 0 || cut != 1 {
		t.Errorf("Stats() = %d rows, %d resyncs, %d cut; want 10, 0, 1", rows, resyncs, cut)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lastIDs) != 2 || lastIDs[0] != "" || lastIDs[1] != "5" {
		t.Errorf("Last-Event-ID of each request = %q, want [\"\" \"5\"]", lastIDs)
	}
}
