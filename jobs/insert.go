package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// InsertOpts are the per-job options of an insert. Zero fields take the
// Args' own defaults (ArgsWithOpts), then the engine's.
type InsertOpts struct {
	// Queue is the queue the job runs in ("default" when empty).
	Queue string
	// Priority is 0 (first) … 9 (last).
	Priority int
	// MaxAttempts is how many attempts the job gets (20 when zero).
	MaxAttempts int
	// ScheduledAt delays the job until then; zero means now.
	ScheduledAt time.Time
	// Tags label the job for filtering.
	Tags []string
	// Unique keeps at most one unfinished job with the same kind and args:
	// a second insert reports Duplicate instead of adding a row.
	Unique bool
}

// DefaultMaxAttempts is Oban's default number of attempts.
const DefaultMaxAttempts = 20

// InsertParams is one job of a bulk insert.
type InsertParams struct {
	Args Args
	Opts InsertOpts
}

// InsertResult says what an insert did.
type InsertResult struct {
	// ID is the new job's id, or the existing job's when Duplicate.
	ID int64
	// Duplicate is true when a unique job with the same kind and args was
	// already in flight, so nothing was inserted.
	Duplicate bool
}

type insertRow struct {
	state, queue, kind, args, tags string
	priority, maxAttempts          int
	uniqueKey                      sql.NullString
	scheduledAt                    int64
}

func prepareInsert(p InsertParams, now time.Time) (insertRow, error) {
	if p.Args == nil {
		return insertRow{}, errors.New("insert: nil args")
	}
	kind := p.Args.Kind()
	if kind == "" {
		return insertRow{}, errors.New("insert: args with an empty Kind")
	}
	opts := p.Opts
	if d, ok := p.Args.(ArgsWithOpts); ok {
		opts = mergeOpts(d.InsertOpts(), opts)
	}
	if opts.Queue == "" {
		opts.Queue = "default"
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Priority < 0 || opts.Priority > 9 {
		return insertRow{}, fmt.Errorf("insert %s: priority %d is outside 0…9", kind, opts.Priority)
	}
	if opts.MaxAttempts < 1 {
		return insertRow{}, fmt.Errorf("insert %s: max attempts %d is below 1", kind, opts.MaxAttempts)
	}
	args, err := json.Marshal(p.Args)
	if err != nil {
		return insertRow{}, fmt.Errorf("insert %s: encode args: %w", kind, err)
	}
	tags := opts.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return insertRow{}, fmt.Errorf("insert %s: encode tags: %w", kind, err)
	}
	r := insertRow{
		state:       string(StateAvailable),
		queue:       opts.Queue,
		kind:        kind,
		args:        string(args),
		tags:        string(tagsJSON),
		priority:    opts.Priority,
		maxAttempts: opts.MaxAttempts,
		scheduledAt: now.UnixMilli(),
	}
	if opts.ScheduledAt.After(now) {
		r.state = string(StateScheduled)
		r.scheduledAt = opts.ScheduledAt.UnixMilli()
	}
	if opts.Unique {
		r.uniqueKey = sql.NullString{String: kind + ":" + string(args), Valid: true}
	}
	return r, nil
}

func mergeOpts(base, over InsertOpts) InsertOpts {
	if over.Queue != "" {
		base.Queue = over.Queue
	}
	if over.Priority != 0 {
		base.Priority = over.Priority
	}
	if over.MaxAttempts != 0 {
		base.MaxAttempts = over.MaxAttempts
	}
	if !over.ScheduledAt.IsZero() {
		base.ScheduledAt = over.ScheduledAt
	}
	if over.Tags != nil {
		base.Tags = over.Tags
	}
	base.Unique = base.Unique || over.Unique
	return base
}

const insertSQL = `INSERT INTO jobs (state, queue, kind, args, priority, max_attempts, tags, unique_key, inserted_at, scheduled_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`

// Insert adds one job in its own transaction and wakes its queue.
func (e *Engine) Insert(ctx context.Context, args Args, opts InsertOpts) (InsertResult, error) {
	var res InsertResult
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		res, err = e.InsertTx(ctx, tx, args, opts)
		return err
	})
	if err != nil {
		return InsertResult{}, err
	}
	e.Wake()
	return res, nil
}

// InsertTx adds one job inside the caller's transaction, so the job exists
// if and only if the caller's change commits. Call Wake after the commit to
// start it before the next poll.
func (e *Engine) InsertTx(ctx context.Context, tx *sqlx.Tx, args Args, opts InsertOpts) (InsertResult, error) {
	r, err := prepareInsert(InsertParams{Args: args, Opts: opts}, e.now())
	if err != nil {
		return InsertResult{}, err
	}
	var id int64
	err = tx.QueryRowxContext(ctx, insertSQL, r.state, r.queue, r.kind, r.args, r.priority, r.maxAttempts,
		r.tags, r.uniqueKey, e.now().UnixMilli(), r.scheduledAt).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) && r.uniqueKey.Valid {
		err = tx.GetContext(ctx, &id, "SELECT id FROM jobs WHERE unique_key = ? AND state IN "+inFlight, r.uniqueKey)
		if err != nil {
			return InsertResult{}, fmt.Errorf("insert %s: find duplicate: %w", r.kind, err)
		}
		return InsertResult{ID: id, Duplicate: true}, nil
	}
	if err != nil {
		return InsertResult{}, fmt.Errorf("insert %s: %w", r.kind, err)
	}
	return InsertResult{ID: id}, nil
}

// InsertMany adds many jobs in one transaction and wakes their queues. It
// returns how many were inserted; unique duplicates are skipped.
func (e *Engine) InsertMany(ctx context.Context, params []InsertParams) (int, error) {
	var n int
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		n, err = e.InsertManyTx(ctx, tx, params)
		return err
	})
	if err != nil {
		return 0, err
	}
	e.Wake()
	return n, nil
}

// InsertManyTx adds many jobs inside the caller's transaction and returns
// how many were inserted; unique duplicates are skipped. Call Wake after the
// commit.
func (e *Engine) InsertManyTx(ctx context.Context, tx *sqlx.Tx, params []InsertParams) (int, error) {
	stmt, err := tx.PreparexContext(ctx, insertSQL)
	if err != nil {
		return 0, fmt.Errorf("insert many: %w", err)
	}
	defer stmt.Close()
	now := e.now()
	inserted := 0
	for _, p := range params {
		r, err := prepareInsert(p, now)
		if err != nil {
			return 0, err
		}
		var id int64
		err = stmt.QueryRowxContext(ctx, r.state, r.queue, r.kind, r.args, r.priority, r.maxAttempts,
			r.tags, r.uniqueKey, now.UnixMilli(), r.scheduledAt).Scan(&id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, fmt.Errorf("insert %s: %w", r.kind, err)
		default:
			inserted++
		}
	}
	return inserted, nil
}
