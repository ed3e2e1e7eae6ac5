package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// petState reads a pet's page: the hunger number of "N / 500 · …", the full
// hearts, "N watching" and the age, as shown; -1 when missing.
const petState = `(function () {
  var num = function (sel, re) {
    var el = document.querySelector(sel);
    if (!el) return -1;
    var m = el.textContent.replace(/,/g, "").match(re || /\d+/);
    return m ? parseInt(m[1] || m[0], 10) : -1;
  };
  return {
    hunger: num("#pet-stats .hearts + .muted", /(\d+)\s*\/\s*500/),
    hearts: document.querySelectorAll("#pet-stats .hearts .heart-full").length,
    watching: num("#pet-stats .watching .stat-n"),
    age: num("#pet-stats .stat-n")
  };
})()`

type petView struct {
	Hunger   int `json:"hunger"`
	Hearts   int `json:"hearts"`
	Watching int `json:"watching"`
	Age      int `json:"age"`
}

// TestPetAdoptFeedWatch adopts a pet through the form, watches it get older
// and hungrier live, feeds it and sees the hunger drop and a heart come back,
// then opens it in a second tab: both show "2 watching", and "1 watching"
// again once the second tab is closed.
func TestPetAdoptFeedWatch(t *testing.T) {
	srv := startServer(t, "-pet-tick", "200ms", "-poll", "50ms")
	ctx, _ := newBrowser(t)

	do(t, ctx, "adopt a pet through /pets/new", adoptThroughForm(srv, "Hedwig <b>&amp;</b>", "owl")...)
	loc := eval[string](t, ctx, `location.pathname`)
	if !regexp.MustCompile(`^/pets/\d+$`).MatchString(loc) {
		t.Fatalf("after adopting, the browser is at %s, want /pets/{id}", loc)
	}
	if title := eval[string](t, ctx, `document.querySelector("h1").textContent`); title != "Hedwig <b>&amp;</b>" {
		t.Errorf("the pet's heading = %q, want the name as typed, shown as text", title)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("h1 b").length`); n != 0 {
		t.Errorf("the name's markup became %d elements: not escaped", n)
	}
	if owl := eval[string](t, ctx, `document.querySelector(".pet-portrait svg").getAttribute("aria-label")`); owl != "owl" {
		t.Errorf("portrait = %q, want the owl chosen", owl)
	}
	waitFor(t, ctx, 10*time.Second, "the pet's page to go live", `document.body.dataset.live === "open"`,
		`document.querySelector(".live").outerHTML`)

	// Ticks reach the page: the pet gets older and hungrier without a reload.
	first := eval[petView](t, ctx, petState)
	if first.Hunger < 250 || first.Hunger > 300 || first.Watching != 1 {
		t.Fatalf("new pet shows %+v, want hunger from 250 and 1 watching", first)
	}
	eval[bool](t, ctx, `window.__marker = "set before feeding"; true`)
	waitFor(t, ctx, 5*time.Second, "the hunger text to change with the ticks",
		`(function () { var s = `+petState+`; return s.hunger > `+strconv.Itoa(first.Hunger)+` && s.age > `+strconv.Itoa(first.Age)+`; })()`,
		`document.getElementById("pet-stats").textContent`)

	// Feed: hunger drops by 100 (less the ticks since), one more heart.
	before := eval[petView](t, ctx, petState)
	do(t, ctx, "click Feed", chromedp.Click(chromedp.CSS(`form.pet-actions button`)))
	waitFor(t, ctx, 5*time.Second, "hunger to drop by about 100 and a heart to fill",
		`(function () { var s = `+petState+`; return s.hunger <= `+strconv.Itoa(before.Hunger-60)+` && s.hearts > `+strconv.Itoa(before.Hearts)+`; })()`,
		`document.getElementById("pet-stats").outerHTML`)
	waitFor(t, ctx, 5*time.Second, "the Feed answer in #pet-flash", `document.querySelector("#pet-flash .flash") !== null`,
		`document.getElementById("pet-flash").outerHTML`)
	fed := eval[petView](t, ctx, petState)
	t.Logf("before feeding %+v, after %+v", before, fed)
	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set before feeding" {
		t.Fatalf("window marker = %q: feeding reloaded the page", m)
	}

	// The same visitor opens the pet in a second tab.
	tab2, _, close2 := newTab(t, ctx)
	do(t, tab2, "open the pet in a second tab", chromedp.Navigate(srv.url(loc)), chromedp.WaitVisible(chromedp.ID("pet-stats")))
	const twoWatching = `(function () { var s = ` + petState + `; return s.watching === 2; })()`
	waitFor(t, tab2, 10*time.Second, `"2 watching" in the second tab`, twoWatching, `document.getElementById("pet-stats").textContent`)
	waitFor(t, ctx, 10*time.Second, `"2 watching" in the first tab`, twoWatching, `document.getElementById("pet-stats").textContent`)
	if text := eval[string](t, ctx, `document.querySelector("#pet-stats .watching").textContent.trim()`); text != "2 watching" {
		t.Errorf("watching text = %q, want \"2 watching\"", text)
	}

	close2()
	waitFor(t, ctx, 10*time.Second, `"1 watching" once the second tab closed`,
		`(function () { var s = `+petState+`; return s.watching === 1; })()`, `document.getElementById("pet-stats").textContent`)
}

// TestPetTreat gives a treat from one's own pet's page to another pet being
// watched in another tab: that tab sees the hunger drop by 20, and the giver
// sees one treat fewer.
func TestPetTreat(t *testing.T) {
	srv := startServer(t, "-pet-tick", "1s", "-poll", "50ms")
	ctx, _ := newBrowser(t)
	do(t, ctx, "adopt a pet", adoptThroughForm(srv, "Giver", "")...)
	waitFor(t, ctx, 10*time.Second, "nobody else around", `document.querySelector("#pet-active .nobody") !== null`,
		`document.getElementById("pet-active").outerHTML`)

	// Someone watches a hungry seed pet (the first tab then lists it as active).
	var list struct {
		Items []struct {
			ID     int64 `json:"id"`
			Hunger int   `json:"hunger"`
			Alive  bool  `json:"alive"`
		} `json:"items"`
	}
	getJSON(t, srv.url("/api/pets?alive=true&limit=100"), &list)
	mine := eval[string](t, ctx, `location.pathname`)
	var id int64
	for _, p := range list.Items {
		if p.Hunger >= 60 && p.Hunger <= 450 && mine != "/pets/"+strconv.FormatInt(p.ID, 10) {
			id = p.ID
			break
		}
	}
	if id == 0 {
		t.Fatalf("no seed pet with hunger from 60 to 450: %+v", list.Items)
	}
	ids := strconv.FormatInt(id, 10)
	treat := `#pet-active form[action="/pets/` + ids + `/treat"] button`
	watcher, _, _ := newTab(t, ctx)
	do(t, watcher, "watch pet "+ids, chromedp.Navigate(srv.url("/pets/"+ids)), chromedp.WaitVisible(chromedp.ID("pet-stats")))
	waitLive(t, watcher)
	// The list arrives live: wait until htmx has set its form up, or the
	// click would post the form the old way.
	waitFor(t, ctx, 10*time.Second, "the watched pet listed among the active pets, with Give Treat",
		`(function () { var b = document.querySelector('`+treat+`'); return b !== null && htmxReady(b.form); })()`,
		`document.getElementById("pet-active").outerHTML`)
	if n := eval[int](t, ctx, `document.querySelectorAll("#pet-treats .treat-full").length`); n != 5 {
		t.Fatalf("a new keeper has %d treats, want 5", n)
	}

	before := eval[petView](t, watcher, petState)
	do(t, ctx, "give it a treat", chromedp.Click(chromedp.CSS(treat)))
	waitFor(t, ctx, 5*time.Second, "one treat fewer and the answer in #pet-flash",
		`document.querySelectorAll("#pet-treats .treat-full").length === 4 && /treat/.test(document.getElementById("pet-flash").textContent)`,
		`document.getElementById("pet-treats").outerHTML + document.getElementById("pet-flash").outerHTML`)
	// Hunger grows 5 a tick and a treat takes 20 off: within the next tick
	// the watcher's tab shows it at least 10 lower.
	waitFor(t, watcher, 5*time.Second, "the pet's hunger to drop in the watcher's tab",
		`(function () { var s = `+petState+`; return s.hunger >= 0 && s.hunger <= `+strconv.Itoa(before.Hunger-10)+`; })()`,
		`document.getElementById("pet-stats").textContent`)
	t.Logf("pet %d before the treat: %+v, after: %+v", id, before, eval[petView](t, watcher, petState))
}

// adoptThroughForm adopts a pet named name through /pets/new, as a visitor
// does, picking species (the form's default when ""), and waits for the new
// pet's page.
func adoptThroughForm(srv *server, name, species string) []chromedp.Action[chromedp.Void] {
	tasks := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(srv.url("/pets/new")),
		chromedp.WaitVisible(chromedp.CSS(`form.adopt-form input[name="name"]`)),
		chromedp.SendKeys(chromedp.CSS(`form.adopt-form input[name="name"]`), name),
	}
	if species != "" {
		tasks = append(tasks, chromedp.Click(chromedp.CSS(`label.species-option:has(input[value="`+species+`"]) .species-card`)))
	}
	return append(tasks,
		chromedp.Click(chromedp.CSS(`form.adopt-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("pet-stats")),
	)
}
