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
	// ActOnSelection is the list's bulk action: what became of each id.
	ActOnSelection(ctx context.Context, a jobs.FilterAction, ids []int64) (jobs.Selection, error)
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
	// Search, actions on a filter and time charts (jobs_search.go,
	// jobs_bulk.go, jobs_charts.go).
	CountFilter(ctx context.Context, a jobs.FilterAction, f jobs.Filter) (int, error)
	ActOnFilter(ctx context.Context, a jobs.FilterAction, f jobs.Filter, opts jobs.FilterOptions) (jobs.FilterProgress, error)
	Timings(minutes int) jobs.Timings
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
	Feed *live.JobsFeed
	// Publisher, when set, is what a bulk action's progress is published
	// through (the app's: the broker on PostgreSQL, so every node's pages
	// see it); otherwise Hub, when it publishes.
	Publisher live.Publisher
	Version   string
	// ReadOnly shows everything and refuses every action (job cancel,
	// retry and delete, bulk, queue pause, resume and scale, cron run,
	// pause and resume; pages and API alike) with 403. The pages hide the
	// actions when Views were made with JobsReadOnly.
	ReadOnly bool

	// filterRuns is the action on a filter that runs or ran last
	// (jobs_bulk.go).
	filterRuns filterRuns
}

// Routes registers the pages, their fragments and forms, and the API. The
// pages are under /jobs, or at the root when Views are mounted (see
// NewJobsDashboard, which strips its prefix before routing).
func (h *Jobs) Routes(e *echo.Echo) {
	e.GET(h.route(""), h.Page)
	e.GET(h.route("/live"), h.Live)
	e.POST(h.route("/bulk"), h.write(h.BulkForm))
	e.POST(h.route("/bulk-filter"), h.write(h.BulkFilterForm))
	e.GET(h.route("/charts"), h.ChartsPage)
	e.GET(h.route("/charts/live"), h.ChartsLive)
	e.GET(h.route("/cron"), h.CronPage)
	e.GET(h.route("/cron/table"), h.CronTable)
	e.POST(h.route("/cron/:name/:action"), h.write(h.CronForm))
	e.GET(h.route("/:id"), h.Show)
	e.GET(h.route("/:id/panel"), h.Panel)
	e.POST(h.route("/:id/:action"), h.write(h.ActionForm))
	e.POST(h.route("/queues/:name/:action"), h.write(h.QueueForm))

	e.GET("/api/jobs", h.APIList)
	e.POST("/api/jobs/bulk", h.write(h.APIBulk))
	e.POST("/api/jobs/bulk-filter", h.write(h.APIBulkFilter))
	e.GET("/api/jobs/bulk-filter/:id", h.APIBulkFilterStatus)
	e.GET("/api/jobs/timings", h.APITimings)
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
			// A refused form: a page opened before the restart with
			// -read-only still has buttons, and its htmx forms show this.
			return refused(echo.NewHTTPError(http.StatusForbidden, readOnlyMessage), nil)
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
	// search is the query as typed (q=), terms its parse.
	search string
	terms  []jobs.SearchTerm
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
				return q, invalid(fmt.Sprintf("state %s is not one of %s", quoted(p), stateList()))
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
	if err := q.parseSearch(c.QueryParam("q")); err != nil {
		return q, err
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
	if q.search != "" {
		v.Set("q", q.search)
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
	p, err := h.listed(c)
	if se := (*searchError)(nil); errors.As(err, &se) {
		// The form again, with the query and what is wrong with it.
		return h.searchRefused(c, se)
	}
	if err != nil {
		return err
	}
	return render(c, h.Views, http.StatusOK, views.PageJobs, p)
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
	lastID := h.Hub.StreamLastID(live.JobsStream)
	list, search, err := h.listOrSearch(ctx, q)
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
		Search:      search,
		Filtered:    q.state != "" || q.params.Queue != "" || q.params.Kind != "" || len(q.terms) > 0,
		Bulk:        h.filterRuns.latest(),
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
		return 0, notFound(fmt.Sprintf("no job %s: ids are positive whole numbers", quoted(c.Param("id"))))
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
	p, err := h.jobPageData(c, id)
	if err != nil {
		return err
	}
	p.Flash = flash
	return render(c, h.Views, status, views.PageJob, p)
}

// jobPageData is job id's page as of now (404 for no such job).
func (h *Jobs) jobPageData(c echo.Context, id int64) (views.JobPage, error) {
	lastID := h.Hub.StreamLastID(live.JobsStream)
	j, err := jobs.Get(c.Request().Context(), h.Reader, id)
	if err != nil {
		return views.JobPage{}, showAs(err, fmt.Sprintf("job %d not found", id))
	}
	return views.JobPage{
		Layout:    views.Layout{Nav: "jobs", Version: h.Version},
		Panel:     views.JobPanel{Job: views.JobView{Job: j, Now: time.Now()}, ID: id},
		StreamURL: h.streamURL(lastID, []int64{id}),
	}, nil
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
