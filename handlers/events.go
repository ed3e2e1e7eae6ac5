package handlers

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
)

// Events serves GET /events?stream=NAME.
type Events struct {
	Hub hub
	// Resolve, when set, is asked about a stream the hub does not know yet
	// (such as pet-42): it registers the stream with the hub and returns
	// true when the name is valid, false for a 404.
	Resolve func(ctx context.Context, stream string) (bool, error)
}

// Routes registers the event stream.
func (h *Events) Routes(e *echo.Echo) {
	e.GET("/events", h.Stream)
}

// Stream streams one named stream. A client resumes with the Last-Event-ID
// header (EventSource sends it on reconnect) or ?last_event_id= (the id a
// page was rendered at); the header wins. ?ids=1,2,3 asks for only the
// events about those rows (and those about no row, such as counts); an
// empty ids= asks for the latter only; without ids, every event.
func (h *Events) Stream(c echo.Context) error {
	name := c.QueryParam("stream")
	if name == "" {
		return badRequest("missing ?stream=: one of extraterrestrials, jobs, pets, pet-{id}, stats")
	}
	after, err := lastEventID(c.Request())
	if err != nil {
		return err
	}
	if h.Resolve != nil && !h.Hub.Has(name) {
		ok, err := h.Resolve(c.Request().Context(), name)
		if err != nil {
			return err
		}
		if !ok {
			return echo.NewHTTPError(http.StatusNotFound, "unknown stream "+strconv.Quote(name))
		}
	}
	keys, err := parseIDs(c.Request())
	if err != nil {
		return err
	}
	if IsHead(c.Request()) {
		// HEAD: the stream's status and headers, without the stream.
		if !h.Hub.Has(name) {
			return echo.NewHTTPError(http.StatusNotFound, "unknown stream "+strconv.Quote(name))
		}
		c.Response().Header().Set(echo.HeaderContentType, "text/event-stream")
		c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
		return c.NoContent(http.StatusOK)
	}
	if keys != nil {
		err = h.Hub.ServeKeys(c.Response(), c.Request(), name, after, keys)
	} else {
		err = h.Hub.Serve(c.Response(), c.Request(), name, after)
	}
	switch {
	case errors.Is(err, events.ErrUnknownStream):
		return echo.NewHTTPError(http.StatusNotFound, "unknown stream "+strconv.Quote(name))
	case errors.Is(err, events.ErrClosed):
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	}
	return err
}

func lastEventID(r *http.Request) (int64, error) {
	raw := r.Header.Get("Last-Event-ID")
	source := "Last-Event-ID"
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
		source = "last_event_id"
	}
	if raw == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 0 {
		return 0, badRequest(source + " must be a non-negative whole number")
	}
	return id, nil
}

// parseIDs reads ?ids=1,2,3: nil when absent, empty (not nil) when given
// with no ids.
func parseIDs(r *http.Request) ([]int64, error) {
	q := r.URL.Query()
	if !q.Has("ids") {
		return nil, nil
	}
	raw := q.Get("ids")
	keys := []int64{}
	if raw == "" {
		return keys, nil
	}
	parts := strings.Split(raw, ",")
	if len(parts) > events.MaxKeys {
		return nil, invalid("ids lists more than " + strconv.Itoa(events.MaxKeys) + " ids")
	}
	for _, p := range parts {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			return nil, badRequest("ids must be positive whole numbers separated by commas")
		}
		keys = append(keys, id)
	}
	return keys, nil
}
