// Package live turns committed changes into events on the hub: it hears of
// them from the job engine (Subscribe), the Phone Home campaign (the
// worker's OnCall), LivePet (pets.Publisher) and the stats collector
// (Subscribe), renders them through views with the pages' own partials, and
// publishes them. Every stream and event name the app uses is here.
package live

import (
	"context"
	"strconv"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/pets"
)

// The streams.
const (
	// ExtraterrestrialsStream carries every status change of the Phone Home
	// page: rows (unnamed events, keyed by the row's id) and "counts".
	ExtraterrestrialsStream = "extraterrestrials"
	// JobsStream carries the jobs dashboard: job rows (unnamed events of
	// out-of-band <tr id="job-N"> fragments, keyed by the job's id),
	// "counts", "queues" and "throughput" fragments, and "refresh" when more
	// jobs changed at once than it is worth sending row by row.
	JobsStream = "jobs"
	// PetsStream carries the list of all pets: rows of pets that were
	// adopted ("adopted") or died (unnamed), the alive/dead counts
	// ("counts") and "resync" when too much changed at once. Each living
	// pet has a stream of its own too: PetStream.
	PetsStream = "pets"
	// StatsStream is the runtime dashboard's stream: the whole live panel
	// once a second while it has clients. StatsStreamFor names the others.
	StatsStream = "stats"
)

// The named events (rows are unnamed "message" events).
const (
	// CountsEvent carries counts: the campaign's, the job states', the pets'.
	CountsEvent = "counts"
	// AdoptedEvent carries a new pet's row.
	AdoptedEvent = "adopted"
	// QueuesEvent carries the jobs dashboard's queue table.
	QueuesEvent = "queues"
	// ThroughputEvent carries the jobs dashboard's chart.
	ThroughputEvent = "throughput"
	// RefreshEvent tells jobs pages to reload their list: more jobs changed
	// in one flush than are worth sending row by row.
	RefreshEvent = "refresh"
	// ResyncEvent tells a page that it missed events and must reload.
	ResyncEvent = events.ResyncEvent
)

// Resume windows: how many events a stream keeps for clients that
// reconnect.
const (
	// extraterrestrialsWindow: at 1,000 changes a second, a page that
	// reconnects within about 8 s resumes instead of reloading its table
	// (about 5 MB); a resume longer than a client's buffer is paged.
	extraterrestrialsWindow = events.LongWindow
	// PetStreamWindow is a pet's stream's: each tick sends the whole state
	// again, so a few are plenty, and a thousand watched pets must not each
	// hold the hub's default window.
	PetStreamWindow = 16
	// statsWindow: each stats event is a whole panel (about 10–20 KB) that
	// the next one replaces, so the last one is enough.
	statsWindow = 1
)

// PetStream names the stream of one living pet: "pet-42".
func PetStream(id int64) string { return pets.Stream(id) }

// StatsRefresh are the refresh intervals, in seconds, the dashboard offers.
// Each has its own stream (StatsStreamFor): the same panel, sent every N
// samples, so a page that refreshes every 30 s receives one event in 30.
func StatsRefresh() []int { return []int{1, 2, 5, 15, 30} }

// StatsStreamFor names the stream of a refresh interval in seconds: "stats"
// for 1, "stats-5s" for 5.
func StatsStreamFor(seconds int) string {
	if seconds == 1 {
		return StatsStream
	}
	return StatsStream + "-" + strconv.Itoa(seconds) + "s"
}

// Registrar is what Register needs of the hub.
type Registrar interface {
	Register(stream string)
	RegisterWindow(stream string, window int)
}

// Register registers every fixed stream with the hub, with its resume
// window. Pet streams come and go with their watchers (see PetStream).
func Register(h Registrar) {
	h.RegisterWindow(ExtraterrestrialsStream, extraterrestrialsWindow)
	h.Register(JobsStream)
	h.Register(PetsStream)
	for _, s := range StatsRefresh() {
		h.RegisterWindow(StatsStreamFor(s), statsWindow)
	}
}

// StreamURL is the address of a page's stream: resumed after lastID, and
// only the events about the rows of ids (and those about no row, such as
// counts), so events about other rows cost the page nothing.
func StreamURL(stream string, lastID int64, ids []int64) string {
	return StreamURLAt("/events", stream, lastID, ids)
}

// StreamURLAt is StreamURL for an event endpoint at another path (a
// mounted jobs dashboard's, such as /admin/jobs/events).
func StreamURLAt(endpoint, stream string, lastID int64, ids []int64) string {
	b := make([]byte, 0, 64+len(endpoint)+len(ids)*8)
	b = append(b, endpoint+"?stream="+stream+"&last_event_id="...)
	b = strconv.AppendInt(b, lastID, 10)
	b = append(b, "&ids="...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(b)
}

// Publisher is what the feeds need of the hub; *events.Hub is one.
type Publisher interface {
	Publish(stream, event string, data []byte) (int64, error)
	// PublishKey publishes an event about one row, named by key.
	PublishKey(stream, event string, key int64, data []byte) (int64, error)
	// Clients counts the clients of every stream.
	Clients() map[string]int
}

var _ Publisher = (*events.Hub)(nil)

// SharedStreams are the streams whose events every node sends to its
// clients, whichever node published them, with the same ids (package
// broker, on PostgreSQL): the lists of extraterrestrials, jobs and pets.
// The others stay on their node: a pet's own stream (its watchers' node
// renders its state) and the runtime dashboard's (each node's own figures).
func SharedStreams() []string {
	return []string{ExtraterrestrialsStream, JobsStream, PetsStream}
}

// NodeLocal reports whether an event of a shared stream stays on the node
// that published it, sent without an id: the jobs dashboard's throughput
// chart, drawn from this node's engine (engine.Throughput counts the
// attempts it ran). Shared, the nodes' charts would alternate on every
// page; sent without an id, it never mixes with the shared ids, and the
// next one replaces it anyway.
func NodeLocal(stream, event string) bool {
	return stream == JobsStream && event == ThroughputEvent
}

// PublishFunc publishes one event (stream, name, key, data), as
// Publisher.PublishKey does.
type PublishFunc = func(stream, event string, key int64, data []byte)

// Ordered is a Publisher whose events from every node form one order (the
// broker): Ordered runs read where its events take their place in it, so
// what read reads from the database (counts, rows) is published after
// every event whose change it may not have seen, and the last event of a
// stream shows the latest state, whichever node sent it.
type Ordered interface {
	Ordered(ctx context.Context, read func(ctx context.Context, publish PublishFunc)) error
}

// publishOrdered runs read through p's Ordered when it has one, else
// directly, publishing on p (one node: its own order is the order).
func publishOrdered(ctx context.Context, p Publisher, read func(ctx context.Context, publish PublishFunc)) error {
	if o, ok := p.(Ordered); ok {
		return o.Ordered(ctx, read)
	}
	read(ctx, func(stream, event string, key int64, data []byte) {
		_, _ = p.PublishKey(stream, event, key, data)
	})
	return nil
}
