package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// ExtraterrestrialsStream is the event stream of every status change.
const ExtraterrestrialsStream = "extraterrestrials"

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

// ExtraterrestrialsPage is the data of the extraterrestrials page.
type ExtraterrestrialsPage struct {
	views.Layout
	Rows   []store.Extraterrestrial
	Counts store.StatusCounts
	// LastEventID is the id of the last event the page reflects: the live
	// stream resumes after it.
	LastEventID int64
	// StreamURL is the live stream of just the rows shown (and the counts).
	StreamURL    string
	Query        string
	StatusFilter string
	RowsURL      string
	NextURL      string
	AnswerRate   float64
	MaxAttempts  int
	Flash        *Flash
}

// Flash is a one-line message above the table.
type Flash struct {
	Message string
	Error   bool
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
	q := c.QueryParam("q")
	pg, err := parsePaging(c, q)
	if err != nil {
		return lq, err
	}
	lq.filter.Query, lq.filter.After = pg.query, pg.after
	if pg.limit > 0 {
		lq.filter.Limit = pg.limit
	}
	return lq, nil
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
	lq, err := parseListQuery(c, pageSize)
	if err != nil {
		return err
	}
	page, err := h.page(c.Request().Context(), lq)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, page)
}

func (h *Extraterrestrials) page(ctx context.Context, lq listQuery) (ExtraterrestrialsPage, error) {
	// Take the event id first: anything published after it is resent on connect.
	lastID := h.Hub.LastID()
	rows, next, err := h.Store.ListExtraterrestrials(ctx, lq.filter)
	if err != nil {
		return ExtraterrestrialsPage{}, err
	}
	counts, err := h.Store.CountByStatus(ctx)
	if err != nil {
		return ExtraterrestrialsPage{}, err
	}
	p := ExtraterrestrialsPage{
		Layout:       views.Layout{Nav: "extraterrestrials", Version: h.Version},
		Rows:         rows,
		Counts:       counts,
		LastEventID:  lastID,
		Query:        lq.filter.Query,
		StatusFilter: lq.status,
		RowsURL:      lq.urlWith("/extraterrestrials/rows", lq.filter.After),
		AnswerRate:   h.AnswerRate,
		MaxAttempts:  h.MaxAttempts,
	}
	if !next.IsZero() {
		p.NextURL = lq.urlWith("/", next)
	}
	p.StreamURL = streamURL(lastID, rows)
	return p, nil
}

// streamURL is the event stream of a page: resumed after lastID, and only
// the rows it shows, so events about the other rows cost it nothing.
func streamURL(lastID int64, rows []store.Extraterrestrial) string {
	b := make([]byte, 0, 64+len(rows)*8)
	b = append(b, "/events?stream="+ExtraterrestrialsStream+"&last_event_id="...)
	b = strconv.AppendInt(b, lastID, 10)
	b = append(b, "&ids="...)
	for i, et := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, et.ID, 10)
	}
	return string(b)
}

func (h *Extraterrestrials) render(c echo.Context, status int, p ExtraterrestrialsPage) error {
	html, err := h.Views.Page("extraterrestrials", p)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// Rows renders just the table body and the counts, for the page to reload
// after a resync event.
func (h *Extraterrestrials) Rows(c echo.Context) error {
	lq, err := parseListQuery(c, pageSize)
	if err != nil {
		return err
	}
	p, err := h.page(c.Request().Context(), lq)
	if err != nil {
		return err
	}
	rows, err := h.Views.Fragment("et_rows", p)
	if err != nil {
		return err
	}
	counts, err := h.Views.Fragment("et_counts", views.Counts{C: p.Counts, OOB: true})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, append(rows, counts...))
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
	if !et.LastAttemptAt.IsZero() {
		t := et.LastAttemptAt.UTC()
		j.LastAttemptAt = &t
	}
	return j
}

// List answers GET /api/extraterrestrials.
func (h *Extraterrestrials) List(c echo.Context) error {
	lq, err := parseListQuery(c, 50)
	if err != nil {
		return err
	}
	rows, next, err := h.Store.ListExtraterrestrials(c.Request().Context(), lq.filter)
	if err != nil {
		return err
	}
	items := make([]ExtraterrestrialJSON, len(rows))
	for i, et := range rows {
		items[i] = extraterrestrialJSON(et)
	}
	return listJSON(c, items, next)
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
	if c.Request().Header.Get("HX-Request") == "" {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	msg := fmt.Sprintf("Phoning home: %s calls enqueued.", views.Thousands(n))
	switch n {
	case 0:
		msg = "Nobody left to call: everyone is phoning home already or has a space taxi on the way."
	case 1:
		msg = "Phoning home: 1 call enqueued."
	}
	html, err := h.Views.Fragment("flash", Flash{Message: msg})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, html)
}
