package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardCardsFit: on the runtime dashboard every card holds its
// content (the Live clients table overflowed its card by 6 px at 1,400
// px), at 1,400 px and on a 390 px phone, with clients on several streams
// so that the tables have their longest names.
func TestDashboardCardsFit(t *testing.T) {
	srv := startServer(t)
	// Clients on the streams with the longest names, so that the Live
	// clients table lists them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, stream := range []string{"extraterrestrials", "jobs", "pets", "pet-1", "stats-30s"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.url("/events?stream="+stream), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %s: %s", stream, resp.Status)
		}
	}
	browser, _ := newBrowser(t)
	dir := artifacts(t)
	// overflow lists every element of a card that reaches past the card's
	// right edge, and every card wider inside than it is.
	const overflow = `(function () {
  var out = [];
  document.querySelectorAll(".dash .card").forEach(function (card) {
    var r = card.getBoundingClientRect(), name = (card.querySelector("h2, figcaption") || card).textContent.trim().split("\n")[0];
    if (card.scrollWidth > card.clientWidth) out.push(name + ": " + card.scrollWidth + " px inside a card of " + card.clientWidth);
    card.querySelectorAll("*").forEach(function (el) {
      var er = el.getBoundingClientRect();
      if (er.width > 0 && er.right > r.right + 0.5) out.push(name + ": <" + el.tagName.toLowerCase() + "> ends at " + er.right.toFixed(1) + ", the card at " + r.right.toFixed(1));
    });
  });
  return out.join("; ");
})()`
	const clients = `document.querySelectorAll("#dash-sse-h ~ table tbody tr").length`
	for _, size := range []struct {
		name string
		set  chromedp.Action[chromedp.Void]
	}{
		{"dashboard-1400", chromedp.EmulateViewport(1400, 1000)},
		{"dashboard-390", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)},
	} {
		capture(t, browser, dir, size.name, srv.url("/dashboard"), func(ctx context.Context) {
			waitFor(t, ctx, 10*time.Second, "the Live clients table to list the streams", clients+` >= 5`,
				`document.getElementById("dash-sse-h").parentNode.outerHTML`)
			if got := eval[string](t, ctx, overflow); got != "" {
				t.Errorf("%s: %s", size.name, got)
			}
			if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > eval[int](t, ctx, `window.innerWidth`) {
				t.Errorf("%s: the page is %d px wide: it scrolls sideways", size.name, w)
			}
		}, size.set)
	}
}
