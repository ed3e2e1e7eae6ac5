package live

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	applive "github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
)

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
