package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

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

// mixedJob is the i-th job of a mix over two queues: job(prefix+i), every
// third in the mailers queue.
func mixedJob(prefix string, i int) jobs.InsertParams {
	p := job(fmt.Sprint(prefix, i))
	if i%3 == 0 {
		p.Opts.Queue = "mailers"
	}
	return p
}

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
		p := mixedJob("et", i)
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
	// running is this engine's on SQLite and the executing jobs' on
	// PostgreSQL, where the test made one executing by hand.
	if !regexp.MustCompile(`"name":"default","limit":5,"running":[01],"paused":false`).MatchString(body) {
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
	want := fmt.Sprintf(`{"action":"cancel","requested":4,"changed":2,"not_found":[999],"refused":[{"id":%d,"state":"completed"}]}`, ids[2])
	if resp.StatusCode != 200 || strings.TrimSpace(out) != want {
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
