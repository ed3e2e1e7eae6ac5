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
