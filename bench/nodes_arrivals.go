package main

// nodes_arrivals.go holds what the many-node scenario's clients received:
// each row event's arrival, its publication in live_events, and the
// latency histograms.

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/bench/live"
)

// arrivals records when each client received each row's event: the
// microseconds since base, 0 for not yet, one slot per (row, client).
type arrivals struct {
	base    time.Time
	clients int
	at      []uint32
	twice   int64 // written on the poller's thread only; read after close
	index   []int32
	// eventID is the id of each row's event (the same on every node),
	// from the first client that got it; poller's thread, as twice.
	eventID []int64
	streams *live.StreamClients
	// published maps the broker's event ids to their created_at, read
	// from live_events while the run lasts (the table is trimmed).
	published map[int64]int64
	lastRead  int64
	stopRead  chan struct{}
	readDone  chan error
}

// listen connects clients whole-stream clients, spread over the nodes,
// and waits until every node counts its own.
func (c *benchCluster) listen(clients int) (*arrivals, error) {
	a := &arrivals{base: time.Now(), clients: clients, at: make([]uint32, len(c.rows)*clients), index: c.rowIndex,
		eventID: make([]int64, len(c.rows)), published: map[int64]int64{}, stopRead: make(chan struct{}), readDone: make(chan error, 1)}
	s, err := live.DialStreams(c.ports(), clients, "/events?stream=extraterrestrials", a.add)
	if err != nil {
		return nil, err
	}
	a.streams = s
	go func() { a.readDone <- a.readPublished(c.conn) }()
	want := make([]int, len(c.nodes))
	for i := range clients {
		want[i%len(c.nodes)]++
	}
	deadline := time.Now().Add(time.Minute)
	for i, nd := range c.nodes {
		for {
			n, err := streamClients(nd.url)
			if err == nil && n >= want[i] {
				break
			}
			if time.Now().After(deadline) {
				a.close()
				return nil, fmt.Errorf("node %d counts %d of its %d stream clients after a minute (%v)", i+1, n, want[i], err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return a, nil
}

// place is row id's place in the run's rows.
func (a *arrivals) place(id int64) (int32, bool) {
	if id < 0 || id >= int64(len(a.index)) || a.index[id] < 0 {
		return 0, false
	}
	return a.index[id], true
}

// add is the clients' row handler, on the poller's thread.
func (a *arrivals) add(ev live.RowEvent) {
	i, ok := a.place(ev.Row)
	if !ok {
		return
	}
	if a.eventID[i] == 0 {
		a.eventID[i] = ev.ID
	}
	slot := &a.at[int(i)*a.clients+ev.Client]
	if *slot != 0 {
		a.twice++
		return
	}
	*slot = uint32(max(ev.At.Sub(a.base)/time.Microsecond, 1))
}

// close closes the clients and stops reading live_events (once).
func (a *arrivals) close() error {
	a.streams.Close()
	select {
	case <-a.stopRead:
		return nil
	default:
	}
	close(a.stopRead)
	return <-a.readDone
}

// readPublished reads the extraterrestrials stream's events from
// live_events every second until close, keeping each id's created_at: the
// broker trims the table by age and count (10,000 events of a stream: ten
// seconds of the fan-out), so one read at the end could miss the first.
func (a *arrivals) readPublished(conn *sqlx.DB) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := a.readNew(context.Background(), conn); err != nil {
			return err
		}
		select {
		case <-a.stopRead:
			return nil
		case <-tick.C:
		}
	}
}

// readNew reads the events of live_events above the last one read, and
// those of the last three seconds again: an id is drawn when its row is
// inserted, not when it commits, so a row written in a longer transaction
// (a call's event, written with the call) may become visible after rows
// with higher ids.
func (a *arrivals) readNew(ctx context.Context, conn *sqlx.DB) error {
	var rows []struct {
		ID        int64 `db:"id"`
		CreatedAt int64 `db:"created_at"`
	}
	recent := time.Now().Add(-3 * time.Second).UnixMilli()
	if err := conn.SelectContext(ctx, &rows, `SELECT id, created_at FROM live_events
			WHERE stream = 'extraterrestrials' AND (id > $1 OR created_at >= $2) ORDER BY id`, a.lastRead, recent); err != nil {
		return fmt.Errorf("read live_events: %w", err)
	}
	for _, r := range rows {
		a.published[r.ID] = r.CreatedAt
		a.lastRead = max(a.lastRead, r.ID)
	}
	return nil
}

// finish waits (up to 30 s) until every client has every changed row's
// event, closes the clients, and fills r's deliveries and latency from the
// jobs' completed_at.
func (a *arrivals) finish(ctx context.Context, c *benchCluster, r *nodesResult) error {
	want := int64(r.Changes) * int64(r.Clients)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, _, _ := a.streams.Stats()
		if rows >= want || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One more read of live_events after the last event arrived.
	if err := a.close(); err != nil {
		return err
	}
	if err := a.readNew(ctx, c.conn); err != nil {
		return err
	}
	rows, resyncs, ended := a.streams.Stats()
	r.Resyncs, r.Cut, r.Twice = resyncs, ended, a.twice
	r.ClientCPU = a.streams.CPU().Seconds() / time.Since(a.base).Seconds()
	var done []struct {
		ET          int64 `db:"et"`
		CompletedAt int64 `db:"completed_at"`
	}
	if err := c.conn.SelectContext(ctx, &done, `SELECT CAST(args ->> 'extraterrestrial_id' AS BIGINT) AS et, completed_at
			FROM jobs WHERE kind = 'speak_and_spell' AND state = 'completed'`); err != nil {
		return err
	}
	var h, pub latencyHistogram
	unpublished := 0
	for _, j := range done {
		i, ok := a.place(j.ET)
		if !ok {
			continue
		}
		committed := time.UnixMilli(j.CompletedAt)
		created, published := a.published[a.eventID[i]]
		if !published && a.eventID[i] != 0 {
			unpublished++
		}
		for _, at := range a.at[int(i)*a.clients : int(i+1)*a.clients] {
			if at == 0 {
				continue
			}
			r.Delivered++
			arrived := a.base.Add(time.Duration(at) * time.Microsecond)
			h.add(arrived.Sub(committed))
			if published {
				pub.add(arrived.Sub(time.UnixMilli(created)))
			}
		}
	}
	r.Missing = want - r.Delivered
	r.Latency, r.Publish = h.summary(), pub.summary()
	if unpublished > 0 {
		return fmt.Errorf("%d rows' events have no row in live_events (not published through the broker, or trimmed before they were read)", unpublished)
	}
	if rows-r.Twice != r.Delivered {
		return fmt.Errorf("the clients counted %d row events (%d twice) but %d match a completed call", rows, r.Twice, r.Delivered)
	}
	return nil
}

// streamClients is the node's count of extraterrestrials stream clients,
// from /metrics.
func streamClients(base string) (int, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `phonehome_sse_clients{stream="extraterrestrials"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, sc.Err()
}

// latencyHistogram counts latencies in 100 µs buckets up to a minute (a
// million-odd deliveries a second would not fit a sorted slice).
type latencyHistogram struct {
	buckets []int64
	n       int64
	max     time.Duration
}

const latencyBucket = 100 * time.Microsecond

func (h *latencyHistogram) add(d time.Duration) {
	if h.buckets == nil {
		h.buckets = make([]int64, int(time.Minute/latencyBucket)+1)
	}
	d = max(d, 0) // completed_at is in whole milliseconds
	h.n++
	h.max = max(h.max, d)
	h.buckets[min(int(d/latencyBucket), len(h.buckets)-1)]++
}

func (h *latencyHistogram) quantile(q float64) time.Duration {
	want := int64(q * float64(h.n))
	var seen int64
	for i, n := range h.buckets {
		seen += n
		if seen > want {
			return time.Duration(i+1) * latencyBucket
		}
	}
	return h.max
}

func (h *latencyHistogram) summary() live.Latency {
	if h.n == 0 {
		return live.Latency{}
	}
	return live.Latency{N: h.n, P50: h.quantile(0.5), P99: h.quantile(0.99), Max: h.max}
}

func cpuCells(cpu []float64) string {
	var parts []string
	for _, c := range cpu {
		parts = append(parts, fmt.Sprintf("%.0f %%", c*100))
	}
	return strings.Join(parts, " / ")
}
