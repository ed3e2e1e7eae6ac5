package main

import (
	"context"
	"fmt"

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
}

func openPhonehome(ctx context.Context, path string, maxAttempts int, h handler) (queueImpl, error) {
	st, err := store.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	eng, err := jobs.New(st.Writer, jobs.Config{
		Queues:  map[string]int{"default": workers},
		Backoff: jobs.FixedBackoff(0),
		Logger:  discardLogger,
		Reader:  st.Reader,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := eng.Register(phWorker{h: h}); err != nil {
		st.Close()
		return nil, err
	}
	return &phonehomeQueue{st: st, eng: eng, maxAttempts: maxAttempts}, nil
}

func (q *phonehomeQueue) InsertMany(ctx context.Context, ns []int) error {
	params := make([]jobs.InsertParams, len(ns))
	for i, n := range ns {
		params[i] = jobs.InsertParams{Args: phArgs{N: n}, Opts: jobs.InsertOpts{MaxAttempts: q.maxAttempts}}
	}
	inserted, err := q.eng.InsertMany(ctx, params)
	if err != nil {
		return err
	}
	if inserted != len(ns) {
		return fmt.Errorf("inserted %d of %d jobs", inserted, len(ns))
	}
	return nil
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
