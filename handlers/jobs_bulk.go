package handlers

// Acting on everything a filter matches ("Retry all 312 discarded in
// phone_calls"): a confirmation that states the count, then the engine's
// ActOnFilter in the background (batches of 1,000, each its own
// transaction), its progress sent to every jobs page over the jobs stream
// ("bulk" events), and its result. One runs at a time per dashboard.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/views"
)

// BulkEvent carries the progress of an action on a filter on the jobs
// stream.
const BulkEvent = "bulk"

// bulkPublishEvery bounds how often progress is sent while an action runs.
const bulkPublishEvery = 250 * time.Millisecond

// filterRuns holds the action on a filter that runs or ran last; the zero
// value is ready.
type filterRuns struct {
	mu  sync.Mutex
	seq int64
	cur *filterRun
}

// filterRun is one action on a filter.
type filterRun struct {
	id      int64
	action  jobs.FilterAction
	count   int
	what    string
	started time.Time
	// Guarded by filterRuns.mu.
	progress    jobs.FilterProgress
	running     bool
	took        time.Duration
	err         string
	lastPublish time.Time
}

func (r *filterRun) view() views.BulkProgress {
	return views.BulkProgress{Action: string(r.action), Count: r.count, What: r.what, ID: r.id, Running: r.running,
		Progress: r.progress, Took: r.took.Round(time.Millisecond), Error: r.err}
}

// latest is the last action's progress, for a page being drawn.
func (fr *filterRuns) latest() views.BulkProgress {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.cur == nil {
		return views.BulkProgress{}
	}
	return fr.cur.view()
}

// filterSpec is a filter as a visitor gave it, parsed.
type filterSpec struct {
	filter                    jobs.Filter
	state, queue, kind, query string
}

// parseFilter checks a filter's fields as the list does (state may list
// several, comma-separated).
func parseFilter(state, queue, kind, q string) (filterSpec, error) {
	spec := filterSpec{state: state, queue: queue, kind: kind}
	if state != "" {
		for _, p := range strings.Split(state, ",") {
			st := jobs.State(strings.TrimSpace(p))
			if !containsState(st) {
				return spec, invalid(fmt.Sprintf("state %s is not one of %s", quoted(p), stateList()))
			}
			spec.filter.States = append(spec.filter.States, st)
		}
	}
	for name, v := range map[string]string{"queue": queue, "kind": kind} {
		if utf8.RuneCountInString(v) > 100 {
			return spec, invalid(name + " is longer than 100 characters")
		}
	}
	spec.filter.Queue, spec.filter.Kind = queue, kind
	terms, err := jobs.ParseSearch(q)
	if err != nil {
		return spec, badRequest(err.Error())
	}
	spec.filter.Terms = terms
	if len(terms) > 0 {
		spec.query = q
	}
	return spec, nil
}

func containsState(s jobs.State) bool {
	for _, x := range jobs.States {
		if x == s {
			return true
		}
	}
	return false
}

func parseFilterAction(s string) (jobs.FilterAction, error) {
	switch a := jobs.FilterAction(s); a {
	case jobs.FilterCancel, jobs.FilterRetry, jobs.FilterDelete:
		return a, nil
	}
	return "", invalid(fmt.Sprintf("action %s is not one of cancel, retry, delete", quoted(s)))
}

// start counts what the action will touch and runs it in the background.
// It refuses (409) while another runs.
func (h *Jobs) startFilterRun(ctx context.Context, a jobs.FilterAction, spec filterSpec) (views.BulkProgress, error) {
	n, err := h.Engine.CountFilter(ctx, a, spec.filter)
	if err != nil {
		return views.BulkProgress{}, err
	}
	fr := &h.filterRuns
	fr.mu.Lock()
	if fr.cur != nil && fr.cur.running {
		cur := fr.cur
		fr.mu.Unlock()
		return views.BulkProgress{}, echo.NewHTTPError(http.StatusConflict,
			fmt.Sprintf("another action on a filter is running (%s %s): wait for its result", cur.action, cur.what))
	}
	fr.seq++
	run := &filterRun{id: fr.seq, action: a, count: n, what: views.FilterDescription(spec.filter.States, spec.queue, spec.kind, spec.query),
		started: time.Now(), running: true}
	fr.cur = run
	v := run.view()
	fr.mu.Unlock()

	go func() {
		// Not the request's context: the action outlives the request.
		prog, err := h.Engine.ActOnFilter(context.Background(), a, spec.filter, jobs.FilterOptions{
			Progress: func(p jobs.FilterProgress) {
				fr.mu.Lock()
				run.progress = p
				due := time.Since(run.lastPublish) >= bulkPublishEvery
				if due {
					run.lastPublish = time.Now()
				}
				v := run.view()
				fr.mu.Unlock()
				if due && !p.Done {
					h.publishBulk(v)
				}
			},
		})
		fr.mu.Lock()
		run.progress, run.running, run.took = prog, false, time.Since(run.started)
		if err != nil {
			run.err = err.Error()
		}
		v := run.view()
		fr.mu.Unlock()
		h.publishBulk(v)
	}()
	return v, nil
}

// publishBulk sends an action's progress to every jobs page. The hub the
// app and a mounted dashboard give is an *events.Hub, which publishes; a
// hub that does not leaves pages to show the result when they reload.
func (h *Jobs) publishBulk(v views.BulkProgress) {
	pub := h.Publisher
	if pub == nil {
		var ok bool
		if pub, ok = h.Hub.(live.Publisher); !ok {
			return
		}
	}
	v.OOB = true
	html, err := h.Views.Fragment(views.PartialJobBulkProgress, v)
	if err != nil {
		return
	}
	_, _ = pub.Publish(live.JobsStream, BulkEvent, html)
}

// BulkFilterForm is the list's "Retry all…", "Cancel all…", "Delete all…"
// (form fields action, state, queue, kind, q, back): without confirm it
// answers with the confirmation stating the count; with confirm it starts
// the action and answers with its progress (htmx), or goes back to the list
// (a plain form), where the progress shows.
func (h *Jobs) BulkFilterForm(c echo.Context) error {
	backURL := h.jobsBack(c.FormValue("back"))
	a, err := parseFilterAction(c.FormValue("action"))
	var spec filterSpec
	if err == nil {
		spec, err = parseFilter(c.FormValue("state"), c.FormValue("queue"), c.FormValue("kind"), c.FormValue("q"))
	}
	if err == nil && spec.filter.Empty() {
		// The page offers these only with a filter set.
		err = invalid("choose a state, queue, kind or search first: the list acts on everything a filter matches, never on every job at once")
	}
	if err != nil {
		return h.refusedOnList(c, backURL, err)
	}
	ctx := c.Request().Context()
	var bp views.BulkProgress
	if c.FormValue("confirm") == "" {
		n, err := h.Engine.CountFilter(ctx, a, spec.filter)
		if err != nil {
			return h.refusedOnList(c, backURL, err)
		}
		bp = views.BulkProgress{Confirm: true, Action: string(a), Count: n,
			What:  views.FilterDescription(spec.filter.States, spec.queue, spec.kind, spec.query),
			State: spec.state, Queue: spec.queue, Kind: spec.kind, Query: spec.query, Back: backURL}
	} else {
		bp, err = h.startFilterRun(ctx, a, spec)
		if err != nil {
			return h.refusedOnList(c, backURL, err)
		}
		if !isHtmx(c) {
			return c.Redirect(http.StatusSeeOther, backURL)
		}
	}
	if isHtmx(c) {
		return fragments(c, h.Views, views.Part{Name: views.PartialJobBulkProgress, Data: bp})
	}
	// A plain browser: the list at its filter, with the confirmation.
	u, _ := url.Parse(backURL)
	req := c.Request().Clone(ctx)
	req.URL.RawQuery = u.RawQuery
	c2 := c.Echo().NewContext(req, c.Response())
	q, err := parseJobsQuery(c2, jobsPageSize, false)
	if err != nil {
		q = jobsQuery{}
	}
	p, err := h.page(ctx, q)
	if err != nil {
		return err
	}
	p.Bulk = bp
	return render(c, h.Views, http.StatusOK, views.PageJobs, p)
}

// BulkFilterRequest is the body of POST /api/jobs/bulk-filter.
type BulkFilterRequest struct {
	Action string `json:"action"`
	// State lists states, comma-separated; Queue, Kind and Q (a search
	// query) as in GET /api/jobs.
	State string `json:"state"`
	Queue string `json:"queue"`
	Kind  string `json:"kind"`
	Q     string `json:"q"`
	// All is required to act on every job: without it a request that
	// sets no state, queue, kind or q is refused (422).
	All bool `json:"all"`
	// DryRun only counts.
	DryRun bool `json:"dry_run"`
}

// BulkFilterJSON is an action on a filter in the JSON API.
type BulkFilterJSON struct {
	ID        int64  `json:"id,omitempty"`
	Action    string `json:"action"`
	Matches   string `json:"matches"`
	Count     int    `json:"count"`
	Running   bool   `json:"running"`
	Done      bool   `json:"done"`
	Matched   int    `json:"matched"`
	Changed   int    `json:"changed"`
	Batches   int    `json:"batches"`
	MaxHoldMS int64  `json:"max_hold_ms"`
	TookMS    int64  `json:"took_ms"`
	Error     string `json:"error,omitempty"`
	StatusURL string `json:"status_url,omitempty"`
}

func bulkFilterJSON(v views.BulkProgress) BulkFilterJSON {
	out := BulkFilterJSON{ID: v.ID, Action: v.Action, Matches: v.What, Count: v.Count, Running: v.Running,
		Done: v.ID != 0 && !v.Running, Matched: v.Progress.Matched, Changed: v.Progress.Changed, Batches: v.Progress.Batches,
		MaxHoldMS: v.Progress.MaxHold.Milliseconds(), TookMS: v.Took.Milliseconds(), Error: v.Error}
	if v.ID != 0 {
		out.StatusURL = "/api/jobs/bulk-filter/" + strconv.FormatInt(v.ID, 10)
	}
	return out
}

// APIBulkFilter answers POST /api/jobs/bulk-filter {"action", "state",
// "queue", "kind", "q", "all", "dry_run"}: with dry_run, 200 and the count
// the action would touch; else 202 with the started action (its count, and
// status_url to follow it); 409 while another runs; 422 for a request that
// sets no filter field without "all": true. POST /api/jobs/bulk with a
// "filter" (the contract's shape) runs the same code.
func (h *Jobs) APIBulkFilter(c echo.Context) error {
	var req BulkFilterRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return h.apiActOnFilter(c, req, `send "all": true`)
}

// emptyFilterMessage refuses a filter that sets nothing; askAll says how
// to ask for every job on the route at hand.
func emptyFilterMessage(askAll string) string {
	return "the filter is empty (no state, queue, kind or q), so it matches every job in every state: " +
		"to act on all of them, " + askAll
}

// apiActOnFilter runs (or, with dry_run, counts) an action on a filter for
// the JSON API; askAll says how to ask for every job on the route at hand.
func (h *Jobs) apiActOnFilter(c echo.Context, req BulkFilterRequest, askAll string) error {
	a, err := parseFilterAction(req.Action)
	if err != nil {
		return err
	}
	spec, err := parseFilter(req.State, req.Queue, req.Kind, req.Q)
	if err != nil {
		return err
	}
	if spec.filter.Empty() && !req.All {
		return invalid(emptyFilterMessage(askAll))
	}
	spec.filter.All = req.All
	ctx := c.Request().Context()
	if req.DryRun {
		n, err := h.Engine.CountFilter(ctx, a, spec.filter)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, bulkFilterJSON(views.BulkProgress{Action: string(a), Count: n,
			What: views.FilterDescription(spec.filter.States, spec.queue, spec.kind, spec.query)}))
	}
	v, err := h.startFilterRun(ctx, a, spec)
	if err != nil {
		return err
	}
	out := bulkFilterJSON(v)
	c.Response().Header().Set("Location", out.StatusURL)
	return c.JSON(http.StatusAccepted, out)
}

// APIBulkFilterStatus answers GET /api/jobs/bulk-filter/{id}: the
// progress, then the result, of the last action on a filter (404 for an
// older or unknown id).
func (h *Jobs) APIBulkFilterStatus(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	fr := &h.filterRuns
	fr.mu.Lock()
	cur := fr.cur
	var v views.BulkProgress
	if cur != nil {
		v = cur.view()
	}
	fr.mu.Unlock()
	if err != nil || cur == nil || v.ID != id {
		return notFound(fmt.Sprintf("no action on a filter %s: only the last one is kept", quoted(c.Param("id"))))
	}
	return c.JSON(http.StatusOK, bulkFilterJSON(v))
}
