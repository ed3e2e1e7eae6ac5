// Package live benchmarks phonehome's live path at scale (issue 5): the
// event hub with a thousand clients of the whole stream, ten thousand
// clients each watching a page of a million-row table during a campaign,
// pages that must end showing the database after a campaign, and the page
// render at a million rows.
//
// The server is the app's own wiring (store, job engine, Speak & Spell
// worker, feed, hub, router) on 127.0.0.1:0 in this process. The clients
// are raw sockets read with epoll by one locked thread: they hold no
// goroutine or buffer while idle, so the memory measured per client is the
// server's, and their CPU time is measured apart and taken off the
// server's.
package live

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/bench/internal/benchdb"
	"github.com/phonehome/phonehome/bench/mdreport"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	applive "github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// Options sizes the scenarios. Zero fields take the sizes.
type Options struct {
	// Dir keeps the million-row database between runs (a temp dir if empty).
	Dir string
	// Rows is the table size (1,000,000).
	Rows int
	// Scenarios to run, by name: "full", "pages", "campaign", "render"
	// (all when empty).
	Scenarios []string
	// FullClients (1,000) read the whole stream while FullRate rows (1,000)
	// change per second for FullDuration (15 s).
	FullClients  int
	FullRate     int
	FullDuration time.Duration
	// PageClients (10,000) each watch PageSize rows (50) while a campaign
	// runs for PageDuration (20 s).
	PageClients  int
	PageSize     int
	PageDuration time.Duration
	// CampaignClients (100) each watch a different page of the table while
	// a Phone Home campaign runs for CampaignDuration (30 s); then the
	// engine stops and every page must equal the database.
	CampaignClients  int
	CampaignDuration time.Duration
	// FlushEvery is the hub's Config.FlushEvery (its default when zero).
	FlushEvery time.Duration
	// Renders is how many times each page variant is rendered (200).
	Renders int
	// Log receives progress lines (discarded if nil).
	Log io.Writer
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Rows, 1_000_000)
	def(&o.FullClients, 1000)
	def(&o.FullRate, 1000)
	defD(&o.FullDuration, 15*time.Second)
	def(&o.PageClients, 10_000)
	def(&o.PageSize, 50)
	defD(&o.PageDuration, 20*time.Second)
	def(&o.CampaignClients, 100)
	defD(&o.CampaignDuration, 30*time.Second)
	def(&o.Renders, 200)
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{"render", "full", "pages", "campaign"}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Results are the measurements of one run.
type Results struct {
	Date    time.Time
	Machine string
	Rows    int
	// SeedTime is how long generating the table took (0 when reused).
	SeedTime time.Duration
	Full     *FullResult     `json:",omitempty"`
	Pages    *PagesResult    `json:",omitempty"`
	Campaign *CampaignResult `json:",omitempty"`
	Render   []RenderResult  `json:",omitempty"`
}

// Latency summarises latencies: publish-to-client, commit-to-publish or
// commit-to-client, as the field holding it says.
type Latency struct {
	N             int64
	P50, P99, Max time.Duration
}

// FullResult is the scenario of clients reading the whole stream.
type FullResult struct {
	Clients, Rate int
	Changes       int64 // rows changed (one event each)
	Delivered     int64 // row events received, all clients
	Missing       int64 // events some client did not receive
	ClientsCut    int   // clients whose stream ended
	// PublishToClient is measured by the clients, from the event id (the
	// publish time); CommitToPublish, measured in the server, is the rest
	// of commit-to-client.
	PublishToClient Latency
	CommitToPublish Latency
	// CommitToClient is what a user sees, measured on one more
	// whole-stream client in the server's process.
	CommitToClient Latency
	ServerCPU      float64 // cores used by the server process
	ClientCPU      float64 // cores used by the client process
	HeapPerClient  int64   // Go heap+stacks per connected idle client, bytes
	RSSPerClient   int64   // resident memory per connected idle client, bytes
	WritesPerEvent float64 // write system calls per event per client
}

// PagesResult is the scenario of many clients each watching one page.
type PagesResult struct {
	Clients, PageSize int
	ConnectTime       time.Duration
	HeapPerClient     int64
	RSSPerClient      int64
	Goroutines        int // goroutines with every client idle and connected
	Attempts          int64
	Delivered         int64
	CountsDelivered   int64
	// PublishToClient is measured by the clients, from the event id (the
	// publish time); CommitToPublish, measured in the server, is the rest
	// of commit-to-client.
	PublishToClient Latency
	CommitToPublish Latency
	ServerCPU       float64
	ClientsCut      int
}

// CampaignResult is the scenario of pages that must end equal to the
// database.
type CampaignResult struct {
	Clients      int
	EnqueueTime  time.Duration
	Enqueued     int
	Attempts     int64
	AttemptsPerS float64
	RowsWatched  int
	RowsChanged  int // watched rows the campaign changed
	Stale        int // watched rows whose shown state differs from the database
	Resyncs      int64
	// CommitToClient is from the outcome's commit (the worker's OnCall) to
	// the row's event reaching a page's client.
	CommitToClient Latency
}

// RenderResult is the time to render one page variant.
type RenderResult struct {
	Name          string
	Path          string
	N             int
	P50, P99, Max time.Duration
	// Matches is how many rows a search matches (0 for other pages).
	Matches int
}

// Run runs the chosen scenarios and writes a Markdown report to w.
func Run(ctx context.Context, w io.Writer, opts Options) (Results, error) {
	opts.defaults()
	flushEvery = opts.FlushEvery
	res := Results{Date: time.Now().UTC(), Machine: mdreport.Machine(), Rows: opts.Rows}
	// This process holds the server's end of every connection, and the
	// clients' ends of all but the page clients' (those run in a child).
	if _, err := raiseFiles(uint64(opts.PageClients + 2*max(opts.FullClients, opts.CampaignClients) + 1024)); err != nil {
		fmt.Fprintf(opts.Log, "open-file limit: %v\n", err)
	}
	dir := opts.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "livebench")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	base := filepath.Join(dir, fmt.Sprintf("base-%d.db", opts.Rows))
	seed, err := prepareBase(ctx, base, opts.Rows)
	if err != nil {
		return res, err
	}
	res.SeedTime = seed
	fmt.Fprintf(opts.Log, "base database %s ready (seeded in %v)\n", base, seed.Round(time.Millisecond))

	for _, name := range opts.Scenarios {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		db := filepath.Join(dir, name+".db")
		if err := copyDB(base, db); err != nil {
			return res, err
		}
		fmt.Fprintf(opts.Log, "== %s\n", name)
		switch name {
		case "render":
			res.Render, err = runRender(ctx, db, opts)
		case "full":
			res.Full, err = runFull(ctx, db, opts)
		case "pages":
			res.Pages, err = runPages(ctx, db, opts)
		case "campaign":
			res.Campaign, err = runCampaign(ctx, db, opts)
		default:
			err = fmt.Errorf("unknown scenario %q", name)
		}
		os.Remove(db)
		os.Remove(db + "-wal")
		os.Remove(db + "-shm")
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		runtime.GC()
	}
	report(w, res)
	return res, nil
}

// prepareBase makes (or reuses) a database with rows generated
// extraterrestrials, none of which has tried yet.
func prepareBase(ctx context.Context, path string, rows int) (time.Duration, error) {
	if _, err := os.Stat(path); err == nil {
		st, err := benchdb.Open(ctx, path)
		if err == nil {
			c, cerr := st.CountByStatus(ctx)
			st.Close()
			if cerr == nil && c.Never == rows && c.Total() == rows {
				return 0, nil
			}
		}
		os.Remove(path)
	}
	start := time.Now()
	st, err := benchdb.Open(ctx, path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if err := st.GenerateExtraterrestrials(ctx, rows); err != nil {
		return 0, err
	}
	took := time.Since(start)
	if _, err := st.Writer.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return 0, err
	}
	return took, nil
}

func copyDB(from, to string) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(to + suffix)
	}
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// server is the app's wiring, as app.go builds it, on 127.0.0.1:0.
type server struct {
	st     *store.Store
	hub    *events.Hub
	feed   *applive.ExtraterrestrialFeed
	engine *jobs.Engine
	http   *http.Server
	port   int
	url    string
	// gap, when set, records how long after the worker's OnCall (right
	// after the commit) the row's event got its id.
	gap *histogram
}

// startServer serves db. onCall, when set, sees every committed call before
// the feed publishes it; the engine is built but not started.
func startServer(ctx context.Context, db string, answerRate float64, backoff time.Duration, onCall func(store.Extraterrestrial)) (*server, error) {
	return startServerFlush(ctx, db, answerRate, backoff, onCall, flushEvery)
}

// runEngine runs the server's engine for d (less if ctx ends first), then
// stops it.
func (s *server) runEngine(ctx context.Context, d time.Duration) error {
	if err := s.engine.Start(ctx); err != nil {
		return err
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	_ = s.engine.Stop(context.Background())
	return nil
}

// flushEvery is Options.FlushEvery of the running benchmark.
var flushEvery time.Duration

func startServerFlush(ctx context.Context, db string, answerRate float64, backoff time.Duration, onCall func(store.Extraterrestrial), flush time.Duration) (*server, error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := benchdb.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	v, err := views.New()
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &server{st: st}
	s.hub = events.New(events.Config{FlushEvery: flush})
	applive.Register(s.hub)
	s.feed = applive.NewExtraterrestrialFeed(st, v, s.hub, logger, 250*time.Millisecond)
	if err := s.feed.Start(ctx); err != nil {
		s.close()
		return nil, err
	}
	s.engine, err = jobs.New(st.Writer, jobs.Config{
		Queues:  map[string]int{speakandspell.Queue: speakandspell.QueueLimit},
		Backoff: jobs.FixedBackoff(backoff),
		Logger:  logger,
	})
	if err != nil {
		s.close()
		return nil, err
	}
	changed := s.feed.Changed
	if onCall != nil {
		changed = func(et store.Extraterrestrial) {
			onCall(et)
			t0 := time.Now()
			s.feed.Changed(et)
			if s.gap != nil {
				s.gap.add(time.UnixMicro(s.hub.LastID()).Sub(t0))
			}
		}
	}
	if err := s.engine.Register(speakandspell.NewWorker(speakandspell.Config{
		AnswerRate: answerRate, Rand: rand.New(rand.NewPCG(5, 2022)), OnCall: changed,
	})); err != nil {
		s.close()
		return nil, err
	}
	router := handlers.NewServer(logger, v, "bench",
		&handlers.Events{Hub: s.hub},
		&handlers.Extraterrestrials{
			Store: st, Views: v, Hub: s.hub,
			PhoneHome:   func(ctx context.Context) (int, error) { return speakandspell.PhoneHome(ctx, s.engine) },
			AnswerRate:  answerRate,
			MaxAttempts: speakandspell.MaxAttempts,
			Version:     "bench",
		})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, err
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.url = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	s.http.RegisterOnShutdown(s.hub.Close)
	go s.http.Serve(ln)
	return s, nil
}

func (s *server) close() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.engine != nil {
		_ = s.engine.Stop(context.Background())
	}
	if s.feed != nil {
		_ = s.feed.Stop(context.Background())
	}
	s.hub.Close()
	s.st.Close()
}

// waitClients waits until the stream has n clients.
func (s *server) waitClients(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for s.hub.Clients()[applive.ExtraterrestrialsStream] < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d clients subscribed after %v", s.hub.Clients()[applive.ExtraterrestrialsStream], n, limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// memory is the Go heap and stacks in use and the resident set, after GC.
func memory() (heap, rss int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapInuse + ms.StackInuse)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return heap, rss
}

// writeSyscalls is the number of write system calls this process made.
func writeSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// histogram records latencies in 100 µs buckets up to 20 s.
type histogram struct {
	buckets [200_001]atomic.Int64
	n       atomic.Int64
	max     atomic.Int64
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := min(int(d/(100*time.Microsecond)), len(h.buckets)-1)
	h.buckets[i].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	target := int64(float64(n)*q + 0.5)
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= target {
			return time.Duration(i+1) * 100 * time.Microsecond
		}
	}
	return time.Duration(h.max.Load())
}

func (h *histogram) summary() Latency {
	return Latency{N: h.n.Load(), P50: h.quantile(0.50), P99: h.quantile(0.99), Max: time.Duration(h.max.Load())}
}

// runFull: clients, in a client process of their own, read the whole
// stream while a driver changes rows at a fixed rate the way the engine's
// recorder does (up to 256 rows a transaction, then the feed, in commit
// order). Latency is publish-to-client, from the event id (the publish
// time in microseconds), plus commit-to-publish measured here.
func runFull(ctx context.Context, db string, o Options) (*FullResult, error) {
	s, err := startServer(ctx, db, 0.2, 0, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	paths := make([]string, o.FullClients)
	for i := range paths {
		paths[i] = "/events?stream=" + applive.ExtraterrestrialsStream
	}
	heap0, rss0 := memory()
	clients, err := startClients(s.port, paths)
	if err != nil {
		return nil, err
	}
	defer clients.kill()
	if err := s.waitClients(ctx, o.FullClients, time.Minute); err != nil {
		return nil, err
	}
	heap1, rss1 := memory()
	r := &FullResult{Clients: o.FullClients, Rate: o.FullRate,
		HeapPerClient: (heap1 - heap0) / int64(o.FullClients), RSSPerClient: (rss1 - rss0) / int64(o.FullClients)}
	fmt.Fprintf(o.Log, "%d clients connected: %d B heap, %d B RSS per client\n", o.FullClients, r.HeapPerClient, r.RSSPerClient)

	// One more whole-stream client, in this process, measures what a user
	// sees: commit-to-client. Each change writes its sequence number as the
	// row's attempt, which the row's event shows, and its commit time is
	// stored under that number before the event is published. (Its reading
	// adds one client's parsing to the server process's CPU.)
	var gap, c2c histogram
	total := o.FullRate*int(o.FullDuration/time.Second) + o.FullRate
	commits := make([]atomic.Int64, total+1)
	probe, err := newPoller(func(ev *event) {
		if ev.name != "" || ev.try <= 0 || ev.try > total {
			return
		}
		if at := commits[ev.try].Load(); at != 0 {
			c2c.add(ev.at.Sub(time.Unix(0, at)))
		}
	})
	if err != nil {
		return nil, err
	}
	defer probe.close()
	probeConn, err := probe.dial(s.port, "/events?stream="+applive.ExtraterrestrialsStream, 0)
	if err != nil {
		return nil, err
	}
	if err := s.waitClients(ctx, o.FullClients+1, time.Minute); err != nil {
		return nil, err
	}
	cpu0, sysw0 := processCPU(), writeSyscalls()
	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []store.Status{store.StatusPhoningHome, store.StatusSpaceTaxi, store.StatusNoAnswer}
	// Every 10 ms, commit the changes due by now (at most 256 a
	// transaction, like the engine's recorder), then publish them in
	// commit order; a slow commit is caught up on, not skipped.
	ticker := time.NewTicker(10 * time.Millisecond)
	seq := 0
	for time.Since(start) < o.FullDuration {
		<-ticker.C
		due := min(int(time.Since(start)*time.Duration(o.FullRate)/time.Second), total) - seq
		for due > 0 {
			n := min(due, 256)
			due -= n
			batch := make([]store.Extraterrestrial, 0, n)
			err := s.st.InTx(ctx, func(tx *sqlx.Tx) error {
				for range n {
					seq++
					id := rng.Int64N(int64(o.Rows)) + 1
					et, err := store.RecordCallTx(ctx, tx, id, statuses[seq%3], seq, time.Now())
					if err != nil {
						return err
					}
					batch = append(batch, et)
				}
				return nil
			})
			if err != nil {
				ticker.Stop()
				return nil, err
			}
			committed := time.Now()
			for _, et := range batch {
				commits[et.CommunicationAttempt].Store(committed.UnixNano())
			}
			for _, et := range batch {
				s.feed.Changed(et)
				gap.add(time.UnixMicro(s.hub.LastID()).Sub(committed))
			}
		}
	}
	ticker.Stop()
	elapsed := time.Since(start)
	r.Changes = int64(seq)
	time.Sleep(2 * time.Second) // the last events reach the clients
	drained := time.Since(start)
	probe.close()
	// The probe's reading is the client side: it is not the server's CPU.
	cpu := processCPU() - cpu0 - probe.cpu
	sysw := writeSyscalls() - sysw0
	rep, err := clients.stop()
	if err != nil {
		return nil, err
	}
	r.Delivered = rep.Rows
	r.Missing = r.Changes*int64(o.FullClients) - rep.Rows
	r.ClientsCut = rep.Ended
	r.PublishToClient = rep.PublishToClient
	r.CommitToPublish = gap.summary()
	r.CommitToClient = c2c.summary()
	r.ClientCPU = rep.CPU.Seconds() / drained.Seconds()
	r.ServerCPU = cpu.Seconds() / drained.Seconds()
	if r.Delivered > 0 {
		// The server wrote to the probe too.
		r.WritesPerEvent = float64(sysw) / float64(r.Delivered+probeConn.rows.Load())
	}
	fmt.Fprintf(o.Log, "%d changes in %v; delivered %d, missing %d, cut %d; publish-to-client %+v; commit-to-publish %+v; commit-to-client (probe) %+v\n",
		r.Changes, elapsed.Round(time.Millisecond), r.Delivered, r.Missing, r.ClientsCut, r.PublishToClient, r.CommitToPublish, r.CommitToClient)
	return r, nil
}

// callKey names one committed call: a row's id and attempt number.
func callKey(row int64, attempt int) int64 { return row<<4 | int64(attempt) }

// commitTimes records when each call committed (seen by the worker's
// OnCall, which runs right after the commit, in commit order).
type commitTimes struct {
	mu sync.Mutex
	at map[int64]int64
	n  atomic.Int64
}

func (c *commitTimes) record(et store.Extraterrestrial) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	c.at[callKey(et.ID, et.CommunicationAttempt)] = now
	c.mu.Unlock()
	c.n.Add(1)
}

func (c *commitTimes) get(row int64, attempt int) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.at[callKey(row, attempt)]
	return at, ok
}

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

// runCampaign: clients on different pages of the table (rendered by the
// real page, subscribed with its own stream URL) watch a Phone Home
// campaign; once it stops, every page must equal the database.
func runCampaign(ctx context.Context, db string, o Options) (*CampaignResult, error) {
	times := &commitTimes{at: map[int64]int64{}}
	s, err := startServer(ctx, db, 0.2, 0, times.record)
	if err != nil {
		return nil, err
	}
	defer s.close()
	type page struct {
		path string
		mu   sync.Mutex
		rows map[int64]string
	}
	var lat histogram
	var pagesMu sync.Mutex
	byIndex := map[int]*page{}
	p, err := newPoller(func(ev *event) {
		if ev.row == 0 || ev.name != "" {
			return
		}
		if at, ok := times.get(ev.row, ev.try); ok {
			lat.add(ev.at.Sub(time.Unix(0, at)))
		}
		pagesMu.Lock()
		pg := byIndex[ev.c.index]
		pagesMu.Unlock()
		pg.mu.Lock()
		if _, ok := pg.rows[ev.row]; ok {
			pg.rows[ev.row] = normalizeRow(dataOf(ev.data))
		}
		pg.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	defer p.close()

	// Pages near the start of each name (generated names are "Ayala-000001"
	// …, ids in name order step by 10), where the campaign calls first.
	client := &http.Client{}
	var pages []*page
	for i := range o.CampaignClients {
		group, n := i%len(store.SeedNames), i/len(store.SeedNames)
		path := "/"
		if n > 0 || group > 0 {
			num := n * 100 // the page starts after this row number of its name
			cur := store.Cursor{Name: fmt.Sprintf("%s-%06d", store.SeedNames[group], num), ID: int64(max(num-1, 0)*10 + group + 1)}
			path = "/?cursor=" + cur.String()
		}
		body, err := get(client, s.url+path)
		if err != nil {
			return nil, err
		}
		pg := &page{path: path, rows: rowsOf(body)}
		stream := streamOf(body)
		if stream == "" || len(pg.rows) == 0 {
			return nil, fmt.Errorf("page %s: stream %q, %d rows", path, stream, len(pg.rows))
		}
		pagesMu.Lock()
		byIndex[i] = pg
		pagesMu.Unlock()
		pages = append(pages, pg)
		if _, err := p.dial(s.port, stream, i); err != nil {
			return nil, err
		}
	}
	if err := s.waitClients(ctx, len(pages), time.Minute); err != nil {
		return nil, err
	}
	r := &CampaignResult{Clients: len(pages)}
	start := time.Now()
	n, err := speakandspell.PhoneHome(ctx, s.engine)
	if err != nil {
		return nil, err
	}
	r.EnqueueTime, r.Enqueued = time.Since(start), n
	fmt.Fprintf(o.Log, "Phone Home enqueued %d calls in %v\n", n, r.EnqueueTime.Round(time.Millisecond))
	begin := time.Now()
	if err := s.runEngine(ctx, o.CampaignDuration); err != nil {
		return nil, err
	}
	r.Attempts = times.n.Load()
	r.AttemptsPerS = float64(r.Attempts) / time.Since(begin).Seconds()

	// The last events arrive; then every page must show the database.
	settle := time.Now().Add(10 * time.Second)
	for {
		stale, watched, changed := 0, 0, 0
		for _, pg := range pages {
			body, err := get(client, s.url+pg.path)
			if err != nil {
				return nil, err
			}
			want := rowsOf(body)
			pg.mu.Lock()
			for id, row := range want {
				watched++
				if strings.Contains(row, "<time") {
					changed++
				}
				if pg.rows[id] != row {
					stale++
				}
			}
			pg.mu.Unlock()
		}
		r.RowsWatched, r.RowsChanged, r.Stale = watched, changed, stale
		if stale == 0 || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.close()
	r.CommitToClient = lat.summary()
	fmt.Fprintf(o.Log, "%d attempts (%.0f/s); %d rows watched, %d changed, %d stale; commit-to-client %+v\n",
		r.Attempts, r.AttemptsPerS, r.RowsWatched, r.RowsChanged, r.Stale, r.CommitToClient)
	return r, nil
}

func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return string(body), nil
}

// rowsOf maps each row id of an HTML text to its row, normalised.
func rowsOf(text string) map[int64]string {
	out := map[int64]string{}
	for {
		i := strings.Index(text, `<tr id="extraterrestrial-`)
		if i < 0 {
			return out
		}
		text = text[i:]
		j := strings.Index(text, "</tr>")
		if j < 0 {
			return out
		}
		row := text[:j+5]
		text = text[j+5:]
		id := leadingInt([]byte(row[len(`<tr id="extraterrestrial-`):]))
		out[id] = normalizeRow(row)
	}
}

func normalizeRow(row string) string {
	return strings.Replace(row, ` hx-swap-oob="true"`, "", 1)
}

// streamOf is the page's sse-connect URL.
func streamOf(body string) string {
	_, rest, ok := strings.Cut(body, `sse-connect="`)
	if !ok {
		return ""
	}
	url, _, _ := strings.Cut(rest, `"`)
	return strings.ReplaceAll(url, "&amp;", "&")
}

// runRender times GET / and its variants at the table's size.
func runRender(ctx context.Context, db string, o Options) ([]RenderResult, error) {
	s, err := startServer(ctx, db, 0.2, 0, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	// Some rows in each status, so the filters have something to find.
	err = s.st.InTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE extraterrestrials SET communication_status = CASE id % 3
			WHEN 0 THEN 'phoning_home' WHEN 1 THEN 'space_taxi_on_the_way' ELSE 'no_answer' END,
			communication_attempt = 1, last_communication_attempt_at = 0 WHERE id % 10 = 0`)
		return err
	})
	if err != nil {
		return nil, err
	}
	deep := store.Cursor{Name: "Jubal-050000", ID: 499_997}
	// The searches: a substring served by the trigram index (few names
	// match), one that walks the name index (many match), and one name.
	variants := []struct{ name, path, q string }{
		{"first page", "/", ""},
		{"deep page (cursor)", "/?cursor=" + deep.String(), ""},
		{"status filter", "/?status=no_answer", ""},
		{"search, common", "/?q=korben-00", "korben-00"},
		{"search, very common", "/?q=kor", "kor"},
		{"search, rare", "/?q=" + store.GeneratedName(o.Rows-1), store.GeneratedName(o.Rows - 1)},
		{"rows fragment (resync)", "/extraterrestrials/rows", ""},
	}
	client := &http.Client{}
	var out []RenderResult
	for _, v := range variants {
		var times []time.Duration
		n := o.Renders
		if strings.HasPrefix(v.name, "search, rare") {
			n = max(5, n/20)
		}
		for range n {
			start := time.Now()
			if _, err := get(client, s.url+v.path); err != nil {
				return nil, err
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		rr := RenderResult{Name: v.name, Path: v.path, N: n, P50: times[len(times)/2],
			P99: times[min(len(times)-1, len(times)*99/100)], Max: times[len(times)-1]}
		if v.q != "" {
			// LIKE is what the page matches with (case-insensitive ASCII).
			err := s.st.Reader.GetContext(ctx, &rr.Matches, "SELECT count(*) FROM extraterrestrials WHERE name LIKE ?", "%"+v.q+"%")
			if err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(o.Log, "%s: p50 %v p99 %v\n", v.name, rr.P50, rr.P99)
		out = append(out, rr)
	}
	return out, nil
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

// report writes the results as Markdown.
func report(w io.Writer, r Results) {
	fmt.Fprintf(w, "Run %s on %s; table of %d extraterrestrials", r.Date.Format("2006-01-02 15:04 MST"), r.Machine, r.Rows)
	if r.SeedTime > 0 {
		fmt.Fprintf(w, " (generated in %.1f s)", r.SeedTime.Seconds())
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintln(w)
	if len(r.Render) > 0 {
		fmt.Fprintf(w, "| page at %s rows | p50 | p99 | max |\n", grouped(int64(r.Rows)))
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, x := range r.Render {
			matches := ""
			if strings.HasPrefix(x.Name, "search") {
				matches = fmt.Sprintf(", %d matching", x.Matches)
			}
			fmt.Fprintf(w, "| %s (`%s`, n=%d%s) | %s | %s | %s |\n", x.Name, truncate(x.Path, 40), x.N, matches, ms(x.P50), ms(x.P99), ms(x.Max))
		}
		fmt.Fprintln(w)
	}
	if f := r.Full; f != nil {
		fmt.Fprintln(w, "| whole stream | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| clients × rows changed per second | %d × %d |\n", f.Clients, f.Rate)
		fmt.Fprintf(w, "| changes; events delivered; missing; clients cut | %d; %d; %d; %d |\n", f.Changes, f.Delivered, f.Missing, f.ClientsCut)
		fmt.Fprintf(w, "| publish-to-client latency p50 / p99 / max | %s / %s / %s |\n", ms(f.PublishToClient.P50), ms(f.PublishToClient.P99), ms(f.PublishToClient.Max))
		fmt.Fprintf(w, "| commit-to-publish (in the server) p50 / p99 / max | %s / %s / %s |\n", ms(f.CommitToPublish.P50), ms(f.CommitToPublish.P99), ms(f.CommitToPublish.Max))
		fmt.Fprintf(w, "| commit-to-client (one more whole-stream client, in the server's process) p50 / p99 / max | %s / %s / %s |\n", ms(f.CommitToClient.P50), ms(f.CommitToClient.P99), ms(f.CommitToClient.Max))
		fmt.Fprintf(w, "| CPU (cores): server process; client process | %.2f; %.2f |\n", f.ServerCPU, f.ClientCPU)
		fmt.Fprintf(w, "| write system calls per event per client | %.3f |\n", f.WritesPerEvent)
		fmt.Fprintf(w, "| memory per idle client: Go heap+stacks; RSS | %.1f KB; %.1f KB |\n", kb(f.HeapPerClient), kb(f.RSSPerClient))
		fmt.Fprintln(w)
	}
	if pg := r.Pages; pg != nil {
		fmt.Fprintln(w, "| pages of the table | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| clients × rows each | %d × %d (connected in %.1f s) |\n", pg.Clients, pg.PageSize, pg.ConnectTime.Seconds())
		fmt.Fprintf(w, "| memory per idle client: Go heap+stacks; RSS | %.1f KB; %.1f KB |\n", kb(pg.HeapPerClient), kb(pg.RSSPerClient))
		fmt.Fprintf(w, "| goroutines, all clients connected and idle | %d |\n", pg.Goroutines)
		fmt.Fprintf(w, "| campaign attempts; row events delivered; counts events delivered; clients cut | %d; %d; %d; %d |\n", pg.Attempts, pg.Delivered, pg.CountsDelivered, pg.ClientsCut)
		fmt.Fprintf(w, "| publish-to-client latency p50 / p99 / max | %s / %s / %s |\n", ms(pg.PublishToClient.P50), ms(pg.PublishToClient.P99), ms(pg.PublishToClient.Max))
		fmt.Fprintf(w, "| commit-to-publish (in the server) p50 / p99 / max | %s / %s / %s |\n", ms(pg.CommitToPublish.P50), ms(pg.CommitToPublish.P99), ms(pg.CommitToPublish.Max))
		fmt.Fprintf(w, "| server CPU (cores, engine included) | %.2f |\n", pg.ServerCPU)
		fmt.Fprintln(w)
	}
	if c := r.Campaign; c != nil {
		fmt.Fprintln(w, "| pages during a campaign | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| Phone Home over the table | %d calls enqueued in %.2f s |\n", c.Enqueued, c.EnqueueTime.Seconds())
		fmt.Fprintf(w, "| engine | %d attempts, %.0f attempts/s |\n", c.Attempts, c.AttemptsPerS)
		fmt.Fprintf(w, "| clients (each a different page) | %d |\n", c.Clients)
		fmt.Fprintf(w, "| rows shown; changed by the campaign; stale at the end | %d; %d; **%d** |\n", c.RowsWatched, c.RowsChanged, c.Stale)
		fmt.Fprintf(w, "| commit-to-client latency p50 / p99 / max | %s / %s / %s |\n", ms(c.CommitToClient.P50), ms(c.CommitToClient.P99), ms(c.CommitToClient.Max))
		fmt.Fprintln(w)
	}
}

func kb(b int64) float64 { return float64(b) / 1024 }

// grouped writes n with thousands separators (1,000,000).
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
