package live

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phonehome/phonehome/jobs/speakandspell"
	applive "github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
)

// runPages: many clients, in a client process of their own, each
// subscribe to the rows of one page while a Phone Home campaign runs on the
// engine. Latency is publish-to-client (from the event id, which is the
// publish time in microseconds) plus the commit-to-publish time measured
// in the server.
func runPages(ctx context.Context, db string, o Options) (*PagesResult, error) {
	var gap histogram
	var attempts atomic.Int64
	var s *server
	s, err := startServer(ctx, db, 0.2, time.Second, func(store.Extraterrestrial) { attempts.Add(1) })
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.gap = &gap

	// Pages of PageSize consecutive rows, spread over the whole table.
	pages := o.Rows / o.PageSize
	paths := make([]string, o.PageClients)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range paths {
		first := rng.IntN(pages)*o.PageSize + 1
		var b strings.Builder
		b.WriteString("/events?stream=" + applive.ExtraterrestrialsStream + "&last_event_id=" + strconv.FormatInt(s.hub.LastID(), 10) + "&ids=")
		for k := range o.PageSize {
			if k > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(first + k))
		}
		paths[i] = b.String()
	}
	heap0, rss0 := memory()
	start := time.Now()
	clients, err := startClients(s.port, paths)
	if err != nil {
		return nil, err
	}
	defer clients.kill()
	if err := s.waitClients(ctx, len(paths), 2*time.Minute); err != nil {
		return nil, err
	}
	r := &PagesResult{Clients: o.PageClients, PageSize: o.PageSize, ConnectTime: time.Since(start)}
	paths = nil
	heap1, rss1 := memory()
	r.HeapPerClient = (heap1 - heap0) / int64(o.PageClients)
	r.RSSPerClient = (rss1 - rss0) / int64(o.PageClients)
	r.Goroutines = runtime.NumGoroutine()
	fmt.Fprintf(o.Log, "%d clients connected in %v: %d B heap, %d B RSS per client, %d goroutines\n",
		o.PageClients, r.ConnectTime.Round(time.Millisecond), r.HeapPerClient, r.RSSPerClient, r.Goroutines)

	if _, err := speakandspell.PhoneHome(ctx, s.engine); err != nil {
		return nil, err
	}
	cpu0 := processCPU()
	begin := time.Now()
	if err := s.runEngine(ctx, o.PageDuration); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond) // the last events reach the clients
	elapsed := time.Since(begin)
	cpu := processCPU() - cpu0
	rep, err := clients.stop()
	if err != nil {
		return nil, err
	}
	r.Attempts = attempts.Load()
	r.Delivered, r.CountsDelivered, r.ClientsCut = rep.Rows, rep.Counts, rep.Ended
	r.PublishToClient = rep.PublishToClient
	r.CommitToPublish = gap.summary()
	r.ServerCPU = cpu.Seconds() / elapsed.Seconds()
	fmt.Fprintf(o.Log, "%d attempts; %d row events and %d counts delivered; cut %d; publish-to-client %+v; commit-to-publish %+v\n",
		r.Attempts, r.Delivered, r.CountsDelivered, r.ClientsCut, r.PublishToClient, r.CommitToPublish)
	return r, nil
}
