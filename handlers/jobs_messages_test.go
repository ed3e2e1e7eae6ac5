package handlers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// TestJobsAPIMessagesReadOnce: the jobs API's refusals say what is wrong
// once and plainly ("job 99999 not found", not "job 99999: job not
// found"), keep their statuses, and repeat at most 100 characters of a name
// they were given.
func TestJobsAPIMessagesReadOnce(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("done"), job("running"))
	b.setState(t, ids[0], jobs.StateCompleted)
	b.setState(t, ids[1], jobs.StateExecuting)
	long := strings.Repeat("a", 5000)
	cut := `"` + strings.Repeat("a", 100) + `…"`
	for _, tt := range []struct {
		name, method, path, body string
		status                   int
		says                     string
	}{
		{"get unknown", "GET", "/api/jobs/99999", "", 404, "job 99999 not found"},
		{"cancel unknown", "POST", "/api/jobs/99999/cancel", "", 404, "job 99999 not found"},
		{"retry unknown", "POST", "/api/jobs/99999/retry", "", 404, "job 99999 not found"},
		{"delete unknown", "DELETE", "/api/jobs/99999", "", 404, "job 99999 not found"},
		{"cancel completed", "POST", fmt.Sprintf("/api/jobs/%d/cancel", ids[0]), "", 409, fmt.Sprintf(
			"job %d is completed: only jobs that are scheduled, available, executing or retryable can be cancelled", ids[0])},
		{"delete executing", "DELETE", fmt.Sprintf("/api/jobs/%d", ids[1]), "", 409, fmt.Sprintf(
			"job %d is executing: only jobs that are not executing can be deleted", ids[1])},
		{"pause a long unknown queue", "POST", "/api/queues/" + long + "/pause", "", 404, "unknown queue " + cut},
		{"scale a long unknown queue", "POST", "/api/queues/" + long + "/scale", `{"limit":2}`, 404, "unknown queue " + cut},
		{"a long job id", "GET", "/api/jobs/" + long, "", 404, "no job " + cut + ": ids are positive whole numbers"},
		{"a long state", "GET", "/api/jobs?state=" + long, "", 422, "state " + cut + " is not one of"},
		{"a long cron name", "POST", "/api/cron/" + long + "/run", "", 404, "no periodic job " + cut},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := b.do(t, tt.method, tt.path, tt.body, asJSON)
			if msg := errorOf(t, resp, body, tt.status); !strings.HasPrefix(msg, tt.says) {
				t.Errorf("error %q, want %q", msg, tt.says)
			}
		})
	}
	// The job's page says it the same way.
	resp, page := b.do(t, "GET", "/jobs/99999", "", nil)
	if resp.StatusCode != 404 || !strings.Contains(page, "job 99999 not found") {
		t.Errorf("an unknown job's page: %d %.300s", resp.StatusCode, page)
	}
}

// TestBulkFormNamesMissingAndRefusedJobs: the list's bulk form and the
// API's bulk action say which ids are of no job and which jobs their state
// protected, and a flash that reports nothing done is not a success.
func TestBulkFormNamesMissingAndRefusedJobs(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	ids := b.insert(t, job("a"), job("running"), job("b"))
	b.setState(t, ids[1], jobs.StateExecuting)

	resp, body := b.do(t, "POST", "/jobs/bulk", "action=delete&id=999999&confirm=1", asHtmx)
	if resp.StatusCode != 200 || !strings.Contains(body, `<p class="flash flash-error">Deleted 0 of 1 selected job. Not found: job 999999.</p>`) {
		t.Errorf("an unknown id: %d %s", resp.StatusCode, body)
	}

	form := fmt.Sprintf("action=delete&id=%d&id=%d&id=999999&id=999998&confirm=4", ids[0], ids[1])
	resp, body = b.do(t, "POST", "/jobs/bulk", form, asHtmx)
	want := fmt.Sprintf(`<p class="flash flash-ok">Deleted 1 of 4 selected jobs. Not found: jobs 999999 and 999998. `+
		`Not deleted because of their state: job %d (executing).</p>`, ids[1])
	if resp.StatusCode != 200 || !strings.Contains(body, want) {
		t.Errorf("a mixed selection: %d %s\nwant %s", resp.StatusCode, body, want)
	}

	// A plain form that did not do everything shows the list with why.
	resp, body = b.do(t, "POST", "/jobs/bulk", "action=retry&id=999999&back=/jobs", asForm)
	if resp.StatusCode != 200 || !strings.Contains(body, "Retried 0 of 1 selected job. Not found: job 999999.") || !strings.Contains(body, `id="jobs-live"`) {
		t.Errorf("plain form, unknown id: %d %.300s", resp.StatusCode, body)
	}

	resp, body = b.do(t, "POST", "/api/jobs/bulk", fmt.Sprintf(`{"action":"retry","ids":[%d,999999]}`, ids[2]), asJSON)
	want = fmt.Sprintf(`{"action":"retry","requested":2,"changed":0,"not_found":[999999],"refused":[{"id":%d,"state":"available"}]}`, ids[2])
	if resp.StatusCode != 200 || strings.TrimSpace(body) != want {
		t.Errorf("API: %d %s\nwant %s", resp.StatusCode, body, want)
	}
	resp, body = b.do(t, "POST", "/api/jobs/bulk", fmt.Sprintf(`{"action":"cancel","ids":[%d]}`, ids[2]), asJSON)
	if want := `{"action":"cancel","requested":1,"changed":1,"not_found":[],"refused":[]}`; resp.StatusCode != 200 || strings.TrimSpace(body) != want {
		t.Errorf("API, all changed: %d %s\nwant %s", resp.StatusCode, body, want)
	}
}

// TestDeleteSelectedAsksFirst: the list's Delete selected carries the
// question jobs.js asks (naming how many are ticked); Cancel and Retry
// selected do not ask.
func TestDeleteSelectedAsksFirst(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	b.insert(t, job("a"))
	page := b.get(t, "/jobs")
	if !strings.Contains(page, `value="delete" data-confirm="Delete {jobs}? This cannot be undone.">Delete selected</button>`) {
		t.Error("Delete selected does not ask first")
	}
	for _, v := range []string{"cancel", "retry"} {
		if strings.Contains(page, `value="`+v+`" data-confirm`) {
			t.Errorf("%s selected asks", v)
		}
	}
}
