package handlers

import (
	"context"
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
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/views"
)

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
	CronEntries(ctx context.Context) ([]jobs.CronEntry, error)
	RunCron(ctx context.Context, name string) (jobs.InsertResult, error)
	PauseCron(ctx context.Context, name string) error
	ResumeCron(ctx context.Context, name string) error
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
	// Feed, when set, hears of queue settings changed here (the engine
	// tells it of every job that changes).
	Feed    *live.JobsFeed
	Version string
	// ReadOnly shows everything and refuses every action (job cancel,
	// retry and delete, bulk, queue pause, resume and scale, cron run,
	// pause and resume; pages and API alike) with 403. The pages hide the
	// actions when Views were made with JobsReadOnly.
	ReadOnly bool
}

// Routes registers the pages, their fragments and forms, and the API. The
// pages are under /jobs, or at the root when Views are mounted (see
// NewJobsDashboard, which strips its prefix before routing).
func (h *Jobs) Routes(e *echo.Echo) {
	e.GET(h.route(""), h.Page)
	e.GET(h.route("/live"), h.Live)
	e.POST(h.route("/bulk"), h.write(h.BulkForm))
	e.GET(h.route("/cron"), h.CronPage)
	e.GET(h.route("/cron/table"), h.CronTable)
	e.POST(h.route("/cron/:name/:action"), h.write(h.CronForm))
	e.GET(h.route("/:id"), h.Show)
	e.GET(h.route("/:id/panel"), h.Panel)
	e.POST(h.route("/:id/:action"), h.write(h.ActionForm))
	e.POST(h.route("/queues/:name/:action"), h.write(h.QueueForm))

	e.GET("/api/jobs", h.APIList)
	e.POST("/api/jobs/bulk", h.write(h.APIBulk))
	e.GET("/api/jobs/:id", h.APIGet)
	e.POST("/api/jobs/:id/cancel", h.write(h.APIAction(actionCancel)))
	e.POST("/api/jobs/:id/retry", h.write(h.APIAction(actionRetry)))
	e.DELETE("/api/jobs/:id", h.write(h.APIAction(actionDelete)))
	e.GET("/api/queues", h.APIQueues)
	e.POST("/api/queues/:name/:action", h.write(h.APIQueueAction))
	e.GET("/api/cron", h.APICron)
	e.POST("/api/cron/:name/:action", h.write(h.APICronAction))
}

// route is the path a page route is registered at: under /jobs in the
// app, at the root of a mounted dashboard (its prefix is stripped first).
func (h *Jobs) route(suffix string) string {
	if h.Views.Options().Mount == "" {
		return "/jobs" + suffix
	}
	if suffix == "" {
		return "/"
	}
	return suffix
}

// url is the address of a dashboard page as browsers see it (with the
// mount prefix).
func (h *Jobs) url(suffix string) string { return h.Views.Options().JobsURL(suffix) }

// streamURL is the address of the jobs stream for a page (see
// live.StreamURL), at this dashboard's event endpoint.
func (h *Jobs) streamURL(lastID int64, ids []int64) string {
	return live.StreamURLAt(h.Views.Options().EventsURL(), live.JobsStream, lastID, ids)
}

// readOnlyMessage is what a refused action says.
const readOnlyMessage = "this jobs dashboard is read-only: it shows everything and changes nothing (started with -read-only)"

// write guards a route that changes something: 403 when read-only, before
// anything is read of the request.
func (h *Jobs) write(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.ReadOnly {
			return echo.NewHTTPError(http.StatusForbidden, readOnlyMessage)
		}
		return next(c)
	}
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

// Page renders the dashboard: throughput, queues, state tabs, and one page
// of the job list, with the id of the last event it reflects.
func (h *Jobs) Page(c echo.Context) error {
	return renderWith(c, h.Views, views.PageJobs, h.listed)
}

// listed is the dashboard page the request's filter and cursor select.
func (h *Jobs) listed(c echo.Context) (views.JobsPage, error) {
	q, err := parseJobsQuery(c, jobsPageSize, false)
	if err != nil {
		return views.JobsPage{}, err
	}
	return h.page(c.Request().Context(), q)
}

func (h *Jobs) page(ctx context.Context, q jobsQuery) (views.JobsPage, error) {
	q.params.Limit = jobsPageSize
	// Take the event id first: anything published after it is resent on connect.
	lastID := h.Hub.LastID()
	list, err := jobs.List(ctx, h.Reader, q.params)
	if err != nil {
		return views.JobsPage{}, err
	}
	counts, err := h.Engine.Counts(ctx)
	if err != nil {
		return views.JobsPage{}, err
	}
	queues, err := h.Engine.Queues(ctx)
	if err != nil {
		return views.JobsPage{}, err
	}
	now := time.Now()
	p := views.JobsPage{
		Layout:      views.Layout{Nav: "jobs", Version: h.Version},
		Rows:        views.NewJobRows(list.Jobs, now),
		Queues:      views.NewQueuesView(queues, false),
		Chart:       views.NewThroughputChart(h.Engine.Throughput(), now),
		State:       q.state,
		Queue:       q.params.Queue,
		Kind:        q.params.Kind,
		LastEventID: lastID,
		LiveURL:     q.url(h.url("/live"), q.state, q.params.Cursor),
		Back:        q.url(h.url(""), q.state, q.params.Cursor),
	}
	tabs := views.StateTabs(counts)
	for i := range tabs {
		tabs[i].URL = q.url(h.url(""), tabs[i].State, "")
		tabs[i].Current = tabs[i].State == q.state
	}
	p.Counts = views.JobCounts{Tabs: tabs}
	for _, qi := range queues {
		p.QueueNames = append(p.QueueNames, qi.Name)
	}
	if q.params.Queue != "" && !slices.Contains(p.QueueNames, q.params.Queue) {
		p.QueueNames = append(p.QueueNames, q.params.Queue)
	}
	if list.NextCursor != "" {
		p.NextURL = q.url(h.url(""), q.state, list.NextCursor)
	}
	if q.params.Cursor != "" {
		p.FirstURL = q.url(h.url(""), q.state, "")
	}
	ids := make([]int64, len(list.Jobs))
	for i, j := range list.Jobs {
		ids[i] = j.ID
	}
	p.StreamURL = h.streamURL(lastID, ids)
	return p, nil
}

// Live renders the live part of the dashboard (chart, queues, tabs, list
// and pager, with a new stream URL for the rows now listed), which the page
// swaps in after a refresh or resync event.
func (h *Jobs) Live(c echo.Context) error {
	p, err := h.listed(c)
	if err != nil {
		return err
	}
	return fragments(c, h.Views, views.Part{Name: views.PartialJobLive, Data: p})
}

func jobID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, notFound(fmt.Sprintf("no job %q: ids are positive whole numbers", c.Param("id")))
	}
	return id, nil
}

// Show renders one job's page: args, timeline, errors and actions.
func (h *Jobs) Show(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	return h.jobPage(c, http.StatusOK, id, nil)
}

// jobPage renders job id's page with a flash.
func (h *Jobs) jobPage(c echo.Context, status int, id int64, flash *views.Flash) error {
	lastID := h.Hub.LastID()
	j, err := jobs.Get(c.Request().Context(), h.Reader, id)
	if err != nil {
		return err
	}
	return render(c, h.Views, status, views.PageJob, views.JobPage{
		Layout:    views.Layout{Nav: "jobs", Version: h.Version},
		Panel:     views.JobPanel{Job: views.JobView{Job: j, Now: time.Now()}, ID: id},
		StreamURL: h.streamURL(lastID, []int64{id}),
		Flash:     flash,
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
	panel := views.JobPanel{ID: id, Deleted: errors.Is(err, jobs.ErrNotFound)}
	if err != nil && !panel.Deleted {
		return err
	}
	if j != nil {
		panel.Job = views.JobView{Job: j, Now: time.Now()}
	}
	return fragments(c, h.Views, views.Part{Name: views.PartialJobPanel, Data: panel})
}

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
		return notFound(fmt.Sprintf("no action %q: cancel, retry or delete", c.Param("action")))
	}
	j, err := h.act(c.Request().Context(), action, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return err // the job is gone: its page is no more
	}
	if err != nil {
		return refused(err, func(status int, flash *views.Flash) error {
			return h.jobPage(c, status, id, flash)
		})
	}
	if !isHtmx(c) {
		if action == actionDelete {
			return c.Redirect(http.StatusSeeOther, h.url(""))
		}
		return c.Redirect(http.StatusSeeOther, h.url("/"+strconv.FormatInt(id, 10)))
	}
	panel := views.JobPanel{ID: id, OOB: true, Deleted: action == actionDelete}
	if action != actionDelete {
		panel.Job = views.JobView{Job: j, Now: time.Now()}
	}
	return fragments(c, h.Views,
		views.Part{Name: views.PartialFlash, Data: views.Flash{Message: views.JobActionMessage(string(action), id, j)}},
		views.Part{Name: views.PartialJobPanel, Data: panel})
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
	backURL := h.jobsBack(c.FormValue("back"))
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
		return h.refusedOnList(c, backURL, err)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, backURL)
	}
	flash, err := h.Views.Fragment(views.PartialFlash, views.Flash{Message: views.BulkMessage(string(action), n, len(ids))})
	if err != nil {
		return err
	}
	rows, err := h.rowFragments(c.Request().Context(), ids)
	if err != nil {
		return err
	}
	html, err := h.Views.Fragments(rows...)
	if err != nil {
		return err
	}
	// Table rows after a paragraph would be dropped by the HTML parser:
	// htmx takes out-of-band elements from a <template> as they are.
	out := append(append(append(flash, "<template>"...), html...), "</template>"...)
	return c.HTMLBlob(http.StatusOK, out)
}

// rowFragments renders the rows of ids out of band, and a removal for each
// id that no longer exists.
func (h *Jobs) rowFragments(ctx context.Context, ids []int64) ([]views.Part, error) {
	js, err := jobs.GetMany(ctx, h.Reader, ids)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	found := map[int64]bool{}
	var out []views.Part
	for _, j := range js {
		found[j.ID] = true
		out = append(out, views.Part{Name: views.PartialJobRow, Data: views.JobRow{Job: views.JobView{Job: j, Now: now}, OOB: true}})
	}
	for _, id := range ids {
		if !found[id] {
			out = append(out, views.Part{Name: views.PartialJobRowDeleted, Data: views.DeletedRow{ID: id}})
		}
	}
	return out, nil
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
	do := map[jobAction]func(context.Context, []int64) (int, error){
		actionCancel: h.Engine.CancelJobs, actionRetry: h.Engine.RetryJobs, actionDelete: h.Engine.DeleteJobs,
	}[a]
	if do == nil {
		return 0, invalid(fmt.Sprintf("action %q is not one of cancel, retry, delete", a))
	}
	return do(ctx, ids)
}

// jobsBack is the dashboard URL a plain form returns to: its "back" field
// when that is a path of the dashboard, else the dashboard.
func (h *Jobs) jobsBack(s string) string {
	root := h.url("")
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || (u.Path != root && !strings.HasPrefix(u.Path, root+"/")) {
		return root
	}
	return u.RequestURI()
}

// listWithFlash re-renders the list at backURL's filter with a message.
func (h *Jobs) listWithFlash(c echo.Context, backURL string, status int, flash *views.Flash) error {
	u, _ := url.Parse(backURL)
	req := c.Request().Clone(c.Request().Context())
	req.URL.RawQuery = u.RawQuery
	req.URL.Path = h.route("")
	c2 := c.Echo().NewContext(req, c.Response())
	q, err := parseJobsQuery(c2, jobsPageSize, false)
	if err != nil {
		q = jobsQuery{}
	}
	p, err := h.page(c.Request().Context(), q)
	if err != nil {
		return err
	}
	p.Flash = flash
	return render(c, h.Views, status, views.PageJobs, p)
}

// QueueForm is a queue's Pause, Resume or Scale control in the queue table.
// htmx gets a message and the new queue table; a plain form goes back to
// the dashboard; bad input re-renders the dashboard with the reason.
func (h *Jobs) QueueForm(c echo.Context) error {
	name := c.Param("name")
	backURL := h.jobsBack(c.FormValue("back"))
	err := h.queueAction(c.Request().Context(), name, c.Param("action"), func() (int, error) {
		s := strings.TrimSpace(c.FormValue("limit"))
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, badRequest(fmt.Sprintf("limit %q is not a whole number", s))
		}
		return n, nil
	})
	if err != nil {
		return h.refusedOnList(c, backURL, err)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, backURL)
	}
	qs, err := h.Engine.Queues(c.Request().Context())
	if err != nil {
		return err
	}
	return fragments(c, h.Views,
		views.Part{Name: views.PartialFlash, Data: views.Flash{Message: views.QueueMessage(name, c.Param("action"), qs)}},
		views.Part{Name: views.PartialJobQueues, Data: views.NewQueuesView(qs, true)})
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
		return notFound(fmt.Sprintf("no queue action %q: pause, resume or scale", action))
	}
	if err != nil {
		return err
	}
	if h.Feed != nil {
		h.Feed.QueuesChanged()
	}
	return nil
}

// refusedOnList marks a refused form of the list page: htmx gets the
// message as a flash, a plain browser the list again with it.
func (h *Jobs) refusedOnList(c echo.Context, backURL string, err error) error {
	return refused(err, func(status int, flash *views.Flash) error {
		return h.listWithFlash(c, backURL, status, flash)
	})
}
