package handlers

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/store"
)

// maxQueryLength bounds a search's q, in characters.
const maxQueryLength = 100

// parsePaging reads the ?q=&limit=&cursor= every listing of the store
// shares into a listing's filter: q (the caller trims it or not) into
// query, limit (1–1000; the filter's default when absent) and the cursor,
// answering 400 for what is malformed and 422 for what is out of range.
func parsePaging(c echo.Context, q string, query *string, limit *int, after *store.Cursor) error {
	if len([]rune(q)) > maxQueryLength {
		return invalid("q is longer than 100 characters")
	}
	*query = q
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return badRequest("limit must be a whole number")
		}
		if n < 1 || n > 1000 {
			return invalid("limit must be between 1 and 1000")
		}
		*limit = n
	}
	cur, err := store.ParseCursor(c.QueryParam("cursor"))
	if err != nil {
		return badRequest(err.Error())
	}
	*after = cur
	return nil
}

// pageURL is path with the listing's filter values (empty ones left out),
// its search and the cursor of the page to show.
func pageURL(path string, filter [][2]string, query string, cursor store.Cursor) string {
	v := url.Values{}
	for _, kv := range filter {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	if query != "" {
		v.Set("q", query)
	}
	if !cursor.IsZero() {
		v.Set("cursor", cursor.String())
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// apiPageSize is how many items an API listing answers by default.
const apiPageSize = 50

// listing is one page of a store listing, read after the id of the last
// event published: anything published after it is resent to the page when
// it connects with that id.
type listing[R any] struct {
	rows   []R
	next   store.Cursor
	lastID int64
}

// readListing parses the request's filter and paging (size rows unless it
// says) and reads that page.
func readListing[Q, R any](c echo.Context, events hub, stream string, size int, parse func(echo.Context, int) (Q, error),
	list func(context.Context, Q) ([]R, store.Cursor, error)) (Q, listing[R], error) {
	q, err := parse(c, size)
	if err != nil {
		return q, listing[R]{}, err
	}
	l := listing[R]{lastID: events.StreamLastID(stream)}
	l.rows, l.next, err = list(c.Request().Context(), q)
	return q, l, err
}

// listAPI answers an API listing of the store: the page readListing reads,
// each row turned into its JSON by item.
func listAPI[Q, R, J any](c echo.Context, events hub, stream string, parse func(echo.Context, int) (Q, error),
	list func(context.Context, Q) ([]R, store.Cursor, error), item func(R) J) error {
	_, l, err := readListing(c, events, stream, apiPageSize, parse, list)
	if err != nil {
		return err
	}
	return listJSON(c, jsonItems(l.rows, item), l.next)
}

// allJSON answers a listing that is never paged (the queues, the periodic
// jobs): 200 with every row of all, each turned into its JSON by item.
func allJSON[R, J any](c echo.Context, all func(context.Context) ([]R, error), item func(R) J) error {
	rows, err := all(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jsonItems(rows, item))
}

// jsonItems is rows, each turned into its JSON by item. It is never nil, so
// an empty list is answered as [] and not null.
func jsonItems[R, J any](rows []R, item func(R) J) []J {
	items := make([]J, len(rows))
	for i, r := range rows {
		items[i] = item(r)
	}
	return items
}

// utcOrNil is t in UTC for the API, nil (null) for the zero time.
func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// listJSON answers a listing of the store as the API does:
// {"items":[…],"next_cursor"}, the cursor null on the last page.
func listJSON(c echo.Context, items any, next store.Cursor) error {
	var nextCursor *string
	if !next.IsZero() {
		s := next.String()
		nextCursor = &s
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": nextCursor})
}
