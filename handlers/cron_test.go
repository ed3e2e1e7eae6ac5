package handlers_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// reportArgs are the cron tests' periodic job.
type reportArgs struct {
	Report string `json:"report"`
}

func (reportArgs) Kind() string { return "report" }

var (
	nightlyReport = jobs.PeriodicJob{Name: "nightly-report", Spec: "0 9 * * *", Args: reportArgs{Report: "nightly"},
		Description: "Mails the <night's> numbers", Opts: jobs.InsertOpts{Queue: "reports"}}
	uniqueReport = jobs.PeriodicJob{Name: "unique-report", Spec: "*/5 * * * *", Args: reportArgs{Report: "unique"},
		Opts: jobs.InsertOpts{Queue: "reports", Unique: true}}
)

// cronSetup is a jobs dashboard with two periodic jobs and an engine that
// is not started: inserted jobs stay available, and nothing runs on its
// own schedule during the test.
func cronSetup(t testing.TB, readOnly bool) *jobsBundle {
	t.Helper()
	return &jobsBundle{setupServer(t, serverOptions{
		queues: map[string]int{"default": 5, "reports": 1}, workers: []jobs.Worker{dashWorker{}},
		periodic: []jobs.PeriodicJob{nightlyReport, uniqueReport}, readOnly: readOnly,
	})}
}

// cronJSON is a periodic job as GET /api/cron answers it; pointers tell a
// missing field from a zero one.
type cronJSON struct {
	Name        *string    `json:"name"`
	Spec        *string    `json:"spec"`
	Description *string    `json:"description"`
	LastRunAt   *time.Time `json:"last_run_at"`
	NextRunAt   *time.Time `json:"next_run_at"`
	Paused      *bool      `json:"paused"`
	Schedule    string     `json:"schedule"`
	JobIDs      []int64    `json:"job_ids"`
}

func (b *jobsBundle) cron(t testing.TB) map[string]cronJSON {
	t.Helper()
	resp, body := b.do(t, "GET", "/api/cron", "", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/cron: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var list []cronJSON
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("GET /api/cron: %v in %s", err, body)
	}
	out := map[string]cronJSON{}
	for _, c := range list {
		if c.Name == nil || c.Spec == nil || c.Description == nil || c.Paused == nil || !strings.Contains(body, `"last_run_at"`) || !strings.Contains(body, `"next_run_at"`) {
			t.Fatalf("GET /api/cron: an entry lacks a field of the contract: %s", body)
		}
		out[*c.Name] = c
	}
	return out
}

// cronEvent waits for a cron event on msgs whose table satisfies ok.
func cronEvent(t testing.TB, msgs <-chan events.Message, what string, ok func(string) bool) string {
	t.Helper()
	m, _ := until(t, msgs, what, func(m events.Message) bool { return m.Event == live.CronEvent && ok(m.Data) })
	return m.Data
}

// TestCronPageAndAPI: the cron page and GET /api/cron list every periodic
// job with its spec in words, last and next run; Run now inserts one job
// at once, which the page's stream shows in the entry's jobs; pause and
// resume are stored and shown live; unknown names and actions are 404s.
func TestCronPageAndAPI(t *testing.T) {
	b := cronSetup(t, false)
	entries := b.cron(t)
	nr := entries["nightly-report"]
	if len(entries) != 2 || nr.Schedule != "every day at 09:00 UTC" || *nr.Description != nightlyReport.Description ||
		*nr.Paused || nr.LastRunAt != nil || nr.NextRunAt == nil || nr.NextRunAt.Hour() != 9 || nr.NextRunAt.Location() != time.UTC {
		t.Fatalf("GET /api/cron: %+v", entries)
	}
	page := b.get(t, "/jobs/cron")
	for _, want := range []string{"every day at 09:00 UTC", "Mails the &lt;night&#39;s&gt; numbers", "<code>0 9 * * *</code>",
		`action="/jobs/cron/nightly-report/run"`, `action="/jobs/cron/unique-report/pause"`, "never", "none yet",
		`href="/jobs?queue=reports&amp;kind=report"`, `sse-connect="/events?stream=jobs&amp;last_event_id=`} {
		if !strings.Contains(page, want) {
			t.Errorf("cron page lacks %q", want)
		}
	}

	// The page's stream: the events about no row, the cron table among them.
	m := regexp.MustCompile(`sse-connect="([^"]+)"`).FindStringSubmatch(page)
	msgs, _, _ := openStream(t, b.srv.Client(), b.srv.URL+strings.ReplaceAll(m[1], "&amp;", "&"))
	waitUntil(t, 5*time.Second, "the page's stream joins", func() bool { return b.hub.Clients()[live.JobsStream] > 0 })

	resp, body := b.do(t, "POST", "/api/cron/nightly-report/run", "", nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("run now: %d %s", resp.StatusCode, body)
	}
	var j apiJob
	if err := json.Unmarshal([]byte(body), &j); err != nil || j.ID == nil || *j.Kind != "report" || *j.State != "available" || *j.Queue != "reports" {
		t.Fatalf("run now answered %s (%v)", body, err)
	}
	id := strconv.FormatInt(*j.ID, 10)
	table := cronEvent(t, msgs, "the run's job in the cron table", func(d string) bool { return strings.Contains(d, `id="cron-job-`+id+`"`) })
	if !strings.Contains(table, `hx-swap-oob="true"`) || !strings.Contains(table, `href="/jobs/`+id+`"`) {
		t.Errorf("cron event: %s", table)
	}
	nr = b.cron(t)["nightly-report"]
	if nr.LastRunAt == nil || time.Since(*nr.LastRunAt) > time.Minute || len(nr.JobIDs) != 1 || nr.JobIDs[0] != *j.ID {
		t.Errorf("after run now: %+v", nr)
	}

	// Its state changes show in the table too.
	if resp, body := b.do(t, "POST", "/api/jobs/"+id+"/cancel", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	cronEvent(t, msgs, "the cancelled job in the cron table", func(d string) bool {
		return regexp.MustCompile(`id="cron-job-` + id + `">.*job-state-cancelled`).MatchString(d)
	})

	// Pause by a plain form: stored, shown live, and the next run is gone.
	resp, body = b.do(t, "POST", "/jobs/cron/nightly-report/pause", "", asForm)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs/cron" {
		t.Fatalf("pause form: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	cronEvent(t, msgs, "the pause in the cron table", func(d string) bool {
		return strings.Contains(d, `class="cron-row cron-paused"`) && strings.Contains(d, `action="/jobs/cron/nightly-report/resume"`)
	})
	if nr = b.cron(t)["nightly-report"]; !*nr.Paused || nr.NextRunAt != nil {
		t.Errorf("after pause: %+v, want paused with no next run", nr)
	}
	// Resume by htmx: a message; the API's answer is the entry.
	resp, body = b.do(t, "POST", "/jobs/cron/nightly-report/resume", "", asHtmx)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "nightly-report resumed") {
		t.Errorf("resume by htmx: %d %s", resp.StatusCode, body)
	}
	resp, body = b.do(t, "POST", "/api/cron/nightly-report/pause", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"paused":true`) || !strings.Contains(body, `"next_run_at":null`) {
		t.Errorf("pause by the API: %d %s", resp.StatusCode, body)
	}

	// Run now of a unique entry while its job waits: 409 naming the job.
	resp, body = b.do(t, "POST", "/api/cron/unique-report/run", "", nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("first run of the unique entry: %d %s", resp.StatusCode, body)
	}
	_ = json.Unmarshal([]byte(body), &j)
	do := func(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
		return b.do(t, method, path, body, header)
	}
	checkAnswers(t, do, []answerCase{
		{name: "unique duplicate", method: "POST", path: "/api/cron/unique-report/run", want: 409, wantBody: "job " + strconv.FormatInt(*j.ID, 10)},
		{name: "unique duplicate by htmx", method: "POST", path: "/jobs/cron/unique-report/run", header: asHtmx, want: 409, wantBody: "flash-error"},
		{name: "unknown entry", method: "POST", path: "/api/cron/nope/run", want: 404, wantBody: `{"error":"no periodic job \"nope\""}`},
		{name: "unknown action", method: "POST", path: "/api/cron/nightly-report/explode", want: 404, wantBody: "run, pause or resume"},
		{name: "unknown entry by form", method: "POST", path: "/jobs/cron/nope/pause", header: asForm, want: 404, wantBody: "no periodic job"},
		{name: "table fragment", method: "GET", path: "/jobs/cron/table", want: 200, wantBody: `id="cron-table"`},
	})
}

// TestCronPageWithoutPeriodicJobs: an engine without periodic jobs has an
// empty list and a page that says so.
func TestCronPageWithoutPeriodicJobs(t *testing.T) {
	b := jobsSetup(t, live.JobsFeedConfig{})
	if _, body := b.do(t, "GET", "/api/cron", "", nil); strings.TrimSpace(body) != "[]" {
		t.Errorf("GET /api/cron: %s, want []", body)
	}
	if page := b.get(t, "/jobs/cron"); !strings.Contains(page, "No periodic jobs") {
		t.Errorf("cron page without entries lacks its note")
	}
}

// TestReadOnlyRefusesEveryAction: with -read-only every route of the jobs
// dashboard and its API that changes something answers 403 with the
// reason and changes nothing; pages and API still show everything, say
// "Read-only" and have no action buttons. The rest of the app is not the
// jobs dashboard: Phone Home still works.
func TestReadOnlyRefusesEveryAction(t *testing.T) {
	b := cronSetup(t, true)
	ids := b.insert(t, job("Korben"), job("Leeloo"))
	id := strconv.FormatInt(ids[0], 10)
	before := b.jobsChecksum(t)

	// Every write route the router has under the dashboard, filled in.
	fill := strings.NewReplacer(":id", id, ":name", "reports")
	action := map[string]string{
		"/jobs/:id/:action": "cancel", "/jobs/queues/:name/:action": "pause", "/api/queues/:name/:action": "pause",
		"/jobs/cron/:name/:action": "run", "/api/cron/:name/:action": "run",
	}
	tried := 0
	for _, r := range b.router.(*echo.Echo).Routes() {
		dashboard := strings.HasPrefix(r.Path, "/jobs") || strings.HasPrefix(r.Path, "/api/jobs") ||
			strings.HasPrefix(r.Path, "/api/queues") || strings.HasPrefix(r.Path, "/api/cron")
		if !dashboard || r.Method == http.MethodGet || r.Method == echo.RouteNotFound || r.Method == "echo_route_any" {
			continue
		}
		path := r.Path
		if a, ok := action[path]; ok {
			path = strings.Replace(path, ":action", a, 1)
		}
		path = fill.Replace(path)
		if strings.Contains(path, "/cron/") {
			path = strings.Replace(path, "/reports/", "/nightly-report/", 1)
		}
		body, header := "", asForm
		if strings.HasPrefix(path, "/api/") {
			body, header = `{"action":"cancel","ids":[`+id+`],"limit":3}`, asJSON
		} else if strings.HasSuffix(path, "/bulk") {
			body = "action=cancel&id=" + id
		}
		for _, h := range []map[string]string{header, asHtmx} {
			resp, got := b.do(t, r.Method, path, body, h)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(got, "read-only") {
				t.Errorf("%s %s (%s): %d %.200q, want 403 saying read-only", r.Method, path, r.Path, resp.StatusCode, got)
			}
			tried++
		}
	}
	if tried < 2*10 {
		t.Errorf("only %d refused requests: the dashboard's write routes were not all found", tried)
	}
	if after := b.jobsChecksum(t); after != before {
		t.Errorf("read-only changed the jobs: %s → %s", before, after)
	}
	if e := b.cron(t)["nightly-report"]; *e.Paused || e.LastRunAt != nil {
		t.Errorf("read-only ran or paused a periodic job: %+v", e)
	}

	for path, banned := range map[string][]string{
		"/jobs":       {`id="jobs-bulk"`, "Cancel selected", `/jobs/queues/`, `name="id"`, "pick-all"},
		"/jobs/" + id: {`/jobs/` + id + `/cancel`, `/jobs/` + id + `/delete`, "Retry now"},
		"/jobs/cron":  {"Run now", `/jobs/cron/nightly-report/pause`},
		"/jobs/live":  {`id="jobs-bulk"`, `/jobs/queues/`},
	} {
		page := b.get(t, path)
		if !strings.Contains(page, "read-only") {
			t.Errorf("%s does not say it is read-only", path)
		}
		for _, s := range banned {
			if strings.Contains(page, s) {
				t.Errorf("%s shows %q although read-only", path, s)
			}
		}
	}
	if !strings.Contains(b.get(t, "/jobs"), "Korben") || !strings.Contains(b.get(t, "/api/jobs"), "Leeloo") {
		t.Errorf("read-only hides jobs")
	}
	// Not the jobs dashboard: Phone Home and the API's reads work.
	if resp, body := b.do(t, "POST", "/api/phone-home", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("Phone Home under -read-only: %d %s", resp.StatusCode, body)
	}
}

// jobsChecksum sums the jobs table and the operator settings, for "nothing
// changed".
func (b *jobsBundle) jobsChecksum(t testing.TB) string {
	t.Helper()
	var s string
	// string_agg with ORDER BY: the same text on SQLite (3.44+) and PostgreSQL.
	err := b.st.Reader.Get(&s, `SELECT
		(SELECT coalesce(string_agg(id || ':' || state || ':' || scheduled_at, ',' ORDER BY id), '') FROM jobs) || '|' ||
		(SELECT coalesce(string_agg(name || ':' || paused || ':' || coalesce(CAST("limit" AS TEXT), ''), ',' ORDER BY name), '') FROM job_queues) || '|' ||
		(SELECT coalesce(string_agg(name || ':' || paused, ',' ORDER BY name), '') FROM job_cron_entries)`)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
