package e2e

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestDeleteSelectedWithoutJavaScript: with scripts off, "Delete
// selected" is a plain form post, and the server asks before deleting (as
// "Delete all…" does): the list comes back with the question naming the
// jobs; "Keep them" leaves them; "Delete 2 jobs" deletes them and goes
// back to the list.
func TestDeleteSelectedWithoutJavaScript(t *testing.T) {
	srv := startCampaignOnHold(t)
	ctx, _ := newBrowser(t)
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	const question = "Delete 2 selected jobs (jobs 3 and 4)? This cannot be undone."
	ask := func(what string) {
		t.Helper()
		do(t, ctx, what, chromedp.Navigate(srv.url("/jobs")), chromedp.WaitVisible(chromedp.ID("job-3")),
			chromedp.Click(chromedp.ID("job-pick-3")), chromedp.Click(chromedp.ID("job-pick-4")),
			chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="delete"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#jobs-flash form.delete-confirm`)))
		if eval[bool](t, ctx, `!!window.htmx`) {
			t.Fatal("scripts ran: the test cannot see the page without JavaScript")
		}
		if got := eval[string](t, ctx, `document.querySelector("#jobs-flash .bulk-question").textContent`); got != question {
			t.Errorf("the question: %q, want %q", got, question)
		}
		for _, id := range []int64{3, 4} {
			if state := apiJob(t, srv, id).State; state != "retryable" {
				t.Fatalf("job %d is %s after Delete selected without a confirmation", id, state)
			}
		}
	}

	ask("tick jobs 3 and 4, Delete selected")
	shoot(t, ctx, artifacts(t), "jobs-delete-selected-nojs")
	// The list under the question is the list too: wait for the new page.
	eval[bool](t, ctx, `window.__oldPage = true`)
	do(t, ctx, "Keep them", chromedp.Click(chromedp.CSS(`#jobs-flash form.delete-confirm a`)))
	waitNewPage(t, ctx, "the list without the question",
		`location.pathname === "/jobs" && !document.querySelector("#jobs-flash form") && !!document.getElementById("job-3")`)
	for _, id := range []int64{3, 4} {
		if state := apiJob(t, srv, id).State; state != "retryable" {
			t.Fatalf("job %d is %s after Keep them", id, state)
		}
	}

	ask("tick jobs 3 and 4 again, Delete selected")
	eval[bool](t, ctx, `window.__oldPage = true`)
	do(t, ctx, "Delete 2 jobs", chromedp.Click(chromedp.CSS(`#jobs-flash form.delete-confirm button`)))
	waitNewPage(t, ctx, "back on the list, without jobs 3 and 4",
		`location.pathname + location.search === "/jobs" && !document.querySelector("#jobs-flash form") &&
  !!document.getElementById("job-5") && !document.getElementById("job-3") && !document.getElementById("job-4")`)
	for _, id := range []int64{3, 4} {
		resp, err := http.Get(srv.url("/api/jobs/" + strconv.FormatInt(id, 10)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("job %d after the confirmed delete: %s, want 404", id, resp.Status)
		}
	}
}

// waitNewPage waits until the tab has left the page it was on (marked
// window.__oldPage beforehand), loaded another, and predicate is true of
// it. While the browser navigates, evaluations fail: they are tried again.
func waitNewPage(t *testing.T, ctx context.Context, why, predicate string) {
	t.Helper()
	expr := `!window.__oldPage && document.readyState === "complete" && (` + predicate + `)`
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(ectx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			failureShot(t, ctx)
			t.Fatalf("waiting 10s for %s (last error: %s)", why, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestJobPageDeleteAsks: a job page's Delete asks first with JavaScript
// (hx-confirm) and deletes once told yes; with scripts off the server asks
// the same question, and deletes only once it is answered.
func TestJobPageDeleteAsks(t *testing.T) {
	srv := startCampaignOnHold(t)
	browser, _ := newBrowser(t)

	ctx, _, _ := newTab(t, browser)
	do(t, ctx, "open /jobs/5", chromedp.Navigate(srv.url("/jobs/5")), chromedp.WaitVisible(chromedp.ID("job-panel")))
	waitLive(t, ctx)
	eval[bool](t, ctx, `window.__asked = []; window.confirm = function (q) { window.__asked.push(q); return true; }; true`)
	do(t, ctx, "click Delete, say yes", chromedp.Click(chromedp.CSS(`#job-panel form[action="/jobs/5/delete"] button`)))
	waitFor(t, ctx, 10*time.Second, "the panel to say the job is deleted",
		`/Job 5 has been deleted/.test(document.getElementById("job-panel").textContent)`, `document.getElementById("job-panel").outerHTML`)
	if q := eval[string](t, ctx, `window.__asked.join(" | ")`); q != "Delete job 5? This cannot be undone." {
		t.Errorf("Delete asked %q", q)
	}

	noJS, _, _ := newTab(t, browser)
	if _, err := chromedp.Call(noJS, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	do(t, noJS, "open /jobs/6 without scripts, click Delete", chromedp.Navigate(srv.url("/jobs/6")),
		chromedp.WaitVisible(chromedp.ID("job-panel")),
		chromedp.Click(chromedp.CSS(`#job-panel form[action="/jobs/6/delete"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#job-flash form.delete-confirm`)))
	if q := eval[string](t, noJS, `document.querySelector("#job-flash .bulk-question").textContent`); q != "Delete job 6? This cannot be undone." {
		t.Errorf("the server asked %q", q)
	}
	if state := apiJob(t, srv, 6).State; state != "retryable" {
		t.Fatalf("job 6 is %s before the question is answered", state)
	}
	eval[bool](t, noJS, `window.__oldPage = true`)
	do(t, noJS, "Delete job 6", chromedp.Click(chromedp.CSS(`#job-flash form.delete-confirm button`)))
	waitNewPage(t, noJS, "the list, without job 6", `location.pathname === "/jobs" && !!document.getElementById("job-7") && !document.getElementById("job-6")`)
}
