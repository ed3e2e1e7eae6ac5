package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// cronEntry is an entry of GET /api/cron.
type cronEntry struct {
	Name   string  `json:"name"`
	Paused bool    `json:"paused"`
	JobIDs []int64 `json:"job_ids"`
}

func cronEntries(t *testing.T, srv *server) map[string]cronEntry {
	t.Helper()
	var list []cronEntry
	getJSON(t, srv.url("/api/cron"), &list)
	out := map[string]cronEntry{}
	for _, e := range list {
		out[e.Name] = e
	}
	return out
}

// TestCronRunNowAndPause: on /jobs/cron, Run now inserts a job that
// appears in the entry's jobs live (over the stream, the page is not
// reloaded) and runs; Pause shows live, and survives a restart of the
// server. Screenshots at 1280 and 390 px.
func TestCronRunNowAndPause(t *testing.T) {
	srv := startServer(t, "-poll", "50ms")
	browser, _ := newBrowser(t)
	dir := artifacts(t)
	ctx, cons, _ := newTab(t, browser)
	// The restart below breaks the page's stream for a moment: htmx logs it.
	cons.allow(func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && strings.Contains(m.URL, "/events?") ||
			m.Type == chromedp.ConsoleError && m.Text == "[object Event]" && strings.Contains(m.URL, "/static/vendor/htmx-")
	})

	do(t, ctx, "open /jobs/cron", chromedp.Navigate(srv.url("/jobs/cron")), chromedp.WaitVisible(chromedp.ID("cron-db-optimize")))
	waitLive(t, ctx)
	if words := eval[string](t, ctx, `document.querySelector("#cron-db-optimize .cron-words").textContent`); words != "every hour at minute 00 UTC" {
		t.Errorf("the schedule in words: %q", words)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#cron-db-optimize .cron-jobs li[id]").length`); n != 0 {
		t.Fatalf("a new server's entry already lists %d jobs", n)
	}
	eval[bool](t, ctx, `window.__marker = "set on /jobs/cron"; true`)

	do(t, ctx, "click Run now", chromedp.Click(chromedp.CSS(`#cron-db-optimize form[action$="/run"] button`)))
	waitFor(t, ctx, 10*time.Second, "the flash naming the inserted job", `/Inserted job \d+/.test(document.getElementById("cron-flash").textContent)`,
		`document.getElementById("cron-flash").outerHTML`)
	// The answer is only the flash: the job comes by the stream.
	waitFor(t, ctx, 10*time.Second, "the job run now in the entry's jobs, completed", `(function () {
  var li = document.querySelector("#cron-db-optimize .cron-jobs li[id]");
  return li && li.querySelector(".job-state").textContent.trim() === "completed";
})()`, `document.getElementById("cron-db-optimize").outerHTML`)
	shown := eval[string](t, ctx, `document.querySelector("#cron-db-optimize .cron-jobs li[id]").id`)
	e := cronEntries(t, srv)["db-optimize"]
	if len(e.JobIDs) != 1 || shown != "cron-job-"+strconv.FormatInt(e.JobIDs[0], 10) {
		t.Fatalf("the page shows %s; the API says %+v", shown, e)
	}
	if last := eval[string](t, ctx, `document.querySelector("#cron-db-optimize .cron-last").textContent.trim()`); last == "never" {
		t.Errorf("last run still says never")
	}
	shoot(t, ctx, dir, "cron")

	do(t, ctx, "click Pause", chromedp.Click(chromedp.CSS(`#cron-db-optimize form[action$="/pause"] button`)))
	waitFor(t, ctx, 10*time.Second, "the entry to show paused", `document.querySelector("#cron-db-optimize.cron-paused form[action$='/resume']") !== null &&
  document.querySelector("#cron-db-optimize .cron-next").textContent.trim() === "paused"`, `document.getElementById("cron-db-optimize").outerHTML`)
	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set on /jobs/cron" {
		t.Fatalf("window marker = %q: /jobs/cron reloaded", m)
	}
	shoot(t, ctx, dir, "cron-paused")

	// A restart: the pause is stored.
	srv.stop()
	srv.start()
	if !cronEntries(t, srv)["db-optimize"].Paused {
		t.Fatal("the API says db-optimize runs again after a restart")
	}
	do(t, ctx, "reload /jobs/cron", chromedp.Navigate(srv.url("/jobs/cron")), chromedp.WaitVisible(chromedp.ID("cron-db-optimize")))
	waitLive(t, ctx)
	if !eval[bool](t, ctx, `document.querySelector("#cron-db-optimize.cron-paused form[action$='/resume']") !== null`) {
		t.Fatal("the page does not show db-optimize paused after a restart")
	}
	do(t, ctx, "click Resume", chromedp.Click(chromedp.CSS(`#cron-db-optimize form[action$="/resume"] button`)))
	waitFor(t, ctx, 10*time.Second, "the entry to run again", `document.querySelector("#cron-db-optimize:not(.cron-paused) form[action$='/pause']") !== null`,
		`document.getElementById("cron-db-optimize").outerHTML`)
	if cronEntries(t, srv)["db-optimize"].Paused {
		t.Fatal("still paused in the API after Resume")
	}

	capture(t, browser, dir, "phone-cron", srv.url("/jobs/cron"), func(ctx context.Context) {
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("layout: /jobs/cron is %d px wide on a 390 px phone: it scrolls sideways", w)
		}
	}, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
}

// TestReadOnlyDashboard: with -read-only the jobs pages show everything,
// say "Read-only" and have no action; a POST from the page is refused with
// 403 and changes nothing; Phone Home (not the jobs dashboard) still works.
func TestReadOnlyDashboard(t *testing.T) {
	srv := startServer(t, "-read-only", "-answer-rate", "0", "-backoff", "1h", "-poll", "50ms")
	post(t, srv.url("/api/phone-home")) // not the jobs dashboard: allowed
	browser, _ := newBrowser(t)
	dir := artifacts(t)
	ctx, cons, _ := newTab(t, browser)
	cons.expectRefusal(403, "/api/cron/db-optimize/run") // the page's POSTs below, refused
	cons.expectRefusal(403, "/jobs/1/cancel")

	do(t, ctx, "open /jobs", chromedp.Navigate(srv.url("/jobs")), chromedp.WaitVisible(chromedp.CSS(".read-only-note")))
	waitLive(t, ctx)
	waitFor(t, ctx, 15*time.Second, "the 10 calls listed", `document.querySelectorAll("#jobs-rows tr.job-row").length === 10`,
		`document.getElementById("jobs-rows").outerHTML`)
	const actions = `document.querySelectorAll("#jobs-bulk, .queue-controls form, input[name=id], .pick-all, .job-actions form, .cron-controls form").length`
	if n := eval[int](t, ctx, actions); n != 0 {
		t.Errorf("/jobs shows %d action controls although read-only", n)
	}
	if note := eval[string](t, ctx, `document.querySelector(".read-only-note").textContent`); !strings.Contains(note, "Read-only") {
		t.Errorf("the note says %q", note)
	}
	shoot(t, ctx, dir, "jobs-read-only")

	// A POST from the page itself (same origin, so only -read-only refuses it).
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	got, err := chromedp.Run(fctx, chromedp.Evaluate[string](`fetch("/api/cron/db-optimize/run", {method: "POST"})
  .then(function (r) { return r.text().then(function (b) { return r.status + " " + b; }); })`, chromedp.EvalAwaitPromise))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "403 ") || !strings.Contains(got, "read-only") {
		t.Errorf("POST /api/cron/db-optimize/run from the page: %s, want 403 saying read-only", got)
	}
	// A page opened before the server was restarted with -read-only still
	// has its buttons: its htmx form is refused with 403, and the refusal
	// shows in the page's flash instead of vanishing.
	if !eval[bool](t, ctx, `(function () {
  var f = document.createElement("form");
  f.id = "stale-cancel";
  f.setAttribute("hx-post", "/jobs/1/cancel");
  f.setAttribute("hx-target", "#jobs-flash");
  f.innerHTML = '<button type="submit">Cancel</button>';
  document.querySelector("main").appendChild(f);
  htmx.process(f);
  f.querySelector("button").click();
  return true;
})()`) {
		t.Fatal("could not add a stale page's cancel button")
	}
	waitFor(t, ctx, 5*time.Second, "the refusal in #jobs-flash", `/read-only/.test(document.querySelector("#jobs-flash .flash-error")?.textContent || "")`,
		`document.getElementById("jobs-flash").outerHTML`)
	resp, err := http.Post(srv.url("/jobs/1/cancel"), "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "read-only") {
		t.Errorf("POST /jobs/1/cancel: %d %.200s", resp.StatusCode, body)
	}
	if j := apiJob(t, srv, 1); j.State == "cancelled" {
		t.Errorf("read-only cancelled job 1")
	}
	if e := cronEntries(t, srv)["db-optimize"]; len(e.JobIDs) != 0 {
		t.Errorf("read-only ran db-optimize: %+v", e)
	}

	for path, name := range map[string]string{"/jobs/cron": "cron-read-only", "/jobs/1": "job-read-only"} {
		capture(t, browser, dir, name, srv.url(path), func(ctx context.Context) {
			if n := eval[int](t, ctx, actions); n != 0 {
				t.Errorf("%s shows %d action controls although read-only", path, n)
			}
			if !eval[bool](t, ctx, `document.querySelector(".read-only-note") !== null`) {
				t.Errorf("%s does not say read-only", path)
			}
		})
	}
	capture(t, browser, dir, "phone-jobs-read-only", srv.url("/jobs"), func(ctx context.Context) {
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("layout: read-only /jobs is %d px wide on a 390 px phone", w)
		}
	}, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
}
