package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/views"
)

// The cron page (/jobs/cron) and its API (/api/cron): every periodic job
// with its schedule in words, last and next run and the jobs it inserted;
// Run now, pause and resume. Live over the jobs stream's "cron" events.

// CronPage renders the cron page.
func (h *Jobs) CronPage(c echo.Context) error {
	return h.cronPage(c, http.StatusOK, nil)
}

func (h *Jobs) cronPage(c echo.Context, status int, flash *views.Flash) error {
	// The event id first: anything published after it is resent on connect.
	lastID := h.Hub.StreamLastID(live.JobsStream)
	table, err := live.CronTable(c.Request().Context(), h.Engine, h.Reader, time.Now())
	if err != nil {
		return err
	}
	return render(c, h.Views, status, views.PageCron, views.CronPage{
		Layout: views.Layout{Nav: "cron", Version: h.Version},
		Table:  table,
		// No rows: only the events about none (the cron table among them).
		StreamURL: h.streamURL(lastID, []int64{}),
		TableURL:  h.url("/cron/table"),
		Flash:     flash,
	})
}

// CronTable renders the cron table, which the page reloads after a resync.
func (h *Jobs) CronTable(c echo.Context) error {
	table, err := live.CronTable(c.Request().Context(), h.Engine, h.Reader, time.Now())
	if err != nil {
		return err
	}
	return fragments(c, h.Views, views.Part{Name: views.PartialCronTable, Data: table})
}

// cronAction runs run, pause or resume on the periodic job name. A run
// whose unique options found a job in flight is a 409 naming it.
func (h *Jobs) cronAction(ctx context.Context, name, action string) (jobs.InsertResult, error) {
	var res jobs.InsertResult
	var err error
	switch action {
	case "run":
		res, err = h.Engine.RunCron(ctx, name)
		if err == nil && res.Duplicate {
			err = &shown{msg: fmt.Sprintf("%s was not run: its job %d is still waiting or running (the entry is unique)", name, res.ID),
				err: jobs.ErrStateConflict}
		}
	case "pause":
		err = h.Engine.PauseCron(ctx, name)
	case "resume":
		err = h.Engine.ResumeCron(ctx, name)
	default:
		return res, notFound(fmt.Sprintf("no cron action %s: run, pause or resume", quoted(action)))
	}
	if errors.Is(err, jobs.ErrUnknownCron) {
		return res, &shown{msg: fmt.Sprintf("no periodic job %s", quoted(name)), err: err}
	}
	if err == nil && action != "run" && h.Feed != nil {
		// A run is a job change, which the feed hears of from the engine.
		h.Feed.CronChanged()
	}
	return res, err
}

// CronForm is the cron page's Run now, Pause and Resume buttons. htmx gets
// a message (the table follows live, as on every other open page); a
// plain form goes back to the cron page; a refusal re-renders it with the
// reason.
func (h *Jobs) CronForm(c echo.Context) error {
	name, action := c.Param("name"), c.Param("action")
	res, err := h.cronAction(c.Request().Context(), name, action)
	if err != nil {
		return refused(err, func(status int, flash *views.Flash) error {
			return h.cronPage(c, status, flash)
		})
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, h.url("/cron"))
	}
	return fragments(c, h.Views, views.Part{Name: views.PartialFlash,
		Data: views.Flash{Message: views.CronMessage(name, action, res.ID, res.Duplicate)}})
}

// CronJSON is a periodic job in the JSON API.
type CronJSON struct {
	Name        string     `json:"name"`
	Spec        string     `json:"spec"`
	Description string     `json:"description"`
	LastRunAt   *time.Time `json:"last_run_at"`
	NextRunAt   *time.Time `json:"next_run_at"`
	Paused      bool       `json:"paused"`
	// Added to the contract's fields: the spec in words, what it inserts,
	// and the ids of its last jobs, newest first.
	Schedule string  `json:"schedule"`
	Kind     string  `json:"kind"`
	Queue    string  `json:"queue"`
	JobIDs   []int64 `json:"job_ids"`
}

func cronJSON(e jobs.CronEntry) CronJSON {
	return CronJSON{Name: e.Name, Spec: e.Spec, Description: e.Description, LastRunAt: utcOf(e.LastRunAt),
		NextRunAt: utcOf(e.NextRunAt), Paused: e.Paused, Schedule: jobs.DescribeSpec(e.Spec), Kind: e.Kind,
		Queue: e.Queue, JobIDs: e.Recent}
}

// APICron answers GET /api/cron with every periodic job.
func (h *Jobs) APICron(c echo.Context) error {
	return allJSON(c, h.Engine.CronEntries, cronJSON)
}

// APICronAction answers POST /api/cron/{name}/run with 201 and the job it
// inserted (409 when its unique options found one in flight), and
// …/pause and …/resume with the entry after the change; 404 for an
// unknown name or action.
func (h *Jobs) APICronAction(c echo.Context) error {
	ctx := c.Request().Context()
	name, action := c.Param("name"), c.Param("action")
	res, err := h.cronAction(ctx, name, action)
	if err != nil {
		return err
	}
	if action == "run" {
		j, err := jobs.Get(ctx, h.Reader, res.ID)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, jobJSON(j))
	}
	entries, err := h.Engine.CronEntries(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name == name {
			return c.JSON(http.StatusOK, cronJSON(e))
		}
	}
	return notFound(fmt.Sprintf("no periodic job %s", quoted(name)))
}
