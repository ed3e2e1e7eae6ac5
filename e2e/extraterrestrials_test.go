package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// etRows reads the table as the page shows it: each row's element id, status
// class (status-home, status-no-answer, status-phoning, or "" for never
// tried) and attempt count.
const etRows = `Array.from(document.querySelectorAll("#extraterrestrials tr[id]")).map(function (tr) {
  var s = tr.querySelector(".status");
  var n = parseInt(tr.querySelector("td.num").textContent, 10);
  return {id: tr.id, status: s ? s.className.replace("status ", "") : "", attempt: isNaN(n) ? 0 : n};
})`

// etCounts reads the campaign header: the four numbers, in page order.
const etCounts = `Array.from(document.querySelectorAll("#et-counts .count-n")).map(function (n) {
  return parseInt(n.textContent.replace(/[^0-9]/g, ""), 10);
})`

// etRecorder keeps, per row id, every status a row was swapped in with
// (window.__seen), and every campaign header swapped in (window.__counts).
// Nodes replaced later keep their content, so a row's whole history is seen
// even when several swaps land before the observer runs.
const etRecorder = `window.__seen = {};
window.__counts = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    r.addedNodes.forEach(function (n) {
      if (n.nodeType !== 1) return;
      if (n.matches("tr[id^='extraterrestrial-']")) {
        var s = n.querySelector(".status");
        (window.__seen[n.id] = window.__seen[n.id] || []).push(s ? s.className.replace("status ", "") : "");
      }
      if (n.id === "et-counts") {
        window.__counts.push(Array.from(n.querySelectorAll(".count-n")).map(function (c) { return c.textContent; }).join("/"));
      }
    });
  });
}).observe(document.querySelector(".live-region"), {childList: true, subtree: true});
true`

type etRow struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Attempt int    `json:"attempt"`
}

// campaignDone is true when every row shows a check or an X and the header
// agrees: nobody phoning, nobody left untried, every row counted once.
const campaignDone = `(function () {
  var rows = ` + etRows + `, c = ` + etCounts + `;
  return rows.length === 10 && rows.every(function (r) { return r.status === "status-home" || r.status === "status-no-answer"; }) &&
    c[0] === 0 && c[3] === 0 && c[1] + c[2] === 10 &&
    c[1] === rows.filter(function (r) { return r.status === "status-home"; }).length;
})()`

// TestPhoneHomeLive clicks Phone Home and watches every row turn from a
// spinner to a check or an X, and the campaign header move, in the same
// page: no navigation, no reload.
func TestPhoneHomeLive(t *testing.T) {
	srv := startServer(t, "-backoff", "300ms", "-answer-rate", "0.3", "-poll", "50ms")
	ctx, _ := newBrowser(t)

	openPhoneHome(t, ctx, "open /", srv.url("/"))

	before := eval[[]etRow](t, ctx, etRows)
	if len(before) != 10 {
		t.Fatalf("the page shows %d extraterrestrials, want the 10 seeds", len(before))
	}
	for _, r := range before {
		if r.Status != "" || r.Attempt != 0 {
			t.Fatalf("before the campaign, %s shows %q attempt %d, want never tried", r.ID, r.Status, r.Attempt)
		}
	}
	if c := eval[[]int](t, ctx, etCounts); len(c) != 4 || c[3] != 10 {
		t.Fatalf("campaign header before the click = %v, want 10 never tried", c)
	}

	eval[bool](t, ctx, etRecorder)
	eval[bool](t, ctx, `window.__marker = "set before the click"; true`)
	start := time.Now()
	do(t, ctx, "click Phone Home", chromedp.Click(chromedp.CSS(`form[hx-post="/phone-home"] button`)))
	waitFor(t, ctx, 5*time.Second, "the button's answer in #flash", `document.querySelector("#flash .flash-ok") !== null`,
		`document.getElementById("flash").outerHTML`)
	waitFor(t, ctx, 30*time.Second, "every row to show a check or an X, and the header to agree", campaignDone,
		`JSON.stringify({rows: `+etRows+`, counts: `+etCounts+`})`)
	t.Logf("campaign finished in the page after %v", time.Since(start).Round(time.Millisecond))

	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set before the click" {
		t.Fatalf("window marker = %q: the page navigated or reloaded", m)
	}
	if n := eval[int](t, ctx, `performance.getEntriesByType("navigation").length`); n != 1 {
		t.Fatalf("%d navigations, want the first only", n)
	}

	after := eval[[]etRow](t, ctx, etRows)
	seen := eval[map[string][]string](t, ctx, `window.__seen`)
	spinners := 0
	for _, r := range after {
		history := seen[r.ID]
		if len(history) == 0 {
			t.Errorf("%s changed without a live swap", r.ID)
			continue
		}
		if last := history[len(history)-1]; last != r.Status {
			t.Errorf("%s: last swap %q, shows %q", r.ID, last, r.Status)
		}
		phoning := false
		for _, s := range history {
			phoning = phoning || s == "status-phoning"
		}
		if phoning {
			spinners++
		}
		// A row that needed more than one call showed the spinner between them.
		if r.Attempt > 1 && !phoning {
			t.Errorf("%s took %d attempts but never showed the spinner: %v", r.ID, r.Attempt, history)
		}
		if r.Attempt < 1 || r.Attempt > 5 || (r.Status == "status-no-answer" && r.Attempt != 5) {
			t.Errorf("%s ended %s after %d attempts", r.ID, r.Status, r.Attempt)
		}
	}
	if spinners == 0 {
		t.Errorf("no row ever showed the spinner: %v", seen)
	}
	t.Logf("rows that showed the spinner: %d; headers swapped in: %v", spinners, eval[[]string](t, ctx, `window.__counts`))

	// What the page shows is what the database holds.
	api := apiStatuses(t, srv)
	for _, r := range after {
		want := map[string]string{"space_taxi_on_the_way": "status-home", "no_answer": "status-no-answer"}[api[r.ID]]
		if r.Status != want {
			t.Errorf("%s: page shows %q, the API says %q", r.ID, r.Status, api[r.ID])
		}
	}
}

// TestReconnectAndResync stops the server under an open page, changes the
// database while the page cannot hear about it, and starts the server again
// on the same port and database: the live indicator goes to "reconnecting…"
// and back to "live", and the page reloads its table (the resync event) to
// show what the database holds, all without a reload of the page.
func TestReconnectAndResync(t *testing.T) {
	srv := startServer(t, "-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms")
	ctx, cons := newBrowser(t)

	do(t, ctx, "open /", chromedp.Navigate(srv.url("/")), chromedp.WaitVisible(chromedp.ID("extraterrestrials")))
	waitFor(t, ctx, 10*time.Second, "live", `document.body.dataset.live === "open"`, `document.body.outerHTML`)
	eval[bool](t, ctx, `window.__marker = "set before the restart"; true`)

	// While the server is down, the event stream's reconnects are refused,
	// and htmx logs each htmx:sseError event with console.error.
	cons.allow(func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && strings.Contains(m.URL, "/events?") ||
			m.Type == chromedp.ConsoleError && m.Text == "[object Event]" && strings.Contains(m.URL, "/static/vendor/htmx-")
	})
	srv.stop()
	waitFor(t, ctx, 10*time.Second, "the live indicator to say reconnecting",
		`document.body.dataset.live === "error" && /reconnecting/.test(document.querySelector(".live-text").textContent)`,
		`document.querySelector(".live").outerHTML`)

	// Another process on the same database runs a whole campaign meanwhile.
	other := freeAddr(t)
	srv.startOn(other)
	post(t, "http://"+other+"/api/phone-home")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := apiStatusesAt(t, "http://"+other)
		done := len(st) == 10
		for _, s := range st {
			done = done && (s == "space_taxi_on_the_way" || s == "no_answer")
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the campaign on the other process did not finish: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.stop()
	if rows := eval[[]etRow](t, ctx, etRows); rows[0].Status != "" {
		t.Fatalf("the page heard of the campaign while it was disconnected: %v", rows)
	}

	srv.start()
	waitIndicatorLive(t, ctx, 30*time.Second, "the live indicator to say live again")
	waitFor(t, ctx, 15*time.Second, "the table and the header to resync", campaignDone,
		`JSON.stringify({rows: `+etRows+`, counts: `+etCounts+`})`)

	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set before the restart" {
		t.Fatalf("window marker = %q: the page reloaded instead of resyncing", m)
	}
	api := apiStatuses(t, srv)
	for _, r := range eval[[]etRow](t, ctx, etRows) {
		want := map[string]string{"space_taxi_on_the_way": "status-home", "no_answer": "status-no-answer"}[api[r.ID]]
		if r.Status != want {
			t.Errorf("%s: page shows %q after the resync, the database holds %q", r.ID, r.Status, api[r.ID])
		}
	}
}

// apiStatuses maps each row's element id to its status in the JSON API.
func apiStatuses(t *testing.T, srv *server) map[string]string {
	t.Helper()
	return apiStatusesAt(t, "http://"+srv.addr)
}

func apiStatusesAt(t *testing.T, base string) map[string]string {
	t.Helper()
	var list struct {
		Items []struct {
			ID     int64  `json:"id"`
			Status string `json:"communication_status"`
		} `json:"items"`
	}
	getJSON(t, base+"/api/extraterrestrials?limit=100", &list)
	out := make(map[string]string, len(list.Items))
	for _, it := range list.Items {
		out["extraterrestrial-"+strconv.FormatInt(it.ID, 10)] = it.Status
	}
	return out
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// post sends an empty POST, as curl does, and fails on a status >= 300.
func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}
