package handlers

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// Extraterrestrials serves the Phone Home page, its fragments and its API.
type Extraterrestrials struct {
	Store *store.Store
	Views *views.Views
	Hub   hub
	// PhoneHome enqueues the calls and says how many.
	PhoneHome func(ctx context.Context) (int, error)
	// AnswerRate and MaxAttempts are shown on the page.
	AnswerRate  float64
	MaxAttempts int
	Version     string
}

// Routes registers the page, its fragments and the JSON API.
func (h *Extraterrestrials) Routes(e *echo.Echo) {
	e.GET("/", h.Page)
	e.GET("/extraterrestrials/rows", h.Rows)
	e.POST("/phone-home", h.PhoneHomeForm)
	e.GET("/api/extraterrestrials", h.List)
	e.POST("/api/phone-home", h.PhoneHomeAPI)
}

// listQuery is the parsed ?status=&q=&limit=&cursor= of a listing.
type listQuery struct {
	filter store.ExtraterrestrialFilter
	status string
}

func parseListQuery(c echo.Context, defaultLimit int) (listQuery, error) {
	lq := listQuery{filter: store.ExtraterrestrialFilter{Limit: defaultLimit}}
	if s := c.QueryParam("status"); s != "" {
		st, err := store.ParseStatus(s)
		if err != nil {
			return lq, invalid(err.Error())
		}
		lq.filter.Status = &st
		lq.status = s
	}
	f := &lq.filter
	err := parsePaging(c, strings.TrimSpace(c.QueryParam("q")), &f.Query, &f.Limit, &f.After)
	return lq, err
}

// urlWith builds path?… keeping the filter and setting the cursor.
func (lq listQuery) urlWith(path string, cursor store.Cursor) string {
	return pageURL(path, [][2]string{{"status", lq.status}}, lq.filter.Query, cursor)
}

// pageSize is how many rows a page shows.
const pageSize = 100

// Page renders the extraterrestrials, filtered and paged, with the id of the
// last event they reflect so the live stream can resume from there.
func (h *Extraterrestrials) Page(c echo.Context) error {
	return renderWith(c, h.Views, views.PageExtraterrestrials, h.listed)
}

// listed is the page the request's filter and cursor select.
func (h *Extraterrestrials) listed(c echo.Context) (views.ExtraterrestrialsPage, error) {
	lq, l, err := readListing(c, h.Hub, live.ExtraterrestrialsStream, pageSize, parseListQuery, h.list)
	if err != nil {
		return views.ExtraterrestrialsPage{}, err
	}
	counts, err := h.Store.CountByStatus(c.Request().Context())
	if err != nil {
		return views.ExtraterrestrialsPage{}, err
	}
	p := views.ExtraterrestrialsPage{
		Layout:       views.Layout{Nav: "extraterrestrials", Version: h.Version},
		Rows:         live.ExtraterrestrialViews(l.rows),
		Counts:       live.StatusCountsView(counts),
		LastEventID:  l.lastID,
		Query:        lq.filter.Query,
		StatusFilter: lq.status,
		RowsURL:      lq.urlWith("/extraterrestrials/rows", lq.filter.After),
		AnswerRate:   h.AnswerRate,
		MaxAttempts:  h.MaxAttempts,
	}
	if !l.next.IsZero() {
		p.NextURL = lq.urlWith("/", l.next)
	}
	ids := make([]int64, len(l.rows))
	for i, et := range l.rows {
		ids[i] = et.ID
	}
	p.StreamURL = live.StreamURL(live.ExtraterrestrialsStream, l.lastID, ids)
	return p, nil
}

// list reads one page of the listing.
func (h *Extraterrestrials) list(ctx context.Context, lq listQuery) ([]store.Extraterrestrial, store.Cursor, error) {
	return h.Store.ListExtraterrestrials(ctx, lq.filter)
}

// Rows renders just the table body and the counts, for the page to reload
// after a resync event.
func (h *Extraterrestrials) Rows(c echo.Context) error {
	p, err := h.listed(c)
	if err != nil {
		return err
	}
	return fragments(c, h.Views,
		views.Part{Name: views.PartialETRows, Data: p},
		views.Part{Name: views.PartialETCounts, Data: views.Counts{C: p.Counts, OOB: true}})
}

// ExtraterrestrialJSON is an extraterrestrial in the JSON API.
type ExtraterrestrialJSON struct {
	ID                   int64      `json:"id"`
	Name                 string     `json:"name"`
	CommunicationStatus  string     `json:"communication_status"`
	CommunicationAttempt int        `json:"communication_attempt"`
	LastAttemptAt        *time.Time `json:"last_communication_attempt_at"`
}

func extraterrestrialJSON(et store.Extraterrestrial) ExtraterrestrialJSON {
	j := ExtraterrestrialJSON{
		ID:                   et.ID,
		Name:                 et.Name,
		CommunicationStatus:  string(et.CommunicationStatus),
		CommunicationAttempt: et.CommunicationAttempt,
	}
	j.LastAttemptAt = utcOrNil(et.LastAttemptAt)
	return j
}

// List answers GET /api/extraterrestrials.
func (h *Extraterrestrials) List(c echo.Context) error {
	return listAPI(c, h.Hub, live.ExtraterrestrialsStream, parseListQuery, h.list, extraterrestrialJSON)
}

// PhoneHomeAPI answers POST /api/phone-home with {"enqueued": N}.
func (h *Extraterrestrials) PhoneHomeAPI(c echo.Context) error {
	n, err := h.PhoneHome(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int{"enqueued": n})
}

// PhoneHomeForm is the page's button: htmx gets a flash fragment; a browser
// without JavaScript is sent back to the page.
func (h *Extraterrestrials) PhoneHomeForm(c echo.Context) error {
	n, err := h.PhoneHome(c.Request().Context())
	if err != nil {
		return err
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	return fragments(c, h.Views, views.Part{Name: views.PartialFlash, Data: views.Flash{Message: views.PhoneHomeMessage(n)}})
}
