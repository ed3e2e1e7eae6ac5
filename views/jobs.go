package views

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/phonehome/phonehome/jobs"
)

// JobView is a job as the dashboard shows it.
type JobView struct {
	*jobs.Job
	// Now is when the page was rendered, for "in 5 s" and "ago".
	Now time.Time
}

// StateLabel is the state in words.
func (v JobView) StateLabel() string { return StateLabel(v.State) }

// StateLabel is a state in words: "Available"; "All" for no state.
func StateLabel(s jobs.State) string {
	if s == "" {
		return "All"
	}
	return strings.ToUpper(string(s[:1])) + string(s[1:])
}

// ArgsPreview is the args on one line, cut at 80 characters.
func (v JobView) ArgsPreview() string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v.Args); err != nil {
		return string(v.Args)
	}
	s := unescapeJSONHTML(buf.String())
	if utf8.RuneCountInString(s) > 80 {
		r := []rune(s)
		s = string(r[:79]) + "…"
	}
	return s
}

// ArgsPretty is the args as indented JSON (escaped by the template).
func (v JobView) ArgsPretty() string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, v.Args, "", "  "); err != nil {
		return string(v.Args)
	}
	return unescapeJSONHTML(buf.String())
}

// unescapeJSONHTML turns the \u003c, \u003e and \u0026 that Go's JSON
// encoder writes for <, > and & back into the characters, for people to
// read (the template escapes them for HTML); an escaped backslash before
// them is left alone.
func unescapeJSONHTML(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			switch strings.ToLower(s[i+2 : i+6]) {
			case "003c":
				b.WriteByte('<')
				i += 5
				continue
			case "003e":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}

// When is the time that matters most in the job's state, with its label.
func (v JobView) When() (string, time.Time) {
	switch {
	case v.State == jobs.StateCompleted && v.CompletedAt != nil:
		return "completed", *v.CompletedAt
	case v.State == jobs.StateDiscarded && v.DiscardedAt != nil:
		return "discarded", *v.DiscardedAt
	case v.State == jobs.StateCancelled && v.CancelledAt != nil:
		return "cancelled", *v.CancelledAt
	case v.State == jobs.StateExecuting && v.AttemptedAt != nil:
		return "started", *v.AttemptedAt
	case v.State == jobs.StateAvailable:
		return "due", v.ScheduledAt
	}
	return "runs", v.ScheduledAt
}

// WhenLabel is When's label.
func (v JobView) WhenLabel() string { l, _ := v.When(); return l }

// WhenAt is When's time.
func (v JobView) WhenAt() time.Time { _, t := v.When(); return t }

// WhenRelative is When's time relative to Now: "in 12 s", "3 min ago".
func (v JobView) WhenRelative() string { return Relative(v.WhenAt(), v.Now) }

// CanCancel reports whether the job may be cancelled: it has not finished.
func (v JobView) CanCancel() bool {
	return slices.Contains([]jobs.State{jobs.StateScheduled, jobs.StateAvailable, jobs.StateExecuting, jobs.StateRetryable}, v.State)
}

// CanRetry reports whether the job may be run again now: it is waiting for
// a later time, or it has finished.
func (v JobView) CanRetry() bool {
	return slices.Contains([]jobs.State{jobs.StateScheduled, jobs.StateRetryable, jobs.StateCompleted, jobs.StateDiscarded, jobs.StateCancelled}, v.State)
}

// CanDelete reports whether the job may be deleted: it is not running.
func (v JobView) CanDelete() bool { return v.State != jobs.StateExecuting }

// TimelineStep is one moment of a job's life on its page.
type TimelineStep struct {
	Label string
	At    time.Time
	// Done is false for a moment still to come (scheduled in the future).
	Done bool
	// Class names the step's colour: ok, failed, waiting.
	Class string
	Note  string
}

// Timeline lists what happened to the job, in order.
func (v JobView) Timeline() []TimelineStep {
	steps := []TimelineStep{{Label: "Inserted", At: v.InsertedAt, Done: true, Class: "done"}}
	sched := TimelineStep{Label: "Scheduled", At: v.ScheduledAt, Done: !v.ScheduledAt.After(v.Now), Class: "done"}
	if !sched.Done {
		sched.Label, sched.Class = "Scheduled for", "waiting"
		if v.State == jobs.StateRetryable {
			sched.Label, sched.Note = "Retry at", fmt.Sprintf("attempt %d of %d", v.Attempt+1, v.MaxAttempts)
		}
	}
	steps = append(steps, sched)
	if v.AttemptedAt != nil {
		note := fmt.Sprintf("attempt %d of %d", v.Attempt, v.MaxAttempts)
		if v.AttemptedBy != "" {
			// With several nodes, which one ran it is the first question.
			note += " on " + v.AttemptedBy
		}
		steps = append(steps, TimelineStep{Label: "Attempted", At: *v.AttemptedAt, Done: true, Class: "done", Note: note})
	}
	if v.CompletedAt != nil {
		steps = append(steps, TimelineStep{Label: "Completed", At: *v.CompletedAt, Done: true, Class: "ok"})
	}
	if v.CancelledAt != nil {
		steps = append(steps, TimelineStep{Label: "Cancelled", At: *v.CancelledAt, Done: true, Class: "failed"})
	}
	if v.DiscardedAt != nil {
		steps = append(steps, TimelineStep{Label: "Discarded", At: *v.DiscardedAt, Done: true, Class: "failed",
			Note: fmt.Sprintf("after %d attempts", v.Attempt)})
	}
	// Chronological, with moments still to come last.
	slices.SortStableFunc(steps, func(a, b TimelineStep) int {
		if a.Done != b.Done {
			if a.Done {
				return -1
			}
			return 1
		}
		return a.At.Compare(b.At)
	})
	return steps
}

// ErrorsNewestFirst are the job's attempt errors, the last attempt first.
func (v JobView) ErrorsNewestFirst() []jobs.AttemptError {
	out := slices.Clone(v.Errors)
	slices.Reverse(out)
	return out
}

// TagsText is the tags, comma-separated.
func (v JobView) TagsText() string { return strings.Join(v.Tags, ", ") }

// JobRow is the data of the job_row partial.
type JobRow struct {
	Job JobView
	// OOB marks the row for an out-of-band swap (live events).
	OOB bool
}

// DeletedRow is the data of the job_row_deleted partial: the live event
// that removes a deleted job's row.
type DeletedRow struct{ ID int64 }

// StateTab is one tab of the state filter, with its count.
type StateTab struct {
	State   string // "" for all
	Label   string
	N       int
	URL     string
	Current bool
}

// JobCounts is the data of the job_counts partial: the count of each tab,
// swapped in place (the tabs' links belong to each page's filter).
type JobCounts struct {
	Tabs []StateTab
	OOB  bool
}

// StateTabs are the tabs of every state and of all jobs, with their counts
// (links are the page's to set).
func StateTabs(counts map[jobs.State]int) []StateTab {
	total := 0
	tabs := []StateTab{{}}
	for _, s := range jobs.States {
		tabs = append(tabs, StateTab{State: string(s), Label: StateLabel(s), N: counts[s]})
		total += counts[s]
	}
	tabs[0] = StateTab{Label: "All", N: total}
	return tabs
}

// QueueView is one queue in the queue table.
type QueueView struct {
	jobs.QueueInfo
}

// Count is the queue's count of jobs in state s.
func (q QueueView) Count(s string) int { return q.Counts[jobs.State(s)] }

// Slots is how many of the queue's jobs may run at once: its limit on
// every node that runs it.
func (q QueueView) Slots() int { return q.Limit * max(q.Nodes, 1) }

// Use is running/slots in thousandths, for the utilisation bar.
func (q QueueView) Use() int {
	if q.Slots() <= 0 {
		return 0
	}
	return min(1000, q.Running*1000/q.Slots())
}

// QueuesView is the data of the job_queues partial.
type QueuesView struct {
	Queues []QueueView
	OOB    bool
}

// NewQueuesView is the queue table of qs.
func NewQueuesView(qs []jobs.QueueInfo, oob bool) QueuesView {
	v := QueuesView{OOB: oob}
	for _, q := range qs {
		v.Queues = append(v.Queues, QueueView{q})
	}
	return v
}

// JobsPage is the data of the jobs dashboard.
type JobsPage struct {
	Layout
	Rows        []JobRow
	Counts      JobCounts
	Queues      QueuesView
	Chart       ThroughputChart
	State       string
	Queue       string
	Kind        string
	QueueNames  []string
	LastEventID int64
	// StreamURL is the live stream of the listed jobs (and the counts,
	// queues and chart), resumed after LastEventID.
	StreamURL string
	// LiveURL reloads the live part of this page (after refresh or resync).
	LiveURL  string
	NextURL  string
	FirstURL string
	// Back is this page's own URL, where plain forms return.
	Back  string
	Flash *Flash
	// Search is the query of the search box, its error and its note.
	Search SearchInfo
	// Filtered: a state, queue, kind or query narrows the list, so the
	// actions on everything it matches are offered.
	Filtered bool
	// Bulk is the latest action on a filter (or its confirmation).
	Bulk BulkProgress
	// DeleteConfirm, when set, asks before deleting a selection (shown in
	// the flash's place).
	DeleteConfirm *DeleteConfirm
}

// DeleteConfirm is the question "Delete selected" (or a job page's Delete)
// asks on the server when its form came without a confirmation (a browser
// without JavaScript; with it, the page asks and sends the confirmation):
// the selected ids (the job's alone), and the page to go back to.
type DeleteConfirm struct {
	IDs  []int64
	Back string
}

// Count is how many jobs the question is about: the form's confirm value.
func (d DeleteConfirm) Count() int { return len(d.IDs) }

// Question asks it, naming the jobs in order: "Delete 2 selected jobs
// (jobs 3 and 4)? This cannot be undone."
func (d DeleteConfirm) Question() string {
	sorted := slices.Sorted(slices.Values(d.IDs))
	ids := make([]string, len(sorted))
	for i, id := range sorted {
		ids[i] = strconv.FormatInt(id, 10)
	}
	return fmt.Sprintf("Delete %s (%s)? This cannot be undone.", selectedJobs(len(d.IDs)), idList(ids))
}

// Button is the confirming button's label: "Delete 2 jobs".
func (d DeleteConfirm) Button() string {
	if len(d.IDs) == 1 {
		return "Delete 1 job"
	}
	return "Delete " + Thousands(len(d.IDs)) + " jobs"
}

// selectedJobs is "1 selected job", "2 selected jobs".
func selectedJobs(n int) string {
	if n == 1 {
		return "1 selected job"
	}
	return Thousands(n) + " selected jobs"
}

// JobsPager is the data of the job_pager partial.
type JobsPager struct {
	NextURL, FirstURL string
	OOB               bool
}

// Pager is the page's pager.
func (p JobsPage) Pager() JobsPager { return JobsPager{NextURL: p.NextURL, FirstURL: p.FirstURL} }

// JobPage is the data of one job's page.
type JobPage struct {
	Layout
	Panel JobPanel
	// StreamURL is the live stream of this job's changes.
	StreamURL string
	Flash     *Flash
	// DeleteConfirm, when set, asks before deleting the job (shown in the
	// flash's place).
	DeleteConfirm *DeleteConfirm
}

// JobPanel is the data of the job_panel partial: everything on a job's
// page that changes.
type JobPanel struct {
	Job JobView
	// Deleted is set once the job has been deleted from this page.
	Deleted bool
	ID      int64
	OOB     bool
}

// NewJobRows are the rows of js as of now.
func NewJobRows(js []*jobs.Job, now time.Time) []JobRow {
	rows := make([]JobRow, len(js))
	for i, j := range js {
		rows[i] = JobRow{Job: JobView{Job: j, Now: now}}
	}
	return rows
}

// JobActionMessage is the flash after an operator's action on one job:
// cancel, retry or delete; j is the job after it.
func JobActionMessage(action string, id int64, j *jobs.Job) string {
	switch action {
	case "cancel":
		return fmt.Sprintf("Job %d cancelled.", id)
	case "retry":
		return fmt.Sprintf("Job %d will run again now (state %s).", id, j.State)
	}
	return fmt.Sprintf("Job %d deleted.", id)
}

// BulkMessage is the flash after an action on a selection of asked jobs
// (sel says what became of them): how many it changed, and when not all,
// which ids are of no job and which jobs were left alone because of their
// state. Error is set when it changed none.
func BulkMessage(action string, sel jobs.Selection, asked int) Flash {
	verb := map[string]string{"cancel": "Cancelled", "retry": "Retried", "delete": "Deleted"}[action]
	n := len(sel.Changed)
	jobsWord := "jobs"
	if asked == 1 {
		jobsWord = "job"
	}
	if n == asked {
		return Flash{Message: fmt.Sprintf("%s %s selected %s.", verb, Thousands(n), jobsWord)}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s of %s selected %s.", verb, Thousands(n), Thousands(asked), jobsWord)
	if len(sel.NotFound) > 0 {
		ids := make([]string, len(sel.NotFound))
		for i, id := range sel.NotFound {
			ids[i] = strconv.FormatInt(id, 10)
		}
		b.WriteString(" Not found: " + idList(ids) + ".")
	}
	if len(sel.Refused) > 0 {
		ids := make([]string, len(sel.Refused))
		for i, r := range sel.Refused {
			ids[i] = fmt.Sprintf("%d (%s)", r.ID, r.State)
		}
		past := map[string]string{"cancel": "cancelled", "retry": "retried", "delete": "deleted"}[action]
		fmt.Fprintf(&b, " Not %s because of their state: %s.", past, idList(ids))
	}
	return Flash{Message: b.String(), Error: n == 0}
}

// maxListedIDs is how many ids a message names before "and N more".
const maxListedIDs = 10

// idList names jobs ("job 7", "jobs 7, 8 and 9"), at most maxListedIDs of
// them.
func idList(ids []string) string {
	word := "jobs "
	if len(ids) == 1 {
		word = "job "
	}
	if len(ids) > maxListedIDs {
		return word + strings.Join(ids[:maxListedIDs], ", ") + fmt.Sprintf(" and %s more", Thousands(len(ids)-maxListedIDs))
	}
	if len(ids) == 1 {
		return word + ids[0]
	}
	return word + strings.Join(ids[:len(ids)-1], ", ") + " and " + ids[len(ids)-1]
}

// QueueMessage is the flash after a queue's pause, resume or scale; qs are
// the queues after it.
func QueueMessage(name, action string, qs []jobs.QueueInfo) string {
	switch action {
	case "pause":
		return fmt.Sprintf("Queue %s paused: running jobs finish, no new ones start.", name)
	case "resume":
		return fmt.Sprintf("Queue %s resumed.", name)
	}
	for _, q := range qs {
		if q.Name == name {
			return fmt.Sprintf("Queue %s now runs up to %d jobs at once.", name, q.Limit)
		}
	}
	return fmt.Sprintf("Queue %s scaled.", name)
}
