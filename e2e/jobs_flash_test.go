package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// flashPlace reads where the jobs list's answer (#jobs-flash .flash) is
// against the window, the height of its place in the page, and where the
// list's toolbar is: what the user was looking at (the browser keeps that
// in place when content above it grows, by scrolling, so the scroll
// offset alone cannot tell a jump).
const flashPlace = `(function () {
  var box = document.getElementById("jobs-flash"), msg = box.querySelector(".flash") || box,
    r = msg.getBoundingClientRect(), bar = document.getElementById("jobs-bulk").getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, height: window.innerHeight, place: box.offsetHeight,
    toolbarTop: bar.top, toolbarBottom: bar.bottom, text: box.textContent.trim()};
})()`

type flashView struct {
	Top           float64 `json:"top"`
	Bottom        float64 `json:"bottom"`
	Height        float64 `json:"height"`
	Place         float64 `json:"place"`
	ToolbarTop    float64 `json:"toolbarTop"`
	ToolbarBottom float64 `json:"toolbarBottom"`
	Text          string  `json:"text"`
}

// TestJobsFlashInView: an action on the list with the page scrolled down
// (the toolbar at the top of the window, the flash's place far above it)
// answers where the user is: the message shows inside the window, off the
// buttons just pressed, and nothing on the page moves. Scrolled on, the
// message goes back to its place, which kept its height meanwhile.
func TestJobsFlashInView(t *testing.T) {
	srv := startCampaignOnHold(t)
	ctx, _ := newBrowser(t)
	do(t, ctx, "open /jobs?state=retryable", chromedp.EmulateViewport(1280, 700),
		chromedp.Navigate(srv.url("/jobs?state=retryable")), chromedp.WaitVisible(chromedp.ID("job-3")))
	waitLive(t, ctx)
	eval[bool](t, ctx, `document.getElementById("jobs-bulk").scrollIntoView({block: "start"}); true`)
	before := eval[flashView](t, ctx, flashPlace)
	if before.Bottom > 0 {
		t.Fatalf("scrolled to the toolbar, the flash's place is at %+v: the test needs it above the window", before)
	}

	do(t, ctx, "tick job 3, Cancel selected", chromedp.Click(chromedp.ID("job-pick-3")),
		chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="cancel"]`)))
	waitFor(t, ctx, 10*time.Second, "the answer in #jobs-flash and job 3's row cancelled",
		`document.getElementById("jobs-flash").textContent.trim() === "Cancelled 1 selected job." &&
  document.querySelector("#job-3 .job-state").textContent.trim() === "cancelled"`,
		`document.getElementById("jobs-flash").outerHTML`)
	after := eval[flashView](t, ctx, flashPlace)
	if after.Top < 0 || after.Bottom > after.Height {
		t.Errorf("the answer is at %.0f…%.0f px of a %.0f px window: out of view", after.Top, after.Bottom, after.Height)
	}
	if after.Bottom > after.ToolbarTop && after.Top < after.ToolbarBottom {
		t.Errorf("the answer (%.0f…%.0f px) covers the toolbar (%.0f…%.0f px)", after.Top, after.Bottom, after.ToolbarTop, after.ToolbarBottom)
	}
	if d := after.ToolbarTop - before.ToolbarTop; d < -1 || d > 1 {
		t.Errorf("the toolbar moved from %.0f to %.0f px in the window: the page should stay where the user is", before.ToolbarTop, after.ToolbarTop)
	}
	windowShot(t, ctx, "jobs-flash-in-view")

	// Scrolled on, the answer is read: it goes back to its place, whose
	// height has not changed (nothing below it moves).
	eval[bool](t, ctx, `window.scrollBy(0, -300); true`)
	waitFor(t, ctx, 5*time.Second, "the answer to go back to its place once the page is scrolled",
		`document.querySelector("#jobs-flash .flash").getBoundingClientRect().bottom <= 0`, `JSON.stringify(`+flashPlace+`)`)
	if back := eval[flashView](t, ctx, flashPlace); back.Place != after.Place {
		t.Errorf("the flash's place was %.0f px high while its message was pinned, %.0f px after", after.Place, back.Place)
	}
}

// windowShot saves what the window shows (not the whole page, where a
// message pinned to the window would be drawn at the page's foot) as
// name.png in the artifacts.
func windowShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	buf, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot of %s: %v", name, err)
	}
	path := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
