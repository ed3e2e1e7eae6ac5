package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// TestPagesLookRight opens every page, at a desktop and
// a phone width, with no console error and no CSP violation anywhere, and
// saves a full-page screenshot of each (see artifacts). The pages are caught
// in an interesting moment: a campaign between its first and second calls
// (checks and spinners, jobs waiting to retry), a pet of one's own with
// other pets being watched beside it. Each page gets a tab of its own, as a
// person opening links in new tabs would.
func TestPagesLookRight(t *testing.T) {
	// The Oban backoff keeps failed calls waiting about 17 s for their retry.
	srv := startServer(t, "-backoff", "oban", "-answer-rate", "0.4", "-poll", "50ms", "-pet-tick", "1s")
	browser, _ := newBrowser(t)
	dir := artifacts(t)

	// Other visitors watch two seed pets, so that the pet page has company.
	other1, _, _ := newTab(t, browser)
	other2, _, _ := newTab(t, browser)
	do(t, other1, "watch pet 1", chromedp.Navigate(srv.url("/pets/1")), chromedp.WaitVisible(chromedp.ID("pet-stats")))
	do(t, other2, "watch pet 2", chromedp.Navigate(srv.url("/pets/2")), chromedp.WaitVisible(chromedp.ID("pet-stats")))

	campaign, _, closeCampaign := newTab(t, browser)
	do(t, campaign, "open /", chromedp.Navigate(srv.url("/")), chromedp.WaitVisible(chromedp.ID("extraterrestrials")))
	waitLive(t, campaign)
	do(t, campaign, "click Phone Home", chromedp.Click(chromedp.CSS(`form[hx-post="/phone-home"] button`)))
	// Every row called once; some answered, the others wait for a retry.
	waitFor(t, campaign, 15*time.Second, "every extraterrestrial to have called once", `(function () {
  var rows = `+etRows+`, c = `+etCounts+`;
  return rows.length === 10 && rows.every(function (r) { return r.attempt === 1 && r.status !== ""; }) &&
    c[0] + c[1] === 10 && c[3] === 0;
})()`, `JSON.stringify(`+etRows+`)`)
	shoot(t, campaign, dir, "extraterrestrials")
	closeCampaign()

	capture(t, browser, dir, "extraterrestrials-filtered", srv.url("/?status=phoning_home"), nil)
	capture(t, browser, dir, "pets", srv.url("/pets"), nil)
	capture(t, browser, dir, "pets-new", srv.url("/pets/new"), nil)

	// The adoption form's error, then a pet of one's own.
	tab, cons, closeTab := newTab(t, browser)
	// A rejected form is answered 422: Chromium logs that as a failed load.
	cons.expectRefusal(422, "/pets")
	do(t, tab, "submit a name too short",
		chromedp.Navigate(srv.url("/pets/new")),
		chromedp.WaitVisible(chromedp.CSS(`form.adopt-form input[name="name"]`)),
		chromedp.SetAttributeValue(chromedp.CSS(`form.adopt-form input[name="name"]`), "minlength", "0"),
		chromedp.SendKeys(chromedp.CSS(`form.adopt-form input[name="name"]`), "Al"),
		chromedp.Click(chromedp.CSS(`label.species-option:has(input[value="fox"]) .species-card`)),
		chromedp.Click(chromedp.CSS(`form.adopt-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.adopt-form .flash-error`)),
	)
	shoot(t, tab, dir, "pets-new-error")
	do(t, tab, "adopt a fox",
		chromedp.Clear(chromedp.CSS(`form.adopt-form input[name="name"]`)),
		chromedp.SendKeys(chromedp.CSS(`form.adopt-form input[name="name"]`), "Ember"),
		chromedp.Click(chromedp.CSS(`form.adopt-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("pet-stats")),
	)
	waitLive(t, tab)
	waitFor(t, tab, 10*time.Second, "the other watched pets to be listed", `document.querySelectorAll("#pet-active .active-list li").length === 2`,
		`document.getElementById("pet-active").outerHTML`)
	do(t, tab, "feed it", chromedp.Click(chromedp.CSS(`form.pet-actions button`)),
		chromedp.WaitVisible(chromedp.CSS(`#pet-flash .flash`)))
	shoot(t, tab, dir, "pet")
	petPath := eval[string](t, tab, `location.pathname`)
	closeTab()

	// A stranger's pet seen by this visitor: no Feed, a note instead.
	capture(t, browser, dir, "pet-not-mine", srv.url("/pets/3"), nil)
	capture(t, browser, dir, "pets-with-mine", srv.url("/pets"), nil)

	// The job pages (a call waiting for its retry) and the dashboard.
	capture(t, browser, dir, "jobs", srv.url("/jobs"), nil)
	var jobs struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	getJSON(t, srv.url("/api/jobs?state=retryable&limit=1"), &jobs)
	if len(jobs.Items) == 0 {
		t.Fatal("no call is waiting for its retry")
	}
	capture(t, browser, dir, "job", srv.url("/jobs/"+strconv.FormatInt(jobs.Items[0].ID, 10)), nil)
	capture(t, browser, dir, "dashboard", srv.url("/dashboard"), func(ctx context.Context) {
		// Live: a new sample arrives every second.
		const sample = `parseInt(document.querySelector(".dash-updated").textContent.replace(/^\D*/, ""), 10)`
		first := eval[int](t, ctx, sample)
		waitFor(t, ctx, 10*time.Second, "a new sample on /dashboard", sample+` > `+strconv.Itoa(first),
			`document.querySelector(".dash-updated").outerHTML`)
	})

	// A page that is not there is still a page.
	notFound, cons, closeNotFound := newTab(t, browser)
	cons.expectRefusal(404, "/pets/999999")
	do(t, notFound, "open a missing page", chromedp.Navigate(srv.url("/pets/999999")), chromedp.WaitVisible(chromedp.CSS(".error-page")))
	shoot(t, notFound, dir, "not-found")
	closeNotFound()

	// The same pages on a phone.
	phone := []string{"/", "/pets", "/pets/new", petPath, "/jobs", "/dashboard"}
	names := []string{"phone-extraterrestrials", "phone-pets", "phone-pets-new", "phone-pet", "phone-jobs", "phone-dashboard"}
	for i, path := range phone {
		capture(t, browser, dir, names[i], srv.url(path), func(ctx context.Context) {
			if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
				t.Errorf("layout: %s is %d px wide on a 390 px phone: it scrolls sideways", path, w)
			}
		}, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	}
}

// TestConsoleCatchesViolations proves the console check is not vacuous: an
// inline script injected into a page is blocked by the Content Security
// Policy, and both the browser's log and the page's violation events see it.
func TestConsoleCatchesViolations(t *testing.T) {
	srv := startServer(t)
	ctx, cons := newBrowser(t)
	do(t, ctx, "open /", chromedp.Navigate(srv.url("/")), chromedp.WaitVisible(chromedp.ID("extraterrestrials")))
	eval[bool](t, ctx, `(function () {
  var s = document.createElement("script");
  s.textContent = "window.__inlineRan = true";
  document.body.appendChild(s);
  return true;
})()`)
	waitFor(t, ctx, 5*time.Second, "the violation event", `window.__cspViolations.length > 0`, `JSON.stringify(window.__cspViolations)`)
	if ran := eval[bool](t, ctx, `window.__inlineRan === true`); ran {
		t.Fatal("an inline script ran: the page has no CSP")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cons.mu.Lock()
		n := len(cons.messages)
		cons.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the console saw no error for the CSP violation")
		}
		time.Sleep(25 * time.Millisecond)
	}
	// Seen: now forget them, so that the test passes.
	cons.mu.Lock()
	t.Logf("caught: %v", cons.messages)
	cons.messages = nil
	cons.mu.Unlock()
	eval[bool](t, ctx, `window.__cspViolations = []; true`)
}

// capture opens url in a new tab (after the setup steps, such as a viewport),
// waits until it is loaded and, when it is live, connected, runs check if
// any, saves its screenshot as name, and closes the tab.
func capture(t *testing.T, browser context.Context, dir, name, url string, check func(context.Context), setup ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, _, closeTab := newTab(t, browser)
	defer closeTab()
	do(t, ctx, "open "+url, append(setup, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("footer.footer")))...)
	waitLive(t, ctx)
	if check != nil {
		check(ctx)
	}
	shoot(t, ctx, dir, name)
}

// shoot waits for the fonts and for htmx to settle, moves the mouse out of
// the way (no hover state on the button just clicked), then takes a
// screenshot.
func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	waitFor(t, ctx, 5*time.Second, "fonts and htmx to settle",
		`document.fonts.status === "loaded" && document.querySelectorAll(".htmx-request, .htmx-settling, .htmx-swapping").length === 0`, "")
	do(t, ctx, "move the mouse away", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1))
	screenshot(t, ctx, dir, name)
}

// waitLive waits until a page with a live region is connected.
func waitLive(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, 10*time.Second, "the live indicator to say live",
		`!document.querySelector("[sse-connect]") || document.body.dataset.live === "open"`,
		`document.querySelector(".live") ? document.querySelector(".live").outerHTML : "no .live"`)
}
