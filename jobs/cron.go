package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/robfig/cron/v3"
)

// PeriodicJob is a job the engine inserts on a cron schedule, like Oban's
// Cron plugin.
type PeriodicJob struct {
	// Name names the entry on the cron page and in the API
	// (/api/cron/{name}/run): letters, digits, '-', '_' and '.', at most
	// 100. Empty: the args' kind (then kind-2, kind-3… for more entries of
	// one kind, in order). Pauses are stored by name, so keep it stable.
	Name string
	// Description says what the entry is for, on the cron page.
	Description string
	// Spec is a standard five-field cron expression ("*/5 * * * *") or a
	// descriptor (@hourly, @daily, @weekly, @monthly, @yearly), in UTC
	// unless it starts with CRON_TZ=Zone. @every is refused: its slots
	// would move with every restart.
	Spec string
	// Args are the inserted job's args.
	Args Args
	// Opts are the inserted job's options (ScheduledAt is ignored).
	Opts InsertOpts
}

// cronParser reads Spec: minutes to weekdays, and descriptors.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

type periodic struct {
	job   PeriodicJob
	sched cron.Schedule
	key   string
	next  time.Time // the next slot to insert; zero until the loop starts
}

func newPeriodic(p PeriodicJob) (*periodic, error) {
	if p.Args == nil || p.Args.Kind() == "" {
		return nil, errors.New("no args or an empty kind")
	}
	if p.Name != "" && !validCronName(p.Name) {
		return nil, fmt.Errorf("name %q: use 1 to 100 letters, digits, '-', '_' or '.'", p.Name)
	}
	if strings.Contains(p.Spec, "@every") {
		return nil, fmt.Errorf("spec %q: @every has no fixed slots; use a cron expression", p.Spec)
	}
	// robfig/cron v3.0.1 panics on a time zone with no schedule after it
	// ("CRON_TZ=UTC", "TZ="): refuse those first.
	if (strings.HasPrefix(p.Spec, "TZ=") || strings.HasPrefix(p.Spec, "CRON_TZ=")) && !strings.ContainsAny(strings.TrimSpace(p.Spec), " \t") {
		return nil, fmt.Errorf("spec %q: a time zone needs a schedule after it, e.g. \"CRON_TZ=Europe/Paris 0 9 * * *\"", p.Spec)
	}
	sched, err := cronParser.Parse(p.Spec)
	if err != nil {
		return nil, fmt.Errorf("spec %q: %w", p.Spec, err)
	}
	args, err := json.Marshal(p.Args)
	if err != nil {
		return nil, fmt.Errorf("%s: encode args: %w", p.Args.Kind(), err)
	}
	sum := sha256.Sum256([]byte(p.Spec + "\x00" + p.Args.Kind() + "\x00" + string(args) + "\x00" + p.Opts.Queue))
	return &periodic{job: p, sched: sched, key: p.Args.Kind() + ":" + hex.EncodeToString(sum[:12])}, nil
}

// Cron statements, the same on both dialects but for the placeholders.
// The slot's upsert names job_cron in its WHERE: PostgreSQL finds a bare
// last_slot ambiguous there (it could be the excluded row's).
const (
	cronPausedSQL = "SELECT EXISTS (SELECT 1 FROM job_cron_entries WHERE name = ? AND paused = 1)"
	cronClaimSQL  = `INSERT INTO job_cron (key, last_slot) VALUES (?1, ?2)
				ON CONFLICT (key) DO UPDATE SET last_slot = ?2 WHERE job_cron.last_slot < ?2`
	cronRunSQL  = "INSERT INTO job_cron_runs (name, job_id, at, manual) VALUES (?, ?, ?, ?)"
	cronTrimSQL = `DELETE FROM job_cron_runs WHERE name = ?1 AND job_id <
		(SELECT job_id FROM job_cron_runs WHERE name = ?1 ORDER BY job_id DESC LIMIT 1 OFFSET ?2)`
	cronSetPausedSQL = `INSERT INTO job_cron_entries (name, paused, updated_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET paused = ?2, updated_at = ?3`
)

// boolInt is b as the 0/1 of the integer flag columns (paused, manual).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cronCatchUp is how late a node that becomes the leader still inserts a
// slot that came while it followed: longer than a takeover after the
// leader dies (the lease's TTL plus a renewal period, 20 s by default), so
// the slot the dead leader missed is inserted once, late, rather than lost.
const cronCatchUp = time.Minute

// startCron sets each periodic job's first slot: the next after now.
func (e *Engine) startCron() {
	now := e.now()
	for _, p := range e.cron {
		p.next = p.sched.Next(now)
	}
}

// cronLoop inserts periodic jobs as their slots come, checking the clock
// every poll interval (at most every second). Slots missed while no engine
// ran are not made up for, as in Oban.
func (e *Engine) cronLoop() {
	defer e.loops.Done()
	ticker := time.NewTicker(min(e.cfg.PollInterval, time.Second))
	defer ticker.Stop()
	for {
		select {
		case <-e.stopping:
			return
		case <-ticker.C:
			e.insertDue(context.Background(), e.now())
		}
	}
}

// insertDue inserts each periodic job whose next slot has come, at most
// once per slot: the slot is claimed in job_cron in the insert's
// transaction, so another node or a restarted one cannot insert it again.
// The slot of a paused entry (job_cron_entries, read in the same
// transaction, so a pause stored by any node or before a restart counts) is
// skipped: neither inserted nor claimed. Only the leader inserts
// (Config.IsLeader, checked before each slot); the slot's claim keeps a
// slot single even when two nodes believe they lead, or a new leader
// comes back to a slot the old one inserted.
func (e *Engine) insertDue(ctx context.Context, now time.Time) {
	names := e.cronNames()
	for i, p := range e.cron {
		if now.Before(p.next) {
			continue
		}
		if !e.leading() {
			// Another node inserts the slot. Keep it as this node's next
			// for cronCatchUp, though: if the leader died just before it,
			// this node may take over in time to insert it (job_cron says
			// whether it was), and no slot is lost to a change of leader.
			if now.Sub(p.next) > cronCatchUp {
				p.next = p.sched.Next(now.Add(-cronCatchUp))
			}
			continue
		}
		slots := dueSlots(p, now)
		p.next = p.sched.Next(now)
		for _, slot := range slots {
			// Each slot is a step of its own: one that began just before
			// the lead was lost is one short transaction.
			if !e.leading() {
				break
			}
			e.insertSlot(ctx, p, names[i], slot)
		}
	}
}

// dueSlots are the slots of p to insert at now, oldest first (the claim
// refuses a slot older than one inserted): the latest slot that has come,
// and before it those held back while this node followed (see insertDue),
// as long as they are no older than cronCatchUp. Slots further back, missed
// while no engine ran, are not made up for.
func dueSlots(p *periodic, now time.Time) []time.Time {
	var slots []time.Time
	for s := p.next; !s.After(now); s = p.sched.Next(s) {
		if n := len(slots); n > 0 && now.Sub(slots[n-1]) > cronCatchUp {
			slots = slots[:n-1] // too old, and not the latest: dropped
		}
		slots = append(slots, s)
	}
	return slots
}

// insertSlot inserts p's job for slot, at most once (see insertDue).
func (e *Engine) insertSlot(ctx context.Context, p *periodic, name string, slot time.Time) {
	var id int64
	paused := false
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &paused, e.d.cronPaused, name); err != nil {
			return err
		}
		if paused {
			return nil
		}
		res, err := tx.ExecContext(ctx, e.d.cronClaim, p.key, slot.UnixMilli())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // inserted already, by another node or before a restart
		}
		r, err := e.insertCronTx(ctx, tx, p, name, slot, false)
		if !r.Duplicate {
			id = r.ID
		}
		return err
	})
	if err != nil {
		e.log.Error("insert periodic job", "cron", name, "spec", p.job.Spec, "slot", slot, "err", err)
		return
	}
	if paused {
		e.log.Debug("periodic job paused: slot skipped", "cron", name, "slot", slot)
		return
	}
	e.cronInserted(p, name, id)
}

// insertCronTx inserts p's job in tx and records it as p's run at at,
// unless a unique duplicate was in the way (r.Duplicate, r.ID the other's).
func (e *Engine) insertCronTx(ctx context.Context, tx *sqlx.Tx, p *periodic, name string, at time.Time, manual bool) (InsertResult, error) {
	opts := p.job.Opts
	opts.ScheduledAt, opts.ScheduleIn = time.Time{}, 0
	r, err := e.insertTx(ctx, tx, p.job.Args, opts)
	if err != nil || r.Duplicate {
		return r, err
	}
	if _, err := tx.ExecContext(ctx, e.d.cronRun, name, r.ID, at.UnixMilli(), boolInt(manual)); err != nil {
		return r, err
	}
	// Keep the last maxCronRuns: the page shows a few, and pruned jobs
	// must not leave an ever-growing list behind.
	_, err = tx.ExecContext(ctx, e.d.cronTrim, name, maxCronRuns-1)
	return r, err
}

// cronInserted tells the subscribers and the queue of a job p inserted.
func (e *Engine) cronInserted(p *periodic, name string, id int64) {
	if id == 0 {
		return
	}
	e.log.Debug("periodic job inserted", "cron", name, "kind", p.job.Args.Kind(), "job_id", id)
	e.changed([]int64{id})
	if q, ok := e.queues[queueOf(p.job.Args, p.job.Opts)]; ok {
		q.signal()
	}
}
