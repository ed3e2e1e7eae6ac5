package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// dashArgs are the args of the dashboard tests' jobs; Fail makes every
// attempt fail, Block makes it wait until its context ends.
type dashArgs struct {
	Name  string `json:"name"`
	Fail  bool   `json:"fail,omitempty"`
	Block bool   `json:"block,omitempty"`
}

func (dashArgs) Kind() string { return "dash_test" }

type otherArgs struct {
	N int `json:"n"`
}

func (otherArgs) Kind() string { return "other_kind" }

type dashWorker struct{}

func (dashWorker) Kind() string { return "dash_test" }

func (dashWorker) Work(ctx context.Context, j *jobs.Job) error {
	var a dashArgs
	if err := j.UnmarshalArgs(&a); err != nil {
		return err
	}
	if a.Block {
		<-ctx.Done()
		return ctx.Err()
	}
	if a.Fail {
		return fmt.Errorf("the line to %s is <busy> & dead", a.Name)
	}
	return nil
}

// jobsBundle is a testServer with the jobs dashboard's queues and worker;
// the engine is not started: jobs stay where the tests put them, unless a
// test starts it.
type jobsBundle struct{ *testServer }

func jobsSetup(t testing.TB, cfg live.JobsFeedConfig) *jobsBundle {
	t.Helper()
	return &jobsBundle{setupServer(t, serverOptions{
		queues: map[string]int{"default": 5, "mailers": 2}, workers: []jobs.Worker{dashWorker{}}, jobsFeed: cfg,
	})}
}

func (b *jobsBundle) do(t testing.TB, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	return request(t, noRedirects(b.srv.Client()), method, b.srv.URL+path, strings.NewReader(body), header)
}

var (
	asJSON = map[string]string{"Content-Type": "application/json"}
	asForm = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	asHtmx = map[string]string{"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"}
)

// insert adds jobs through the engine and returns their ids in order.
func (b *jobsBundle) insert(t testing.TB, params ...jobs.InsertParams) []int64 {
	t.Helper()
	var ids []int64
	for _, p := range params {
		res, err := b.engine.Insert(context.Background(), p.Args, p.Opts)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	return ids
}

func (b *jobsBundle) setState(t testing.TB, id int64, state jobs.State) {
	t.Helper()
	if _, err := b.st.Writer.Exec(b.st.Rebind("UPDATE jobs SET state = ? WHERE id = ?"), state, id); err != nil {
		t.Fatal(err)
	}
	// A raw state change around the engine is not counted by it.
	if err := jobs.Recount(context.Background(), b.st.Writer); err != nil {
		t.Fatal(err)
	}
}

func (b *jobsBundle) state(t testing.TB, id int64) jobs.State {
	t.Helper()
	j, err := jobs.Get(context.Background(), b.st.Reader, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return "gone"
	}
	if err != nil {
		t.Fatal(err)
	}
	return j.State
}

func job(name string) jobs.InsertParams { return jobs.InsertParams{Args: dashArgs{Name: name}} }

// apiJob is a job as the API answers it, every field the contract names.
type apiJob struct {
	ID          *int64            `json:"id"`
	Queue       *string           `json:"queue"`
	Kind        *string           `json:"kind"`
	Args        json.RawMessage   `json:"args"`
	State       *string           `json:"state"`
	Attempt     *int              `json:"attempt"`
	MaxAttempts *int              `json:"max_attempts"`
	Priority    *int              `json:"priority"`
	ScheduledAt *string           `json:"scheduled_at"`
	AttemptedAt *string           `json:"attempted_at"`
	CompletedAt *string           `json:"completed_at"`
	Errors      []json.RawMessage `json:"errors"`
}

func decodeInto[T any](t testing.TB, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)

func TestJobsAPIShapes(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t,
		jobs.InsertParams{Args: dashArgs{Name: "Bria"}, Opts: jobs.InsertOpts{Queue: "mailers", Priority: 3, MaxAttempts: 4, Tags: []string{"vip"}}},
		job("Ayala"))

	resp, body := b.do(t, "GET", "/api/jobs", "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	list := decodeInto[struct {
		Items      []map[string]json.RawMessage `json:"items"`
		NextCursor *string                      `json:"next_cursor"`
	}](t, body)
	if len(list.Items) != 2 || list.NextCursor != nil || !strings.Contains(body, `"next_cursor":null`) {
		t.Fatalf("list = %s", body)
	}
	for _, field := range []string{"id", "queue", "kind", "args", "state", "attempt", "max_attempts", "priority",
		"scheduled_at", "attempted_at", "completed_at", "errors"} {
		if _, ok := list.Items[0][field]; !ok {
			t.Errorf("list item lacks %q: %s", field, body)
		}
	}

	resp, body = b.do(t, "GET", fmt.Sprintf("/api/jobs/%d", ids[0]), "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	j := decodeInto[apiJob](t, body)
	if *j.ID != ids[0] || *j.Queue != "mailers" || *j.Kind != "dash_test" || *j.State != "available" || *j.Attempt != 0 ||
		*j.MaxAttempts != 4 || *j.Priority != 3 || string(j.Args) != `{"name":"Bria"}` || j.AttemptedAt != nil ||
		j.CompletedAt != nil || j.Errors == nil || len(j.Errors) != 0 {
		t.Errorf("job = %s", body)
	}
	if !rfc3339UTC.MatchString(*j.ScheduledAt) {
		t.Errorf("scheduled_at %q is not RFC 3339 UTC", *j.ScheduledAt)
	}
	if !strings.Contains(body, `"tags":["vip"]`) {
		t.Errorf("tags missing: %s", body)
	}
}

func TestJobsAPIListFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	var ids []int64
	for i := range 9 {
		p := job(fmt.Sprint("et", i))
		if i%3 == 0 {
			p.Opts.Queue = "mailers"
		}
		if i%4 == 0 {
			p = jobs.InsertParams{Args: otherArgs{N: i}}
		}
		ids = append(ids, b.insert(t, p)...)
	}
	b.setState(t, ids[1], jobs.StateCompleted)
	b.setState(t, ids[2], jobs.StateDiscarded)
	b.setState(t, ids[5], jobs.StateDiscarded)

	pageThrough := func(query string) []int64 {
		t.Helper()
		var got []int64
		cursor := ""
		for range 20 {
			q := query + "&limit=2"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			resp, body := b.do(t, "GET", "/api/jobs?"+q, "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", q, resp.StatusCode, body)
			}
			page := decodeInto[struct {
				Items []struct {
					ID int64 `json:"id"`
				} `json:"items"`
				NextCursor *string `json:"next_cursor"`
			}](t, body)
			for _, it := range page.Items {
				got = append(got, it.ID)
			}
			if page.NextCursor == nil {
				return got
			}
			cursor = *page.NextCursor
		}
		t.Fatalf("%s: the cursor never ends", query)
		return nil
	}
	rev := func(xs ...int64) []int64 { xs = slices.Clone(xs); slices.Reverse(xs); return xs }
	for _, tt := range []struct {
		name, query string
		want        []int64
	}{
		{"all, newest first", "", rev(ids...)},
		{"one state", "state=discarded", rev(ids[2], ids[5])},
		{"two states", "state=completed,discarded", rev(ids[1], ids[2], ids[5])},
		{"queue", "queue=mailers", rev(ids[3], ids[6])},
		{"kind", "kind=other_kind", rev(ids[0], ids[4], ids[8])},
		{"queue and kind", "queue=mailers&kind=other_kind", nil},
		{"state, queue and kind", "state=available&queue=default&kind=dash_test", rev(ids[7])},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pageThrough(tt.query); !slices.Equal(got, tt.want) {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}
}

// errorOf checks a JSON error answer and returns its message.
func errorOf(t *testing.T, resp *http.Response, body string, status int) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("not a JSON error: %s", body)
	}
	return e.Error
}

func TestJobsAPIErrorsChangeNothing(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("available"), job("completed"), job("executing"))
	b.setState(t, ids[1], jobs.StateCompleted)
	b.setState(t, ids[2], jobs.StateExecuting)
	avail, done, running := fmt.Sprint(ids[0]), fmt.Sprint(ids[1]), fmt.Sprint(ids[2])
	for _, tt := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		says                     string
	}{
		{"unknown state", "GET", "/api/jobs?state=running", "", nil, 422, "not one of"},
		{"limit not a number", "GET", "/api/jobs?limit=ten", "", nil, 400, "whole number"},
		{"limit zero", "GET", "/api/jobs?limit=0", "", nil, 422, "between 1 and"},
		{"limit too large", "GET", "/api/jobs?limit=1001", "", nil, 422, "between 1 and"},
		{"forged cursor", "GET", "/api/jobs?cursor=42", "", nil, 400, "cursor"},
		{"queue too long", "GET", "/api/jobs?queue=" + strings.Repeat("q", 101), "", nil, 422, "longer than"},
		{"unknown job", "GET", "/api/jobs/999", "", nil, 404, "not found"},
		{"id not a number", "GET", "/api/jobs/abc", "", nil, 404, "positive whole"},
		{"cancel unknown", "POST", "/api/jobs/999/cancel", "", nil, 404, "not found"},
		{"cancel completed", "POST", "/api/jobs/" + done + "/cancel", "", nil, 409, "completed"},
		{"retry available", "POST", "/api/jobs/" + avail + "/retry", "", nil, 409, "available"},
		{"delete executing", "DELETE", "/api/jobs/" + running, "", nil, 409, "executing"},
		{"delete unknown", "DELETE", "/api/jobs/999", "", nil, 404, "not found"},
		{"bulk without JSON type", "POST", "/api/jobs/bulk", `{"action":"cancel","ids":[1]}`, nil, 415, "application/json"},
		{"bulk malformed", "POST", "/api/jobs/bulk", `{"action":`, asJSON, 400, "malformed"},
		{"bulk unknown field", "POST", "/api/jobs/bulk", `{"action":"cancel","ids":[1],"all":true}`, asJSON, 400, "unknown field"},
		{"bulk unknown action", "POST", "/api/jobs/bulk", `{"action":"explode","ids":[1]}`, asJSON, 422, "not one of"},
		{"bulk no ids", "POST", "/api/jobs/bulk", `{"action":"cancel","ids":[]}`, asJSON, 422, "at least one"},
		{"bulk negative id", "POST", "/api/jobs/bulk", `{"action":"cancel","ids":[-1]}`, asJSON, 422, "not positive"},
		{"scale unknown queue", "POST", "/api/queues/nope/scale", `{"limit":3}`, asJSON, 404, "unknown queue"},
		{"pause unknown queue", "POST", "/api/queues/nope/pause", "", nil, 404, "unknown queue"},
		{"unknown queue action", "POST", "/api/queues/default/explode", "", nil, 404, "pause, resume or scale"},
		{"scale as text", "POST", "/api/queues/default/scale", `{"limit":3}`, map[string]string{"Content-Type": "text/plain"}, 415, "application/json"},
		{"scale malformed", "POST", "/api/queues/default/scale", `{"limit":"three"}`, asJSON, 400, "malformed"},
		{"scale without limit", "POST", "/api/queues/default/scale", `{}`, asJSON, 422, "limit is missing"},
		{"scale to zero", "POST", "/api/queues/default/scale", `{"limit":0}`, asJSON, 422, "between 1 and"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := b.do(t, tt.method, tt.path, tt.body, tt.header)
			if msg := errorOf(t, resp, body, tt.status); !strings.Contains(msg, tt.says) {
				t.Errorf("error %q does not say %q", msg, tt.says)
			}
		})
	}
	for i, want := range []jobs.State{jobs.StateAvailable, jobs.StateCompleted, jobs.StateExecuting} {
		if got := b.state(t, ids[i]); got != want {
			t.Errorf("job %d is %s after refused requests, want %s", ids[i], got, want)
		}
	}
	_, body := b.do(t, "GET", "/api/queues", "", nil)
	if !strings.Contains(body, `"name":"default","limit":5,"running":0,"paused":false`) {
		t.Errorf("queues changed: %s", body)
	}
}

func TestJobsAPIActions(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("b"))

	resp, body := b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", ids[0]), "", nil)
	j := decodeInto[apiJob](t, body)
	if resp.StatusCode != 200 || *j.State != "cancelled" || !strings.Contains(body, `"cancelled_at":"`) {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	resp, body = b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/retry", ids[0]), "", nil)
	if j := decodeInto[apiJob](t, body); resp.StatusCode != 200 || *j.State != "available" {
		t.Fatalf("retry: %d %s", resp.StatusCode, body)
	}
	resp, body = b.do(t, "DELETE", fmt.Sprintf("/api/jobs/%d", ids[1]), "", nil)
	if j := decodeInto[apiJob](t, body); resp.StatusCode != 200 || *j.ID != ids[1] || *j.State != "available" {
		t.Fatalf("delete answers the job as it was: %d %s", resp.StatusCode, body)
	}
	resp, _ = b.do(t, "GET", fmt.Sprintf("/api/jobs/%d", ids[1]), "", nil)
	if resp.StatusCode != 404 {
		t.Errorf("deleted job: %d", resp.StatusCode)
	}
}

func TestJobsAPIBulk(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("b"), job("c"))
	b.setState(t, ids[2], jobs.StateCompleted)
	body := fmt.Sprintf(`{"action":"cancel","ids":[%d,%d,%d,%d,999]}`, ids[0], ids[1], ids[2], ids[0])
	resp, out := b.do(t, "POST", "/api/jobs/bulk", body, asJSON)
	if resp.StatusCode != 200 || strings.TrimSpace(out) != `{"action":"cancel","changed":2,"requested":4}` {
		t.Fatalf("bulk cancel: %d %s", resp.StatusCode, out)
	}
	for i, want := range []jobs.State{jobs.StateCancelled, jobs.StateCancelled, jobs.StateCompleted} {
		if got := b.state(t, ids[i]); got != want {
			t.Errorf("job %d: %s, want %s", ids[i], got, want)
		}
	}
	_, out = b.do(t, "POST", "/api/jobs/bulk", fmt.Sprintf(`{"action":"delete","ids":[%d,%d]}`, ids[0], ids[2]), asJSON)
	if !strings.Contains(out, `"changed":2`) || b.state(t, ids[0]) != "gone" || b.state(t, ids[2]) != "gone" {
		t.Errorf("bulk delete: %s", out)
	}
}

func TestQueuesAPI(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	b.insert(t, jobs.InsertParams{Args: dashArgs{Name: "x"}, Opts: jobs.InsertOpts{Queue: "mailers"}})
	resp, body := b.do(t, "GET", "/api/queues", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("queues: %d %s", resp.StatusCode, body)
	}
	qs := decodeInto[[]struct {
		Name    string         `json:"name"`
		Limit   int            `json:"limit"`
		Running int            `json:"running"`
		Paused  bool           `json:"paused"`
		Counts  map[string]int `json:"counts"`
	}](t, body)
	if len(qs) != 2 || qs[0].Name != "default" || qs[1].Name != "mailers" || qs[1].Limit != 2 || qs[1].Counts["available"] != 1 ||
		len(qs[1].Counts) != len(jobs.States) {
		t.Fatalf("queues = %s", body)
	}
	for _, step := range []struct{ path, body, want string }{
		{"/api/queues/mailers/pause", "", `"paused":true`},
		{"/api/queues/mailers/scale", `{"limit":7}`, `"limit":7`},
		{"/api/queues/mailers/resume", "", `"paused":false`},
	} {
		resp, body := b.do(t, "POST", step.path, step.body, asJSON)
		if resp.StatusCode != 200 || !strings.Contains(body, `"name":"mailers"`) || !strings.Contains(body, step.want) {
			t.Errorf("%s: %d %s", step.path, resp.StatusCode, body)
		}
	}
	_, body = b.do(t, "GET", "/api/queues", "", nil)
	if !strings.Contains(body, `"name":"mailers","limit":7,"running":0,"paused":false`) {
		t.Errorf("after pause, scale, resume: %s", body)
	}
}

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
	if !strings.Contains(body, `flash-error`) || !strings.Contains(body, "it is cancelled") {
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
	// Delete: a plain form goes back to the list; htmx shows the gone panel.
	resp, _ = b.do(t, "POST", "/jobs/"+a+"/delete", "", asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs" || b.state(t, ids[0]) != "gone" {
		t.Errorf("plain delete: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body = b.do(t, "POST", "/jobs/"+bb+"/delete", "", asHtmx)
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
	// A plain form goes back to the filtered list.
	form.Set("action", "delete")
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
	if resp.StatusCode != 200 || !strings.Contains(body, "flash-error") || !strings.Contains(body, "not a positive whole number") {
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

// jobWatch is a real event-stream client of the router.
type jobWatch struct {
	msgs <-chan events.Message
}

func (b *jobsBundle) watch(t *testing.T, query string) *jobWatch {
	t.Helper()
	// Resume from now, as a page does: the hub answers before it has
	// subscribed the client, and replays what was published meanwhile.
	from := fmt.Sprintf("&last_event_id=%d", b.hub.LastID())
	msgs, _, _ := openStream(t, b.srv.Client(), b.srv.URL+"/events?stream=jobs"+from+query)
	return &jobWatch{msgs: msgs}
}

// until reads events until one satisfies ok and returns the ones before it.
func (w *jobWatch) until(t *testing.T, what string, ok func(events.Message) bool) (events.Message, []events.Message) {
	t.Helper()
	return until(t, w.msgs, what, ok)
}

// each reads events until every one of oks has matched one.
func (w *jobWatch) each(t *testing.T, what string, oks ...func(events.Message) bool) {
	t.Helper()
	left := slices.Clone(oks)
	w.until(t, what, func(m events.Message) bool {
		left = slices.DeleteFunc(left, func(ok func(events.Message) bool) bool { return ok(m) })
		return len(left) == 0
	})
}

func rowEvent(id int64, contains string) func(events.Message) bool {
	prefix := fmt.Sprintf(`<tr id="job-%d" `, id)
	return func(m events.Message) bool {
		return m.Event == "" && strings.HasPrefix(m.Data, prefix) && strings.Contains(m.Data, contains)
	}
}

func TestJobsStreamCarriesTheRowsOfAPage(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{Every: time.Millisecond, StatsEvery: time.Millisecond})
	ids := b.insert(t, job("mine"), job("other"))
	mine, other := ids[0], ids[1]
	w := b.watch(t, fmt.Sprintf("&ids=%d", mine))

	// Another job's change is not sent to a page that does not show it:
	// after it, the page's own job's event comes first.
	b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", other), "", nil)
	b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", mine), "", nil)
	// The row, the counts and the queue table come in one flush or
	// another: the counts may be read before the row is sent.
	var row, counts events.Message
	var seen []events.Message
	w.each(t, "my row, the counts and the queue table",
		func(m events.Message) bool {
			seen = append(seen, m)
			if rowEvent(mine, "job-state-cancelled")(m) {
				row = m
				return true
			}
			return false
		},
		func(m events.Message) bool {
			if m.Event == "counts" && strings.Contains(m.Data, `<span id="jobs-n-cancelled" class="tab-n" hx-swap-oob="true">2</span>`) {
				counts = m
				return true
			}
			return false
		},
		func(m events.Message) bool {
			return m.Event == "queues" && strings.HasPrefix(m.Data, `<section id="jobs-queues" class="card job-queues" hx-swap-oob="true"`)
		})
	if !strings.Contains(row.Data, `hx-swap-oob="true"`) || !strings.Contains(row.Data, `<td class="job-queue">default</td>`) {
		t.Errorf("row event = %s", row.Data)
	}
	for _, e := range seen {
		if strings.Contains(e.Data, fmt.Sprintf(`id="job-%d"`, other)) {
			t.Errorf("the page got a row it does not show: %s", e.Data)
		}
	}
	if !strings.Contains(counts.Data, `<span id="jobs-n-all" class="tab-n" hx-swap-oob="true">2</span>`) {
		t.Errorf("counts = %s", counts.Data)
	}
	// A deleted job's row is removed.
	b.do(t, "DELETE", fmt.Sprintf("/api/jobs/%d", mine), "", nil)
	m, _ := w.until(t, "my row, deleted", rowEvent(mine, "job-row-deleted"))
	if !strings.HasPrefix(m.Data, fmt.Sprintf(`<tr id="job-%d" hx-swap-oob="true" class="job-row job-row-deleted">`, mine)) {
		t.Errorf("delete event = %s", m.Data)
	}
	// Pausing a queue sends the queue table; pausing it again changes
	// nothing and sends nothing: the next table is the resumed one.
	b.do(t, "POST", "/api/queues/mailers/pause", "", nil)
	w.until(t, "paused queue table", func(m events.Message) bool {
		return m.Event == "queues" && strings.Contains(m.Data, `action="/jobs/queues/mailers/resume"`)
	})
	b.do(t, "POST", "/api/queues/mailers/pause", "", nil)
	b.do(t, "POST", "/api/queues/mailers/resume", "", nil)
	m, _ = w.until(t, "the next queue table", func(m events.Message) bool { return m.Event == "queues" })
	if !strings.Contains(m.Data, `action="/jobs/queues/mailers/pause"`) {
		t.Errorf("an unchanged queue table was sent again")
	}
}

func TestJobsStreamFollowsTheEngine(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{Every: time.Millisecond, StatsEvery: time.Millisecond, ThroughputEvery: time.Millisecond})
	w := b.watch(t, "") // everything, as curl
	if err := b.engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := b.insert(t, job("ok"), jobs.InsertParams{Args: dashArgs{Name: "bad", Fail: true}, Opts: jobs.InsertOpts{MaxAttempts: 1}})
	// The chart may come before the last row: the throughput ring is
	// counted before the rows are reported, and a flush in between sends it.
	w.each(t, "completed and discarded rows, and a chart with both",
		rowEvent(ids[0], "job-state-completed"), rowEvent(ids[1], "job-state-discarded"),
		func(m events.Message) bool {
			return m.Event == "throughput" && strings.Contains(m.Data, `<section id="jobs-throughput"`) &&
				strings.Contains(m.Data, "1 completed") && strings.Contains(m.Data, "1 failed")
		})
	// A running job's cancel reaches its worker; the row ends cancelled.
	block := b.insert(t, jobs.InsertParams{Args: dashArgs{Name: "slow", Block: true}})[0]
	w.until(t, "executing row", rowEvent(block, "job-state-executing"))
	b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", block), "", nil)
	w.until(t, "cancelled row", rowEvent(block, "job-state-cancelled"))
}

func TestJobsStreamSendsRefreshInsteadOfFloods(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{Every: time.Millisecond, MaxRows: 10, RefreshEvery: time.Millisecond})
	params := make([]jobs.InsertParams, 50)
	for i := range params {
		params[i] = job(fmt.Sprint(i))
	}
	if _, err := b.engine.InsertMany(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	page, err := jobs.List(context.Background(), b.st.Reader, jobs.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, j := range page.Jobs {
		all = append(all, fmt.Sprint(j.ID))
	}
	w := b.watch(t, "") // everything
	_, body := b.do(t, "POST", "/api/jobs/bulk", `{"action":"cancel","ids":[`+strings.Join(all, ",")+`]}`, asJSON)
	if !strings.Contains(body, `"changed":50`) {
		t.Fatalf("bulk: %s", body)
	}
	_, before := w.until(t, "refresh", func(m events.Message) bool { return m.Event == "refresh" })
	rows := 0
	for _, m := range before {
		if m.Event == "" {
			rows++
		}
	}
	if rows > 10 {
		t.Errorf("%d row events before the refresh, want at most the cap of 10", rows)
	}
	// The page's reload after it has every job cancelled, and a new stream.
	resp, live := b.do(t, "GET", "/jobs/live", "", map[string]string{"HX-Request": "true"})
	if resp.StatusCode != 200 || !strings.HasPrefix(live, `<div id="jobs-live"`) || strings.Count(live, "job-state-cancelled\">") != 50 ||
		!strings.Contains(live, "&amp;ids="+all[0]) {
		t.Errorf("live reload: %d, %d cancelled", resp.StatusCode, strings.Count(live, "job-state-cancelled\">"))
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
