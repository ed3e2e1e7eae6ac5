package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRefusedFormConsoleRule: a refused htmx form answers its real 4xx
// with its flash, which the page shows; the browser logs its own network
// line for the 4xx, and nothing else. The console check catches that line
// unless the test expects the refusal (expectRefusal, for its status and
// path), so the rule the README states holds: the only console error a
// test may excuse for a refused form is that line, for the refusal it
// provoked.
func TestRefusedFormConsoleRule(t *testing.T) {
	srv := startServer(t)
	ctx, cons := newBrowser(t)
	do(t, ctx, "open /jobs", chromedp.Navigate(srv.url("/jobs")), chromedp.WaitVisible(chromedp.CSS(`#jobs-bulk button[value="cancel"]`)))
	waitLive(t, ctx)
	refuse := func(what string) {
		t.Helper()
		eval[bool](t, ctx, `document.getElementById("jobs-flash").innerHTML = ""; true`)
		// Nothing ticked: the server refuses with 422 and says why.
		do(t, ctx, what, chromedp.Click(chromedp.CSS(`#jobs-bulk button[value="cancel"]`)))
		waitFor(t, ctx, 10*time.Second, "the refusal's flash", `(function () {
  var f = document.querySelector("#jobs-flash .flash-error");
  return !!f && f.textContent.trim() === "select at least one job";
})()`, `document.getElementById("jobs-flash").outerHTML`)
	}
	line := refusalLine(422)
	logged := func(lines *[]string) func() []string {
		return func() []string {
			cons.mu.Lock()
			defer cons.mu.Unlock()
			return append([]string(nil), *lines...)
		}
	}
	messages, excused := logged(&cons.messages), logged(&cons.excused)
	waitLogged := func(why string, read func() []string) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := read()
			for _, m := range got {
				if strings.Contains(m, line) && strings.Contains(m, "/jobs/bulk") {
					return got
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting 5s for %s: got %q", why, got)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}

	// Not expected: the browser's line is caught, and it is the only one.
	refuse("Cancel selected with nothing ticked")
	got := waitLogged("the browser's network line for the 422 among the console's errors", messages)
	if len(got) != 1 || !strings.Contains(got[0], "(network ") {
		t.Errorf("a refused form logged %q; want only the browser's network line", got)
	}
	cons.mu.Lock()
	cons.messages = nil // caught as it should be: not this test's failure
	cons.mu.Unlock()

	// Expected: the same line is excused, and nothing else is logged.
	cons.expectRefusal(422, "/jobs/bulk")
	refuse("Cancel selected with nothing ticked, the refusal expected")
	waitLogged("the line to be excused", excused)
	if got := messages(); len(got) != 0 {
		t.Errorf("with the refusal expected, the console still has %q", got)
	}
}
