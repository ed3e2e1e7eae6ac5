// Package speakandspell is the Phone Home campaign: the Speak & Spell worker
// that makes one phone call per job attempt, and PhoneHome, which enqueues
// the calls. It is the seed's SpeakAndSpellWorker, on package jobs.
package speakandspell

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// The worker's settings from the seed: queue phone_calls runs 50 calls at
// once, and each extraterrestrial gets 5 attempts.
const (
	Kind        = "speak_and_spell"
	Queue       = "phone_calls"
	QueueLimit  = 50
	MaxAttempts = 5
)

// ErrNoAnswer is the failed attempt of a call that did not connect.
var ErrNoAnswer = errors.New("no answer")

// Args are one call's job arguments.
type Args struct {
	ExtraterrestrialID int64 `json:"extraterrestrial_id"`
}

// Kind names the Speak & Spell worker.
func (Args) Kind() string { return Kind }

// InsertOpts are the seed's worker options; a call is unique while in flight,
// so a double click never enqueues one extraterrestrial twice.
func (Args) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Queue: Queue, MaxAttempts: MaxAttempts, Unique: true}
}

// Config configures a Worker.
type Config struct {
	// AnswerRate is the probability (0…1) that one call connects.
	AnswerRate float64
	// Rand is the random source of the calls; nil means a random seed.
	Rand *rand.Rand
	// Now is the clock for attempt timestamps (time.Now).
	Now func() time.Time
	// OnCall runs after each call's outcome has committed, in commit order,
	// with the updated row: the place to broadcast it.
	OnCall func(store.Extraterrestrial)
}

// Worker is the Speak & Spell: each attempt phones home once.
type Worker struct {
	cfg Config
	mu  sync.Mutex // guards cfg.Rand
}

// NewWorker makes a Speak & Spell worker.
func NewWorker(cfg Config) *Worker {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Worker{cfg: cfg}
}

// Kind names the jobs this worker runs.
func (w *Worker) Kind() string { return Kind }

// Work makes one call. Connected: the status becomes space_taxi_on_the_way
// and the job completes. Not connected: phoning_home, or no_answer on the
// last attempt, and the job fails so it is retried. Either way the status,
// the attempt number and its time are written in the same transaction as the
// job's new state.
func (w *Worker) Work(ctx context.Context, job *jobs.Job) error {
	var args Args
	if err := job.UnmarshalArgs(&args); err != nil {
		return jobs.Cancel(err)
	}
	connected := w.dial()
	status := store.StatusSpaceTaxi
	if !connected {
		status = store.StatusPhoningHome
		if job.Attempt >= job.MaxAttempts {
			status = store.StatusNoAnswer
		}
	}
	at := w.cfg.Now().UTC().Truncate(time.Second)
	var updated store.Extraterrestrial
	job.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
		var err error
		updated, err = store.RecordCallTx(ctx, tx, args.ExtraterrestrialID, status, job.Attempt, at)
		return err
	})
	if w.cfg.OnCall != nil {
		job.AfterRecord(func() { w.cfg.OnCall(updated) })
	}
	if !connected {
		return ErrNoAnswer
	}
	return nil
}

func (w *Worker) dial() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg.Rand.Float64() < w.cfg.AnswerRate
}

// PhoneHome enqueues one call for every extraterrestrial that never tried or
// got no answer and has no call in flight, in one transaction, and reports
// how many it enqueued. Once the calls are committed it wakes the engine and
// reports the new jobs to its OnChange (the jobs page), as for jobs it
// inserts itself.
func PhoneHome(ctx context.Context, st *store.Store, engine *jobs.Engine) (int, error) {
	var ids []int64
	err := st.InTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		ids, err = EnqueueCallsTx(ctx, tx, time.Now())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("phone home: %w", err)
	}
	engine.Wake()
	engine.Changed(ids)
	return len(ids), nil
}

// enqueueCallsSQL inserts the calls with one INSERT … SELECT: a million rows
// take seconds, where one insert per row through the job API took minutes.
// The rows are exactly what jobs.InsertTx writes for Args with InsertOpts
// (state available, the queue, max attempts, no tags, the unique key
// "kind:args" with args as encoding/json writes them). An extraterrestrial
// whose call is in flight is left out by the NOT EXISTS, which reads the
// jobs table's unique-in-flight index as its ON CONFLICT would: with
// AUTOINCREMENT (migration 0009) a row skipped by ON CONFLICT would still
// use up an id, and the ids would no longer follow each other. ON CONFLICT
// DO NOTHING stays as a guard. NOT INDEXED reads the table in id order:
// through the status index SQLite would sort a million ids first (about a
// third slower).
const enqueueCallsSQL = `INSERT INTO jobs (state, queue, kind, args, priority, max_attempts, tags, unique_key, inserted_at, scheduled_at)
	SELECT 'available', ?1, ?2, json_object('extraterrestrial_id', e.id), 0, ?3, '[]',
	       ?2 || ':' || json_object('extraterrestrial_id', e.id), ?4, ?4
	FROM extraterrestrials AS e NOT INDEXED
	WHERE ` + store.PhoneHomeEligible + `
	  AND NOT EXISTS (SELECT 1 FROM jobs AS j
		WHERE j.unique_key = ?2 || ':' || json_object('extraterrestrial_id', e.id)
		  AND j.state IN ('scheduled', 'available', 'executing', 'retryable'))
	ORDER BY e.id
	ON CONFLICT DO NOTHING`

// lastJobIDSQL is the largest job id ever given: the jobs table's
// sqlite_sequence row (AUTOINCREMENT), or its largest id when larger.
const lastJobIDSQL = `SELECT max(coalesce((SELECT max(id) FROM jobs), 0),
	coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0))`

// EnqueueCallsTx inserts, inside tx, one call for every extraterrestrial
// that never tried or got no answer and has no call in flight, due at now,
// and returns the new jobs' ids. Call the engine's Wake and Changed after
// the commit.
func EnqueueCallsTx(ctx context.Context, tx *sqlx.Tx, now time.Time) ([]int64, error) {
	// One statement on the only writer, which skips no row: its rows get
	// the ids that follow the largest one ever given, with no gaps.
	var last int64
	if err := tx.GetContext(ctx, &last, lastJobIDSQL); err != nil {
		return nil, fmt.Errorf("enqueue calls: %w", err)
	}
	res, err := tx.ExecContext(ctx, enqueueCallsSQL, Queue, Kind, MaxAttempts, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("enqueue calls: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("enqueue calls: %w", err)
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = last + 1 + int64(i)
	}
	return ids, nil
}
