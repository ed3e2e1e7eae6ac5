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

	do(t, ctx, "adopt a pet through /pets/new",
		chromedp.Navigate(srv.url("/pets/new")),
		chromedp.WaitVisible(chromedp.CSS(`form.adopt-form input[name="name"]`)),
		chromedp.SendKeys(chromedp.CSS(`form.adopt-form input[name="name"]`), "Hedwig <b>&amp;</b>"),
		chromedp.Click(chromedp.CSS(`label.species-option:has(input[value="owl"]) .species-card`)),
		chromedp.Click(chromedp.CSS(`form.adopt-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("pet-stats")),
	)
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
