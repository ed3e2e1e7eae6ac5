package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	// ScheduleIn delays the job by this long when ScheduledAt is zero.
	ScheduleIn time.Duration
	// Tags label the job for filtering.
	Tags []string
	// Unique keeps at most one job with the same kind and args in
	// UniqueStates inserted within UniquePeriod: another insert reports
	// Duplicate (with the existing job's id) instead of adding a row.
	Unique bool
	// UniquePeriod limits Unique to jobs inserted this long ago or less
	// (zero: any time).
	UniquePeriod time.Duration
	// UniqueStates are the states a job must be in to count for Unique
	// (nil: scheduled, available, executing, retryable: "in flight").
	UniqueStates []State
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
	// already there (see InsertOpts.Unique), so nothing was inserted.
	Duplicate bool
}

type insertRow struct {
	state, queue, kind, args, tags string
	priority, maxAttempts          int
	// uniqueKey is set for the default uniqueness, which the partial
	// unique index enforces; uniqueBy for a period or other states, which
	// the insert looks up first.
	uniqueKey, uniqueBy sql.NullString
	uniqueStates        []State // with uniqueBy
	uniqueSince         int64   // unix ms, with uniqueBy
	scheduledAt         int64
}

func queueOf(args Args, opts InsertOpts) string {
	if d, ok := args.(ArgsWithOpts); ok {
		opts = mergeOpts(d.InsertOpts(), opts)
	}
	if opts.Queue == "" {
		return "default"
	}
	return opts.Queue
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
	if opts.UniquePeriod < 0 {
		return insertRow{}, fmt.Errorf("insert %s: negative unique period %s", kind, opts.UniquePeriod)
	}
	for _, s := range opts.UniqueStates {
		if !slices.Contains(States, s) {
			return insertRow{}, fmt.Errorf("insert %s: unknown unique state %q", kind, s)
		}
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
	at := opts.ScheduledAt
	if at.IsZero() && opts.ScheduleIn > 0 {
		at = now.Add(opts.ScheduleIn)
	}
	if at.After(now) {
		r.state = string(StateScheduled)
		r.scheduledAt = at.UnixMilli()
	}
	if opts.Unique {
		key := sql.NullString{String: kind + ":" + string(args), Valid: true}
		if opts.UniquePeriod == 0 && opts.UniqueStates == nil {
			r.uniqueKey = key
		} else {
			r.uniqueBy = key
			states := opts.UniqueStates
			if states == nil {
				states = []State{StateScheduled, StateAvailable, StateExecuting, StateRetryable}
			}
			r.uniqueStates = states
			r.uniqueSince = 0
			if opts.UniquePeriod > 0 {
				r.uniqueSince = now.Add(-opts.UniquePeriod).UnixMilli()
			}
		}
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
	if over.ScheduleIn != 0 {
		base.ScheduleIn = over.ScheduleIn
	}
	if over.Tags != nil {
		base.Tags = over.Tags
	}
	base.Unique = base.Unique || over.Unique
	if over.UniquePeriod != 0 {
		base.UniquePeriod = over.UniquePeriod
	}
	if over.UniqueStates != nil {
		base.UniqueStates = over.UniqueStates
	}
	return base
}

const insertSQL = `INSERT INTO jobs (state, queue, kind, args, priority, max_attempts, tags, unique_key, unique_by, inserted_at, scheduled_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`

const findUniqueBySQL = `SELECT id FROM jobs
	WHERE unique_by = ?1 AND inserted_at >= ?2 AND state IN (SELECT value FROM json_each(?3))
	ORDER BY id DESC LIMIT 1`

// findUniqueSQL finds the in-flight job whose unique_key made an insert
// skip (ON CONFLICT DO NOTHING).
const findUniqueSQL = "SELECT id FROM jobs WHERE unique_key = ? AND state IN " + inFlight

// Insert adds one job in its own transaction and wakes its queue (it
// reports the jobs inserted with InsertTx and InsertManyTx since the last
// Wake too, as Wake does).
func (e *Engine) Insert(ctx context.Context, args Args, opts InsertOpts) (InsertResult, error) {
	now := e.now()
	r, err := prepareInsert(InsertParams{Args: args, Opts: opts}, now)
	if err != nil {
		return InsertResult{}, err
	}
	// The statement prepared once: parsing and planning it (with its
	// count trigger) took about as long as running it.
	stmt, err := e.insertStmt(ctx)
	if err != nil {
		return InsertResult{}, err
	}
	// When this engine runs the job's queue and it has a free slot, the
	// insert's transaction claims too (piggyback.go), and the job starts
	// right after the commit, without waiting for the queue's loop to wake
	// and claim in a transaction of its own.
	p := e.lockInsertClaim(r.queue)
	var res InsertResult
	err = e.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		res, err = e.insertOne(ctx, tx, r, now, tx.StmtxContext(ctx, stmt))
		if err != nil || p == nil {
			return err
		}
		return e.claimPiggyback(ctx, tx, p)
	})
	if ce := (*claimError)(nil); errors.As(err, &ce) {
		// The insert must not fail for a claim: insert alone, and leave
		// the claim to the queue's loop.
		p.unlock(e)
		p = nil
		e.log.Error("claim with an insert; inserting alone", "err", ce.err)
		err = e.inTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			res, err = e.insertOne(ctx, tx, r, now, tx.StmtxContext(ctx, stmt))
			return err
		})
	}
	if err != nil {
		p.unlock(e)
		return InsertResult{}, err
	}
	if !res.Duplicate {
		e.addPending(res.ID)
	}
	e.afterPiggyback(p)
	e.startPiggyback(p)
	e.reportPending()
	// A claim made with the insert took every due job its queue had room
	// for: waking the queue's loop would only run an empty claim of its
	// own, on the writer and a core the new job's start needs (W3).
	if q, ok := e.queues[r.queue]; ok && p == nil {
		q.signal()
	}
	return res, nil
}

// InsertTx adds one job inside the caller's transaction, so the job exists
// if and only if the caller's change commits. Call Wake after the commit to
// start it before the next poll (and report it to OnChange).
func (e *Engine) InsertTx(ctx context.Context, tx *sqlx.Tx, args Args, opts InsertOpts) (InsertResult, error) {
	res, err := e.insertTx(ctx, tx, args, opts)
	if err == nil && !res.Duplicate {
		e.addPending(res.ID)
	}
	return res, err
}

func (e *Engine) addPending(ids ...int64) {
	if !e.hasSubscribers() || len(ids) == 0 {
		return
	}
	e.pendingMu.Lock()
	e.pending = append(e.pending, ids...)
	e.pendingMu.Unlock()
}

// reportPending reports the jobs inserted with InsertTx or InsertManyTx
// since the last report to OnChange.
func (e *Engine) reportPending() {
	e.pendingMu.Lock()
	ids := e.pending
	e.pending = nil
	e.pendingMu.Unlock()
	e.changed(ids)
}

// insertTx inserts one job without reporting it.
func (e *Engine) insertTx(ctx context.Context, tx *sqlx.Tx, args Args, opts InsertOpts) (InsertResult, error) {
	now := e.now()
	r, err := prepareInsert(InsertParams{Args: args, Opts: opts}, now)
	if err != nil {
		return InsertResult{}, err
	}
	return e.insertOne(ctx, tx, r, now, nil)
}

// insertOne inserts a prepared row; stmt, when not nil, is the dialect's
// insert prepared on tx. (On PostgreSQL that statement also notifies the
// row's queue.)
func (e *Engine) insertOne(ctx context.Context, tx *sqlx.Tx, r insertRow, now time.Time, stmt *sqlx.Stmt) (InsertResult, error) {
	var id int64
	if r.uniqueBy.Valid {
		if e.d.lockUniqueBy != "" {
			// Two transactions must not both find no copy and both
			// insert: the second waits here until the first commits.
			if _, err := tx.ExecContext(ctx, e.d.lockUniqueBy, r.uniqueBy); err != nil {
				return InsertResult{}, fmt.Errorf("insert %s: lock its unique key: %w", r.kind, err)
			}
		}
		err := tx.GetContext(ctx, &id, e.d.findUniqueBy, r.uniqueBy, r.uniqueSince, e.d.states(r.uniqueStates))
		switch {
		case err == nil:
			return InsertResult{ID: id, Duplicate: true}, nil
		case !errors.Is(err, sql.ErrNoRows):
			return InsertResult{}, fmt.Errorf("insert %s: find duplicate: %w", r.kind, err)
		}
	}
	args := []any{r.state, r.queue, r.kind, r.args, r.priority, r.maxAttempts,
		r.tags, r.uniqueKey, r.uniqueBy, now.UnixMilli(), r.scheduledAt}
	var err error
	if stmt != nil {
		err = stmt.QueryRowxContext(ctx, args...).Scan(&id)
	} else {
		err = tx.QueryRowxContext(ctx, e.d.insert, args...).Scan(&id)
	}
	if errors.Is(err, sql.ErrNoRows) && r.uniqueKey.Valid {
		err = tx.GetContext(ctx, &id, e.d.findUnique, r.uniqueKey)
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
