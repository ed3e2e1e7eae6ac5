package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowsingManyLivePages walks one tab through more live pages than a
// browser opens connections to one host over HTTP/1.1 (6), then back: every
// page connects its stream and answers its buttons. A page kept in the
// back/forward cache must not keep its event stream open, or the seventh
// page waits for a connection that never frees.
func TestBrowsingManyLivePages(t *testing.T) {
	srv := startServer(t, "-pet-tick", "1s")
	ctx, _ := newBrowser(t)
	for _, path := range []string{"/", "/pets", "/pets/1", "/pets/2", "/pets/3", "/pets/4", "/pets/5", "/pets/6"} {
		do(t, ctx, "open "+path, chromedp.Navigate(srv.url(path)), chromedp.WaitVisible(chromedp.CSS("footer.footer")))
		waitFor(t, ctx, 5*time.Second, path+" to go live", `document.body.dataset.live === "open"`,
			`document.querySelector(".live").outerHTML`)
	}
	for _, want := range []string{"/pets/5", "/pets/4"} {
		do(t, ctx, "go back", chromedp.NavigateBack(), chromedp.WaitVisible(chromedp.CSS("footer.footer")))
		waitFor(t, ctx, 5*time.Second, want+" to be live again after going back",
			`location.pathname === "`+want+`" && document.body.dataset.live === "open"`, `location.pathname + " " + document.querySelector(".live").outerHTML`)
	}
}

// TestNoLiveIndicatorWithoutStream: a page with no live region (the adoption
// form, its error, an error page) shows no "connecting…" that never connects.
func TestNoLiveIndicatorWithoutStream(t *testing.T) {
	srv := startServer(t)
	ctx, cons := newBrowser(t)
	cons.expectRefusal(404, "/pets/999999")
	for _, path := range []string{"/pets/new", "/pets/999999"} {
		do(t, ctx, "open "+path, chromedp.Navigate(srv.url(path)), chromedp.WaitVisible(chromedp.CSS("footer.footer")))
		waitFor(t, ctx, 5*time.Second, "no live indicator on "+path,
			`getComputedStyle(document.querySelector(".live")).display === "none"`, `document.querySelector(".live").outerHTML`)
	}
}
