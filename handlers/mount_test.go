package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestMountedJobsDashboard is the example of issue 15's "mountable": a
// plain net/http program with its own engine over its own SQLite file
// mounts the jobs dashboard under /admin/jobs, next to its own routes. The
// pages, the API, the static files and a live event all work through the
// prefix, every URL a page renders carries it, and a read-only mount of
// the same engine refuses actions.
func TestMountedJobsDashboard(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, filepath.Join(t.TempDir(), "host.db"))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine, err := jobs.New(st.Writer, jobs.Config{
		Queues: map[string]int{"default": 2}, Reader: st.Reader, Logger: logger,
		Periodic: []jobs.PeriodicJob{{Name: "digest", Spec: "0 6 * * 1-5", Args: reportArgs{Report: "digest"}, Description: "the weekday digest"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Stop(ctx) })

	dash, err := handlers.NewJobsDashboard(handlers.JobsDashboardConfig{Engine: engine, Reader: st.Reader, Prefix: "/admin/jobs", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := handlers.NewJobsDashboard(handlers.JobsDashboardConfig{Engine: engine, Reader: st.Reader, Prefix: "/ro/jobs", ReadOnly: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "the host's own page") })
	for _, d := range []struct {
		prefix string
		h      http.Handler
	}{{"/admin/jobs", dash}, {"/ro/jobs", ro}} {
		mux.Handle(d.prefix, d.h)
		mux.Handle(d.prefix+"/", d.h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = dash.Close(); _ = ro.Close() }) // before srv.Close: streams end first
	do := func(method, path, body string, header map[string]string) (*http.Response, string) {
		t.Helper()
		return request(t, noRedirects(srv.Client()), method, srv.URL+path, strings.NewReader(body), header)
	}

	res, err := engine.Insert(ctx, dashArgs{Name: "Zorg"}, jobs.InsertOpts{})
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(res.ID, 10)

	// The page: the job, and every URL under the prefix.
	resp, page := do("GET", "/admin/jobs", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Zorg") {
		t.Fatalf("GET /admin/jobs: %d %.300s", resp.StatusCode, page)
	}
	urls := regexp.MustCompile(`(?:href|src|action|hx-get|hx-post|sse-connect)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(urls) < 20 {
		t.Fatalf("only %d URLs on the page", len(urls))
	}
	for _, u := range urls {
		if !strings.HasPrefix(u[1], "/admin/jobs") {
			t.Errorf("the mounted page links %q, outside its prefix", u[1])
		}
	}
	for _, want := range []string{`href="/admin/jobs/` + id + `"`, `sse-connect="/admin/jobs/events?stream=jobs&amp;`,
		`href="/admin/jobs/static/jobs.css"`, `href="/admin/jobs/cron"`, `action="/admin/jobs/bulk"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the mounted page lacks %s", want)
		}
	}
	if strings.Contains(page, "Extraterrestrials") {
		t.Errorf("the mounted page links the app's other pages")
	}
	for path, want := range map[string]string{
		"/admin/jobs/" + id:          "Zorg",
		"/admin/jobs/cron":           "the weekday digest",
		"/admin/jobs/static/app.css": "",
		"/elsewhere":                 "the host's own page",
	} {
		resp, body := do("GET", path, "", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %.200q", path, resp.StatusCode, body)
		}
	}
	if resp, _ := do("GET", "/admin/jobs/static/app.css", "", nil); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("static CSS served as %q", resp.Header.Get("Content-Type"))
	}
	if resp, _ := do("GET", "/admin/jobsx", "", nil); resp.StatusCode != http.StatusOK { // the host's catch-all, not the dashboard
		t.Errorf("GET /admin/jobsx: %d", resp.StatusCode)
	}
	if resp, body := do("GET", "/admin/jobs/nope/deeper/still", "", nil); (resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed) || !strings.Contains(body, `href="/admin/jobs"`) {
		t.Errorf("unknown page under the prefix: %d %.200q (the error page links the dashboard)", resp.StatusCode, body)
	}

	// The API through the prefix.
	resp, body := do("GET", "/admin/jobs/api/jobs/"+id, "", nil)
	var j apiJob
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &j) != nil || j.ID == nil || *j.ID != res.ID {
		t.Errorf("GET /admin/jobs/api/jobs/%s: %d %s", id, resp.StatusCode, body)
	}
	// (405 where a POST-only route has the path's shape, as /{id}/{action}.)
	if resp, body := do("GET", "/admin/jobs/api/nope", "", nil); resp.StatusCode < 400 || !strings.HasPrefix(body, `{"error"`) {
		t.Errorf("unknown API route: %d %s, want a JSON error", resp.StatusCode, body)
	}
	if resp, body := do("GET", "/admin/jobs/api/cron", "", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"schedule":"at 06:00 on Monday to Friday UTC"`) {
		t.Errorf("GET /admin/jobs/api/cron: %d %s", resp.StatusCode, body)
	}

	// A live event through the prefix: a job run now shows on the stream,
	// its row linking under the prefix.
	msgs, _, _ := openStream(t, srv.Client(), srv.URL+"/admin/jobs/events?stream=jobs")
	resp, body = do("POST", "/admin/jobs/api/cron/digest/run", "", nil)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &j) != nil {
		t.Fatalf("run now through the prefix: %d %s", resp.StatusCode, body)
	}
	run := strconv.FormatInt(*j.ID, 10)
	until(t, msgs, "the new job's row on the mounted stream", func(m events.Message) bool {
		return strings.Contains(m.Data, `<tr id="job-`+run+`"`) && strings.Contains(m.Data, `href="/admin/jobs/`+run+`"`)
	})

	// The form routes through the prefix redirect under it.
	resp, _ = do("POST", "/admin/jobs/"+id+"/cancel", "", asForm)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/jobs/"+id {
		t.Errorf("cancel form: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The read-only mount of the same engine shows, and refuses.
	if resp, page := do("GET", "/ro/jobs", "", nil); resp.StatusCode != http.StatusOK || !strings.Contains(page, "Read-only") || strings.Contains(page, "Cancel selected") {
		t.Errorf("read-only mount's page: %d", resp.StatusCode)
	}
	if resp, body := do("POST", "/ro/jobs/api/cron/digest/run", "", nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("read-only mount ran a job: %d %s", resp.StatusCode, body)
	}

	if _, err := handlers.NewJobsDashboard(handlers.JobsDashboardConfig{Engine: engine, Reader: st.Reader, Prefix: "admin/"}); err == nil {
		t.Errorf("a prefix without a leading slash was accepted")
	}
}
