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
	// OnCallsTx, when set, runs in the outcome transaction just after a
	// batch of calls is written, with their rows as written, in the order
	// of the calls: the place to write their live events with them (the
	// broker, several nodes), so that no later attempt can overtake them.
	// An error fails the transaction: the calls are then recorded one at a
	// time, and a call whose rows it refuses alone fails its attempt
	// without its write (Job.RecordBatchTx), to be retried.
	OnCallsTx func(ctx context.Context, tx *sqlx.Tx, rows []store.Extraterrestrial) error
}

// Worker is the Speak & Spell: each attempt phones home once.
type Worker struct {
	cfg Config
	// batch writes the calls of one outcome transaction together.
	batch *jobs.TxBatch
	mu    sync.Mutex // guards cfg.Rand
}

// NewWorker makes a Speak & Spell worker.
func NewWorker(cfg Config) *Worker {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{cfg: cfg}
	w.batch = &jobs.TxBatch{Write: w.writeCalls}
	return w
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
	c := &call{Call: store.Call{ID: args.ExtraterrestrialID, Status: status, Attempt: job.Attempt,
		At: w.cfg.Now().UTC().Truncate(time.Second)}}
	job.RecordBatchTx(w.batch, c)
	if w.cfg.OnCall != nil {
		job.AfterRecord(func() { w.cfg.OnCall(c.updated) })
	}
	if !connected {
		return ErrNoAnswer
	}
	return nil
}

// call is one attempt's write: the call's outcome, and the row as the
// transaction left it.
type call struct {
	store.Call
	updated store.Extraterrestrial
}

// writeCalls writes the calls of every attempt of one outcome transaction
// in one statement (store.RecordCallsTx), then hands their rows to
// OnCallsTx.
func (w *Worker) writeCalls(ctx context.Context, tx *sqlx.Tx, items []any) error {
	calls := make([]store.Call, len(items))
	for i, it := range items {
		calls[i] = it.(*call).Call
	}
	rows, err := store.RecordCallsTx(ctx, tx, calls)
	if err != nil {
		return err
	}
	for i, it := range items {
		it.(*call).updated = rows[i]
	}
	if w.cfg.OnCallsTx != nil {
		return w.cfg.OnCallsTx(ctx, tx, rows)
	}
	return nil
}

func (w *Worker) dial() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg.Rand.Float64() < w.cfg.AnswerRate
}

// callsSQL selects who gets a call: every extraterrestrial not yet home
// (store.PhoneHomeEligible), in id order. On SQLite, NOT INDEXED reads the
// table in id order: through the status index SQLite would sort a million
// ids first (about a third slower). PostgreSQL has no such hint (and its
// planner costs the sort itself): the same query without it.
var callsSQL = map[store.Dialect]string{
	store.SQLite:   `SELECT id FROM extraterrestrials NOT INDEXED WHERE ` + store.PhoneHomeEligible + ` ORDER BY id`,
	store.Postgres: `SELECT id FROM extraterrestrials WHERE ` + store.PhoneHomeEligible + ` ORDER BY id`,
}

// PhoneHome enqueues one call for every extraterrestrial not yet home (it
// never tried, got no answer, or its call was cancelled, deleted or
// discarded before it connected) that has no call in flight, in one statement (a million rows
// take seconds, where one insert per row took minutes), and reports how many
// it enqueued. The engine writes each job as Insert would for Args with
// InsertOpts, so the unique-in-flight index skips an extraterrestrial whose
// call is in flight, and wakes the queue and reports the new jobs itself.
func PhoneHome(ctx context.Context, engine *jobs.Engine) (int, error) {
	n, err := engine.InsertSelect(ctx, jobs.InsertSelect{
		Args:   func(id int64) jobs.Args { return Args{ExtraterrestrialID: id} },
		Select: callsSQL[engine.Dialect()],
	})
	if err != nil {
		return 0, fmt.Errorf("phone home: %w", err)
	}
	return n, nil
}
