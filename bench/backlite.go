package main

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/mikestefanello/backlite"
)

var backliteSystem = queueSystem{
	Name: "backlite",
	Settings: "`backlite.NewClient` on modernc.org/sqlite with one connection (`SetMaxOpenConns(1)`) and the same pragmas " +
		"as phonehome's writer (its README's DSN asks for WAL and a 5 s busy timeout); schema by `client.Install()`; " +
		"`NumWorkers: 50`, `ReleaseAfter: 1h`, no cleanup, no logger; queue `MaxAttempts: 5`, `Backoff: 0`, no " +
		"retention (its default: a finished task's row is deleted); bulk insert with `Add(tasks...).Save()` (one " +
		"transaction), single insert with `Add(task).Save()`. Its processor is not told the attempt number (a TODO in " +
		"backlite), so the benchmark counts attempts per job itself.",
	Open: openBacklite,
}

// blTask is the benchmark task on backlite. Its queue configuration is
// per type, so every workload uses the same one.
type blTask struct {
	N int `json:"n"`
}

// blMaxAttempts is the attempts a backlite task gets (backlite sets it per
// task type, not per insert).
const blMaxAttempts = 5

// Config returns the benchmark queue's configuration.
func (blTask) Config() backlite.QueueConfig {
	return backlite.QueueConfig{Name: "bench", MaxAttempts: blMaxAttempts, Backoff: 0}
}

type backliteQueue struct {
	db     *sql.DB
	client *backlite.Client
	cancel context.CancelFunc
}

func openBacklite(ctx context.Context, path string, maxAttempts int, h handler) (queueImpl, error) {
	if maxAttempts != blMaxAttempts {
		return nil, errors.New("backlite: max attempts are fixed per task type")
	}
	db, err := openPeerDB(path)
	if err != nil {
		return nil, err
	}
	client, err := backlite.NewClient(backlite.ClientConfig{
		DB:           db,
		NumWorkers:   workers,
		ReleaseAfter: time.Hour,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := client.Install(); err != nil {
		db.Close()
		return nil, err
	}
	var mu sync.Mutex
	attempts := map[int]int{}
	client.Register(backlite.NewQueue[blTask](func(_ context.Context, t blTask) error {
		mu.Lock()
		attempts[t.N]++
		a := attempts[t.N]
		mu.Unlock()
		return h(t.N, a)
	}))
	return &backliteQueue{db: db, client: client}, nil
}

func (q *backliteQueue) InsertMany(ctx context.Context, ns []int) error {
	tasks := make([]backlite.Task, len(ns))
	for i, n := range ns {
		tasks[i] = blTask{N: n}
	}
	_, err := q.client.Add(tasks...).Ctx(ctx).Save()
	return err
}

func (q *backliteQueue) Insert(ctx context.Context, n int) error {
	_, err := q.client.Add(blTask{N: n}).Ctx(ctx).Save()
	return err
}

func (q *backliteQueue) Start(context.Context) error {
	// Cancelling Start's context is backlite's hard stop: give it one that
	// lives until Close.
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.client.Start(ctx)
	return nil
}

func (q *backliteQueue) Stop(ctx context.Context) error {
	if !q.client.Stop(ctx) {
		return errors.New("backlite: workers did not finish before the stop deadline")
	}
	return nil
}

func (q *backliteQueue) Pending(ctx context.Context) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, "SELECT count(*) FROM backlite_tasks").Scan(&n)
	return n, err
}

func (q *backliteQueue) Close() error {
	if q.cancel != nil {
		q.cancel()
	}
	return q.db.Close()
}
