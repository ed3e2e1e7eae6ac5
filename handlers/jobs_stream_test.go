package handlers_test

// The jobs dashboard's event stream: real SSE clients of the router.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
)

// jobWatch is a real event-stream client of the router.
type jobWatch struct {
	msgs <-chan events.Message
}

func (b *jobsBundle) watch(t *testing.T, query string) *jobWatch {
	t.Helper()
	// Resume from now, as a page does: the hub answers before it has
	// subscribed the client, and replays what was published meanwhile.
	from := fmt.Sprintf("&last_event_id=%d", b.hub.LastID())
	msgs, _, _ := openStream(t, b.srv.Client(), b.srv.URL+"/events?stream=jobs"+from+query)
	return &jobWatch{msgs: msgs}
}

// until reads events until one satisfies ok and returns the ones before it.
func (w *jobWatch) until(t *testing.T, what string, ok func(events.Message) bool) (events.Message, []events.Message) {
	t.Helper()
	return until(t, w.msgs, what, ok)
}

// each reads events until every one of oks has matched one.
func (w *jobWatch) each(t *testing.T, what string, oks ...func(events.Message) bool) {
	t.Helper()
	left := slices.Clone(oks)
	w.until(t, what, func(m events.Message) bool {
		left = slices.DeleteFunc(left, func(ok func(events.Message) bool) bool { return ok(m) })
		return len(left) == 0
	})
}

func rowEvent(id int64, contains string) func(events.Message) bool {
	prefix := fmt.Sprintf(`<tr id="job-%d" `, id)
	return func(m events.Message) bool {
		return m.Event == "" && strings.HasPrefix(m.Data, prefix) && strings.Contains(m.Data, contains)
	}
}

func TestJobsStreamCarriesTheRowsOfAPage(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{Every: time.Millisecond, StatsEvery: time.Millisecond})
	ids := b.insert(t, job("mine"), job("other"))
	mine, other := ids[0], ids[1]
	w := b.watch(t, fmt.Sprintf("&ids=%d", mine))

	// Another job's change is not sent to a page that does not show it:
	// after it, the page's own job's event comes first.
	b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", other), "", nil)
	b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", mine), "", nil)
	// The row, the counts and the queue table come in one flush or
	// another: the counts may be read before the row is sent.
	var row, counts events.Message
	var seen []events.Message
	w.each(t, "my row, the counts and the queue table",
		func(m events.Message) bool {
			seen = append(seen, m)
			if rowEvent(mine, "job-state-cancelled")(m) {
				row = m
				return true
			}
			return false
		},
		func(m events.Message) bool {
			if m.Event == "counts" && strings.Contains(m.Data, `<span id="jobs-n-cancelled" class="tab-n" hx-swap-oob="true">2</span>`) {
				counts = m
				return true
			}
			return false
		},
		func(m events.Message) bool {
			return m.Event == "queues" && strings.HasPrefix(m.Data, `<section id="jobs-queues" class="card job-queues" hx-swap-oob="true"`)
		})
	if !strings.Contains(row.Data, `hx-swap-oob="true"`) || !strings.Contains(row.Data, `<td class="job-queue">default</td>`) {
		t.Errorf("row event = %s", row.Data)
	}
	for _, e := range seen {
		if strings.Contains(e.Data, fmt.Sprintf(`id="job-%d"`, other)) {
			t.Errorf("the page got a row it does not show: %s", e.Data)
		}
	}
	if !strings.Contains(counts.Data, `<span id="jobs-n-all" class="tab-n" hx-swap-oob="true">2</span>`) {
		t.Errorf("counts = %s", counts.Data)
	}
	// A deleted job's row is removed.
	b.do(t, "DELETE", fmt.Sprintf("/api/jobs/%d", mine), "", nil)
	m, _ := w.until(t, "my row, deleted", rowEvent(mine, "job-row-deleted"))
	if !strings.HasPrefix(m.Data, fmt.Sprintf(`<tr id="job-%d" hx-swap-oob="true" class="job-row job-row-deleted">`, mine)) {
		t.Errorf("delete event = %s", m.Data)
	}
	// Pausing a queue sends the queue table; pausing it again changes
	// nothing and sends nothing: the next table is the resumed one.
	b.do(t, "POST", "/api/queues/mailers/pause", "", nil)
	w.until(t, "paused queue table", func(m events.Message) bool {
		return m.Event == "queues" && strings.Contains(m.Data, `action="/jobs/queues/mailers/resume"`)
	})
	b.do(t, "POST", "/api/queues/mailers/pause", "", nil)
	b.do(t, "POST", "/api/queues/mailers/resume", "", nil)
	m, _ = w.until(t, "the next queue table", func(m events.Message) bool { return m.Event == "queues" })
	if !strings.Contains(m.Data, `action="/jobs/queues/mailers/pause"`) {
		t.Errorf("an unchanged queue table was sent again")
	}
}

func TestJobsStreamFollowsTheEngine(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{Every: time.Millisecond, StatsEvery: time.Millisecond, ThroughputEvery: time.Millisecond})
	w := b.watch(t, "") // everything, as curl
	if err := b.engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := b.insert(t, job("ok"), jobs.InsertParams{Args: dashArgs{Name: "bad", Fail: true}, Opts: jobs.InsertOpts{MaxAttempts: 1}})
	// The chart may come before the last row: the throughput ring is
	// counted before the rows are reported, and a flush in between sends it.
	w.each(t, "completed and discarded rows, and a chart with both",
		rowEvent(ids[0], "job-state-completed"), rowEvent(ids[1], "job-state-discarded"),
		func(m events.Message) bool {
			return m.Event == "throughput" && strings.Contains(m.Data, `<section id="jobs-throughput"`) &&
				strings.Contains(m.Data, "1 completed") && strings.Contains(m.Data, "1 failed")
		})
	// A running job's cancel reaches its worker; the row ends cancelled.
	block := b.insert(t, jobs.InsertParams{Args: dashArgs{Name: "slow", Block: true}})[0]
	w.until(t, "executing row", rowEvent(block, "job-state-executing"))
	b.do(t, "POST", fmt.Sprintf("/api/jobs/%d/cancel", block), "", nil)
	w.until(t, "cancelled row", rowEvent(block, "job-state-cancelled"))
}

func TestJobsStreamSendsRefreshInsteadOfFloods(t *testing.T) {
	t.Parallel()
	b := jobsSetup(t, live.JobsFeedConfig{Every: time.Millisecond, MaxRows: 10, RefreshEvery: time.Millisecond})
	params := make([]jobs.InsertParams, 50)
	for i := range params {
		params[i] = job(fmt.Sprint(i))
	}
	if _, err := b.engine.InsertMany(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	page, err := jobs.List(context.Background(), b.st.Reader, jobs.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, j := range page.Jobs {
		all = append(all, fmt.Sprint(j.ID))
	}
	w := b.watch(t, "") // everything
	_, body := b.do(t, "POST", "/api/jobs/bulk", `{"action":"cancel","ids":[`+strings.Join(all, ",")+`]}`, asJSON)
	if !strings.Contains(body, `"changed":50`) {
		t.Fatalf("bulk: %s", body)
	}
	_, before := w.until(t, "refresh", func(m events.Message) bool { return m.Event == "refresh" })
	rows := 0
	for _, m := range before {
		if m.Event == "" {
			rows++
		}
	}
	if rows > 10 {
		t.Errorf("%d row events before the refresh, want at most the cap of 10", rows)
	}
	// The page's reload after it has every job cancelled, and a new stream.
	resp, live := b.do(t, "GET", "/jobs/live", "", map[string]string{"HX-Request": "true"})
	if resp.StatusCode != 200 || !strings.HasPrefix(live, `<div id="jobs-live"`) || strings.Count(live, "job-state-cancelled\">") != 50 ||
		!strings.Contains(live, "&amp;ids="+all[0]) {
		t.Errorf("live reload: %d, %d cancelled", resp.StatusCode, strings.Count(live, "job-state-cancelled\">"))
	}
}
