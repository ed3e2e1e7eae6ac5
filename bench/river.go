package main

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

var riverSystem = queueSystem{
	Name: "River",
	Settings: "`riversqlite.New(db)` on modernc.org/sqlite with **one connection** (`SetMaxOpenConns(1)`, as the driver's " +
		"docs recommend to avoid SQLITE_BUSY) and the same pragmas as phonehome's writer; schema by `rivermigrate` (up); " +
		"`Queues: {default: {MaxWorkers: 50}}`, **`FetchCooldown: 1ms`, `FetchPollInterval: 50ms`** (its fastest; the " +
		"default 100 ms cooldown caps it near 500 jobs/s), a `RetryPolicy` that retries at once (River then makes the job " +
		"available directly), `MaxAttempts` 5 per job, logger discarded; bulk insert with `InsertManyFast`, single " +
		"insert with `Insert`.",
	Open: openRiver,
}

// riverArgs are the benchmark job's arguments on River.
type riverArgs struct {
	N int `json:"n"`
}

// Kind names the benchmark job kind.
func (riverArgs) Kind() string { return "bench" }

// riverWorker runs benchmark jobs on River.
type riverWorker struct {
	river.WorkerDefaults[riverArgs]
	h handler
}

// Work calls the handler.
func (w *riverWorker) Work(_ context.Context, job *river.Job[riverArgs]) error {
	return w.h(job.Args.N, job.Attempt)
}

// retryNow retries a failed job at once: zero backoff.
type retryNow struct{}

// NextRetry returns now.
func (retryNow) NextRetry(*rivertype.JobRow) time.Time { return time.Now() }

// riverQueue is River on either of its drivers: TTx is the driver's
// transaction type (*sql.Tx on SQLite, pgx.Tx on PostgreSQL).
type riverQueue[TTx any] struct {
	client      *river.Client[TTx]
	maxAttempts int
	// pending counts the unfinished jobs; close closes the database.
	pending func(ctx context.Context) (int, error)
	close   func() error
}

// pendingSQL counts River's unfinished jobs.
const pendingSQL = "SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded')"

func openRiver(ctx context.Context, path string, maxAttempts int, h handler) (queueImpl, error) {
	db, err := openPeerDB(path)
	if err != nil {
		return nil, err
	}
	pending := func(ctx context.Context) (n int, err error) {
		err = db.QueryRowContext(ctx, pendingSQL).Scan(&n)
		return n, err
	}
	return newRiverQueue(ctx, riversqlite.New(db), maxAttempts, h, pending, db.Close)
}

// newRiverQueue migrates River's schema over driver and builds its client
// with the benchmark's settings (the same on both databases). pending
// counts the unfinished jobs and closeDB closes the database, at Close or
// at once when this fails.
func newRiverQueue[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], maxAttempts int, h handler,
	pending func(context.Context) (int, error), closeDB func() error) (queueImpl, error) {
	q, err := riverClient(ctx, driver, maxAttempts, h)
	if err != nil {
		closeDB()
		return nil, err
	}
	q.pending, q.close = pending, closeDB
	return q, nil
}

func riverClient[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], maxAttempts int, h handler) (*riverQueue[TTx], error) {
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: discardLogger})
	if err != nil {
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
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
		return nil, err
	}
	return &riverQueue[TTx]{client: client, maxAttempts: maxAttempts}, nil
}

func (q *riverQueue[TTx]) InsertMany(ctx context.Context, ns []int) error {
	params := make([]river.InsertManyParams, len(ns))
	for i, n := range ns {
		params[i] = river.InsertManyParams{Args: riverArgs{N: n}, InsertOpts: &river.InsertOpts{MaxAttempts: q.maxAttempts}}
	}
	inserted, err := q.client.InsertManyFast(ctx, params)
	return insertedAll(inserted, len(ns), err)
}

func (q *riverQueue[TTx]) Insert(ctx context.Context, n int) error {
	_, err := q.client.Insert(ctx, riverArgs{N: n}, &river.InsertOpts{MaxAttempts: q.maxAttempts})
	return err
}

func (q *riverQueue[TTx]) Start(ctx context.Context) error { return q.client.Start(ctx) }

func (q *riverQueue[TTx]) Stop(ctx context.Context) error { return q.client.Stop(ctx) }

func (q *riverQueue[TTx]) Pending(ctx context.Context) (int, error) { return q.pending(ctx) }

func (q *riverQueue[TTx]) Close() error { return q.close() }
