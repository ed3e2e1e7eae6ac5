package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
)

// ErrUnknownCron is returned for a periodic job name this engine does not
// have.
var ErrUnknownCron = errors.New("unknown periodic job")

// maxCronRuns is how many of its jobs each periodic job remembers.
const maxCronRuns = 50

// CronRecent is how many of an entry's last jobs CronEntries reports.
const CronRecent = 5

// CronEntry is a periodic job as the cron page shows it.
type CronEntry struct {
	// Name is the entry's name (PeriodicJob.Name, or its kind).
	Name        string
	Spec        string
	Description string
	Kind        string
	Queue       string
	// Paused entries skip their slots until resumed.
	Paused bool
	// LastRunAt is when the entry last inserted a job (on its schedule, the
	// slot; by Run now, the moment); nil when it never did, as far as the
	// last maxCronRuns jobs tell.
	LastRunAt *time.Time
	// NextRunAt is the next slot after now; nil while paused.
	NextRunAt *time.Time
	// Recent are the ids of the last CronRecent jobs it inserted, newest
	// first (some may since have been pruned or deleted).
	Recent []int64
}

// validCronName reports whether s may name a periodic job: it goes into
// URLs and element ids as it is.
func validCronName(s string) bool {
	if len(s) == 0 || len(s) > 100 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// cronNames are the names of e.cron, in order: each PeriodicJob's Name or
// kind, with -2, -3… added to repeats. Computed, not stored, so readers
// and the cron loop share nothing mutable.
func (e *Engine) cronNames() []string {
	names := make([]string, len(e.cron))
	seen := map[string]bool{}
	for i, p := range e.cron {
		base := p.job.Name
		if base == "" {
			base = p.job.Args.Kind()
		}
		name := base
		for n := 2; seen[name]; n++ {
			name = base + "-" + strconv.Itoa(n)
		}
		seen[name] = true
		names[i] = name
	}
	return names
}

// cronEntry finds the periodic job named name.
func (e *Engine) cronEntry(name string) (*periodic, error) {
	for i, n := range e.cronNames() {
		if n == name {
			return e.cron[i], nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCron, name)
}

// CronEntries lists the engine's periodic jobs in their configured order,
// with their stored pause, last run, next slot and last jobs. It reads the
// Reader pool: four small indexed queries, whatever the table sizes.
func (e *Engine) CronEntries(ctx context.Context) ([]CronEntry, error) {
	if len(e.cron) == 0 {
		return []CronEntry{}, nil
	}
	var paused []string
	if err := e.reader.SelectContext(ctx, &paused, "SELECT name FROM job_cron_entries WHERE paused = 1"); err != nil {
		return nil, fmt.Errorf("cron entries: %w", err)
	}
	now := e.now()
	out := make([]CronEntry, len(e.cron))
	for i, name := range e.cronNames() {
		p := e.cron[i]
		ce := CronEntry{Name: name, Spec: p.job.Spec, Description: p.job.Description, Kind: p.job.Args.Kind(),
			Queue: queueOf(p.job.Args, p.job.Opts), Recent: []int64{}}
		for _, n := range paused {
			ce.Paused = ce.Paused || n == name
		}
		if !ce.Paused {
			next := p.sched.Next(now).UTC()
			ce.NextRunAt = &next
		}
		var last sql.NullInt64
		if err := e.reader.GetContext(ctx, &last, e.d.rebind("SELECT max(at) FROM job_cron_runs WHERE name = ?"), name); err != nil {
			return nil, fmt.Errorf("cron entries: %w", err)
		}
		if last.Valid {
			t := time.UnixMilli(last.Int64).UTC()
			ce.LastRunAt = &t
		}
		if err := e.reader.SelectContext(ctx, &ce.Recent, e.d.rebind("SELECT job_id FROM job_cron_runs WHERE name = ? ORDER BY job_id DESC LIMIT ?"), name, CronRecent); err != nil {
			return nil, fmt.Errorf("cron entries: %w", err)
		}
		out[i] = ce
	}
	return out, nil
}

// RunCron inserts the periodic job named name now, outside its schedule
// (the cron page's "Run now"): its slots are not touched, and a paused
// entry may be run. It returns the insert's result: Duplicate when the
// entry's unique options found a job in the way (nothing inserted).
func (e *Engine) RunCron(ctx context.Context, name string) (InsertResult, error) {
	p, err := e.cronEntry(name)
	if err != nil {
		return InsertResult{}, err
	}
	var res InsertResult
	err = e.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		res, err = e.insertCronTx(ctx, tx, p, name, e.now(), true)
		return err
	})
	if err != nil {
		return InsertResult{}, fmt.Errorf("run %s: %w", name, err)
	}
	if !res.Duplicate {
		e.cronInserted(p, name, res.ID)
	}
	return res, nil
}

// PauseCron stores that the periodic job named name skips its slots, on
// every node and after restarts, until ResumeCron.
func (e *Engine) PauseCron(ctx context.Context, name string) error {
	return e.setCronPaused(ctx, name, true)
}

// ResumeCron lets the periodic job named name insert at its slots again,
// from the next one on (skipped slots are not made up for).
func (e *Engine) ResumeCron(ctx context.Context, name string) error {
	return e.setCronPaused(ctx, name, false)
}

func (e *Engine) setCronPaused(ctx context.Context, name string, paused bool) error {
	if _, err := e.cronEntry(name); err != nil {
		return err
	}
	return e.inTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, e.d.cronSetPaused, name, boolInt(paused), e.now().UnixMilli())
		return err
	})
}
