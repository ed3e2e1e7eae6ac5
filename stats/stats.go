// Package stats samples phonehome's runtime figures for the dashboard, the
// JSON API and /metrics: the Go runtime (goroutines, memory split, GC
// pauses), the process (resident memory), and the app's own parts through
// small pluggable sources (event-stream clients, jobs, pets, the database's
// size), so that stats imports none of them.
//
// A Collector takes a sample every Interval into a ring that keeps the last
// Keep (15 minutes) for the charts. What the charts need is sampled always
// and costs microseconds (runtime/metrics, one read of /proc/self/statm, the
// pets' in-memory figures), so the charts have a history when someone opens
// the page. Everything else (counting jobs in the database, the GC pause
// quantiles, the peak resident size, the clients per stream, the engine's
// throughput, the database's size) and the subscribers' hook (which
// renders and publishes) happen only while a subscriber reports that
// someone is looking (see Subscribe).
// Current takes a full reading on demand, for /api/stats and each /metrics
// scrape.
package stats

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/internal/setting"
)

// ThroughputPoint is how many jobs finished in one interval of the jobs
// engine's recent history (one second, as the engine keeps it).
type ThroughputPoint struct {
	// At is the start of the interval.
	At time.Time
	// Completed counts the jobs that succeeded.
	Completed int
	// Failed counts the attempts that failed (retried or discarded).
	Failed int
}

// PetFigures are LivePet's figures at one instant.
type PetFigures struct {
	Alive   int
	Dead    int
	Watched int
	// TickAt is the simulated instant of the last tick (zero before the first).
	TickAt time.Time
	// TickDuration is how long the last tick took.
	TickDuration time.Duration
	// TickDied and TickRendered are the deaths recorded and the watched
	// pets published by the last tick.
	TickDied     int
	TickRendered int
}

// Sources are where the app's own figures come from. Every field may be
// left nil (or empty): its figures are then left out.
type Sources struct {
	// Clients reports the event hub's clients per stream.
	Clients func() map[string]int
	// JobCounts counts the jobs per state. It queries the database, so it
	// is called only while someone is looking.
	JobCounts func(ctx context.Context) (map[string]int, error)
	// Throughput returns the engine's recent finished jobs per second,
	// oldest first. It must be cheap (held in memory).
	Throughput func() []ThroughputPoint
	// Pets returns LivePet's figures. It must be cheap (held in memory).
	Pets func() PetFigures
	// DB names and measures the database; nil leaves it out.
	DB *DBSource
	// Nodes lists the nodes serving the database, each with the age of its
	// heartbeat and whether it leads the maintenance (jobs.Engine.Nodes and
	// cluster.Lease.Holder). It queries the database, so it is called only
	// while someone is looking.
	Nodes func(ctx context.Context) ([]NodeInfo, error)
	// LiveEvents reports what the node's broker lost of the shared
	// streams' events (package broker; several nodes on PostgreSQL). It
	// must be cheap (held in memory); nil leaves it out (SQLite).
	LiveEvents func() LiveEvents
}

// DBSource is the database the dashboard reports on.
type DBSource struct {
	// Name is the database as pages may show it: the SQLite file, or the
	// PostgreSQL URL without its password.
	Name string
	// WAL is whether the database has a write-ahead log of its own to
	// report: SQLite's -wal file. PostgreSQL's log belongs to the whole
	// server, so its size says nothing about this database.
	WAL bool
	// Size measures the database (store.Store.Size): bytes, and the
	// write-ahead log's bytes when WAL. On PostgreSQL it is a query, so it
	// is called only while someone is looking.
	Size func(ctx context.Context) (bytes, walBytes int64, err error)
}

// Config sets up a Collector. Zero fields take the defaults.
type Config struct {
	Sources
	// Version is the program's version.
	Version string
	// Node is this node's name (logs, /api/stats, /metrics).
	Node string
	// Started is when the program started (the Collector's creation).
	Started time.Time
	// Interval is the time between samples (1 s).
	Interval time.Duration
	// Keep is how much history the ring holds (15 minutes).
	Keep time.Duration
	// Now is the clock (time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Collector samples the figures; see the package documentation.
type Collector struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	seq   int64
	ring  []Point // capacity = Keep / Interval; oldest at next when full
	next  int
	full  bool
	ticks []time.Duration // recent pet tick durations, oldest first
	tick  time.Time       // TickAt of the last tick recorded

	subsMu sync.Mutex
	subs   []subscriber
	nextID int

	loop loop.Loop
}

// New makes a Collector; Start starts its sampling loop. Sample, Current and
// History work without it.
func New(cfg Config) *Collector {
	setting.Default(&cfg.Interval, time.Second)
	setting.Default(&cfg.Keep, 15*time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Started.IsZero() {
		cfg.Started = cfg.Now()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n := max(2, int(cfg.Keep/cfg.Interval))
	return &Collector{
		cfg:  cfg,
		log:  cfg.Logger,
		ring: make([]Point, n),
	}
}

// Interval is the time between samples.
func (c *Collector) Interval() time.Duration { return c.cfg.Interval }

// Keep is how much history the ring holds.
func (c *Collector) Keep() time.Duration { return c.cfg.Keep }

// Sample takes one sample now and records it in the history. While a
// subscriber is watching, the sample is full and is handed to the watching
// subscribers. The loop calls it every Interval; tests call it directly.
func (c *Collector) Sample(ctx context.Context) Snapshot {
	watching := c.watching()
	s := c.read(ctx, len(watching) > 0)
	c.mu.Lock()
	c.seq++
	s.Seq = c.seq
	c.ring[c.next] = Point{
		At: s.At, Goroutines: s.Goroutines, HeapInUse: s.Memory.HeapInUse, Stacks: s.Memory.Stacks,
		RSS: s.Memory.RSS, GoResident: s.Memory.GoResident,
	}
	c.next++
	if c.next == len(c.ring) {
		c.next, c.full = 0, true
	}
	if s.Pets != nil {
		c.recordTick(s.Pets)
	}
	c.mu.Unlock()
	for _, sub := range watching {
		sub.fn(s)
	}
	return s
}

// Current reads every figure now, the expensive ones included, without
// recording a sample: for /api/stats and /metrics.
func (c *Collector) Current(ctx context.Context) Snapshot {
	s := c.read(ctx, true)
	c.mu.Lock()
	s.Seq = c.seq
	if s.Pets != nil {
		c.tickFigures(s.Pets, true)
	}
	c.mu.Unlock()
	return s
}

// History returns the recorded samples, oldest first.
func (c *Collector) History() []Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.full {
		return slices.Clone(c.ring[:c.next])
	}
	out := make([]Point, 0, len(c.ring))
	out = append(out, c.ring[c.next:]...)
	return append(out, c.ring[:c.next]...)
}

// recordTick adds the last tick to the tick history when it is a new one
// and fills in the tick figures. Call with c.mu held.
func (c *Collector) recordTick(p *Pets) {
	if !p.TickAt.IsZero() && !p.TickAt.Equal(c.tick) {
		c.tick = p.TickAt
		if len(c.ticks) == TickHistory {
			c.ticks = append(c.ticks[:0], c.ticks[1:]...)
		}
		c.ticks = append(c.ticks, p.TickDuration)
	}
	c.tickFigures(p, false)
}

// tickFigures sums up the tick history into p; withLast counts p's own tick
// when it has not been recorded yet. Call with c.mu held.
func (c *Collector) tickFigures(p *Pets, withLast bool) {
	ds := slices.Clone(c.ticks)
	if withLast && !p.TickAt.IsZero() && !p.TickAt.Equal(c.tick) {
		ds = append(ds, p.TickDuration)
	}
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	p.Ticks = len(ds)
	p.TickP50 = ds[(len(ds)-1)/2]
	p.TickMax = ds[len(ds)-1]
}

// runtimeMetrics are the runtime/metrics read by every sample.
var runtimeMetrics = []string{
	"/sched/goroutines:goroutines",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/metadata/mcache/free:bytes",
	"/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes",
	"/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/other:bytes",
	"/memory/classes/other:bytes",
	"/memory/classes/profiling/buckets:bytes",
	"/memory/classes/total:bytes",
	"/gc/heap/goal:bytes",
}

// read takes the figures; full adds the expensive ones.
func (c *Collector) read(ctx context.Context, full bool) Snapshot {
	now := c.cfg.Now()
	s := Snapshot{
		Full: full, At: now, Version: c.cfg.Version, Node: c.cfg.Node, GoVersion: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Started: c.cfg.Started, Uptime: now.Sub(c.cfg.Started),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
	}
	s.Goroutines, s.Memory = readRuntime()
	s.Memory.RSS = residentBytes()
	if s.Memory.RSS > s.Memory.GoResident {
		s.Memory.Outside = s.Memory.RSS - s.Memory.GoResident
	}
	s.GC = readGC(full)
	if full {
		s.Memory.PeakRSS = peakResidentBytes()
	}
	if c.cfg.Pets != nil { // always: the tick history is made of samples
		s.Pets = &Pets{PetFigures: c.cfg.Pets()}
	}
	if !full {
		return s
	}
	if c.cfg.Clients != nil {
		s.Streams = GroupStreams(c.cfg.Clients())
	}
	if c.cfg.JobCounts != nil || c.cfg.Throughput != nil {
		s.Jobs = c.readJobs(ctx, now)
	}
	if c.cfg.DB != nil {
		s.DB = c.readDB(ctx)
	}
	if c.cfg.Nodes != nil {
		s.Nodes = c.readNodes(ctx)
	}
	if c.cfg.LiveEvents != nil {
		le := c.cfg.LiveEvents()
		s.LiveEvents = &le
	}
	return s
}

// Node is the name of the node this collector runs on (Config.Node).
func (c *Collector) Node() string { return c.cfg.Node }

// Nodes reads the nodes serving the database now (the Nodes source; nil
// without one), for GET /api/nodes.
func (c *Collector) Nodes(ctx context.Context) *Nodes {
	if c.cfg.Nodes == nil {
		return nil
	}
	return c.readNodes(ctx)
}

func (c *Collector) readNodes(ctx context.Context) *Nodes {
	list, err := c.cfg.Nodes(ctx)
	if err != nil {
		c.log.Warn("stats: nodes", "err", err)
		return &Nodes{Err: err.Error()}
	}
	n := &Nodes{List: list}
	for _, node := range list {
		if node.Leader {
			n.Leader = node.Name
		}
	}
	return n
}

func readRuntime() (int, Memory) {
	samples := make([]metrics.Sample, len(runtimeMetrics))
	for i, name := range runtimeMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	v := make(map[string]uint64, len(samples))
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[s.Name] = s.Value.Uint64()
		}
	}
	m := Memory{
		HeapObjects:  v["/memory/classes/heap/objects:bytes"],
		HeapFree:     v["/memory/classes/heap/free:bytes"],
		HeapReleased: v["/memory/classes/heap/released:bytes"],
		Stacks:       v["/memory/classes/heap/stacks:bytes"] + v["/memory/classes/os-stacks:bytes"],
		GCMeta: v["/memory/classes/metadata/mcache/free:bytes"] + v["/memory/classes/metadata/mcache/inuse:bytes"] +
			v["/memory/classes/metadata/mspan/free:bytes"] + v["/memory/classes/metadata/mspan/inuse:bytes"] +
			v["/memory/classes/metadata/other:bytes"],
		Other:    v["/memory/classes/other:bytes"] + v["/memory/classes/profiling/buckets:bytes"],
		GoTotal:  v["/memory/classes/total:bytes"],
		HeapGoal: v["/gc/heap/goal:bytes"],
	}
	m.HeapInUse = m.HeapObjects + v["/memory/classes/heap/unused:bytes"]
	m.GoResident = m.GoTotal - min(m.GoTotal, m.HeapReleased)
	return int(v["/sched/goroutines:goroutines"]), m
}

// readGC reads the GC counters; full adds the recent pauses and their
// quantiles (a copy and a sort of the runtime's last 256 pauses).
func readGC(full bool) GC {
	var st debug.GCStats
	if full {
		st.PauseQuantiles = make([]time.Duration, 5) // min, 25 %, 50 %, 75 %, max
	}
	debug.ReadGCStats(&st)
	g := GC{Cycles: st.NumGC, Last: st.LastGC, PauseTotal: st.PauseTotal}
	if full {
		g.Recent = slices.Clone(st.Pause[:min(len(st.Pause), RecentPauses)])
		if st.NumGC > 0 {
			g.P50, g.Max = st.PauseQuantiles[2], st.PauseQuantiles[4]
		}
	}
	if st.NumGC == 0 {
		g.Last = time.Time{}
	}
	return g
}

// throughputWindow is the span the jobs-per-second figures average.
const throughputWindow = time.Minute

func (c *Collector) readJobs(ctx context.Context, now time.Time) *Jobs {
	j := &Jobs{}
	if c.cfg.Throughput != nil {
		j.Throughput = c.cfg.Throughput()
		if j.Throughput == nil {
			j.Throughput = []ThroughputPoint{} // a source with no history yet
		}
		var done, failed int
		for _, p := range j.Throughput {
			if now.Sub(p.At) < throughputWindow {
				done += p.Completed
				failed += p.Failed
			}
		}
		j.CompletedPerSecond = float64(done) / throughputWindow.Seconds()
		j.FailedPerSecond = float64(failed) / throughputWindow.Seconds()
	}
	if c.cfg.JobCounts != nil {
		counts, err := c.cfg.JobCounts(ctx)
		if err != nil {
			j.CountsErr = err.Error()
			c.log.Warn("stats: count jobs", "err", err)
		} else {
			j.Counts = counts
		}
	}
	return j
}

func (c *Collector) readDB(ctx context.Context) *DB {
	src := c.cfg.DB
	d := &DB{Path: src.Name, WAL: src.WAL}
	if src.Size == nil {
		return d
	}
	bytes, wal, err := src.Size(ctx)
	if err != nil {
		d.Err = err.Error()
		c.log.Warn("stats: database size", "err", err)
		return d
	}
	d.Bytes = bytes
	if src.WAL {
		d.WALBytes = wal
	}
	return d
}

// numbered matches the names of numbered streams, such as pet-42.
var numbered = regexp.MustCompile(`^(.*)-[0-9]+$`)

// GroupStreams turns the hub's clients per stream into a list by name, with
// numbered streams (pet-42, pet-43…) grouped as one (pet-{id}), so that a
// million pet streams make one line.
func GroupStreams(clients map[string]int) []StreamClients {
	groups := map[string]*StreamClients{}
	for name, n := range clients {
		key := name
		if m := numbered.FindStringSubmatch(name); m != nil {
			key = m[1] + "-{id}"
		}
		g := groups[key]
		if g == nil {
			g = &StreamClients{Name: key}
			groups[key] = g
		}
		g.Streams++
		g.Clients += n
	}
	out := make([]StreamClients, 0, len(groups))
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		out = append(out, *groups[k])
	}
	return out
}

// TotalClients adds up the clients of every stream.
func TotalClients(streams []StreamClients) int {
	n := 0
	for _, s := range streams {
		n += s.Clients
	}
	return n
}

// JobStates are the job states in the order people read them; Counts may
// hold others, which come after these.
var JobStates = []string{"available", "scheduled", "executing", "retryable", "completed", "discarded", "cancelled"}

// SortedStates returns every state of JobStates (counted or not), then any
// other state of counts by name.
func SortedStates(counts map[string]int) []string {
	out := slices.Clone(JobStates)
	var rest []string
	for s := range counts {
		if !slices.Contains(JobStates, s) {
			rest = append(rest, s)
		}
	}
	slices.SortFunc(rest, cmp.Compare)
	return append(out, rest...)
}
