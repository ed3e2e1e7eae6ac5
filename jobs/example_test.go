package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// ReminderArgs are the arguments of a "pet_reminder" job, stored as JSON.
type ReminderArgs struct {
	PetName string `json:"pet_name"`
	Text    string `json:"text"`
}

// Kind names the worker that runs these args.
func (ReminderArgs) Kind() string { return "pet_reminder" }

// InsertOpts are the defaults of every insert of these args, like Oban's
// `use Oban.Worker, queue: …`.
func (ReminderArgs) InsertOpts() jobs.InsertOpts {
	// At most one identical reminder an hour, whatever its state: with the
	// default unique states (in flight only), a reminder already sent
	// would not count.
	return jobs.InsertOpts{Queue: "reminders", MaxAttempts: 5, Unique: true, UniquePeriod: time.Hour, UniqueStates: jobs.States}
}

// ReminderWorker runs pet_reminder jobs.
type ReminderWorker struct {
	Sent chan string
}

// Kind is the kind of job this worker runs.
func (ReminderWorker) Kind() string { return "pet_reminder" }

// Timeout bounds each attempt (optional: jobs.WorkerWithTimeout).
func (ReminderWorker) Timeout(*jobs.Job) time.Duration { return 10 * time.Second }

// Backoff is the delay before the next attempt (optional:
// jobs.WorkerWithBackoff).
func (ReminderWorker) Backoff(j *jobs.Job) time.Duration {
	return time.Duration(j.Attempt) * time.Second
}

// Work sends one reminder.
func (w ReminderWorker) Work(ctx context.Context, job *jobs.Job) error {
	var a ReminderArgs
	if err := job.UnmarshalArgs(&a); err != nil {
		return jobs.Cancel(err) // bad args never get better: cancelled for good
	}
	if a.Text == "" {
		return jobs.Snooze(time.Minute) // later, without using an attempt
	}
	if err := ctx.Err(); err != nil {
		return err // timed out, cancelled by an operator, or a hard stop
	}
	// Writes that must commit with the job's outcome, or not at all.
	job.RecordTx(func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, tx.Rebind("UPDATE pets SET updated_at = ? WHERE name = ?"), time.Now().UnixMilli(), a.PetName)
		return err
	})
	// Runs after the commit, in commit order: publish, log, notify.
	job.AfterRecord(func() { w.Sent <- a.PetName + ": " + a.Text })
	return nil // completed; an error would be retried, then discarded after attempt 5
}

// Example shows a worker from its args to its outcome: a new kind of job,
// its worker, the engine over the app's SQLite file, and an insert.
func Example() {
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}

	engine, err := jobs.New(st.Writer, jobs.Config{
		Queues: map[string]int{"reminders": 10}, // queue → concurrency limit
		Reader: st.Reader,
		// Periodic: []jobs.PeriodicJob{{Spec: "0 9 * * *", Args: ReminderArgs{PetName: "Rex", Text: "breakfast"}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	worker := ReminderWorker{Sent: make(chan string, 1)}
	if err := engine.Register(worker); err != nil { // a second worker for one kind fails here
		fmt.Println(err)
		return
	}
	if err := engine.Start(ctx); err != nil { // rescue, queues, heartbeat, pruning, cron
		fmt.Println(err)
		return
	}
	defer engine.Stop(ctx) // running jobs finish first

	first, err := engine.Insert(ctx, ReminderArgs{PetName: "Rex", Text: "water"}, jobs.InsertOpts{})
	if err != nil {
		fmt.Println(err)
		return
	}
	again, _ := engine.Insert(ctx, ReminderArgs{PetName: "Rex", Text: "water"}, jobs.InsertOpts{})
	fmt.Println("second insert is a duplicate of the first:", again.Duplicate && again.ID == first.ID)

	select {
	case sent := <-worker.Sent:
		fmt.Println("sent", sent)
	case <-time.After(10 * time.Second):
		fmt.Println(errors.New("no reminder within 10 s"))
		return
	}
	j, _ := jobs.Get(ctx, st.Reader, first.ID)
	fmt.Println("job", j.State, "after attempt", j.Attempt)
	// Output:
	// second insert is a duplicate of the first: true
	// sent Rex: water
	// job completed after attempt 1
}
