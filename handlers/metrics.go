package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/stats"
)

// statsTimeout bounds the database reads of one /api/stats answer.
const statsTimeout = 10 * time.Second

// Nodes answers GET /api/nodes: the nodes serving the database now, by
// name (StatsNodeJSON), read afresh; 503 when they cannot be read.
func (h *Dashboard) Nodes(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), statsTimeout)
	defer cancel()
	n := h.Stats.Nodes(ctx)
	switch {
	case n == nil:
		return c.JSON(http.StatusOK, []StatsNodeJSON{})
	case n.Err != "":
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the nodes could not be read: "+n.Err)
	}
	return c.JSON(http.StatusOK, nodesJSON(n.List, h.Stats.Node()))
}

// nodesJSON is list as JSON, self marked.
func nodesJSON(list []stats.NodeInfo, self string) []StatsNodeJSON {
	out := make([]StatsNodeJSON, len(list))
	for i, n := range list {
		out[i] = StatsNodeJSON{Name: n.Name, Host: n.Host, PID: n.PID, StartedAt: n.StartedAt.UTC(), HeartbeatAt: n.HeartbeatAt.UTC(),
			HeartbeatAgeSeconds: n.HeartbeatAge.Seconds(), Leader: n.Leader, Self: n.Name == self}
	}
	return out
}

// API answers GET /api/stats with the current figures (StatsJSON).
func (h *Dashboard) API(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), statsTimeout)
	defer cancel()
	return c.JSON(http.StatusOK, statsJSON(h.Stats.Current(ctx)))
}

// StatsJSON is the answer of GET /api/stats. Sizes are bytes, durations
// seconds, times RFC 3339 UTC. Figures whose source is not wired are null.
type StatsJSON struct {
	Version       string    `json:"version"`
	GoVersion     string    `json:"go_version"`
	StartedAt     time.Time `json:"started_at"`
	At            time.Time `json:"at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	GOMAXPROCS    int       `json:"gomaxprocs"`
	NumCPU        int       `json:"num_cpu"`
	Goroutines    int       `json:"goroutines"`
	// HeapBytes is the heap in use (objects and the free slots of their spans).
	HeapBytes uint64 `json:"heap_bytes"`
	// RSSBytes is the resident memory (0 where /proc is missing).
	RSSBytes uint64          `json:"rss_bytes"`
	Memory   StatsMemoryJSON `json:"memory"`
	GC       StatsGCJSON     `json:"gc"`
	// SSEClients are the clients per stream; numbered streams are grouped
	// (pet-{id}).
	SSEClients      map[string]int `json:"sse_clients"`
	SSEClientsTotal int            `json:"sse_clients_total"`
	// Jobs are the jobs per state.
	Jobs          map[string]int  `json:"jobs"`
	JobsError     string          `json:"jobs_error,omitempty"`
	JobsPerSecond *StatsRatesJSON `json:"jobs_per_second"`
	Pets          *StatsPetsJSON  `json:"pets"`
	DB            *StatsDBJSON    `json:"db"`
	// Node is this node's name: with several nodes behind a load balancer,
	// which one answered.
	Node string `json:"node"`
	// Nodes are every node serving the database, by name (null when they
	// could not be read: NodesError says why); Leader is the one leading
	// the maintenance ("" while none does).
	Nodes      []StatsNodeJSON `json:"nodes"`
	Leader     string          `json:"leader"`
	NodesError string          `json:"nodes_error,omitempty"`
	// LiveEvents is what this node's broker lost of the events it carries
	// between nodes (null on SQLite, where there is no broker).
	LiveEvents *StatsLiveEventsJSON `json:"live_events"`
}

// StatsLiveEventsJSON is StatsJSON's live_events: counts since the
// process started, both 0 on a healthy cluster (stats.LiveEvents).
type StatsLiveEventsJSON struct {
	Lost    int64 `json:"lost"`
	Skipped int64 `json:"skipped"`
}

// StatsNodeJSON is one node in StatsJSON and in GET /api/nodes.
type StatsNodeJSON struct {
	Name string `json:"name"`
	// Host and PID are the machine and process it runs as.
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// StartedAt is when its job engine first recorded it alive;
	// HeartbeatAt the last time (every 15 s).
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	// HeartbeatAgeSeconds is how long ago its job engine last recorded it
	// alive (every 15 s).
	HeartbeatAgeSeconds float64 `json:"heartbeat_age_seconds"`
	// Leader is whether it leads the maintenance; Self whether it is the
	// node that answered.
	Leader bool `json:"leader"`
	Self   bool `json:"self"`
}

// StatsMemoryJSON is the memory split of StatsJSON, in bytes.
type StatsMemoryJSON struct {
	HeapInUse    uint64 `json:"heap_in_use_bytes"`
	HeapObjects  uint64 `json:"heap_objects_bytes"`
	HeapFree     uint64 `json:"heap_free_bytes"`
	HeapReleased uint64 `json:"heap_released_bytes"`
	HeapGoal     uint64 `json:"heap_goal_bytes"`
	Stacks       uint64 `json:"stacks_bytes"`
	GCMetadata   uint64 `json:"gc_metadata_bytes"`
	Other        uint64 `json:"other_bytes"`
	GoTotal      uint64 `json:"go_total_bytes"`
	OutsideGo    uint64 `json:"outside_go_bytes"`
	RSS          uint64 `json:"rss_bytes"`
	PeakRSS      uint64 `json:"peak_rss_bytes"`
}

// StatsGCJSON is the garbage collection of StatsJSON.
type StatsGCJSON struct {
	Cycles            int64      `json:"cycles"`
	LastAt            *time.Time `json:"last_at"`
	PauseTotalSeconds float64    `json:"pause_total_seconds"`
	PauseP50Seconds   float64    `json:"pause_p50_seconds"`
	PauseMaxSeconds   float64    `json:"pause_max_seconds"`
	// RecentPausesSeconds are the latest pauses, newest first.
	RecentPausesSeconds []float64 `json:"recent_pauses_seconds"`
}

// StatsRatesJSON are jobs finished per second over the last minute.
type StatsRatesJSON struct {
	Completed float64 `json:"completed"`
	Failed    float64 `json:"failed"`
}

// StatsPetsJSON is LivePet in StatsJSON.
type StatsPetsJSON struct {
	Alive          int        `json:"alive"`
	Dead           int        `json:"dead"`
	Watched        int        `json:"watched"`
	TickAt         *time.Time `json:"tick_at"`
	TickSeconds    float64    `json:"tick_seconds"`
	TickP50Seconds float64    `json:"tick_p50_seconds"`
	TickMaxSeconds float64    `json:"tick_max_seconds"`
	TickDied       int        `json:"tick_died"`
	TickRendered   int        `json:"tick_rendered"`
}

// StatsDBJSON is the database's size in StatsJSON: the SQLite file and its
// -wal file, or the PostgreSQL database (whose write-ahead log is the whole
// server's: wal_bytes is 0 there).
type StatsDBJSON struct {
	// Path is the SQLite file, or the PostgreSQL URL without its password.
	Path     string `json:"path"`
	Bytes    int64  `json:"bytes"`
	WALBytes int64  `json:"wal_bytes"`
	Error    string `json:"error,omitempty"`
}

func statsJSON(s stats.Snapshot) StatsJSON {
	m := s.Memory
	j := StatsJSON{
		Version: s.Version, GoVersion: s.GoVersion, StartedAt: s.Started.UTC(), At: s.At.UTC(),
		UptimeSeconds: s.Uptime.Seconds(), GOMAXPROCS: s.GOMAXPROCS, NumCPU: s.NumCPU,
		Goroutines: s.Goroutines, HeapBytes: m.HeapInUse, RSSBytes: m.RSS,
		Memory: StatsMemoryJSON{
			HeapInUse: m.HeapInUse, HeapObjects: m.HeapObjects, HeapFree: m.HeapFree, HeapReleased: m.HeapReleased,
			HeapGoal: m.HeapGoal, Stacks: m.Stacks, GCMetadata: m.GCMeta, Other: m.Other, GoTotal: m.GoTotal,
			OutsideGo: m.Outside, RSS: m.RSS, PeakRSS: m.PeakRSS,
		},
		GC: StatsGCJSON{
			Cycles: s.GC.Cycles, LastAt: utcOrNil(s.GC.Last), PauseTotalSeconds: s.GC.PauseTotal.Seconds(),
			PauseP50Seconds: s.GC.P50.Seconds(), PauseMaxSeconds: s.GC.Max.Seconds(),
			RecentPausesSeconds: make([]float64, len(s.GC.Recent)),
		},
	}
	for i, p := range s.GC.Recent {
		j.GC.RecentPausesSeconds[i] = p.Seconds()
	}
	if s.Streams != nil {
		j.SSEClients = make(map[string]int, len(s.Streams))
		for _, st := range s.Streams {
			j.SSEClients[st.Name] = st.Clients
		}
		j.SSEClientsTotal = stats.TotalClients(s.Streams)
	}
	if s.Jobs != nil {
		j.Jobs, j.JobsError = s.Jobs.Counts, s.Jobs.CountsErr
		if s.Jobs.Throughput != nil {
			j.JobsPerSecond = &StatsRatesJSON{Completed: s.Jobs.CompletedPerSecond, Failed: s.Jobs.FailedPerSecond}
		}
	}
	if p := s.Pets; p != nil {
		j.Pets = &StatsPetsJSON{
			Alive: p.Alive, Dead: p.Dead, Watched: p.Watched, TickAt: utcOrNil(p.TickAt),
			TickSeconds: p.TickDuration.Seconds(), TickP50Seconds: p.TickP50.Seconds(), TickMaxSeconds: p.TickMax.Seconds(),
			TickDied: p.TickDied, TickRendered: p.TickRendered,
		}
	}
	if d := s.DB; d != nil {
		j.DB = &StatsDBJSON{Path: d.Path, Bytes: d.Bytes, WALBytes: d.WALBytes, Error: d.Err}
	}
	j.Node = s.Node
	if n := s.Nodes; n != nil {
		j.Leader, j.NodesError = n.Leader, n.Err
		if n.Err == "" {
			j.Nodes = nodesJSON(n.List, s.Node)
		}
	}
	if le := s.LiveEvents; le != nil {
		j.LiveEvents = &StatsLiveEventsJSON{Lost: le.Lost, Skipped: le.Skipped}
	}
	return j
}
