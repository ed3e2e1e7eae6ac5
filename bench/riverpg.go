package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverPGSystem is River on its home ground: PostgreSQL through pgx v5.
var riverPGSystem = queueSystem{
	Name: "River",
	Settings: "`riverpgxv5.New(pool)` on a `pgxpool` of the same server and database settings as phonehome's; schema by " +
		"`rivermigrate` (up); `Queues: {default: {MaxWorkers: 50}}`, **`FetchCooldown: 1ms`, `FetchPollInterval: 50ms`** " +
		"(as on SQLite; its defaults are 100 ms and 1 s, and it also listens for inserts with LISTEN/NOTIFY), a " +
		"`RetryPolicy` that retries at once, `MaxAttempts` 5 per job, logger discarded; bulk insert with " +
		"`InsertManyFast`, single insert with `Insert`.",
	Open: openRiverPG,
}

type riverPGQueue struct {
	pool        *pgxpool.Pool
	client      *river.Client[pgx.Tx]
	maxAttempts int
}

func openRiverPG(ctx context.Context, target string, maxAttempts int, h handler) (queueImpl, error) {
	pool, err := pgxpool.New(ctx, target)
	if err != nil {
		return nil, err
	}
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: discardLogger})
	if err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("river migrate: %w", err)
	}
	ws := river.NewWorkers()
	river.AddWorker(ws, &riverWorker{h: h})
	client, err := river.NewClient(driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           ws,
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		RetryPolicy:       retryNow{},
		MaxAttempts:       maxAttempts,
		Logger:            discardLogger,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &riverPGQueue{pool: pool, client: client, maxAttempts: maxAttempts}, nil
}

func (q *riverPGQueue) InsertMany(ctx context.Context, ns []int) error {
	params := make([]river.InsertManyParams, len(ns))
	for i, n := range ns {
		params[i] = river.InsertManyParams{Args: riverArgs{N: n}, InsertOpts: &river.InsertOpts{MaxAttempts: q.maxAttempts}}
	}
	inserted, err := q.client.InsertManyFast(ctx, params)
	return insertedAll(inserted, len(ns), err)
}

func (q *riverPGQueue) Insert(ctx context.Context, n int) error {
	_, err := q.client.Insert(ctx, riverArgs{N: n}, &river.InsertOpts{MaxAttempts: q.maxAttempts})
	return err
}

func (q *riverPGQueue) Start(ctx context.Context) error { return q.client.Start(ctx) }

func (q *riverPGQueue) Stop(ctx context.Context) error { return q.client.Stop(ctx) }

func (q *riverPGQueue) Pending(ctx context.Context) (int, error) {
	var n int
	err := q.pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded')").Scan(&n)
	return n, err
}

func (q *riverPGQueue) Close() error {
	q.pool.Close()
	return nil
}
