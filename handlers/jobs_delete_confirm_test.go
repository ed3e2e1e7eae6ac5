package handlers_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// TestDeleteSelectedConfirmsOnTheServer: "Delete selected" deletes only
// with the form's confirmation (confirm: how many jobs it names). Without
// it (a browser without JavaScript, where jobs.js does not ask) the answer
// is the question, as "Delete all…" asks: the list again with a form that
// carries the ids and the confirmation, and "Keep them" back to the list;
// nothing is deleted. With htmx too (jobs.js sends the confirmation once
// the person has said yes). Cancel and Retry selected act at once.
func TestDeleteSelectedConfirmsOnTheServer(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("b"), job("c"))
	form := func(action string, confirm string, ids ...int64) string {
		v := url.Values{"action": {action}, "back": {"/jobs?state=available"}}
		for _, id := range ids {
			v.Add("id", fmt.Sprint(id))
		}
		if confirm != "" {
			v.Set("confirm", confirm)
		}
		return v.Encode()
	}
	stillThere := func(what string) {
		t.Helper()
		for _, id := range ids {
			if st := b.state(t, id); st != jobs.StateAvailable {
				t.Fatalf("%s: job %d is %s, want still available", what, id, st)
			}
		}
	}
	question := fmt.Sprintf("Delete 2 selected jobs (jobs %d and %d)? This cannot be undone.", ids[0], ids[1])

	// A plain form: the list at its filter, with the question.
	resp, body := b.do(t, "POST", "/jobs/bulk", form("delete", "", ids[0], ids[1]), asForm)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="jobs-live"`) || !strings.Contains(body, question) {
		t.Fatalf("plain Delete selected without confirm: %d, want the list asking %q:\n%.2000s", resp.StatusCode, question, body)
	}
	confirmForm := confirmationForm(t, body)
	for _, want := range []string{
		`method="post" action="/jobs/bulk"`, `name="action" value="delete"`, `name="confirm" value="2"`,
		fmt.Sprintf(`name="id" value="%d"`, ids[0]), fmt.Sprintf(`name="id" value="%d"`, ids[1]),
		`name="back" value="/jobs?state=available"`, `>Delete 2 jobs</button>`, `href="/jobs?state=available">Keep them</a>`,
	} {
		if !strings.Contains(confirmForm, want) {
			t.Errorf("the confirmation lacks %s:\n%s", want, confirmForm)
		}
	}
	if strings.Contains(confirmForm, fmt.Sprintf(`value="%d"`, ids[2])) {
		t.Errorf("the confirmation names job %d, which was not selected:\n%s", ids[2], confirmForm)
	}
	stillThere("plain form without confirm")

	// A confirmation for another count (the selection changed) asks again.
	resp, body = b.do(t, "POST", "/jobs/bulk", form("delete", "1", ids[0], ids[1]), asForm)
	if resp.StatusCode != 200 || !strings.Contains(body, question) {
		t.Errorf("confirm=1 for 2 jobs: %d, want the question again", resp.StatusCode)
	}
	stillThere("a confirmation for another count")

	// htmx without the confirmation: the question, in the flash's place.
	resp, body = b.do(t, "POST", "/jobs/bulk", form("delete", "", ids[0], ids[1]), asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, question) || strings.Contains(body, `id="jobs-live"`) ||
		!strings.Contains(body, `hx-post="/jobs/bulk" hx-target="#jobs-flash"`) {
		t.Errorf("htmx Delete selected without confirm: %d %s", resp.StatusCode, body)
	}
	stillThere("htmx without confirm")

	// Cancel and Retry selected do not ask; an empty selection is still refused.
	resp, body = b.do(t, "POST", "/jobs/bulk", form("cancel", "", ids[2]), asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, "Cancelled 1 selected job.") || b.state(t, ids[2]) != jobs.StateCancelled {
		t.Errorf("Cancel selected: %d %s", resp.StatusCode, body)
	}
	resp, body = b.do(t, "POST", "/jobs/bulk", form("delete", ""), asForm)
	if resp.StatusCode != 422 || !strings.Contains(body, "select at least one job") {
		t.Errorf("Delete selected with nothing ticked: %d, want 422 select at least one job", resp.StatusCode)
	}

	// Confirmed, the plain form deletes and goes back to the list.
	resp, _ = b.do(t, "POST", "/jobs/bulk", form("delete", "2", ids[0], ids[1]), asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs?state=available" {
		t.Errorf("confirmed plain delete: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, id := range ids[:2] {
		if st := b.state(t, id); st != "gone" {
			t.Errorf("job %d is %s after a confirmed delete", id, st)
		}
	}
	// Confirmed with htmx: deleted at once, the rows answered.
	resp, body = b.do(t, "POST", "/jobs/bulk", form("delete", "1", ids[2]), asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, "Deleted 1 selected job.") || b.state(t, ids[2]) != "gone" {
		t.Errorf("confirmed htmx delete: %d %s", resp.StatusCode, body)
	}
}

// confirmationForm is the selection's delete confirmation in a page.
func confirmationForm(t *testing.T, page string) string {
	t.Helper()
	i := strings.Index(page, `<form class="bulk-confirm delete-confirm"`)
	if i < 0 {
		t.Fatalf("no delete confirmation form in:\n%.3000s", page)
	}
	j := strings.Index(page[i:], "</form>")
	return page[i : i+j]
}

// TestJobDeleteConfirmsOnTheServer: a job page's Delete deletes only with
// confirm=1, which the page's htmx form sends (hx-vals) once hx-confirm
// has asked. A plain form post without it (no JavaScript) is answered with
// the job's page asking the same question, with Delete and Keep it;
// nothing is deleted. An unknown job is still a 404.
func TestJobDeleteConfirmsOnTheServer(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("b"))
	a, bb := fmt.Sprint(ids[0]), fmt.Sprint(ids[1])

	page := b.get(t, "/jobs/"+a)
	if want := `hx-post="/jobs/` + a + `/delete" hx-vals='{"confirm": "1"}'`; !strings.Contains(page, want) {
		t.Errorf("the job page's Delete does not send its confirmation: no %s", want)
	}

	question := "Delete job " + a + "? This cannot be undone."
	resp, body := b.do(t, "POST", "/jobs/"+a+"/delete", "", asForm)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="job-panel"`) || !strings.Contains(body, question) {
		t.Fatalf("plain Delete without confirm: %d, want the job page asking %q:\n%.2000s", resp.StatusCode, question, body)
	}
	i := strings.Index(body, `<form class="bulk-confirm delete-confirm"`)
	if i < 0 {
		t.Fatalf("no confirmation form:\n%.3000s", body)
	}
	form := body[i : i+strings.Index(body[i:], "</form>")]
	for _, want := range []string{`method="post" action="/jobs/` + a + `/delete"`, `name="confirm" value="1"`,
		`>Delete job ` + a + `</button>`, `href="/jobs/` + a + `">Keep it</a>`} {
		if !strings.Contains(form, want) {
			t.Errorf("the confirmation lacks %s:\n%s", want, form)
		}
	}
	resp, body = b.do(t, "POST", "/jobs/"+a+"/delete", "", asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, question) || strings.Contains(body, `id="job-panel"`) {
		t.Errorf("htmx Delete without confirm: %d %s", resp.StatusCode, body)
	}
	if st := b.state(t, ids[0]); st != jobs.StateAvailable {
		t.Fatalf("job %s is %s after Delete without a confirmation", a, st)
	}
	if resp, _ := b.do(t, "POST", "/jobs/999999/delete", "", asForm); resp.StatusCode != 404 {
		t.Errorf("Delete of an unknown job without confirm: %d, want 404", resp.StatusCode)
	}

	resp, _ = b.do(t, "POST", "/jobs/"+a+"/delete", "confirm=1", asForm)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/jobs" || b.state(t, ids[0]) != "gone" {
		t.Errorf("confirmed plain delete: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body = b.do(t, "POST", "/jobs/"+bb+"/delete", "confirm=1", asHtmx)
	if !strings.Contains(body, "Job "+bb+" has been deleted.") || b.state(t, ids[1]) != "gone" {
		t.Errorf("confirmed htmx delete: %s", body)
	}
}
