package main

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
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

func openRiverPG(ctx context.Context, target string, maxAttempts int, h handler) (queueImpl, error) {
	pool, err := pgxpool.New(ctx, target)
	if err != nil {
		return nil, err
	}
	pending := func(ctx context.Context) (n int, err error) {
		err = pool.QueryRow(ctx, pendingSQL).Scan(&n)
		return n, err
	}
	return newRiverQueue(ctx, riverpgxv5.New(pool), maxAttempts, h, pending, func() error { pool.Close(); return nil })
}
