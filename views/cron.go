package views

import (
	"strconv"
	"time"

	"github.com/phonehome/phonehome/jobs"
)

// CronEntryView is one periodic job on the cron page.
type CronEntryView struct {
	jobs.CronEntry
	// Words is the spec in words ("every hour at minute 00 UTC").
	Words string
	// Jobs are the last jobs it inserted that still exist, newest first.
	Jobs []JobView
	Now  time.Time
}

// LastRelative is the last run relative to Now ("3 min ago").
func (c CronEntryView) LastRelative() string {
	if c.LastRunAt == nil {
		return ""
	}
	return Relative(*c.LastRunAt, c.Now)
}

// NextRelative is the next run relative to Now ("in 12 min").
func (c CronEntryView) NextRelative() string {
	if c.NextRunAt == nil {
		return ""
	}
	return Relative(*c.NextRunAt, c.Now)
}

// LastAt is the last run (zero when never).
func (c CronEntryView) LastAt() time.Time {
	if c.LastRunAt == nil {
		return time.Time{}
	}
	return *c.LastRunAt
}

// NextAt is the next run (zero while paused).
func (c CronEntryView) NextAt() time.Time {
	if c.NextRunAt == nil {
		return time.Time{}
	}
	return *c.NextRunAt
}

// CronTable is the data of the cron_table partial: every periodic job.
type CronTable struct {
	Entries []CronEntryView
	// OOB marks the table for an out-of-band swap (live events).
	OOB bool
}

// NewCronTable is the table of entries as of now; found holds the jobs of
// their Recent ids that still exist.
func NewCronTable(entries []jobs.CronEntry, found map[int64]*jobs.Job, now time.Time) CronTable {
	t := CronTable{Entries: make([]CronEntryView, len(entries))}
	for i, e := range entries {
		v := CronEntryView{CronEntry: e, Words: jobs.DescribeSpec(e.Spec), Now: now}
		for _, id := range e.Recent {
			if j, ok := found[id]; ok {
				v.Jobs = append(v.Jobs, JobView{Job: j, Now: now})
			}
		}
		t.Entries[i] = v
	}
	return t
}

// CronPage is the data of the cron page.
type CronPage struct {
	Layout
	Table CronTable
	// StreamURL is the jobs stream without rows: the cron events.
	StreamURL string
	// TableURL reloads the table (after a resync).
	TableURL string
	Flash    *Flash
}

// CronMessage is the flash after an action on the periodic job name: run
// (inserted job id, or duplicate of it), pause or resume.
func CronMessage(name, action string, id int64, duplicate bool) string {
	switch action {
	case "run":
		if duplicate {
			return "" // a refusal: the handler says it
		}
		return "Inserted job " + strconv.FormatInt(id, 10) + " for " + name + " now; its schedule is unchanged."
	case "pause":
		return name + " paused: its slots are skipped until it is resumed."
	}
	return name + " resumed: it runs again from its next slot."
}
