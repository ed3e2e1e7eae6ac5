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
