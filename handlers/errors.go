package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// ErrorHandler is the one error path: handlers return errors, and this maps
// them to a status and answers JSON {"error": …} on the API and the event
// stream, an HTML page elsewhere. Only server errors are logged.
func ErrorHandler(logger *slog.Logger, v *views.Views, version string) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, msg := classify(err)
		if status >= 500 {
			logger.Error("request failed", "method", c.Request().Method, "uri", RedactURI(c.Request().RequestURI),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
		}
		if wantsJSON(c.Request()) {
			_ = c.JSON(status, map[string]string{"error": msg})
			return
		}
		page, rerr := v.Page("error", views.ErrorPage{
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

// classify maps an error to an HTTP status and a message fit to show.
func classify(err error) (int, string) {
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		msg, ok := he.Message.(string)
		if !ok {
			msg = http.StatusText(he.Code)
		}
		if he.Code == http.StatusRequestEntityTooLarge {
			msg = "request body too large (at most 1 MiB)"
		}
		return he.Code, msg
	case errors.Is(err, store.ErrNotFound), errors.Is(err, jobs.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, context.Canceled):
		return 499, "request cancelled"
	}
	return http.StatusInternalServerError, "internal error: the server log has the details"
}

// badRequest is a 400 for malformed input.
func badRequest(msg string) error { return echo.NewHTTPError(http.StatusBadRequest, msg) }

// invalid is a 422 for a well-formed value that is not allowed.
func invalid(msg string) error { return echo.NewHTTPError(http.StatusUnprocessableEntity, msg) }
