package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/views"
)

// JobsStream is the event stream of the jobs dashboard: job rows (unnamed
// events of out-of-band <tr id="job-N"> fragments, several per event),
// "counts", "queues" and "throughput" fragments, and "refresh" when more
// jobs changed at once than it is worth sending row by row.
const JobsStream = "jobs"

// JobEngine is what the jobs dashboard asks of the job engine; *jobs.Engine
// is one.
type JobEngine interface {
	CancelJob(ctx context.Context, id int64) (*jobs.Job, error)
	RetryJob(ctx context.Context, id int64) (*jobs.Job, error)
	DeleteJob(ctx context.Context, id int64) error
	CancelJobs(ctx context.Context, ids []int64) (int, error)
	RetryJobs(ctx context.Context, ids []int64) (int, error)
	DeleteJobs(ctx context.Context, ids []int64) (int, error)
	Queues(ctx context.Context) ([]jobs.QueueInfo, error)
	PauseQueue(ctx context.Context, name string) error
	ResumeQueue(ctx context.Context, name string) error
	ScaleQueue(ctx context.Context, name string, limit int) error
	Counts(ctx context.Context) (map[jobs.State]int, error)
	Throughput() []jobs.ThroughputPoint
}

var _ JobEngine = (*jobs.Engine)(nil)

// Jobs serves the jobs dashboard (/jobs, /jobs/{id}), its fragments and
// forms, and the jobs and queues JSON API.
type Jobs struct {
	Engine JobEngine
	// Reader is the read-only pool the list and the job pages are read from.
	Reader sqlx.QueryerContext
	Views  *views.Views
	Hub    hub
	// Feed, when set, hears of queue settings changed here (the engine's
	// OnChange tells it of every job that changes).
	Feed    *JobsFeed
	Version string
}

// Routes registers the pages, their fragments and forms, and the API.
func (h *Jobs) Routes(e *echo.Echo) {
	e.GET("/jobs", h.Page)
	e.GET("/jobs/live", h.Live)
	e.POST("/jobs/bulk", h.BulkForm)
	e.GET("/jobs/:id", h.Show)
	e.GET("/jobs/:id/panel", h.Panel)
	e.POST("/jobs/:id/:action", h.ActionForm)
	e.POST("/jobs/queues/:name/:action", h.QueueForm)

	e.GET("/api/jobs", h.APIList)
	e.POST("/api/jobs/bulk", h.APIBulk)
	e.GET("/api/jobs/:id", h.APIGet)
	e.POST("/api/jobs/:id/cancel", h.APIAction(actionCancel))
	e.POST("/api/jobs/:id/retry", h.APIAction(actionRetry))
	e.DELETE("/api/jobs/:id", h.APIAction(actionDelete))
	e.GET("/api/queues", h.APIQueues)
	e.POST("/api/queues/:name/:action", h.APIQueueAction)
}

// jobsPageSize is how many jobs a dashboard page lists.
const jobsPageSize = 50

// maxQueueLimit is the largest concurrency limit a queue may be scaled to.
const maxQueueLimit = 1000

// maxBulk is how many jobs one bulk action may name.
const maxBulk = 1000

// jobAction is an operator's action on jobs.
type jobAction string

const (
	actionCancel jobAction = "cancel"
	actionRetry  jobAction = "retry"
	actionDelete jobAction = "delete"
)

// ---------------------------------------------------------------- filters

// jobsQuery is the parsed ?state=&queue=&kind=&limit=&cursor= of a listing.
type jobsQuery struct {
	params jobs.ListParams
	state  string // as given, for links
}

func parseJobsQuery(c echo.Context, defaultLimit int, manyStates bool) (jobsQuery, error) {
	q := jobsQuery{params: jobs.ListParams{Limit: defaultLimit}}
	if s := c.QueryParam("state"); s != "" {
		parts := []string{s}
		if manyStates {
			parts = strings.Split(s, ",")
		}
		for _, p := range parts {
			st := jobs.State(strings.TrimSpace(p))
			if !slices.Contains(jobs.States, st) {
				return q, invalid(fmt.Sprintf("state %q is not one of %s", p, stateList()))
			}
			q.params.States = append(q.params.States, st)
		}
		q.state = s
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"queue", &q.params.Queue}, {"kind", &q.params.Kind}} {
		v := c.QueryParam(f.name)
		if utf8.RuneCountInString(v) > 100 {
			return q, invalid(f.name + " is longer than 100 characters")
		}
		*f.dst = v
	}
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return q, badRequest("limit must be a whole number")
		}
		if n < 1 || n > jobs.MaxListLimit {
			return q, invalid(fmt.Sprintf("limit must be between 1 and %d", jobs.MaxListLimit))
		}
		q.params.Limit = n
	}
	q.params.Cursor = c.QueryParam("cursor")
	if _, err := jobs.ParseListCursor(q.params.Cursor); err != nil {
		return q, badRequest("malformed cursor: use next_cursor from a listing")
	}
	return q, nil
}

func stateList() string {
	names := make([]string, len(jobs.States))
	for i, s := range jobs.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// url builds path?… with the filter, the given state and cursor.
func (q jobsQuery) url(path, state, cursor string) string {
	v := url.Values{}
	if state != "" {
		v.Set("state", state)
	}
	if q.params.Queue != "" {
		v.Set("queue", q.params.Queue)
	}
	if q.params.Kind != "" {
		v.Set("kind", q.params.Kind)
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// ---------------------------------------------------------------- views

// JobView is a job as the dashboard shows it.
type JobView struct {
	*jobs.Job
	// Now is when the page was rendered, for "in 5 s" and "ago".
	Now time.Time
}

// StateLabel is the state in words.
func (v JobView) StateLabel() string { return stateLabel(v.State) }

func stateLabel(s jobs.State) string {
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
func (v JobView) WhenRelative() string { return relative(v.WhenAt(), v.Now) }

func relative(t, now time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if !future {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		s = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

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
		steps = append(steps, TimelineStep{Label: "Attempted", At: *v.AttemptedAt, Done: true, Class: "done",
			Note: fmt.Sprintf("attempt %d of %d", v.Attempt, v.MaxAttempts)})
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

func jobCounts(counts map[jobs.State]int) []StateTab {
	total := 0
	tabs := []StateTab{{}}
	for _, s := range jobs.States {
		tabs = append(tabs, StateTab{State: string(s), Label: stateLabel(s), N: counts[s]})
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

// Use is running/limit in thousandths, for the utilisation bar.
func (q QueueView) Use() int {
	if q.Limit <= 0 {
		return 0
	}
	return min(1000, q.Running*1000/q.Limit)
}

// QueuesView is the data of the job_queues partial.
type QueuesView struct {
	Queues []QueueView
	OOB    bool
}

func queuesView(qs []jobs.QueueInfo, oob bool) QueuesView {
	v := QueuesView{OOB: oob}
	for _, q := range qs {
		v.Queues = append(v.Queues, QueueView{q})
	}
	return v
}

// JobsPage is the data of the jobs dashboard.
type JobsPage struct {
	views.Layout
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
	views.Layout
	Panel JobPanel
	// StreamURL is the live stream of this job's changes.
	StreamURL string
	Flash     *Flash
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

// ---------------------------------------------------------------- pages

// Page renders the dashboard: throughput, queues, state tabs, and one page
// of the job list, with the id of the last event it reflects.
func (h *Jobs) Page(c echo.Context) error {
	q, err := parseJobsQuery(c, jobsPageSize, false)
	if err != nil {
		return err
	}
	q.params.Limit = jobsPageSize
	p, err := h.page(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return h.renderPage(c, http.StatusOK, "jobs", p)
}

func (h *Jobs) page(ctx context.Context, q jobsQuery) (JobsPage, error) {
	// Take the event id first: anything published after it is resent on connect.
	lastID := h.Hub.LastID()
	list, err := jobs.List(ctx, h.Reader, q.params)
	if err != nil {
		return JobsPage{}, err
	}
	counts, err := h.Engine.Counts(ctx)
	if err != nil {
		return JobsPage{}, err
	}
	queues, err := h.Engine.Queues(ctx)
	if err != nil {
		return JobsPage{}, err
	}
	now := time.Now()
	p := JobsPage{
		Layout:      views.Layout{Nav: "jobs", Version: h.Version},
		Rows:        jobRows(list.Jobs, now),
		Queues:      queuesView(queues, false),
		Chart:       throughputChart(h.Engine.Throughput(), now),
		State:       q.state,
		Queue:       q.params.Queue,
		Kind:        q.params.Kind,
		LastEventID: lastID,
		LiveURL:     q.url("/jobs/live", q.state, q.params.Cursor),
		Back:        q.url("/jobs", q.state, q.params.Cursor),
	}
	tabs := jobCounts(counts)
	for i := range tabs {
		tabs[i].URL = q.url("/jobs", tabs[i].State, "")
		tabs[i].Current = tabs[i].State == q.state
	}
	p.Counts = JobCounts{Tabs: tabs}
	for _, qi := range queues {
		p.QueueNames = append(p.QueueNames, qi.Name)
	}
	if q.params.Queue != "" && !slices.Contains(p.QueueNames, q.params.Queue) {
		p.QueueNames = append(p.QueueNames, q.params.Queue)
	}
	if list.NextCursor != "" {
		p.NextURL = q.url("/jobs", q.state, list.NextCursor)
	}
	if q.params.Cursor != "" {
		p.FirstURL = q.url("/jobs", q.state, "")
	}
	ids := make([]int64, len(list.Jobs))
	for i, j := range list.Jobs {
		ids[i] = j.ID
	}
	p.StreamURL = jobsStreamURL(lastID, ids)
	return p, nil
}

func jobRows(js []*jobs.Job, now time.Time) []JobRow {
	rows := make([]JobRow, len(js))
	for i, j := range js {
		rows[i] = JobRow{Job: JobView{Job: j, Now: now}}
	}
	return rows
}

func (h *Jobs) renderPage(c echo.Context, status int, name string, data any) error {
	html, err := h.Views.Page(name, data)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// Live renders the live part of the dashboard (chart, queues, tabs, list
// and pager, with a new stream URL for the rows now listed), which the page
// swaps in after a refresh or resync event.
func (h *Jobs) Live(c echo.Context) error {
	q, err := parseJobsQuery(c, jobsPageSize, false)
	if err != nil {
		return err
	}
	q.params.Limit = jobsPageSize
	p, err := h.page(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return h.fragments(c, fragment{"job_live", p})
}

// jobsStreamURL is the jobs stream of a page: resumed after lastID, and
// only the rows of ids, so events about other jobs cost it nothing.
func jobsStreamURL(lastID int64, ids []int64) string {
	b := make([]byte, 0, 64+len(ids)*8)
	b = append(b, "/events?stream="+JobsStream+"&last_event_id="...)
	b = strconv.AppendInt(b, lastID, 10)
	b = append(b, "&ids="...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(b)
}

func (h *Jobs) fragments(c echo.Context, parts ...fragment) error {
	var out []byte
	for _, p := range parts {
		html, err := h.Views.Fragment(p.name, p.data)
		if err != nil {
			return err
		}
		out = append(out, html...)
	}
	return c.HTMLBlob(http.StatusOK, out)
}

func jobID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no job %q: ids are positive whole numbers", c.Param("id")))
	}
	return id, nil
}

// Show renders one job's page: args, timeline, errors and actions.
func (h *Jobs) Show(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	lastID := h.Hub.LastID()
	j, err := jobs.Get(c.Request().Context(), h.Reader, id)
	if err != nil {
		return jobsError(err)
	}
	return h.renderPage(c, http.StatusOK, "job", JobPage{
		Layout:    views.Layout{Nav: "jobs", Version: h.Version},
		Panel:     JobPanel{Job: JobView{Job: j, Now: time.Now()}, ID: id},
		StreamURL: jobsStreamURL(lastID, []int64{id}),
	})
}

// Panel renders the changing part of a job's page, which the page reloads
// when the stream says the job changed.
func (h *Jobs) Panel(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	j, err := jobs.Get(c.Request().Context(), h.Reader, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return h.fragments(c, fragment{"job_panel", JobPanel{ID: id, Deleted: true}})
	}
	if err != nil {
		return err
	}
	return h.fragments(c, fragment{"job_panel", JobPanel{Job: JobView{Job: j, Now: time.Now()}, ID: id}})
}

// ---------------------------------------------------------------- forms

// ActionForm is a job page's Cancel, Retry or Delete button. htmx gets a
// message and the job's new panel; a plain form is sent back to the job (or
// the list, after a delete); a refused action re-renders the page with the
// reason.
func (h *Jobs) ActionForm(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	action := jobAction(c.Param("action"))
	if !slices.Contains([]jobAction{actionCancel, actionRetry, actionDelete}, action) {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no action %q: cancel, retry or delete", c.Param("action")))
	}
	ctx := c.Request().Context()
	j, err := h.act(ctx, action, id)
	if err != nil {
		err = jobsError(err)
		var he *echo.HTTPError
		if !errors.As(err, &he) || he.Code >= 500 || he.Code == http.StatusNotFound {
			return err
		}
		msg, _ := he.Message.(string)
		if isHtmx(c) {
			return h.fragments(c, fragment{"flash", Flash{Message: msg, Error: true}})
		}
		lastID := h.Hub.LastID()
		cur, gerr := jobs.Get(ctx, h.Reader, id)
		if gerr != nil {
			return jobsError(gerr)
		}
		return h.renderPage(c, he.Code, "job", JobPage{
			Layout:    views.Layout{Nav: "jobs", Version: h.Version},
			Panel:     JobPanel{Job: JobView{Job: cur, Now: time.Now()}, ID: id},
			StreamURL: jobsStreamURL(lastID, []int64{id}),
			Flash:     &Flash{Message: msg, Error: true},
		})
	}
	if !isHtmx(c) {
		if action == actionDelete {
			return c.Redirect(http.StatusSeeOther, "/jobs")
		}
		return c.Redirect(http.StatusSeeOther, "/jobs/"+strconv.FormatInt(id, 10))
	}
	panel := JobPanel{ID: id, OOB: true, Deleted: action == actionDelete}
	if action != actionDelete {
		panel.Job = JobView{Job: j, Now: time.Now()}
	}
	return h.fragments(c,
		fragment{"flash", Flash{Message: actionMessage(action, id, j)}},
		fragment{"job_panel", panel})
}

func actionMessage(a jobAction, id int64, j *jobs.Job) string {
	switch a {
	case actionCancel:
		return fmt.Sprintf("Job %d cancelled.", id)
	case actionRetry:
		return fmt.Sprintf("Job %d will run again now (state %s).", id, j.State)
	}
	return fmt.Sprintf("Job %d deleted.", id)
}

// act runs one action on one job and returns the job after it (for a
// delete: as it was just before).
func (h *Jobs) act(ctx context.Context, a jobAction, id int64) (*jobs.Job, error) {
	var j *jobs.Job
	var err error
	switch a {
	case actionCancel:
		j, err = h.Engine.CancelJob(ctx, id)
	case actionRetry:
		j, err = h.Engine.RetryJob(ctx, id)
	case actionDelete:
		j, err = jobs.Get(ctx, h.Reader, id)
		if err == nil {
			err = h.Engine.DeleteJob(ctx, id)
		}
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// BulkForm is the list's Cancel / Retry / Delete selected buttons: form
// fields action and id (repeated). htmx gets a message and the affected
// rows; a plain form goes back to the list; a refused request re-renders
// the list with the reason.
func (h *Jobs) BulkForm(c echo.Context) error {
	backURL := jobsBack(c.FormValue("back"))
	action := jobAction(c.FormValue("action"))
	form, err := c.FormParams()
	if err != nil {
		return badRequest("malformed form")
	}
	ids, err := parseJobIDs(form["id"])
	if err == nil {
		err = checkBulk(action, ids)
	}
	var n int
	if err == nil {
		n, err = h.bulk(c.Request().Context(), action, ids)
	}
	if err != nil {
		err = jobsError(err)
		return h.refuseOnList(c, backURL, err)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, backURL)
	}
	flash, err := h.Views.Fragment("flash", Flash{Message: bulkMessage(action, n, len(ids))})
	if err != nil {
		return err
	}
	rows, err := h.rowFragments(c.Request().Context(), ids)
	if err != nil {
		return err
	}
	// Table rows after a paragraph would be dropped by the HTML parser:
	// htmx takes out-of-band elements from a <template> as they are.
	out := append(flash, "<template>"...)
	for _, r := range rows {
		html, err := h.Views.Fragment(r.name, r.data)
		if err != nil {
			return err
		}
		out = append(out, html...)
	}
	return c.HTMLBlob(http.StatusOK, append(out, "</template>"...))
}

// rowFragments renders the rows of ids out of band, and a removal for each
// id that no longer exists.
func (h *Jobs) rowFragments(ctx context.Context, ids []int64) ([]fragment, error) {
	js, err := jobs.GetMany(ctx, h.Reader, ids)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	found := map[int64]bool{}
	var out []fragment
	for _, j := range js {
		found[j.ID] = true
		out = append(out, fragment{"job_row", JobRow{Job: JobView{Job: j, Now: now}, OOB: true}})
	}
	for _, id := range ids {
		if !found[id] {
			out = append(out, fragment{"job_row_deleted", DeletedRow{ID: id}})
		}
	}
	return out, nil
}

func bulkMessage(a jobAction, n, asked int) string {
	verb := map[jobAction]string{actionCancel: "Cancelled", actionRetry: "Retried", actionDelete: "Deleted"}[a]
	jobsWord := "jobs"
	if asked == 1 {
		jobsWord = "job"
	}
	if n == asked {
		return fmt.Sprintf("%s %s selected %s.", verb, views.Thousands(n), jobsWord)
	}
	return fmt.Sprintf("%s %s of %s selected %s; the others' state does not allow it.", verb, views.Thousands(n), views.Thousands(asked), jobsWord)
}

func parseJobIDs(raw []string) ([]int64, error) {
	if len(raw) > maxBulk {
		return nil, invalid(fmt.Sprintf("at most %d jobs at once", maxBulk))
	}
	ids := make([]int64, 0, len(raw))
	for _, s := range raw {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 1 {
			return nil, badRequest(fmt.Sprintf("job id %q is not a positive whole number", s))
		}
		ids = append(ids, id)
	}
	return uniqueIDs(ids), nil
}

// uniqueIDs drops repeated ids, keeping the first of each in place.
func uniqueIDs(ids []int64) []int64 {
	seen := make(map[int64]struct{}, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

func checkBulk(a jobAction, ids []int64) error {
	if !slices.Contains([]jobAction{actionCancel, actionRetry, actionDelete}, a) {
		return invalid(fmt.Sprintf("action %q is not one of cancel, retry, delete", a))
	}
	if len(ids) == 0 {
		return invalid("select at least one job")
	}
	if len(ids) > maxBulk {
		return invalid(fmt.Sprintf("at most %d jobs at once", maxBulk))
	}
	return nil
}

func (h *Jobs) bulk(ctx context.Context, a jobAction, ids []int64) (int, error) {
	var n int
	var err error
	switch a {
	case actionCancel:
		n, err = h.Engine.CancelJobs(ctx, ids)
	case actionRetry:
		n, err = h.Engine.RetryJobs(ctx, ids)
	case actionDelete:
		n, err = h.Engine.DeleteJobs(ctx, ids)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// jobsBack is the dashboard URL a plain form returns to: its "back" field
// when that is a path of the dashboard, else /jobs.
func jobsBack(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || (u.Path != "/jobs" && !strings.HasPrefix(u.Path, "/jobs/")) {
		return "/jobs"
	}
	return u.RequestURI()
}

// listWithFlash re-renders the list at backURL's filter with a message.
func (h *Jobs) listWithFlash(c echo.Context, backURL string, status int, flash *Flash) error {
	u, _ := url.Parse(backURL)
	req := c.Request().Clone(c.Request().Context())
	req.URL.RawQuery = u.RawQuery
	req.URL.Path = "/jobs"
	c2 := c.Echo().NewContext(req, c.Response())
	q, err := parseJobsQuery(c2, jobsPageSize, false)
	if err != nil {
		q = jobsQuery{params: jobs.ListParams{Limit: jobsPageSize}}
	}
	q.params.Limit = jobsPageSize
	p, err := h.page(c.Request().Context(), q)
	if err != nil {
		return err
	}
	p.Flash = flash
	return h.renderPage(c, status, "jobs", p)
}

// QueueForm is a queue's Pause, Resume or Scale control in the queue table.
// htmx gets a message and the new queue table; a plain form goes back to
// the dashboard; bad input re-renders the dashboard with the reason.
func (h *Jobs) QueueForm(c echo.Context) error {
	name := c.Param("name")
	backURL := jobsBack(c.FormValue("back"))
	err := h.queueAction(c.Request().Context(), name, c.Param("action"), func() (int, error) {
		s := strings.TrimSpace(c.FormValue("limit"))
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, badRequest(fmt.Sprintf("limit %q is not a whole number", s))
		}
		return n, nil
	})
	if err != nil {
		return h.refuseOnList(c, backURL, err)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, backURL)
	}
	qs, err := h.Engine.Queues(c.Request().Context())
	if err != nil {
		return err
	}
	return h.fragments(c,
		fragment{"flash", Flash{Message: queueMessage(name, c.Param("action"), qs)}},
		fragment{"job_queues", queuesView(qs, true)})
}

func queueMessage(name, action string, qs []jobs.QueueInfo) string {
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

// queueAction runs pause, resume or scale (with the limit from limit()) and
// returns an HTTP error for bad input or an unknown queue.
func (h *Jobs) queueAction(ctx context.Context, name, action string, limit func() (int, error)) error {
	var err error
	switch action {
	case "pause":
		err = h.Engine.PauseQueue(ctx, name)
	case "resume":
		err = h.Engine.ResumeQueue(ctx, name)
	case "scale":
		n, lerr := limit()
		if lerr != nil {
			return lerr
		}
		if n < 1 || n > maxQueueLimit {
			return invalid(fmt.Sprintf("limit must be between 1 and %d", maxQueueLimit))
		}
		err = h.Engine.ScaleQueue(ctx, name, n)
	default:
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no queue action %q: pause, resume or scale", action))
	}
	if err != nil {
		return jobsError(err)
	}
	if h.Feed != nil {
		h.Feed.QueuesChanged()
	}
	return nil
}

// jobsError maps the engine's refusals to statuses: 404 for an unknown job
// or queue, 409 when the job's state forbids the action.
func jobsError(err error) error {
	switch {
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrUnknownQueue):
		return echo.NewHTTPError(http.StatusNotFound, err.Error())
	case errors.Is(err, jobs.ErrStateConflict):
		return echo.NewHTTPError(http.StatusConflict, err.Error())
	case errors.Is(err, jobs.ErrListParams):
		return badRequest(err.Error())
	}
	return err
}

// ---------------------------------------------------------------- API

// JobJSON is a job in the JSON API.
type JobJSON struct {
	ID          int64           `json:"id"`
	Queue       string          `json:"queue"`
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args"`
	State       jobs.State      `json:"state"`
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	Priority    int             `json:"priority"`
	Tags        []string        `json:"tags"`
	InsertedAt  time.Time       `json:"inserted_at"`
	ScheduledAt time.Time       `json:"scheduled_at"`
	AttemptedAt *time.Time      `json:"attempted_at"`
	CompletedAt *time.Time      `json:"completed_at"`
	CancelledAt *time.Time      `json:"cancelled_at"`
	DiscardedAt *time.Time      `json:"discarded_at"`
	Errors      []ErrorJSON     `json:"errors"`
}

// ErrorJSON is one failed attempt of a job in the JSON API.
type ErrorJSON struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func jobJSON(j *jobs.Job) JobJSON {
	out := JobJSON{
		ID: j.ID, Queue: j.Queue, Kind: j.Kind, Args: j.Args, State: j.State, Attempt: j.Attempt,
		MaxAttempts: j.MaxAttempts, Priority: j.Priority, Tags: j.Tags,
		InsertedAt: j.InsertedAt.UTC(), ScheduledAt: j.ScheduledAt.UTC(),
		AttemptedAt: utcPtr(j.AttemptedAt), CompletedAt: utcPtr(j.CompletedAt),
		CancelledAt: utcPtr(j.CancelledAt), DiscardedAt: utcPtr(j.DiscardedAt),
		Errors: make([]ErrorJSON, len(j.Errors)),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if len(out.Args) == 0 {
		out.Args = json.RawMessage("{}")
	}
	for i, e := range j.Errors {
		out.Errors[i] = ErrorJSON{Attempt: e.Attempt, At: e.At.UTC(), Error: e.Error}
	}
	return out
}

// APIList answers GET /api/jobs?state=&queue=&kind=&limit=&cursor= with
// {"items":[job…],"next_cursor"}; state may list several, comma-separated.
func (h *Jobs) APIList(c echo.Context) error {
	q, err := parseJobsQuery(c, jobs.DefaultListLimit, true)
	if err != nil {
		return err
	}
	page, err := jobs.List(c.Request().Context(), h.Reader, q.params)
	if err != nil {
		return jobsError(err)
	}
	items := make([]JobJSON, len(page.Jobs))
	for i, j := range page.Jobs {
		items[i] = jobJSON(j)
	}
	var next *string
	if page.NextCursor != "" {
		next = &page.NextCursor
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

// APIGet answers GET /api/jobs/{id}.
func (h *Jobs) APIGet(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	j, err := jobs.Get(c.Request().Context(), h.Reader, id)
	if err != nil {
		return jobsError(err)
	}
	return c.JSON(http.StatusOK, jobJSON(j))
}

// APIAction answers POST /api/jobs/{id}/cancel, …/retry and DELETE
// /api/jobs/{id} with the job after the change (a deleted job as it was):
// 404 for an unknown id, 409 when the job's state forbids the action.
func (h *Jobs) APIAction(a jobAction) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := jobID(c)
		if err != nil {
			return err
		}
		j, err := h.act(c.Request().Context(), a, id)
		if err != nil {
			return jobsError(err)
		}
		return c.JSON(http.StatusOK, jobJSON(j))
	}
}

// BulkRequest is the body of POST /api/jobs/bulk.
type BulkRequest struct {
	Action string  `json:"action"`
	IDs    []int64 `json:"ids"`
}

// APIBulk answers POST /api/jobs/bulk {"action":"cancel|retry|delete",
// "ids":[…]} with {"action","requested","changed"}: jobs whose state does
// not allow the action, or that do not exist, are left as they are.
func (h *Jobs) APIBulk(c echo.Context) error {
	var req BulkRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	// Checked before anything else: a body of a million ids costs no more
	// than its decoding.
	if len(req.IDs) > maxBulk {
		return invalid(fmt.Sprintf("at most %d jobs at once", maxBulk))
	}
	for _, id := range req.IDs {
		if id < 1 {
			return invalid(fmt.Sprintf("job id %d is not positive", id))
		}
	}
	ids := uniqueIDs(slices.Clone(req.IDs))
	a := jobAction(req.Action)
	if err := checkBulk(a, ids); err != nil {
		return err
	}
	n, err := h.bulk(c.Request().Context(), a, ids)
	if err != nil {
		return jobsError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"action": a, "requested": len(ids), "changed": n})
}

// QueueJSON is a queue in the JSON API.
type QueueJSON struct {
	Name    string         `json:"name"`
	Limit   int            `json:"limit"`
	Running int            `json:"running"`
	Paused  bool           `json:"paused"`
	Counts  map[string]int `json:"counts"`
}

func queueJSON(q jobs.QueueInfo) QueueJSON {
	out := QueueJSON{Name: q.Name, Limit: q.Limit, Running: q.Running, Paused: q.Paused, Counts: map[string]int{}}
	for _, s := range jobs.States {
		out.Counts[string(s)] = q.Counts[s]
	}
	return out
}

// APIQueues answers GET /api/queues with every queue.
func (h *Jobs) APIQueues(c echo.Context) error {
	qs, err := h.Engine.Queues(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]QueueJSON, len(qs))
	for i, q := range qs {
		out[i] = queueJSON(q)
	}
	return c.JSON(http.StatusOK, out)
}

// APIQueueAction answers POST /api/queues/{name}/pause, …/resume and
// …/scale {"limit":N} with the queue after the change.
func (h *Jobs) APIQueueAction(c echo.Context) error {
	name := c.Param("name")
	err := h.queueAction(c.Request().Context(), name, c.Param("action"), func() (int, error) {
		var body struct {
			Limit *int `json:"limit"`
		}
		if err := decodeJSON(c, &body); err != nil {
			return 0, err
		}
		if body.Limit == nil {
			return 0, invalid(`limit is missing: send {"limit": N}`)
		}
		return *body.Limit, nil
	})
	if err != nil {
		return err
	}
	qs, err := h.Engine.Queues(c.Request().Context())
	if err != nil {
		return err
	}
	for _, q := range qs {
		if q.Name == name {
			return c.JSON(http.StatusOK, queueJSON(q))
		}
	}
	return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no queue %q", name))
}

// ---------------------------------------------------------------- throughput

// ThroughputChart is the data of the job_throughput partial: a stacked bar
// chart of completed and failed jobs per second, geometry computed here so
// the template only places numbers.
type ThroughputChart struct {
	Width, Height       int
	PlotLeft, PlotRight int
	AxisY               int
	Bars                []ThroughputBar
	Grid                []GridLine
	Completed, Failed   int
	WindowText          string
	PeakText            string
	OOB                 bool
}

// ThroughputBar is one bucket of the chart: completed (C…) below failed (F…).
type ThroughputBar struct {
	X, W, CY, CH, FY, FH string
	Title                string
}

// GridLine is a horizontal line of the chart with its label.
type GridLine struct {
	X1, X2, Y, LX, LY string
	Label             string
}

// Chart geometry and window.
const (
	chartWindow = 5 * time.Minute
	chartBucket = 5 * time.Second
	chartWidth  = 720
	chartHeight = 160
	chartLeft   = 48
	chartRight  = chartWidth - 8
	chartTop    = 10
	chartBase   = chartHeight - 22
)

func px(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// throughputChart buckets the last chartWindow of points (one a second)
// into bars of chartBucket, as rates per second.
func throughputChart(points []jobs.ThroughputPoint, now time.Time) ThroughputChart {
	ch := ThroughputChart{
		Width: chartWidth, Height: chartHeight, PlotLeft: chartLeft, PlotRight: chartRight, AxisY: chartHeight - 6,
		WindowText: "5 min",
	}
	n := int(chartWindow / chartBucket)
	per := int(chartBucket / time.Second)
	type bucket struct {
		start             time.Time
		completed, failed int
	}
	buckets := make([]bucket, n)
	// The newest bucket ends with the newest point (or now).
	end := now.UTC().Truncate(time.Second)
	if len(points) > 0 {
		end = points[len(points)-1].At
	}
	first := end.Add(-time.Duration(n*per-1) * time.Second)
	for i := range buckets {
		buckets[i].start = first.Add(time.Duration(i*per) * time.Second)
	}
	for _, p := range points {
		if p.At.Before(first) || p.At.After(end) {
			continue
		}
		i := int(p.At.Sub(first) / chartBucket)
		buckets[i].completed += p.Completed
		buckets[i].failed += p.Failed
		ch.Completed += p.Completed
		ch.Failed += p.Failed
	}
	maxRate := 0.0
	for _, b := range buckets {
		maxRate = max(maxRate, float64(b.completed+b.failed)/float64(per))
	}
	// The peak is the tallest bar's rate (a 5-second average), so that it
	// agrees with the axis; a single busy second would read higher.
	ch.PeakText = rateText(maxRate)
	top := niceCeil(maxRate)
	plotH := float64(chartBase - chartTop)
	for _, frac := range []float64{0, 0.5, 1} {
		y := chartBase - frac*plotH
		ch.Grid = append(ch.Grid, GridLine{
			X1: px(chartLeft), X2: px(chartRight), Y: px(y), LX: px(chartLeft - 6), LY: px(y + 4),
			Label: rateText(top * frac),
		})
	}
	slot := float64(chartRight-chartLeft) / float64(n)
	for i, b := range buckets {
		c := float64(b.completed) / float64(per) / top * plotH
		f := float64(b.failed) / float64(per) / top * plotH
		bar := ThroughputBar{
			X: px(chartLeft + float64(i)*slot + slot*0.1), W: px(slot * 0.8),
			Title: fmt.Sprintf("%s–%s UTC: %d completed, %d failed", b.start.Format("15:04:05"),
				b.start.Add(chartBucket).Format("15:04:05"), b.completed, b.failed),
		}
		if c > 0 {
			bar.CY, bar.CH = px(chartBase-c), px(c)
		}
		if f > 0 {
			bar.FY, bar.FH = px(chartBase-c-f), px(f)
		}
		ch.Bars = append(ch.Bars, bar)
	}
	return ch
}

// niceCeil rounds a rate up to 1, 2 or 5 times a power of ten (1 at least).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := 1.0
	for p*10 < v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func rateText(r float64) string {
	if r == float64(int(r)) {
		return views.Thousands(int(r)) + "/s"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
}

// refuseOnList answers a refused form of the list page: htmx gets the
// message as a flash, a plain browser the list again with it. Server
// errors go to the error handler.
func (h *Jobs) refuseOnList(c echo.Context, backURL string, err error) error {
	var he *echo.HTTPError
	if !errors.As(err, &he) || he.Code >= 500 {
		return err
	}
	msg, _ := he.Message.(string)
	if isHtmx(c) {
		return h.fragments(c, fragment{"flash", Flash{Message: msg, Error: true}})
	}
	return h.listWithFlash(c, backURL, he.Code, &Flash{Message: msg, Error: true})
}
