package handlers_test

// The jobs dashboard's pages and forms, through the real router.

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

var jobRowIDs = regexp.MustCompile(`<tr id="job-(\d+)" class="job-row`)

func rowIDs(body string) []string {
	var ids []string
	for _, m := range jobRowIDs.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestJobsPage(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t,
		jobs.InsertParams{Args: dashArgs{Name: `</code><script>alert("x")</script>`}},
		jobs.InsertParams{Args: otherArgs{N: 1}, Opts: jobs.InsertOpts{Queue: "mailers"}},
		job("c"))
	b.setState(t, ids[2], jobs.StateDiscarded)

	resp, body := b.do(t, "GET", "/jobs", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	if got, want := rowIDs(body), []string{fmt.Sprint(ids[2]), fmt.Sprint(ids[1]), fmt.Sprint(ids[0])}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want newest first %v", got, want)
	}
	for _, want := range []string{
		fmt.Sprintf(`sse-connect="/events?stream=jobs&amp;last_event_id=%d&amp;ids=%d,%d,%d"`, 0, ids[2], ids[1], ids[0]),
		`sse-swap="message,counts,queues,throughput"`,
		`hx-trigger="sse:refresh, sse:resync"`,
		`<span id="jobs-n-all" class="tab-n">3</span>`,
		`<span id="jobs-n-available" class="tab-n">2</span>`,
		`<span id="jobs-n-discarded" class="tab-n">1</span>`,
		`href="/jobs?state=discarded"`,
		`<section id="jobs-queues"`,
		`action="/jobs/queues/mailers/pause"`,
		`<section id="jobs-throughput"`,
		`<svg class="chart"`,
		`&lt;/code&gt;&lt;script&gt;`,
		`name="id" value="` + fmt.Sprint(ids[0]) + `" form="jobs-bulk" hx-preserve`,
		`<link rel="stylesheet" href="/static/jobs.css">`,
		`<script src="/static/jobs.js" defer></script>`,
	} {
		if strings.Contains(want, "last_event_id=0") {
			re := regexp.MustCompile(`sse-connect="/events\?stream=jobs&amp;last_event_id=\d+&amp;ids=` + fmt.Sprintf("%d,%d,%d", ids[2], ids[1], ids[0]) + `"`)
			if !re.MatchString(body) {
				t.Errorf("page lacks its keyed stream URL")
			}
			continue
		}
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, `<script>alert`) {
		t.Error("args reach the page unescaped")
	}
	if strings.Contains(body, " style=") || strings.Contains(body, "<script>") {
		t.Error("inline style or script on the page (the CSP forbids them)")
	}

	// Tabs and filters.
	for _, tt := range []struct {
		query string
		want  []int64
	}{
		{"state=discarded", []int64{ids[2]}},
		{"queue=mailers", []int64{ids[1]}},
		{"kind=dash_test&state=available", []int64{ids[0]}},
		{"kind=nope", nil},
	} {
		_, body := b.do(t, "GET", "/jobs?"+tt.query, "", nil)
		var want []string
		for _, id := range tt.want {
			want = append(want, fmt.Sprint(id))
		}
		if got := rowIDs(body); !slices.Equal(got, want) {
			t.Errorf("%s: rows %v, want %v", tt.query, got, want)
		}
	}
	_, body = b.do(t, "GET", "/jobs?state=discarded&queue=default", "", nil)
	if !strings.Contains(body, `href="/jobs?queue=default&amp;state=discarded" aria-current="page"`) {
		t.Error("the current tab keeps the queue filter and is marked current")
	}
	for _, tt := range []struct {
		query  string
		status int
	}{{"state=running", 422}, {"cursor=zzz", 400}} {
		resp, body := b.do(t, "GET", "/jobs?"+tt.query, "", nil)
		if resp.StatusCode != tt.status || !strings.Contains(body, "<!doctype html>") {
			t.Errorf("%s: %d, want an error page with %d", tt.query, resp.StatusCode, tt.status)
		}
	}
}

func TestJobsPagePagesByCursor(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	params := make([]jobs.InsertParams, 120)
	for i := range params {
		params[i] = job(fmt.Sprint(i))
	}
	if _, err := b.engine.InsertMany(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	next := "/jobs"
	pages := 0
	for next != "" {
		_, body := b.do(t, "GET", next, "", nil)
		pages++
		for _, id := range rowIDs(body) {
			if seen[id] {
				t.Fatalf("job %s on two pages", id)
			}
			seen[id] = true
		}
		m := regexp.MustCompile(`<a class="btn" href="([^"]+)">Older →</a>`).FindStringSubmatch(body)
		next = ""
		if m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		if pages > 1 && !strings.Contains(body, `href="/jobs">← Newest</a>`) {
			t.Error("a later page has no link back to the newest")
		}
	}
	if pages != 3 || len(seen) != 120 {
		t.Errorf("%d pages, %d jobs; want 3 pages of all 120", pages, len(seen))
	}
}

func TestJobPageShowsTimelineArgsAndEveryError(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, jobs.InsertParams{Args: dashArgs{Name: "Zorg <3", Fail: true}, Opts: jobs.InsertOpts{MaxAttempts: 3}})
	if err := b.engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the job to be discarded", func() bool { return b.state(t, ids[0]) == jobs.StateDiscarded })

	resp, body := b.do(t, "GET", fmt.Sprintf("/jobs/%d", ids[0]), "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("job page: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`<span class="job-state job-state-discarded">discarded</span>`,
		"attempt 3 of 3",
		`<pre class="job-json">{
  &#34;name&#34;: &#34;Zorg &lt;3&#34;,
  &#34;fail&#34;: true
}</pre>`,
		`<span class="step-label">Inserted</span>`,
		`<span class="step-label">Attempted</span>`,
		`<span class="step-label">Discarded</span>`,
		`Errors <span class="muted">(3)</span>`,
		"Attempt 1 <time", "Attempt 2 <time", "Attempt 3 <time",
		"the line to Zorg &lt;3 is &lt;busy&gt; &amp; dead",
		fmt.Sprintf(`hx-post="/jobs/%d/retry"`, ids[0]),
		fmt.Sprintf(`hx-post="/jobs/%d/delete"`, ids[0]),
		fmt.Sprintf(`&amp;ids=%d"`, ids[0]),
		`hx-trigger="sse:message delay:100ms, sse:refresh, sse:resync"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %s", want)
		}
	}
	if strings.Contains(body, fmt.Sprintf(`/jobs/%d/cancel"`, ids[0])) {
		t.Error("a discarded job offers Cancel")
	}
	if strings.Index(body, "Attempt 3 <time") > strings.Index(body, "Attempt 1 <time") {
		t.Error("errors are not newest first")
	}
	for _, path := range []string{"/jobs/999", "/jobs/abc"} {
		if resp, _ := b.do(t, "GET", path, "", nil); resp.StatusCode != 404 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
}

func TestJobFormsActAndReRenderRefusals(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("b"))
	a, bb := fmt.Sprint(ids[0]), fmt.Sprint(ids[1])

	// htmx: a message and the new panel.
	resp, body := b.do(t, "POST", "/jobs/"+a+"/cancel", "", asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, "Job "+a+" cancelled.") ||
		!strings.Contains(body, `<div id="job-panel" class="job-panel" hx-swap-oob="true"`) ||
		!strings.Contains(body, "job-state-cancelled") {
		t.Fatalf("htmx cancel: %d %s", resp.StatusCode, body)
	}
	// htmx, refused: the reason as a message, nothing changed.
	_, body = b.do(t, "POST", "/jobs/"+a+"/cancel", "", asHtmx)
	if !strings.Contains(body, `flash-error`) || !strings.Contains(body, "job "+a+" is cancelled: only jobs that are") {
		t.Errorf("htmx refusal: %s", body)
	}
	// Plain form: back to the job.
	resp, _ = b.do(t, "POST", "/jobs/"+a+"/retry", "", asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs/"+a {
		t.Errorf("plain retry: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Plain form, refused: the job page again, with the reason and the status.
	resp, body = b.do(t, "POST", "/jobs/"+a+"/retry", "", asForm)
	if resp.StatusCode != 409 || !strings.Contains(body, `<p class="flash flash-error">`) || !strings.Contains(body, `id="job-panel"`) {
		t.Errorf("plain refusal: %d", resp.StatusCode)
	}
	// Delete (confirmed: TestJobDeleteConfirmsOnTheServer): a plain form
	// goes back to the list; htmx shows the gone panel.
	resp, _ = b.do(t, "POST", "/jobs/"+a+"/delete", "confirm=1", asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs" || b.state(t, ids[0]) != "gone" {
		t.Errorf("plain delete: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body = b.do(t, "POST", "/jobs/"+bb+"/delete", "confirm=1", asHtmx)
	if !strings.Contains(body, "Job "+bb+" has been deleted.") {
		t.Errorf("htmx delete: %s", body)
	}
	for _, path := range []string{"/jobs/" + a + "/explode", "/jobs/999/cancel"} {
		if resp, _ := b.do(t, "POST", path, "", asForm); resp.StatusCode != 404 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
}

func TestBulkFormActsOnTheSelection(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("b"), job("c"))
	b.setState(t, ids[2], jobs.StateCompleted)
	form := url.Values{"action": {"cancel"}, "back": {"/jobs?state=available"}}
	for _, id := range ids {
		form.Add("id", fmt.Sprint(id))
	}
	resp, body := b.do(t, "POST", "/jobs/bulk", form.Encode(), asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, "Cancelled 2 of 3 selected jobs") {
		t.Fatalf("htmx bulk: %d %s", resp.StatusCode, body)
	}
	// Rows after the message must be in a <template>, or the browser's
	// parser drops their tags.
	tpl := regexp.MustCompile(`(?s)</p><template>(.*)</template>$`).FindStringSubmatch(body)
	if tpl == nil {
		t.Fatalf("the rows are not in a template: %s", body)
	}
	body = tpl[1]
	for _, id := range ids {
		if !strings.Contains(body, fmt.Sprintf(`<tr id="job-%d" hx-swap-oob="true"`, id)) {
			t.Errorf("the answer lacks job %d's new row", id)
		}
	}
	// A plain form goes back to the filtered list (a delete once confirmed:
	// TestDeleteSelectedConfirmsOnTheServer).
	form.Set("action", "delete")
	form.Set("confirm", "3")
	resp, _ = b.do(t, "POST", "/jobs/bulk", form.Encode(), asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs?state=available" {
		t.Errorf("plain bulk: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, id := range ids {
		if b.state(t, id) != "gone" {
			t.Errorf("job %d not deleted", id)
		}
	}
	// Refusals: the list again with the reason; an outside "back" is ignored.
	resp, body = b.do(t, "POST", "/jobs/bulk", url.Values{"action": {"cancel"}, "back": {"https://evil.example/"}}.Encode(), asForm)
	if resp.StatusCode != 422 || !strings.Contains(body, "select at least one job") || !strings.Contains(body, `id="jobs-live"`) {
		t.Errorf("empty selection: %d", resp.StatusCode)
	}
	resp, body = b.do(t, "POST", "/jobs/bulk", url.Values{"action": {"cancel"}, "id": {"x"}}.Encode(), asHtmx)
	if resp.StatusCode != 400 || resp.Header.Get(handlers.FlashHeader) == "" || !strings.Contains(body, "flash-error") || !strings.Contains(body, "not a positive whole number") {
		t.Errorf("bad id with htmx: %d %s", resp.StatusCode, body)
	}
}

func TestQueueFormsPauseResumeAndScale(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	resp, body := b.do(t, "POST", "/jobs/queues/mailers/pause", "", asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, "Queue mailers paused") ||
		!strings.Contains(body, `<section id="jobs-queues" class="card job-queues" hx-swap-oob="true"`) ||
		!strings.Contains(body, `action="/jobs/queues/mailers/resume"`) {
		t.Fatalf("pause: %d %s", resp.StatusCode, body)
	}
	resp, _ = b.do(t, "POST", "/jobs/queues/mailers/scale", "limit=9&back=%2Fjobs%3Fqueue%3Dmailers", asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs?queue=mailers" {
		t.Errorf("plain scale: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, tt := range []struct {
		body   string
		status int
		says   string
	}{
		{"limit=many", 400, "not a whole number"},
		{"limit=0", 422, "between 1 and 1000"},
		{"limit=5000", 422, "between 1 and 1000"},
	} {
		resp, body := b.do(t, "POST", "/jobs/queues/mailers/scale", tt.body, asForm)
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.says) || !strings.Contains(body, `id="jobs-queues"`) {
			t.Errorf("%s: %d, want the dashboard re-rendered with %d and %q", tt.body, resp.StatusCode, tt.status, tt.says)
		}
		_, body = b.do(t, "POST", "/jobs/queues/mailers/scale", tt.body, asHtmx)
		if !strings.Contains(body, "flash-error") || !strings.Contains(body, tt.says) {
			t.Errorf("%s with htmx: %s", tt.body, body)
		}
	}
	if resp, _ := b.do(t, "POST", "/jobs/queues/nope/pause", "", asForm); resp.StatusCode != 404 {
		t.Errorf("unknown queue: %d", resp.StatusCode)
	}
	_, body = b.do(t, "GET", "/api/queues", "", nil)
	if !strings.Contains(body, `"name":"mailers","limit":9,"running":0,"paused":true`) {
		t.Errorf("queues: %s", body)
	}
}

func TestJobPostsRefuseCrossSiteRequests(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"))
	cross := map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"}
	for _, path := range []string{fmt.Sprintf("/jobs/%d/cancel", ids[0]), fmt.Sprintf("/api/jobs/%d/cancel", ids[0]), "/jobs/queues/default/pause", "/jobs/bulk"} {
		if resp, _ := b.do(t, "POST", path, "action=cancel&id="+fmt.Sprint(ids[0]), cross); resp.StatusCode != 403 {
			t.Errorf("%s: %d, want 403", path, resp.StatusCode)
		}
	}
	if got := b.state(t, ids[0]); got != jobs.StateAvailable {
		t.Errorf("job is %s", got)
	}
}

// BenchmarkJobsPage1M renders the dashboard (chart, queues, counts, 50
// rows) through the router with 1,000,000 jobs in the table; p50-ms is the
// median of the renders.
func BenchmarkJobsPage1M(b *testing.B) {
	bb := jobsSetup(b, live.JobsFeedConfig{})
	start := time.Now()
	_, err := bb.st.Writer.Exec(`
		WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 1000000)
		INSERT INTO jobs (state, queue, kind, args, attempt, inserted_at, scheduled_at, completed_at)
		SELECT CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 95 THEN 'available' ELSE 'discarded' END,
		       CASE WHEN i % 10 < 7 THEN 'default' ELSE 'mailers' END,
		       CASE WHEN i % 2 = 0 THEN 'dash_test' ELSE 'other_kind' END,
		       '{"name":"et' || i || '"}', 1, ?1 - (1000000 - i), ?1 - (1000000 - i),
		       CASE WHEN i % 100 < 90 THEN ?1 - (1000000 - i) + 5 END
		FROM seq`, time.Now().UnixMilli())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bb.st.Writer.Exec("ANALYZE"); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded 1,000,000 jobs in %s", time.Since(start).Round(time.Millisecond))
	for _, path := range []string{"/jobs", "/jobs?state=discarded", "/jobs?queue=mailers&kind=dash_test", "/jobs/500000", "/api/jobs?state=available&limit=50"} {
		b.Run(path, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				t0 := time.Now()
				rec := httptest.NewRecorder()
				bb.router.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				times = append(times, time.Since(t0))
				if rec.Code != 200 {
					b.Fatalf("%s: %d", path, rec.Code)
				}
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

func TestJobArgsAreShownAsWrittenAndEscaped(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	// Go's JSON encoder writes < > & as \u003c \u003e \u0026; a person
	// should read the characters, and a backslash written by the worker
	// must stay a backslash.
	id := b.insert(t, jobs.InsertParams{Args: dashArgs{Name: `a<b & c>d \u003c`}})[0]
	_, body := b.do(t, "GET", fmt.Sprintf("/jobs/%d", id), "", nil)
	if want := `&#34;name&#34;: &#34;a&lt;b &amp; c&gt;d \\u003c&#34;`; !strings.Contains(body, want) {
		t.Errorf("job page lacks %s", want)
	}
	_, body = b.do(t, "GET", "/jobs", "", nil)
	if want := `{&#34;name&#34;:&#34;a&lt;b &amp; c&gt;d \\u003c&#34;}</code>`; !strings.Contains(body, want) {
		t.Errorf("list lacks %s", want)
	}
	_, body = b.do(t, "GET", fmt.Sprintf("/api/jobs/%d", id), "", nil)
	if want := `"args":{"name":"a\u003cb \u0026 c\u003ed \\u003c"}`; !strings.Contains(body, want) {
		t.Errorf("API args = %s, want them as stored: %s", body, want)
	}
}
