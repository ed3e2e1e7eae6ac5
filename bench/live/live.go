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
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/phonehome/phonehome/bench/internal/benchdb"
	"github.com/phonehome/phonehome/bench/mdreport"
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
