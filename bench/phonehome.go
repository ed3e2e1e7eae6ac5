package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/phonehome/phonehome/bench/internal/benchdb"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

var phonehomeSystem = queueSystem{
	Name: "phonehome",
	Settings: "`store.Open` (one writer connection, `_txlock=immediate`, WAL, synchronous=NORMAL, busy_timeout 5000, " +
		"cache_size −32000, temp_store MEMORY) and `Migrate`; `jobs.New(st.Writer, jobs.Config{Queues: {\"default\": 50}, " +
		"Backoff: jobs.FixedBackoff(0), Reader: st.Reader, Logger: discard})` with every other setting at its default: `PollInterval` 1 s (inserts wake the queue), heartbeat 15 s, pruning of finished jobs older than 24 h; " +
		"bulk insert with `InsertMany` (one transaction), single insert with `Insert`; `MaxAttempts` 5 per job.",
	Open: openPhonehome,
}

// phArgs are the benchmark job's arguments.
type phArgs struct {
	N int `json:"n"`
}

// Kind names the benchmark job kind.
func (phArgs) Kind() string { return "bench" }

// phWorker runs benchmark jobs on phonehome's engine.
type phWorker struct{ h handler }

// Kind names the kind phWorker runs.
func (phWorker) Kind() string { return "bench" }

// Work decodes the job's argument and calls the handler.
func (w phWorker) Work(_ context.Context, job *jobs.Job) error {
	var a phArgs
	if err := job.UnmarshalArgs(&a); err != nil {
		return err
	}
	return w.h(a.N, job.Attempt)
}

type phonehomeQueue struct {
	st          *store.Store
	eng         *jobs.Engine
	maxAttempts int
	batches     batchCount
}

// countBatches (-count-batches) makes phonehome's engine report every
// committed batch of changed jobs (Config.OnChange, as the app sets it):
// W1 and W2 then report how many batches the claims and outcomes took and
// how many were of a single job.
var countBatches bool

// batchCount counts the batches Config.OnChange reports.
type batchCount struct {
	n, single, ids atomic.Int64
}

func (b *batchCount) add(ids []int64) {
	b.n.Add(1)
	b.ids.Add(int64(len(ids)))
	if len(ids) == 1 {
		b.single.Add(1)
	}
}

func (b *batchCount) reset() {
	b.n.Store(0)
	b.single.Store(0)
	b.ids.Store(0)
}

// batchMetrics adds the batch counts of q to m, when q counts them.
func batchMetrics(q queueImpl, m map[string]float64) {
	pq, ok := q.(*phonehomeQueue)
	if !ok || !countBatches {
		return
	}
	n := pq.batches.n.Load()
	m["batches"] = float64(n)
	m["single_batches"] = float64(pq.batches.single.Load())
	if n > 0 {
		m["jobs_per_batch"] = float64(pq.batches.ids.Load()) / float64(n)
	}
}

// resetBatches forgets the batches counted so far (the bulk insert's).
func resetBatches(q queueImpl) {
	if pq, ok := q.(*phonehomeQueue); ok {
		pq.batches.reset()
	}
}

func openPhonehome(ctx context.Context, path string, maxAttempts int, h handler) (queueImpl, error) {
	st, err := benchdb.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	q := &phonehomeQueue{st: st, maxAttempts: maxAttempts}
	cfg := jobs.Config{
		Queues:  map[string]int{"default": workers},
		Backoff: jobs.FixedBackoff(0),
		Logger:  discardLogger,
		Reader:  st.Reader,
	}
	if countBatches {
		cfg.OnChange = q.batches.add
	}
	eng, err := jobs.New(st.Writer, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := eng.Register(phWorker{h: h}); err != nil {
		st.Close()
		return nil, err
	}
	q.eng = eng
	return q, nil
}

func (q *phonehomeQueue) InsertMany(ctx context.Context, ns []int) error {
	params := make([]jobs.InsertParams, len(ns))
	for i, n := range ns {
		params[i] = jobs.InsertParams{Args: phArgs{N: n}, Opts: jobs.InsertOpts{MaxAttempts: q.maxAttempts}}
	}
	inserted, err := q.eng.InsertMany(ctx, params)
	return insertedAll(inserted, len(ns), err)
}

func (q *phonehomeQueue) Insert(ctx context.Context, n int) error {
	_, err := q.eng.Insert(ctx, phArgs{N: n}, jobs.InsertOpts{MaxAttempts: q.maxAttempts})
	return err
}

func (q *phonehomeQueue) Start(ctx context.Context) error { return q.eng.Start(ctx) }

func (q *phonehomeQueue) Stop(ctx context.Context) error { return q.eng.Stop(ctx) }

func (q *phonehomeQueue) Pending(ctx context.Context) (int, error) {
	var n int
	err := q.st.Reader.GetContext(ctx, &n, "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'discarded')")
	return n, err
}

func (q *phonehomeQueue) Close() error { return q.st.Close() }

// insertedAll is the outcome of a bulk insert of want jobs that answered
// inserted and err, for every queue's InsertMany: an insert that quietly
// dropped jobs would make its queue's figures look better than they are.
func insertedAll(inserted, want int, err error) error {
	if err != nil {
		return err
	}
	if inserted != want {
		return fmt.Errorf("inserted %d of %d jobs", inserted, want)
	}
	return nil
}
