package handlers

// The jobs dashboard's actions: a job's buttons, the list's bulk form and the
// queue controls (their JSON twins are in jobs_api.go).

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

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/views"
)

// ActionForm is a job page's Cancel, Retry or Delete button. htmx gets a
// message and the job's new panel; a plain form is sent back to the job (or
// the list, after a delete); a refused action re-renders the page with the
// reason. Delete deletes only with confirm=1, which the page's htmx form
// sends once hx-confirm has asked; without it (no JavaScript) the answer
// is the question (askDeleteJob).
func (h *Jobs) ActionForm(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	action := jobAction(c.Param("action"))
	if !slices.Contains([]jobAction{actionCancel, actionRetry, actionDelete}, action) {
		return notFound(fmt.Sprintf("no action %s: cancel, retry or delete", quoted(c.Param("action"))))
	}
	if action == actionDelete && c.FormValue("confirm") != "1" {
		return h.askDeleteJob(c, id)
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

// askDeleteJob answers a job's Delete sent without its confirmation with
// the question the page asks with JavaScript: htmx gets it in the flash's
// place, a plain browser the job's page with it (404 for no such job).
func (h *Jobs) askDeleteJob(c echo.Context, id int64) error {
	p, err := h.jobPageData(c, id)
	if err != nil {
		return err
	}
	ask := views.DeleteConfirm{IDs: []int64{id}, Back: h.url("/" + strconv.FormatInt(id, 10))}
	if isHtmx(c) {
		return fragments(c, h.Views, views.Part{Name: views.PartialJobDeleteConfirmOne, Data: ask})
	}
	p.DeleteConfirm = &ask
	return render(c, h.Views, http.StatusOK, views.PageJob, p)
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
		return nil, showAs(err, fmt.Sprintf("job %d not found", id))
	}
	return j, nil
}

// BulkForm is the list's Cancel / Retry / Delete selected buttons: form
// fields action and id (repeated), and for a delete confirm, the number
// of jobs the person agreed to delete. htmx gets a message and the
// affected rows; a plain form goes back to the list; a refused request
// re-renders the list with the reason; a delete without its confirmation
// is answered with the question (askDelete).
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
	if err == nil && action == actionDelete && c.FormValue("confirm") != strconv.Itoa(len(ids)) {
		return h.askDelete(c, backURL, ids)
	}
	var sel jobs.Selection
	if err == nil {
		sel, err = h.bulk(c.Request().Context(), action, ids)
	}
	if err != nil {
		return h.refusedOnList(c, backURL, err)
	}
	msg := views.BulkMessage(string(action), sel, len(ids))
	if !isHtmx(c) {
		if len(sel.Changed) < len(ids) {
			// Say which were not found or refused: the list again, with it.
			return h.listWithFlash(c, backURL, http.StatusOK, &msg)
		}
		return c.Redirect(http.StatusSeeOther, backURL)
	}
	flash, err := h.Views.Fragment(views.PartialFlash, msg)
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

// askDelete answers "Delete selected" sent without its confirmation (or
// with one for another count) with the question, as "Delete all…" asks:
// htmx gets it in the flash's place, a plain browser the list again with
// it. A browser without JavaScript lands here first; with it, jobs.js
// asks and sends the confirmation, so the question is not asked twice.
func (h *Jobs) askDelete(c echo.Context, backURL string, ids []int64) error {
	ask := views.DeleteConfirm{IDs: ids, Back: backURL}
	if isHtmx(c) {
		return fragments(c, h.Views, views.Part{Name: views.PartialJobDeleteConfirm, Data: ask})
	}
	u, _ := url.Parse(backURL)
	p, err := h.pageAt(c, u.Query())
	if err != nil {
		return err
	}
	p.DeleteConfirm = &ask
	return render(c, h.Views, http.StatusOK, views.PageJobs, p)
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
			return nil, badRequest(fmt.Sprintf("job id %s is not a positive whole number", quoted(s)))
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
		return invalid(fmt.Sprintf("action %s is not one of cancel, retry, delete", quoted(string(a))))
	}
	if len(ids) == 0 {
		return invalid("select at least one job")
	}
	if len(ids) > maxBulk {
		return invalid(fmt.Sprintf("at most %d jobs at once", maxBulk))
	}
	return nil
}

// bulk runs action a on the selected ids and says what became of each.
func (h *Jobs) bulk(ctx context.Context, a jobAction, ids []int64) (jobs.Selection, error) {
	if !slices.Contains([]jobAction{actionCancel, actionRetry, actionDelete}, a) {
		return jobs.Selection{}, invalid(fmt.Sprintf("action %s is not one of cancel, retry, delete", quoted(string(a))))
	}
	return h.Engine.ActOnSelection(ctx, jobs.FilterAction(a), ids)
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
	p, err := h.pageAt(c, u.Query())
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
			return 0, badRequest(fmt.Sprintf("limit %s is not a whole number", quoted(s)))
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
		return notFound(fmt.Sprintf("no queue action %s: pause, resume or scale", quoted(action)))
	}
	if err != nil {
		return showAs(err, fmt.Sprintf("unknown queue %s", quoted(name)))
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
