// keys_test.go holds the tests of keyed subscriptions, of streams written
// without hijacking, of ten thousand connects leaking nothing, and of
// RegisterWindow.

package events_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

// openQuery connects with a query and waits until the hub counts the client.
func (b *bench) openQuery(t *testing.T, stream, query string) <-chan item[events.Message] {
	t.Helper()
	before := b.hub.Clients()[stream]
	resp, _ := b.get(t, "stream="+stream+query, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", query, resp.StatusCode)
	}
	waitFor(t, "client subscribed", func() bool { return b.hub.Clients()[stream] == before+1 })
	return messages(t, resp.Body)
}

func publishKey(t *testing.T, hub *events.Hub, stream, name string, key int64, data string) int64 {
	t.Helper()
	id, err := hub.PublishKey(stream, name, key, []byte(data))
	if err != nil {
		t.Fatalf("publish %q (key %d): %v", data, key, err)
	}
	return id
}

// A client that subscribed to some keys receives exactly the events about
// them and the events about nothing, in publishing order; a client of the
// whole stream receives everything.
func TestKeyedClientsReceiveOnlyTheirRows(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	tests := []struct {
		name  string
		query string
		keys  []int64 // nil: every event
	}{
		{"whole stream", "", nil},
		{"rows 1 and 3", "&ids=3,1", []int64{1, 3}},
		{"row 2, listed twice", "&ids=2,2", []int64{2}},
		{"no rows", "&ids=", []int64{}},
	}
	feeds := make([]<-chan item[events.Message], len(tests))
	for i, tt := range tests {
		feeds[i] = b.openQuery(t, "s", tt.query)
	}
	type sent struct {
		id   int64
		key  int64
		name string
		data string
	}
	var all []sent
	for i := range 40 {
		key := int64(i%4 + 1) // rows 1…4
		data := fmt.Sprintf("row %d change %d", key, i)
		all = append(all, sent{publishKey(t, b.hub, "s", "", key, data), key, "", data})
		if i%10 == 9 {
			all = append(all, sent{publishKey(t, b.hub, "s", "counts", 0, "counts"), 0, "counts", "counts"})
		}
	}
	marker := publish(t, b.hub, "s", "end", "end")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, e := range all {
				if e.key != 0 && tt.keys != nil && !slices.Contains(tt.keys, e.key) {
					continue
				}
				expect(t, next(t, feeds[i]), e.id, e.name, e.data)
			}
			expect(t, next(t, feeds[i]), marker, "end", "end")
		})
	}
}

// A keyed client resuming from Last-Event-ID gets the missed events about
// its keys only, then live ones.
func TestKeyedResume(t *testing.T) {
	b := setup(t, events.Config{}, "s")
	start := b.hub.LastID()
	var want []int64
	for i := range 20 {
		key := int64(i%5 + 1)
		id := publishKey(t, b.hub, "s", "", key, fmt.Sprintf("e%d", i))
		if key == 2 || key == 4 {
			want = append(want, id)
		}
	}
	resp, _ := b.get(t, "stream=s&ids=2,4", strconv.FormatInt(start, 10))
	msgs := messages(t, resp.Body)
	for _, id := range want {
		if m := next(t, msgs); m.IDInt() != id {
			t.Fatalf("replayed id %s, want %d", m.ID, id)
		}
	}
	waitFor(t, "client subscribed", func() bool { return b.hub.Clients()["s"] == 1 })
	publishKey(t, b.hub, "s", "", 3, "not mine")
	id := publishKey(t, b.hub, "s", "", 4, "mine")
	expect(t, next(t, msgs), id, "", "mine")
}

// Many publishers' events about one row reach its watcher in the order
// they were published, whatever else is going on.
func TestKeyedOrderUnderLoad(t *testing.T) {
	b := setup(t, events.Config{ClientBuffer: 1 << 16, Window: 1 << 16}, "s")
	const rows, changes = 8, 300
	feeds := make([]<-chan item[events.Message], rows)
	for r := range rows {
		feeds[r] = b.openQuery(t, "s", "&ids="+strconv.Itoa(r+1))
	}
	var wg sync.WaitGroup
	for r := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range changes {
				if _, err := b.hub.PublishKey("s", "", int64(r+1), []byte(strconv.Itoa(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for r := range rows {
		last := int64(0)
		for i := range changes {
			m := next(t, feeds[r])
			if m.Data != strconv.Itoa(i) || m.IDInt() <= last {
				t.Fatalf("row %d: event %d is id=%s data=%q after id %d", r+1, i, m.ID, m.Data, last)
			}
			last = m.IDInt()
		}
	}
}

// Streams through a ResponseWriter that cannot be hijacked (HTTP/2, a
// wrapped writer) work the same: events, resume, and Close ends them.
func TestStreamsWithoutHijacking(t *testing.T) {
	hub := events.New(events.Config{})
	hub.Register("s")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var after int64
		if text := r.Header.Get("Last-Event-ID"); text != "" {
			after, _ = strconv.ParseInt(text, 10, 64)
		}
		if err := hub.Serve(flushOnly{w}, r, "s", after); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close)
	first := publish(t, hub, "s", "", "before")
	b := &bench{hub: hub, srv: srv, client: srv.Client()}
	resp, _ := b.get(t, "stream=s", strconv.FormatInt(first-1, 10))
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	msgs := messages(t, resp.Body)
	expect(t, next(t, msgs), first, "", "before")
	waitFor(t, "client subscribed", func() bool { return hub.Clients()["s"] == 1 })
	id := publish(t, hub, "s", "x", "live\nline")
	expect(t, next(t, msgs), id, "x", "live\nline")
	closeHub(t, hub)
	end(t, msgs)
	waitFor(t, "client gone", func() bool { return hub.Clients()["s"] == 0 })
}

// flushOnly hides every optional interface of a ResponseWriter but Flush.
type flushOnly struct{ w http.ResponseWriter }

func (f flushOnly) Header() http.Header         { return f.w.Header() }
func (f flushOnly) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushOnly) WriteHeader(code int)        { f.w.WriteHeader(code) }
func (f flushOnly) Flush()                      { f.w.(http.Flusher).Flush() }

// Ten thousand clients connecting and leaving, keyed and not, some after
// receiving events, leave nothing behind: the goroutine count and the heap
// return to their baseline.
func TestTenThousandConnectsLeakNothing(t *testing.T) {
	total := 10_000
	if testing.Short() {
		total = 1_000
	}
	b := setup(t, events.Config{Heartbeat: 50 * time.Millisecond}, "s")
	settle := func() (int, uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc + ms.StackInuse
	}
	// Warm up the client's and server's pools, then take the baseline.
	churn(t, b, 100)
	b.client.CloseIdleConnections()
	baseG, baseMem := settle()

	churn(t, b, total)
	b.client.CloseIdleConnections()

	const margin = 3
	const memMargin = 4 << 20 // far below what 10,000 leaked clients would hold
	deadline := time.Now().Add(failAfter)
	for {
		g, mem := settle()
		if g <= baseG+margin && mem <= baseMem+memMargin {
			t.Logf("goroutines %d → %d, heap+stacks %d KB → %d KB", baseG, g, baseMem>>10, mem>>10)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after %d connects: goroutines %d (baseline %d), heap+stacks %d KB (baseline %d KB)\n%s",
				total, g, baseG, mem>>10, baseMem>>10, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := b.hub.Clients()["s"]; n != 0 {
		t.Errorf("%d clients left", n)
	}
}

// churn connects n clients in concurrent batches; every other batch waits
// until it is subscribed and receives an event before leaving.
func churn(t *testing.T, b *bench, n int) {
	t.Helper()
	const batch = 100
	for start := 0; start < n; start += batch {
		var wg sync.WaitGroup
		receive := start/batch%2 == 1
		var ready sync.WaitGroup
		release := make(chan struct{})
		for i := range batch {
			wg.Add(1)
			ready.Add(1)
			go func() {
				defer wg.Done()
				query := "stream=s"
				if i%2 == 0 {
					query += "&ids=" + strconv.Itoa(i%7+1)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events?"+query, nil)
				resp, err := b.client.Do(req)
				ready.Done()
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				defer resp.Body.Close()
				if receive {
					<-release
					m, err := events.NewReader(resp.Body).Next()
					if err != nil || m.Data != "hello" {
						t.Errorf("got %+v, %v; want the hello event", m, err)
					}
				}
			}()
		}
		ready.Wait()
		if receive {
			waitFor(t, "batch subscribed", func() bool { return b.hub.Clients()["s"] == batch })
			publish(t, b.hub, "s", "", "hello")
		}
		close(release)
		wg.Wait()
		waitFor(t, "batch gone", func() bool { return b.hub.Clients()["s"] == 0 })
	}
}

// A stream registered with its own window keeps that many events for
// resume, whatever the hub's default, and a shrunk window resyncs clients
// whose events it dropped.
func TestRegisterWindow(t *testing.T) {
	b := setup(t, events.Config{Window: 100}, "big")
	b.hub.RegisterWindow("small", 2)
	var ids []int64
	for i := range 5 {
		ids = append(ids, publish(t, b.hub, "small", "", fmt.Sprintf("e%d", i)))
		publish(t, b.hub, "big", "", fmt.Sprintf("e%d", i))
	}
	tests := []struct {
		name   string
		after  int64
		resync bool
		replay []int
	}{
		{"inside the window", ids[2], false, []int{3, 4}},
		{"before the window", ids[1], true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, cancel := b.get(t, "stream=small", strconv.FormatInt(tt.after, 10))
			defer cancel()
			msgs := messages(t, resp.Body)
			if tt.resync {
				if m := next(t, msgs); m.Event != events.ResyncEvent {
					t.Fatalf("got %+v, want a resync", m)
				}
			}
			for _, i := range tt.replay {
				expect(t, next(t, msgs), ids[i], "", fmt.Sprintf("e%d", i))
			}
		})
	}
	b.hub.RegisterWindow("small", 1) // shrink: only the last event is kept
	resp, cancel := b.get(t, "stream=small", strconv.FormatInt(ids[3], 10))
	defer cancel()
	expect(t, next(t, messages(t, resp.Body)), ids[4], "", "e4")
	resp2, cancel2 := b.get(t, "stream=small", strconv.FormatInt(ids[2], 10))
	defer cancel2()
	if m := next(t, messages(t, resp2.Body)); m.Event != events.ResyncEvent {
		t.Fatalf("after shrinking: got %+v, want a resync", m)
	}
}
