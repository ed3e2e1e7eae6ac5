package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestJobPageCancelRetry cancels a job and retries it from its own page
// (Cancel, Retry now): the panel follows the job live, to its second
// unanswered attempt, without a reload.
func TestJobPageCancelRetry(t *testing.T) {
	srv := startCampaignOnHold(t)
	ctx, _ := newBrowser(t)
	const shown = 4
	panelState := `(document.querySelector("#job-panel .job-head .job-state") || {}).textContent`
	do(t, ctx, "open /jobs/4", chromedp.Navigate(srv.url("/jobs/4")), chromedp.WaitVisible(chromedp.ID("job-panel")))
	waitLive(t, ctx)
	eval[bool](t, ctx, `window.__marker = "set on /jobs/4"; true`)
	do(t, ctx, "click Cancel", chromedp.Click(chromedp.CSS(`#job-panel form[action="/jobs/4/cancel"] button`)))
	waitFor(t, ctx, 10*time.Second, "the panel to say cancelled and offer Retry now",
		panelState+` === "cancelled" && htmxReady(document.querySelector('#job-panel form[action="/jobs/4/retry"]'))`,
		`document.getElementById("job-panel").outerHTML`)
	do(t, ctx, "click Retry now", chromedp.Click(chromedp.CSS(`#job-panel form[action="/jobs/4/retry"] button`)))
	waitFor(t, ctx, 10*time.Second, "the panel to show the second attempt and its error",
		panelState+` === "retryable" && document.querySelectorAll("#job-panel .job-error").length === 2`,
		`document.getElementById("job-panel").outerHTML`)
	if j := apiJob(t, srv, shown); j.State != "retryable" || j.Attempt != 2 {
		t.Fatalf("job %d after Retry now: %+v, want retryable after attempt 2", shown, j)
	}
	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set on /jobs/4" {
		t.Fatalf("window marker = %q: /jobs/4 reloaded", m)
	}
}
