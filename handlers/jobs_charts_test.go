package handlers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// timingsAnswer is GET /api/jobs/timings's answer.
type timingsAnswer struct {
	Minutes int `json:"minutes"`
	Queues  []struct {
		Name  string `json:"name"`
		Total struct {
			Count   int     `json:"count"`
			Failed  int     `json:"failed"`
			RunP95  float64 `json:"run_p95_ms"`
			WaitP95 float64 `json:"wait_p95_ms"`
		} `json:"total"`
		Minutes []struct {
			Count int `json:"count"`
		} `json:"minutes"`
	} `json:"queues"`
	Kinds []struct {
		Name string `json:"name"`
	} `json:"kinds"`
}

// TestTimingsChartsPageAndAPI: jobs that ran appear in the API's per-queue
// and per-kind minutes and on the charts page, which reloads its charts on
// the jobs stream's throughput events (sent as jobs finish).
func TestTimingsChartsPageAndAPI(t *testing.T) {
	t.Parallel()
	b := &jobsBundle{setupServer(t, serverOptions{
		queues: map[string]int{"default": 5, "mailers": 2}, workers: []jobs.Worker{dashWorker{}}, start: true,
	})}
	w := b.watch(t, "&ids=")
	ids := b.insert(t, job("a"), job("b"), jobs.InsertParams{Args: dashArgs{Name: "c", Fail: true}, Opts: jobs.InsertOpts{Queue: "mailers", MaxAttempts: 1}})
	waitUntil(t, 10*time.Second, "the jobs to finish", func() bool {
		return b.state(t, ids[0]) == jobs.StateCompleted && b.state(t, ids[1]) == jobs.StateCompleted && b.state(t, ids[2]) == jobs.StateDiscarded
	})
	var got timingsAnswer
	waitUntil(t, 5*time.Second, "the outcomes in the timings", func() bool {
		got = decodeInto[timingsAnswer](t, b.get(t, "/api/jobs/timings?minutes=5"))
		n := 0
		for _, q := range got.Queues {
			n += q.Total.Count
		}
		return n == 3
	})
	if got.Minutes != 5 || len(got.Queues) != 2 || got.Queues[0].Name != "default" || got.Queues[1].Name != "mailers" ||
		got.Queues[0].Total.Count != 2 || got.Queues[1].Total.Failed != 1 || len(got.Queues[0].Minutes) != 5 ||
		len(got.Kinds) != 1 || got.Kinds[0].Name != "dash_test" {
		t.Fatalf("timings %+v", got)
	}

	page := b.get(t, "/jobs/charts?minutes=5")
	for _, want := range []string{`id="timing-queue-default"`, `id="timing-queue-mailers"`, `id="timing-kind-dash_test"`,
		`<polyline class="line-p95"`, `class="bar-failed"`, `hx-trigger="sse:throughput, every 30s"`,
		`hx-get="/jobs/charts/live?minutes=5"`, `sse-connect="/events?stream=jobs&amp;last_event_id=`, `aria-current="page">5 min`,
		`<span class="timing-count">2</span> attempts · <span class="timing-failed">0</span> failed`,
		`<span class="timing-count">1</span> attempt · <span class="timing-failed">1</span> failed`,
		`of 1 attempts failed</title>`} {
		if !strings.Contains(page, want) {
			t.Errorf("charts page lacks %s", want)
		}
	}
	if strings.Contains(page, " style=") || strings.Contains(page, "<script>") {
		t.Error("inline style or script on the page (the CSP forbids them)")
	}
	// The event the page reloads on, and the reload itself.
	w.until(t, "a throughput event", func(m events.Message) bool { return m.Event == live.ThroughputEvent })
	if frag := b.get(t, "/jobs/charts/live?minutes=5"); !strings.HasPrefix(frag, `<div id="jobs-timings"`) || !strings.Contains(frag, `<span class="timing-count">2</span>`) {
		t.Errorf("the live fragment: %.300s", frag)
	}
}
