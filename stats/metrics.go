package stats

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names of phonehome's own figures on /metrics; the Go and process
// collectors add their usual go_* and process_* metrics.
const (
	MetricBuildInfo         = "phonehome_build_info"
	MetricSSEClients        = "phonehome_sse_clients"
	MetricSSEStreams        = "phonehome_sse_streams"
	MetricJobs              = "phonehome_jobs"
	MetricJobsPerSecond     = "phonehome_jobs_per_second"
	MetricPets              = "phonehome_pets"
	MetricPetsWatched       = "phonehome_pets_watched"
	MetricPetTickSeconds    = "phonehome_pet_tick_seconds"
	MetricDBBytes           = "phonehome_db_bytes"
	MetricMemoryBytes       = "phonehome_memory_bytes"
	MetricScrapeErrors      = "phonehome_stats_errors"
	MetricNodeInfo          = "phonehome_node_info"
	MetricLeader            = "phonehome_leader"
	MetricNodes             = "phonehome_nodes"
	MetricNodeHeartbeat     = "phonehome_node_heartbeat_age_seconds"
	MetricLiveEventsLost    = "phonehome_live_events_lost_total"
	MetricLiveEventsSkipped = "phonehome_live_events_skipped_total"
	metricsScrapeDeadline   = 10 * time.Second
)

var (
	descBuildInfo = prometheus.NewDesc(MetricBuildInfo,
		"Always 1; the labels name the running version.", []string{"version"}, nil)
	descSSEClients = prometheus.NewDesc(MetricSSEClients,
		"Clients connected to server-sent event streams; numbered streams (pet-42) are grouped as pet-{id}.",
		[]string{"stream"}, nil)
	descSSEStreams = prometheus.NewDesc(MetricSSEStreams,
		"Registered server-sent event streams per name or group.", []string{"stream"}, nil)
	descJobs = prometheus.NewDesc(MetricJobs,
		"Jobs in the queue per state.", []string{"state"}, nil)
	descJobsPerSecond = prometheus.NewDesc(MetricJobsPerSecond,
		"Jobs finished per second over the last minute, by outcome (completed or failed).",
		[]string{"outcome"}, nil)
	descPets = prometheus.NewDesc(MetricPets,
		"LivePet pets per state (alive or dead).", []string{"state"}, nil)
	descPetsWatched = prometheus.NewDesc(MetricPetsWatched,
		"Living pets somebody is watching right now.", nil, nil)
	descPetTick = prometheus.NewDesc(MetricPetTickSeconds,
		"Duration of the last LivePet tick.", nil, nil)
	descDBBytes = prometheus.NewDesc(MetricDBBytes,
		"Size of the database (file is main: the SQLite file or the PostgreSQL database; wal: SQLite's write-ahead log, absent on PostgreSQL).", []string{"file"}, nil)
	descMemory = prometheus.NewDesc(MetricMemoryBytes,
		"The process's memory split as the dashboard shows it (class: heap_in_use, heap_free, stacks, gc_metadata, other, outside_go, rss).",
		[]string{"class"}, nil)
	descNodeInfo = prometheus.NewDesc(MetricNodeInfo,
		"Always 1; the label names this node (its -node), as every node serving one database has its own.", []string{"node"}, nil)
	descLeader = prometheus.NewDesc(MetricLeader,
		"1 while this node leads the maintenance (cron, pruning, the pets' deaths), else 0.", nil, nil)
	descNodes = prometheus.NewDesc(MetricNodes,
		"Nodes serving the database whose heartbeat is recent.", nil, nil)
	descNodeHeartbeat = prometheus.NewDesc(MetricNodeHeartbeat,
		"Age of each live node's last heartbeat, as this node reads it (label node: that node's name).", []string{"node"}, nil)
	descLiveLost = prometheus.NewDesc(MetricLiveEventsLost,
		"Live events of the shared streams this node published and the database never took, since it started (several nodes on PostgreSQL; each made its stream's pages resync).", nil, nil)
	descLiveSkipped = prometheus.NewDesc(MetricLiveEventsSkipped,
		"Live event ids this node's reader stopped waiting for while their insert was still under way, since it started (several nodes on PostgreSQL).", nil, nil)
	descErrors = prometheus.NewDesc(MetricScrapeErrors,
		"1 when a source could not be read during this scrape (source: jobs, db or nodes).", []string{"source"}, nil)
)

// Registry returns a new Prometheus registry holding the Go runtime and
// process collectors and the Collector's own figures, read afresh at each
// scrape. It is not the global registry, so nothing else registers into it.
func (c *Collector) Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		promCollector{c},
	)
	return reg
}

// MetricsHandler serves the Registry in the Prometheus text format.
func (c *Collector) MetricsHandler() http.Handler {
	reg := c.Registry()
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// promCollector exposes a Current reading as Prometheus metrics.
type promCollector struct{ c *Collector }

// Describe sends every description the collector may use.
func (p promCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descSSEClients, descSSEStreams, descJobs, descJobsPerSecond,
		descPets, descPetsWatched, descPetTick, descDBBytes, descMemory, descErrors,
		descNodeInfo, descLeader, descNodes, descNodeHeartbeat, descLiveLost, descLiveSkipped} {
		ch <- d
	}
}

// Collect reads the figures now and sends them.
func (p promCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsScrapeDeadline)
	defer cancel()
	s := p.c.Current(ctx)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descBuildInfo, 1, s.Version)
	if s.Node != "" {
		gauge(descNodeInfo, 1, s.Node)
	}
	if n := s.Nodes; n != nil {
		if n.Err != "" {
			gauge(descErrors, 1, "nodes")
		} else {
			leads := 0.0
			if n.Leader != "" && n.Leader == s.Node {
				leads = 1
			}
			gauge(descLeader, leads)
			gauge(descNodes, float64(len(n.List)))
			for _, node := range n.List {
				gauge(descNodeHeartbeat, node.HeartbeatAge.Seconds(), node.Name)
			}
		}
	}
	if le := s.LiveEvents; le != nil {
		ch <- prometheus.MustNewConstMetric(descLiveLost, prometheus.CounterValue, float64(le.Lost))
		ch <- prometheus.MustNewConstMetric(descLiveSkipped, prometheus.CounterValue, float64(le.Skipped))
	}
	m := s.Memory
	for _, kv := range []struct {
		class string
		v     uint64
	}{
		{"heap_in_use", m.HeapInUse}, {"heap_free", m.HeapFree}, {"stacks", m.Stacks},
		{"gc_metadata", m.GCMeta}, {"other", m.Other}, {"outside_go", m.Outside}, {"rss", m.RSS},
	} {
		gauge(descMemory, float64(kv.v), kv.class)
	}
	for _, st := range s.Streams {
		gauge(descSSEClients, float64(st.Clients), st.Name)
		gauge(descSSEStreams, float64(st.Streams), st.Name)
	}
	if j := s.Jobs; j != nil {
		if j.CountsErr != "" {
			gauge(descErrors, 1, "jobs")
		}
		if j.Counts != nil {
			for _, state := range SortedStates(j.Counts) {
				gauge(descJobs, float64(j.Counts[state]), state)
			}
		}
		if p.c.cfg.Throughput != nil {
			gauge(descJobsPerSecond, j.CompletedPerSecond, "completed")
			gauge(descJobsPerSecond, j.FailedPerSecond, "failed")
		}
	}
	if pets := s.Pets; pets != nil {
		gauge(descPets, float64(pets.Alive), "alive")
		gauge(descPets, float64(pets.Dead), "dead")
		gauge(descPetsWatched, float64(pets.Watched))
		gauge(descPetTick, pets.TickDuration.Seconds())
	}
	if db := s.DB; db != nil {
		if db.Err != "" {
			gauge(descErrors, 1, "db")
		} else {
			gauge(descDBBytes, float64(db.Bytes), "main")
			if db.WAL {
				gauge(descDBBytes, float64(db.WALBytes), "wal")
			}
		}
	}
}
