package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
)

// utcOf is *t for the API: in UTC, nil when t is.
func utcOf(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return utcOrNil(*t)
}

// jobJSON is j as the JSON API answers it: jobs.Job is already the API's
// shape (its JSON tags are the contract's), so this only normalises a copy:
// every time in UTC (a zero one null), tags [] rather than null, empty args
// {}. It copies because j may be the engine's own.
func jobJSON(j *jobs.Job) *jobs.Job {
	out := *j
	out.InsertedAt, out.ScheduledAt = j.InsertedAt.UTC(), j.ScheduledAt.UTC()
	out.AttemptedAt, out.CompletedAt = utcOf(j.AttemptedAt), utcOf(j.CompletedAt)
	out.CancelledAt, out.DiscardedAt = utcOf(j.CancelledAt), utcOf(j.DiscardedAt)
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if len(out.Args) == 0 {
		out.Args = json.RawMessage("{}")
	}
	out.Errors = make([]jobs.AttemptError, len(j.Errors))
	for i, e := range j.Errors {
		out.Errors[i] = jobs.AttemptError{Attempt: e.Attempt, At: e.At.UTC(), Error: e.Error, Node: e.Node}
	}
	return &out
}

// APIList answers GET /api/jobs?state=&queue=&kind=&q=&limit=&cursor= with
// {"items":[job…],"next_cursor"}; state may list several, comma-separated;
// with a search query q, see apiSearch.
func (h *Jobs) APIList(c echo.Context) error {
	q, err := parseJobsQuery(c, jobs.DefaultListLimit, true)
	if err != nil {
		return err
	}
	if len(q.terms) > 0 {
		return h.apiSearch(c, q)
	}
	page, err := jobs.List(c.Request().Context(), h.Reader, q.params)
	if err != nil {
		return err
	}
	items := jsonItems(page.Jobs, jobJSON)
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
		return showAs(err, fmt.Sprintf("job %d not found", id))
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
			return err
		}
		return c.JSON(http.StatusOK, jobJSON(j))
	}
}

// BulkRequest is the body of POST /api/jobs/bulk: an action and either
// the ids of the jobs to act on or a filter (the contract's two shapes).
type BulkRequest struct {
	Action string `json:"action"`
	// IDs are the jobs to act on, at once; present (even empty) when the
	// body has "ids".
	IDs []int64 `json:"ids"`
	// Filter acts on every job it matches instead, in the background, as
	// POST /api/jobs/bulk-filter does.
	Filter *BulkFilter `json:"filter"`
	// DryRun, with a filter, only counts.
	DryRun bool `json:"dry_run"`
}

// BulkFilter is the filter of POST /api/jobs/bulk.
type BulkFilter struct {
	// State lists states, comma-separated; Queue, Kind and Q (a search
	// query) as in GET /api/jobs.
	State string `json:"state"`
	Queue string `json:"queue"`
	Kind  string `json:"kind"`
	Q     string `json:"q"`
	// All is required to act on every job: a filter that sets no state,
	// queue, kind or q is refused (422) without it.
	All bool `json:"all"`
}

// APIBulk answers POST /api/jobs/bulk. With {"action":"cancel|retry|delete",
// "ids":[…]}: 200 {"action","requested","changed","not_found","refused"};
// jobs whose state does not allow the action (refused, with their state),
// or that do not exist (not_found), are left as they are. With
// {"action", "filter":{"state","queue","kind","q","all"}, "dry_run"}: the
// action on every job the filter matches, as POST /api/jobs/bulk-filter
// answers it (202 and a status_url; with dry_run, 200 and the count).
// Both ids and filter, or neither, is a 422.
func (h *Jobs) APIBulk(c echo.Context) error {
	var req BulkRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.IDs != nil && req.Filter != nil:
		return invalid(`send either "ids" (the jobs to act on) or "filter" (every job it matches), not both`)
	case req.Filter != nil:
		f := req.Filter
		return h.apiActOnFilter(c, BulkFilterRequest{Action: req.Action, State: f.State, Queue: f.Queue, Kind: f.Kind,
			Q: f.Q, All: f.All, DryRun: req.DryRun}, `send "filter": {"all": true}`)
	case req.IDs == nil:
		return invalid(`send "ids" (the jobs to act on, e.g. {"action":"retry","ids":[1,2]}) or "filter" ` +
			`(every job it matches, e.g. {"action":"retry","filter":{"state":"discarded"}})`)
	case req.DryRun:
		return invalid(`"dry_run" counts what a "filter" matches: with "ids", leave it out`)
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
	sel, err := h.bulk(c.Request().Context(), a, ids)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, bulkAnswer(a, len(ids), sel))
}

// BulkAnswer is the answer of POST /api/jobs/bulk with ids.
type BulkAnswer struct {
	Action    jobAction `json:"action"`
	Requested int       `json:"requested"`
	Changed   int       `json:"changed"`
	// NotFound are the ids of no job; Refused the jobs left alone because
	// of their state.
	NotFound []int64          `json:"not_found"`
	Refused  []RefusedJobJSON `json:"refused"`
}

// RefusedJobJSON is a job a bulk action left alone, with its state.
type RefusedJobJSON struct {
	ID    int64  `json:"id"`
	State string `json:"state"`
}

func bulkAnswer(a jobAction, requested int, sel jobs.Selection) BulkAnswer {
	out := BulkAnswer{Action: a, Requested: requested, Changed: len(sel.Changed),
		NotFound: append([]int64{}, sel.NotFound...), Refused: []RefusedJobJSON{}}
	for _, r := range sel.Refused {
		out.Refused = append(out.Refused, RefusedJobJSON{ID: r.ID, State: string(r.State)})
	}
	return out
}

// QueueJSON is a queue in the JSON API.
type QueueJSON struct {
	Name    string         `json:"name"`
	Limit   int            `json:"limit"`
	Running int            `json:"running"`
	Paused  bool           `json:"paused"`
	Counts  map[string]int `json:"counts"`
	// Nodes is how many nodes run the queue, at Limit each.
	Nodes int `json:"nodes"`
}

func queueJSON(q jobs.QueueInfo) QueueJSON {
	out := QueueJSON{Name: q.Name, Limit: q.Limit, Running: q.Running, Nodes: q.Nodes, Paused: q.Paused, Counts: map[string]int{}}
	for _, s := range jobs.States {
		out.Counts[string(s)] = q.Counts[s]
	}
	return out
}

// APIQueues answers GET /api/queues with every queue.
func (h *Jobs) APIQueues(c echo.Context) error {
	return allJSON(c, h.Engine.Queues, queueJSON)
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
	return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("unknown queue %s", quoted(name)))
}
