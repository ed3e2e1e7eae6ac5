package handlers_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// searchAnswer is GET /api/jobs?q=…'s answer.
type searchAnswer struct {
	Items []struct {
		ID int64 `json:"id"`
	} `json:"items"`
	NextCursor *string `json:"next_cursor"`
	Scanned    int     `json:"scanned"`
	Stopped    bool    `json:"stopped"`
}

// TestJobsSearchPageAndAPI: q= on the page and in the API finds jobs by
// args, combined with the state filter; the page keeps the query in its
// box, its links and its live reload; a bad query is 400, in JSON on the
// API and as the form again with the message on the page.
func TestJobsSearchPageAndAPI(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("Korben"), job("Leeloo"), job("Korben"), job("Ruby"))
	b.setState(t, ids[2], jobs.StateDiscarded)

	q := url.QueryEscape(`args.name:Korben`)
	resp, body := b.do(t, "GET", "/jobs?q="+q, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	if got, want := rowIDs(body), []string{fmt.Sprint(ids[2]), fmt.Sprint(ids[0])}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	for _, want := range []string{`name="q" value="args.name:Korben"`, `href="/jobs?q=args.name%3AKorben&amp;state=discarded"`,
		`hx-get="/jobs/live?q=args.name%3AKorben"`, `id="jobs-filter-act"`, `<input type="hidden" name="q" value="args.name:Korben">`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	_, body = b.do(t, "GET", "/jobs?state=discarded&q="+q, "", nil)
	if got := rowIDs(body); !slices.Equal(got, []string{fmt.Sprint(ids[2])}) {
		t.Errorf("discarded and Korben: rows %v", got)
	}

	// The API pages by cursor through the matches.
	_, body = b.do(t, "GET", "/api/jobs?limit=1&q="+q, "", nil)
	first := decodeInto[searchAnswer](t, body)
	if len(first.Items) != 1 || first.Items[0].ID != ids[2] || first.NextCursor == nil || first.Stopped {
		t.Fatalf("first page %s", body)
	}
	_, body = b.do(t, "GET", "/api/jobs?limit=1&q="+q+"&cursor="+*first.NextCursor, "", nil)
	second := decodeInto[searchAnswer](t, body)
	if len(second.Items) != 1 || second.Items[0].ID != ids[0] {
		t.Fatalf("second page %s", body)
	}

	bad := url.QueryEscape(`args.name:"Korben`)
	resp, body = b.do(t, "GET", "/api/jobs?q="+bad, "", nil)
	if msg := errorOf(t, resp, body, 400); !strings.Contains(msg, "never closed") {
		t.Errorf("API error %q", msg)
	}
	resp, body = b.do(t, "GET", "/jobs?state=discarded&q="+bad, "", nil)
	if resp.StatusCode != 400 {
		t.Fatalf("page with a bad query: %d", resp.StatusCode)
	}
	for _, want := range []string{`id="jobs-search-error"`, "never closed", `value="args.name:&#34;Korben"`, `aria-invalid="true"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the refused page lacks %s", want)
		}
	}
	// The list is drawn at the rest of the filter, unsearched.
	if got := rowIDs(body); !slices.Equal(got, []string{fmt.Sprint(ids[2])}) {
		t.Errorf("the refused page lists %v, want the discarded job", got)
	}
}
