package handlers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/live"
)

// TestJobSaysWhichNodeRanEachAttempt: GET /api/jobs/{id} adds the node of
// the latest attempt (attempted_by) and of each failed one (errors[].node)
// to the contract's shape, and the job's page shows them.
func TestJobSaysWhichNodeRanEachAttempt(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{})
	id := b.insert(t, job("Ayala"))[0]
	if _, err := b.st.Writer.Exec(b.st.Rebind(`UPDATE jobs SET attempt = 2, attempted_at = 1893553445000, attempted_by = 'node-b',
		errors = ? WHERE id = ?`), `[{"attempt":1,"at":"2030-01-02T03:04:05Z","error":"no answer","node":"node-a"},
		{"attempt":2,"at":"2030-01-02T03:05:05Z","error":"no answer","node":"node-b"}]`, id); err != nil {
		t.Fatal(err)
	}
	b.setState(t, id, "retryable")
	resp, body := b.do(t, "GET", fmt.Sprintf("/api/jobs/%d", id), "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{`"attempted_by":"node-b"`, `"error":"no answer","node":"node-a"}`, `"error":"no answer","node":"node-b"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/api/jobs/%d lacks %s: %s", id, want, body)
		}
	}
	page := b.get(t, fmt.Sprintf("/jobs/%d", id))
	for _, want := range []string{"attempt 2 of", " on node-b", `job-error-node">on node-a<`, `job-error-node">on node-b<`} {
		if !strings.Contains(page, want) {
			t.Errorf("the job page lacks %s", want)
		}
	}
}
