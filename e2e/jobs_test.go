package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// jobRow reads a job's row on /jobs: its state class and attempt ("2/5").
func jobRow(id int64) string {
	return `(function () {
  var tr = document.getElementById("job-` + strconv.FormatInt(id, 10) + `");
  if (!tr) return null;
  var state = tr.querySelector(".job-state");
  return {state: state ? state.textContent.trim() : "", attempt: tr.querySelector("td.num:not(.job-id)").textContent.trim()};
})()`
}

type jobView struct {
	State   string `json:"state"`
	Attempt string `json:"attempt"`
}

type jobJSON struct {
	ID      int64  `json:"id"`
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	Errors  []struct {
		Error string `json:"error"`
	} `json:"errors"`
}

// TestJobsCancelRetry cancels a job and retries it from the jobs dashboard
// (tick, Cancel selected, tick, Retry selected) and sees each change arrive
// live in its row and in the state tabs, without a reload.
func TestJobsCancelRetry(t *testing.T) {
	srv := startCampaignOnHold(t)
	ctx, _ := newBrowser(t)

	const listed = 3
	row := jobRow(listed)
	pick := chromedp.ID("job-pick-" + strconv.Itoa(listed))
	do(t, ctx, "open /jobs", chromedp.Navigate(srv.url("/jobs")), chromedp.WaitVisible(chromedp.ID("job-3")))
	waitLive(t, ctx)
	eval[bool](t, ctx, `window.__marker = "set on /jobs"; true`)
	if v := eval[jobView](t, ctx, row); v.State != "retryable" || v.Attempt != "1/5" {
		t.Fatalf("job %d shows %+v, want retryable after attempt 1/5", listed, v)
	}
	do(t, ctx, "tick job 3 and cancel it", chromedp.Click(pick),
		chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="cancel"]`)))
	waitFor(t, ctx, 10*time.Second, "job 3's row to say cancelled, and the Cancelled tab to count it",
		`(function () { var r = `+row+`; return r && r.state === "cancelled" &&
  document.getElementById("jobs-n-cancelled").textContent.trim() === "1"; })()`,
		`document.getElementById("job-3").outerHTML + document.getElementById("jobs-flash").outerHTML`)
	waitFor(t, ctx, 5*time.Second, "the answer in #jobs-flash", `document.querySelector("#jobs-flash .flash") !== null`,
		`document.getElementById("jobs-flash").outerHTML`)
	if state := apiJob(t, srv, listed).State; state != "cancelled" {
		t.Fatalf("job %d is %s in the API after Cancel selected", listed, state)
	}

	if !eval[bool](t, ctx, `document.getElementById("job-pick-3").checked`) {
		do(t, ctx, "tick job 3 again", chromedp.Click(pick))
	}
	do(t, ctx, "retry job 3", chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="retry"]`)))
	// Retried, it runs at once, goes unanswered again and waits for its third call.
	waitFor(t, ctx, 10*time.Second, "job 3 to run again and wait for its next retry",
		`(function () { var r = `+row+`; return r && r.state === "retryable" && r.attempt === "2/5" &&
  document.getElementById("jobs-n-cancelled").textContent.trim() === "0"; })()`,
		`document.getElementById("job-3").outerHTML`)
	if j := apiJob(t, srv, listed); j.State != "retryable" || j.Attempt != 2 || len(j.Errors) != 2 {
		t.Fatalf("job %d after Retry selected: %+v, want retryable after attempt 2 with 2 errors", listed, j)
	}
	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set on /jobs" {
		t.Fatalf("window marker = %q: /jobs reloaded", m)
	}
}

// startCampaignOnHold starts a server where every call goes unanswered and
// waits an hour for its retry, runs a campaign, and waits until its 10 jobs
// are retryable: they hold still unless someone acts on them.
func startCampaignOnHold(t *testing.T) *server {
	t.Helper()
	srv := startServer(t, "-answer-rate", "0", "-backoff", "1h", "-poll", "50ms")
	post(t, srv.url("/api/phone-home"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		var list struct {
			Items []jobJSON `json:"items"`
		}
		getJSON(t, srv.url("/api/jobs?state=retryable&limit=100"), &list)
		if len(list.Items) == 10 {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the 10 calls are waiting for their retry after 15s", len(list.Items))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func apiJob(t *testing.T, srv *server, id int64) jobJSON {
	t.Helper()
	var j jobJSON
	getJSON(t, srv.url("/api/jobs/"+strconv.FormatInt(id, 10)), &j)
	return j
}

// TestJobsDeleteSelectedAsksFirst: Delete selected asks before deleting,
// naming how many jobs are ticked (as a job's own Delete asks); declined,
// nothing is deleted; accepted, the ticked jobs are. Cancel selected does
// not ask (TestJobsCancelRetry clicks it straight through).
func TestJobsDeleteSelectedAsksFirst(t *testing.T) {
	srv := startCampaignOnHold(t)
	ctx, _ := newBrowser(t)
	do(t, ctx, "open /jobs", chromedp.Navigate(srv.url("/jobs")), chromedp.WaitVisible(chromedp.ID("job-3")))
	waitLive(t, ctx)
	// The page's confirm, answered by the test: the question is recorded.
	eval[bool](t, ctx, `window.__asked = []; window.__answer = false;
window.confirm = function (q) { window.__asked.push(q); return window.__answer; };
window.__requests = 0;
document.addEventListener("htmx:beforeRequest", function (e) {
  if (e.detail.elt.getAttribute && e.detail.elt.getAttribute("id") === "jobs-bulk") window.__requests++;
}); true`)
	do(t, ctx, "tick jobs 3 and 4, Delete selected, decline", chromedp.Click(chromedp.ID("job-pick-3")),
		chromedp.Click(chromedp.ID("job-pick-4")), chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="delete"]`)))
	waitFor(t, ctx, 5*time.Second, "the question", `window.__asked.length === 1`, `JSON.stringify(window.__asked)`)
	if q := eval[string](t, ctx, `window.__asked[0]`); q != "Delete 2 selected jobs? This cannot be undone." {
		t.Errorf("Delete selected asked %q", q)
	}
	// Declined: no request was made (htmx fires beforeRequest in the same
	// turn as the question, before sending).
	if n := eval[int](t, ctx, `window.__requests`); n != 0 {
		t.Errorf("a declined Delete selected made %d requests", n)
	}
	for _, id := range []int64{3, 4} {
		if state := apiJob(t, srv, id).State; state != "retryable" {
			t.Fatalf("job %d is %s after a declined delete", id, state)
		}
	}

	eval[bool](t, ctx, `window.__answer = true; true`)
	if !eval[bool](t, ctx, `document.getElementById("job-pick-3").checked && document.getElementById("job-pick-4").checked`) {
		do(t, ctx, "tick jobs 3 and 4 again", chromedp.Click(chromedp.ID("job-pick-3")), chromedp.Click(chromedp.ID("job-pick-4")))
	}
	do(t, ctx, "Delete selected, accept", chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="delete"]`)))
	waitFor(t, ctx, 10*time.Second, "both rows to say deleted",
		`["job-3", "job-4"].every(function (id) { var tr = document.getElementById(id); return tr && tr.classList.contains("job-row-deleted"); })`,
		`document.getElementById("jobs-flash").outerHTML`)
	if q := eval[string](t, ctx, `window.__asked[1] || ""`); q != "Delete 2 selected jobs? This cannot be undone." {
		t.Errorf("the second Delete selected asked %q", q)
	}
}

// TestJobsQueueTableFitsItsCard: on a 1,400 px screen the queue table
// fits its card (its Scale buttons are not cut off behind a scroll bar);
// on a 390 px phone the page does not scroll sideways (the table scrolls
// inside its card there).
func TestJobsQueueTableFitsItsCard(t *testing.T) {
	srv := startCampaignOnHold(t)
	browser, _ := newBrowser(t)
	dir := artifacts(t)
	const fits = `(function () {
  var card = document.getElementById("jobs-queues"), r = card.getBoundingClientRect(), out = [];
  if (card.scrollWidth > card.clientWidth) out.push("table " + card.scrollWidth + " px in a card of " + card.clientWidth);
  card.querySelectorAll(".scale button").forEach(function (b) {
    var br = b.getBoundingClientRect();
    if (br.right > r.right) out.push("a Scale button ends at " + br.right + ", the card at " + r.right);
  });
  return out.join("; ");
})()`
	capture(t, browser, dir, "jobs-queues-1400", srv.url("/jobs"), func(ctx context.Context) {
		if got := eval[string](t, ctx, fits); got != "" {
			t.Errorf("layout at 1400 px: %s", got)
		}
	}, chromedp.EmulateViewport(1400, 1000))
	capture(t, browser, dir, "jobs-queues-390", srv.url("/jobs"), func(ctx context.Context) {
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("layout: /jobs is %d px wide on a 390 px phone: it scrolls sideways", w)
		}
	}, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
}
