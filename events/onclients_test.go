// onclients_test.go holds the tests of Config.OnClients, the feed of
// watcher registries: joins and leaves are reported, the last report is
// the real count, and the callback may call the hub.

package events_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
)

// watchers records what OnClients reports, in the order the calls run, as
// a watcher registry fed by it would see it.
type watchers struct {
	mu   sync.Mutex
	last map[string]int
}

func (w *watchers) report(stream string, n int) {
	runtime.Gosched() // a registry does some work before it records
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[string]int{}
	}
	w.last[stream] = n
}

func (w *watchers) latest(stream string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[stream]
}

func TestOnClientsReportsJoinsAndLeaves(t *testing.T) {
	var w watchers
	b := setup(t, events.Config{OnClients: w.report}, "s")
	var cancels []context.CancelFunc
	for i := 1; i <= 3; i++ {
		_, cancel := b.get(t, "stream=s", "")
		cancels = append(cancels, cancel)
		waitFor(t, fmt.Sprintf("%d watchers reported", i), func() bool { return w.latest("s") == i })
	}
	for i, cancel := range cancels {
		cancel()
		want := len(cancels) - 1 - i
		waitFor(t, fmt.Sprintf("%d watchers reported", want), func() bool { return w.latest("s") == want })
	}
}

// However joins and leaves interleave, the last count reported for a stream
// is its real count: a registry fed by OnClients must not be left thinking
// a stream is watched when nobody is (or the reverse).
func TestOnClientsLastReportIsTheRealCount(t *testing.T) {
	var w watchers
	b := setup(t, events.Config{OnClients: w.report}, "s")
	const clients, batch = 1000, 20
	for start := 0; start < clients; start += batch {
		var wg sync.WaitGroup
		for range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/events?stream=s", nil)
				resp, err := b.client.Do(req)
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				resp.Body.Close() // leave at once, racing the join
			}()
		}
		wg.Wait()
		waitFor(t, "batch gone", func() bool { return b.hub.Clients()["s"] == 0 })
		// Every join reported has its leave reported once the client is
		// gone; give stragglers time, then the last word must be 0.
		waitFor(t, "the last report to be 0", func() bool { return w.latest("s") == 0 })
	}
}

// OnClients runs without hub locks held, as documented: a registry may call
// the hub from it (here Clients; Publish would do as well).
func TestOnClientsMayCallTheHub(t *testing.T) {
	var hub atomic.Pointer[events.Hub]
	stuck := make(chan int, 16) // counts reported from a callback that could not call the hub
	var w watchers
	b := setup(t, events.Config{OnClients: func(stream string, n int) {
		returned := make(chan struct{})
		go func() {
			hub.Load().Clients()
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(failAfter / 2): // let go, or the hub stays deadlocked
			stuck <- n
		}
		w.report(stream, n)
	}}, "s")
	hub.Store(b.hub)
	_, cancel := b.get(t, "stream=s", "")
	waitFor(t, "the join reported", func() bool { return w.latest("s") == 1 })
	cancel()
	waitFor(t, "the leave reported", func() bool { return w.latest("s") == 0 })
	close(stuck)
	for n := range stuck {
		t.Errorf("OnClients(s, %d) ran with the stream locked: calling Clients from it deadlocks", n)
	}
}
