package handlers

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/store"
)

// maxQueryLength bounds a search's q, in characters.
const maxQueryLength = 100

// paging is the ?q=&limit=&cursor= every listing of the store shares.
type paging struct {
	query string
	limit int // 0: the listing's default
	after store.Cursor
}

// parsePaging reads q (the caller trims it or not), limit (1–1000) and
// the cursor, answering 400 for what is malformed and 422 for what is out
// of range.
func parsePaging(c echo.Context, q string) (paging, error) {
	p := paging{query: q}
	if len([]rune(q)) > maxQueryLength {
		return p, invalid("q is longer than 100 characters")
	}
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, badRequest("limit must be a whole number")
		}
		if n < 1 || n > 1000 {
			return p, invalid("limit must be between 1 and 1000")
		}
		p.limit = n
	}
	cur, err := store.ParseCursor(c.QueryParam("cursor"))
	if err != nil {
		return p, badRequest(err.Error())
	}
	p.after = cur
	return p, nil
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
