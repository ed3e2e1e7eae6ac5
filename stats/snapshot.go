package stats

// snapshot.go holds the figures of one sample: what Sample and Current
// return, and what the history keeps of each.

import (
	"time"
)

// NodeInfo is one node serving the database, as the dashboard lists it.
type NodeInfo struct {
	// Name is the node's name (its -node, or host/pid/random).
	Name string
	// Host and PID are the machine and process it runs as.
	Host string
	PID  int
	// StartedAt is when its job engine first recorded it alive;
	// HeartbeatAt the last time.
	StartedAt, HeartbeatAt time.Time
	// HeartbeatAge is how long ago its job engine last recorded it alive.
	HeartbeatAge time.Duration
	// Leader is whether it holds the maintenance lease now.
	Leader bool
}

// Nodes are the nodes of a full sample.
type Nodes struct {
	// List is every live node, by name.
	List []NodeInfo
	// Leader is the leading node's name ("" when none leads now).
	Leader string
	// Err is why the nodes could not be read.
	Err string
}

// Snapshot is every figure at one instant.
type Snapshot struct {
	// Seq numbers the samples from 1; a Current reading carries the number
	// of the last sample taken.
	Seq int64
	// Full is true when every figure was read; a sample taken while nobody
	// looks has only the runtime's, the memory's and the pets' (Streams,
	// Jobs and DB are nil; GC.Recent, GC.P50, GC.Max and Memory.PeakRSS zero).
	Full    bool
	At      time.Time
	Version string
	// Node is this node's name (Config.Node).
	Node      string
	GoVersion string
	OS, Arch  string
	Started   time.Time
	// Uptime is At − Started.
	Uptime     time.Duration
	GOMAXPROCS int
	NumCPU     int
	Goroutines int
	Memory     Memory
	GC         GC
	// Streams are the event streams with their clients, by name; numbered
	// streams (pet-42) are grouped under one name (pet-{id}). Nil without
	// a Clients source, or when not Full.
	Streams []StreamClients
	// Jobs is nil without job sources, or when not Full.
	Jobs *Jobs
	// Pets is nil without a Pets source.
	Pets *Pets
	// DB is nil without a DB source, or when not Full.
	DB *DB
	// Nodes is nil without a Nodes source, or when not Full.
	Nodes *Nodes
	// LiveEvents is nil without a LiveEvents source, or when not Full.
	LiveEvents *LiveEvents
}

// LiveEvents are what the node's broker lost of the events it carries
// between nodes, since the process started. Both stay 0 on a healthy
// cluster; each loss made the pages of the streams concerned resync.
type LiveEvents struct {
	// Lost are events this node published that the database never took
	// (refused too many times, or too many waiting for it).
	Lost int64
	// Skipped are event ids this node's reader stopped waiting for after
	// the broker's HoleWait while their insert was still under way.
	Skipped int64
}

// Memory splits the process's memory, in bytes.
type Memory struct {
	// HeapObjects is the memory of heap objects, live or not yet swept.
	HeapObjects uint64
	// HeapInUse is the heap spans in use: HeapObjects plus their free slots.
	HeapInUse uint64
	// HeapFree is heap memory held for reuse but not returned to the OS.
	HeapFree uint64
	// HeapReleased is heap memory returned to the OS (not resident).
	HeapReleased uint64
	// Stacks is goroutine and OS thread stacks.
	Stacks uint64
	// GCMeta is the garbage collector's and allocator's metadata.
	GCMeta uint64
	// Other is the rest of the runtime's memory (profiling, buffers…).
	Other uint64
	// GoTotal is all the memory the Go runtime has mapped.
	GoTotal uint64
	// GoResident is GoTotal less HeapReleased.
	GoResident uint64
	// RSS is the process's resident memory (0 where /proc is missing).
	RSS uint64
	// PeakRSS is the highest RSS so far (read only in full samples).
	PeakRSS uint64
	// Outside is resident memory the Go runtime does not account for (the
	// binary, SQLite's allocator): RSS − GoResident, or 0.
	Outside uint64
	// HeapGoal is the heap size at which the next GC starts.
	HeapGoal uint64
}

// GC describes garbage collection.
type GC struct {
	// Cycles counts the completed collections.
	Cycles int64
	// Last is when the last one finished (zero if none).
	Last time.Time
	// PauseTotal is the stop-the-world time of every collection.
	PauseTotal time.Duration
	// Recent are the latest pauses, newest first (up to RecentPauses; full
	// samples only).
	Recent []time.Duration
	// P50 and Max are over the last 256 pauses (full samples only).
	P50 time.Duration
	Max time.Duration
}

// RecentPauses is how many recent GC pauses a full sample lists.
const RecentPauses = 40

// StreamClients is the clients of one stream, or of a group of numbered
// streams.
type StreamClients struct {
	// Name is the stream's name, or prefix-{id} for a group.
	Name string
	// Streams is how many streams the group has (1 for a named stream).
	Streams int
	Clients int
}

// Jobs are the job queue's figures.
type Jobs struct {
	// Counts are the jobs per state; nil when they could not be read.
	Counts map[string]int
	// CountsErr is why Counts could not be read.
	CountsErr string
	// Throughput is the engine's recent history, oldest first.
	Throughput []ThroughputPoint
	// CompletedPerSecond and FailedPerSecond average the last minute.
	CompletedPerSecond float64
	FailedPerSecond    float64
}

// Pets are LivePet's figures with the recent ticks summed up.
type Pets struct {
	PetFigures
	// TickP50 and TickMax are over the last TickHistory ticks sampled.
	TickP50 time.Duration
	TickMax time.Duration
	// Ticks is how many ticks those figures cover.
	Ticks int
}

// TickHistory is how many recent pet ticks the tick figures cover.
const TickHistory = 60

// DB is the database's size.
type DB struct {
	// Path is the database's name (DBSource.Name).
	Path  string
	Bytes int64
	// WAL is whether WALBytes means anything (SQLite's -wal file).
	WAL      bool
	WALBytes int64
	// Err is why the size could not be read.
	Err string
}

// Point is one sample in the history: what the charts show.
type Point struct {
	At         time.Time
	Goroutines int
	HeapInUse  uint64
	Stacks     uint64
	RSS        uint64
	GoResident uint64
}
