package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/jobs"
)

// TestBulkRetryOfTwoFinishedCopiesOfOneCall runs two campaigns in which no
// call connects, on the real app: each extraterrestrial is left with two
// discarded calls, copies of one unique job. "Retry selected" on the
// Discarded tab (POST /api/jobs/bulk) with both copies of one call retries
// one of them and says so (200, changed 1), where it used to fail as a whole
// on the unique-in-flight index (500, nothing retried).
func TestBulkRetryOfTwoFinishedCopiesOfOneCall(t *testing.T) {
	app := startApp(t, Config{Backoff: jobs.FixedBackoff(0), AnswerRate: 0})
	ctx := context.Background()
	discarded := func() int {
		counts, err := app.engine.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return counts[jobs.StateDiscarded]
	}
	waitDiscarded := func(n int) {
		t.Helper()
		testwait.Until(t, 30*time.Second, fmt.Sprintf("%d calls discarded", n), func() bool { return discarded() >= n })
	}
	first := post(t, app.URL+"/api/phone-home")
	if first != `{"enqueued":10}` {
		t.Fatalf("first phone home: %s", first)
	}
	waitDiscarded(10)
	if second := post(t, app.URL+"/api/phone-home"); second != `{"enqueued":10}` {
		t.Fatalf("second phone home: %s", second)
	}
	waitDiscarded(20)

	// The two copies of extraterrestrial 1's call.
	var copies []int64
	if err := app.store.Reader.SelectContext(ctx, &copies, `SELECT id FROM jobs
		WHERE CAST(args ->> 'extraterrestrial_id' AS BIGINT) = 1 AND state = 'discarded' ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if len(copies) != 2 {
		t.Fatalf("discarded copies of the call of extraterrestrial 1: %v, want two", copies)
	}

	body, _ := json.Marshal(map[string]any{"action": "retry", "ids": copies})
	resp, err := http.Post(app.URL+"/api/jobs/bulk", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bulk retry of %v: %d %s, want 200", copies, resp.StatusCode, raw)
	}
	var got struct {
		Action    string `json:"action"`
		Requested int    `json:"requested"`
		Changed   int    `json:"changed"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("bulk retry answer %s: %v", raw, err)
	}
	if got.Action != "retry" || got.Requested != 2 || got.Changed != 1 {
		t.Errorf("bulk retry answered %s, want retry of 2 requested with 1 changed", raw)
	}
	// The retried copy runs (and, answering nothing, is discarded again
	// after one more attempt); the other copy is untouched.
	var older jobs.Job
	deadline := time.Now().Add(30 * time.Second)
	for {
		newer, err := jobs.Get(ctx, app.store.Reader, copies[1])
		if err != nil {
			t.Fatal(err)
		}
		if newer.State == jobs.StateDiscarded && newer.Attempt == newer.MaxAttempts && len(newer.Errors) == newer.Attempt {
			p, err := jobs.Get(ctx, app.store.Reader, copies[0])
			if err != nil {
				t.Fatal(err)
			}
			older = *p
			if newer.Attempt != 6 {
				t.Errorf("retried copy: attempt %d, want 6 (one more after five)", newer.Attempt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retried copy still %s on attempt %d after 30 s", newer.State, newer.Attempt)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if older.State != jobs.StateDiscarded || older.Attempt != 5 {
		t.Errorf("older copy: %s on attempt %d, want left discarded on attempt 5", older.State, older.Attempt)
	}
}
