package e2e

import (
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestWithoutJavaScript: with scripts off, the header does not pretend to
// connect (the live indicator stays hidden and a note says to reload), and
// Phone Home, a plain form then, sends the browser back to a page that
// says how many calls it enqueued.
func TestWithoutJavaScript(t *testing.T) {
	srv := startServer(t)
	ctx, _ := newBrowser(t)
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "open /", chromedp.Navigate(srv.url("/")),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/phone-home"] button`)))
	if eval[bool](t, ctx, `!!window.htmx`) {
		t.Fatal("scripts ran: the test cannot see the page without JavaScript")
	}
	if shown := eval[bool](t, ctx, `getComputedStyle(document.querySelector(".live")).display !== "none"`); shown {
		t.Error("without JavaScript the live indicator is shown (it would say connecting… for ever)")
	}
	if note := eval[string](t, ctx, `(document.querySelector(".live-off") || {}).textContent || ""`); note != "JavaScript is off: reload to see changes" {
		t.Errorf("the header's note: %q", note)
	}

	// The form posts and the browser follows the redirect: a new page,
	// which alone has a flash.
	do(t, ctx, "press Phone Home", chromedp.Click(chromedp.CSS(`form[action="/phone-home"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash .flash`)))
	at := eval[string](t, ctx, `location.pathname + location.search`)
	if flash := eval[string](t, ctx, `document.querySelector("#flash").textContent`); flash != "Phoning home: 10 calls enqueued." || at != "/?enqueued=10" {
		t.Errorf("after Phone Home: at %s, flash %q", at, flash)
	}
}
