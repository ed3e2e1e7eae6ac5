package handlers

// The job list's search box (q=): parsed with jobs.ParseSearch, answered by
// jobs.Search (a bounded scan with a cursor), on the page and in the API.

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/views"
)

// searchError is a query that does not parse: 400 with the parser's
// message, and on the page the form again with it.
type searchError struct {
	query string
	err   error
}

func (e *searchError) Error() string { return e.err.Error() }

// Unwrap makes the error a 400 for the one error path (an echo HTTPError).
func (e *searchError) Unwrap() error { return badRequest(e.err.Error()) }

// parseSearch parses q into the query's terms.
func (q *jobsQuery) parseSearch(s string) error {
	terms, err := jobs.ParseSearch(s)
	if err != nil {
		return &searchError{query: s, err: err}
	}
	q.search, q.terms = s, terms
	if len(terms) == 0 {
		q.search = ""
	}
	return nil
}

// listOrSearch is the page of jobs q selects: List without a query, Search
// with one (and what the page says about it).
func (h *Jobs) listOrSearch(ctx context.Context, q jobsQuery) (jobs.ListPage, views.SearchInfo, error) {
	if len(q.terms) == 0 {
		page, err := jobs.List(ctx, h.Reader, q.params)
		return page, views.SearchInfo{}, err
	}
	t0 := time.Now()
	sp, err := jobs.Search(ctx, h.Reader, jobs.SearchParams{List: q.params, Terms: q.terms})
	if err != nil {
		return jobs.ListPage{}, views.SearchInfo{}, err
	}
	info := views.SearchInfo{Query: q.search, Note: views.NewSearchNote(sp, time.Since(t0))}
	return jobs.ListPage{Jobs: sp.Jobs, NextCursor: sp.NextCursor}, info, nil
}

// searchRefused draws the list page unsearched, with the query in the box
// and why it was refused (400).
func (h *Jobs) searchRefused(c echo.Context, se *searchError) error {
	v := c.Request().URL.Query()
	v.Del("q")
	v.Del("cursor")
	p, err := h.pageAt(c, v)
	if err != nil {
		return err
	}
	p.Search = views.SearchInfo{Query: se.query, Error: se.err.Error()}
	return render(c, h.Views, http.StatusBadRequest, views.PageJobs, p)
}

// apiSearch answers GET /api/jobs with a query q: {"items", "next_cursor",
// "scanned", "stopped"}: the scan reads a bounded number of rows; stopped
// says it answered at that bound, and next_cursor continues below the
// last row it read.
func (h *Jobs) apiSearch(c echo.Context, q jobsQuery) error {
	sp, err := jobs.Search(c.Request().Context(), h.Reader, jobs.SearchParams{List: q.params, Terms: q.terms})
	if err != nil {
		return err
	}
	var next *string
	if sp.NextCursor != "" {
		next = &sp.NextCursor
	}
	return c.JSON(http.StatusOK, map[string]any{
		"items": jsonItems(sp.Jobs, jobJSON), "next_cursor": next, "scanned": sp.Scanned, "stopped": sp.Stopped,
	})
}

// pageAt is the list page for the filter in query (the list's own URL
// parameters), for a page drawn again after a refusal; a filter that does
// not parse draws the unfiltered list.
func (h *Jobs) pageAt(c echo.Context, query url.Values) (views.JobsPage, error) {
	req := c.Request().Clone(c.Request().Context())
	req.URL.RawQuery = query.Encode()
	req.URL.Path = h.route("")
	q, err := parseJobsQuery(c.Echo().NewContext(req, c.Response()), jobsPageSize, false)
	if err != nil {
		q = jobsQuery{}
	}
	return h.page(c.Request().Context(), q)
}
