package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// The one error path. Handlers return errors; ErrorHandler answers them:
// the status and the message come from errorTable, and the form of the
// answer from the request: JSON {"error": …} on the API and the event
// stream; a flash message for a refused htmx form (its status kept, and
// marked with FlashHeader so that app.js swaps it); the page again with the
// message for a refused plain form whose handler said how to draw it
// (refused); else the error page. Only server errors are logged.

// errorTable maps what the app's parts refuse to HTTP statuses, first
// match wins; anything else is a 500.
var errorTable = []struct {
	status int
	match  func(error) bool
}{
	{http.StatusNotFound, is(store.ErrNotFound, jobs.ErrNotFound, jobs.ErrUnknownQueue, jobs.ErrUnknownCron)},
	{http.StatusConflict, is(jobs.ErrStateConflict)},
	{http.StatusBadRequest, is(jobs.ErrListParams)},
	{http.StatusUnprocessableEntity, as[*pets.ValidationError]},
	{http.StatusForbidden, func(err error) bool {
		var re *pets.RuleError
		return errors.As(err, &re) && (errors.Is(re.Rule, pets.ErrNotYours) || errors.Is(re.Rule, pets.ErrOwnPet))
	}},
	// Every other rule of LivePet: a dead or unwatched pet, no treats left.
	{http.StatusConflict, as[*pets.RuleError]},
	{499, is(context.Canceled)},
	{http.StatusServiceUnavailable, databaseUnavailable},
}

func is(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
}

func as[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}

// classify maps an error to an HTTP status and a message fit to show.
func classify(err error) (int, string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, ok := he.Message.(string)
		if !ok {
			msg = http.StatusText(he.Code)
		}
		if he.Code == http.StatusRequestEntityTooLarge {
			msg = "request body too large (at most 1 MiB)"
		}
		return he.Code, msg
	}
	for _, row := range errorTable {
		if !row.match(err) {
			continue
		}
		var s *shown
		switch {
		case errors.As(err, &s):
			return row.status, s.msg
		case row.status == 499:
			return row.status, "request cancelled"
		case row.status == http.StatusServiceUnavailable:
			return row.status, unavailableMessage
		}
		return row.status, message(err)
	}
	return http.StatusInternalServerError, "internal error: the server log has the details"
}

// message is what the person is told: a LivePet refusal's own message,
// else the error's text.
func message(err error) string {
	var re *pets.RuleError
	var ve *pets.ValidationError
	switch {
	case errors.As(err, &ve):
		return ve.Message
	case errors.As(err, &re):
		return re.Message
	}
	return err.Error()
}

// shown gives an error the message to show in its place ("no pet 42"); its
// status is still the wrapped error's.
type shown struct {
	msg string
	err error
}

func (s *shown) Error() string { return s.msg }
func (s *shown) Unwrap() error { return s.err }

// showAs is err shown as msg when it is a not-found (an unknown row, job,
// queue or periodic job): the subject named, not the table.
func showAs(err error, msg string) error {
	if is(store.ErrNotFound, jobs.ErrNotFound, jobs.ErrUnknownQueue, jobs.ErrUnknownCron)(err) {
		return &shown{msg: msg, err: err}
	}
	return err
}

// maxEchoed is how many characters of a name or value a message repeats.
const maxEchoed = 100

// quoted is s as a message repeats it: quoted, and cut to maxEchoed
// characters with an ellipsis (a 5,000-character queue name is not sent
// back whole).
func quoted(s string) string {
	if utf8.RuneCountInString(s) > maxEchoed {
		s = string([]rune(s)[:maxEchoed]) + "…"
	}
	return strconv.Quote(s)
}

// refusal is a refused form with the page to answer a plain browser with.
type refusal struct {
	err  error
	page func(status int, flash *views.Flash) error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// refused marks err as a refused form: htmx gets the message as a flash;
// a plain browser gets page (when not nil): the page again, with the
// message as its flash and the error's status; else the error page.
func refused(err error, page func(status int, flash *views.Flash) error) error {
	if err == nil {
		return nil
	}
	return &refusal{err: err, page: page}
}

// isHtmx reports a request made by htmx, answered with a fragment.
func isHtmx(c echo.Context) bool { return c.Request().Header.Get("HX-Request") != "" }

// isForm reports a form posted from one of the app's pages.
func isForm(c echo.Context) bool {
	return c.Request().Method == http.MethodPost && !wantsJSON(c.Request())
}

// ErrorHandler is Echo's error handler: the one error path (see above).
func ErrorHandler(logger *slog.Logger, v *views.Views, version string) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, msg := classify(err)
		if status == http.StatusServiceUnavailable {
			// Expected while the database is away; the pool reconnects.
			c.Response().Header().Set("Retry-After", unavailableRetryAfter)
			logger.Warn("database unavailable", "method", c.Request().Method, "uri", RedactURI(c.Request().RequestURI), "err", err)
		} else if status >= 500 {
			logger.Error("request failed", "method", c.Request().Method, "uri", RedactURI(c.Request().RequestURI),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
		}
		if wantsJSON(c.Request()) {
			_ = c.JSON(status, map[string]string{"error": msg})
			return
		}
		var r *refusal
		if status < 500 && isForm(c) && errors.As(err, &r) {
			flash := &views.Flash{Message: msg, Error: true}
			// htmx swaps only successful answers unless told otherwise: the
			// message keeps its status, and the FlashHeader tells app.js to
			// swap it into the form's flash region.
			if isHtmx(c) {
				c.Response().Header().Set(FlashHeader, "error")
				if fragmentsWith(c, v, status, views.Part{Name: views.PartialFlash, Data: flash}) == nil {
					return
				}
			} else if r.page != nil && r.page(status, flash) == nil {
				return
			}
		}
		page, rerr := v.Page(views.PageError, views.ErrorPage{
			Layout: views.Layout{Version: version},
			Status: status, StatusText: http.StatusText(status), Message: msg,
		})
		if rerr != nil {
			logger.Error("render error page", "err", rerr)
			_ = c.String(status, msg)
			return
		}
		_ = c.HTMLBlob(status, page)
	}
}

// render answers a whole page.
func render(c echo.Context, v *views.Views, status int, name views.Page, data any) error {
	html, err := v.Page(name, data)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// renderWith renders page name with the data build makes of the request.
func renderWith[T any](c echo.Context, v *views.Views, name views.Page, build func(echo.Context) (T, error)) error {
	data, err := build(c)
	if err != nil {
		return err
	}
	return render(c, v, http.StatusOK, name, data)
}

// FlashHeader marks a refused htmx form's answer: a flash message with the
// refusal's own status (4xx), which static/app.js swaps like a success.
const FlashHeader = "Phonehome-Flash"

// fragments answers partials, one after the other.
func fragments(c echo.Context, v *views.Views, parts ...views.Part) error {
	return fragmentsWith(c, v, http.StatusOK, parts...)
}

// fragmentsWith answers partials with status.
func fragmentsWith(c echo.Context, v *views.Views, status int, parts ...views.Part) error {
	html, err := v.Fragments(parts...)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// badRequest is a 400 for malformed input.
func badRequest(msg string) error { return echo.NewHTTPError(http.StatusBadRequest, msg) }

// invalid is a 422 for a well-formed value that is not allowed.
func invalid(msg string) error { return echo.NewHTTPError(http.StatusUnprocessableEntity, msg) }

// notFound is a 404 naming what is not there.
func notFound(msg string) error { return echo.NewHTTPError(http.StatusNotFound, msg) }
