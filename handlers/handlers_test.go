package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
)

// bundle is a testServer with the 10 seed extraterrestrials. The job
// engine is built but not started, so enqueued jobs stay put for inspection.
type bundle struct{ *testServer }

func setup(t *testing.T) *bundle {
	t.Helper()
	return &bundle{setupServer(t, serverOptions{seed: true, answerRate: 0.2})}
}

func (b *bundle) do(t *testing.T, method, path string, body io.Reader, header map[string]string) (*http.Response, string) {
	t.Helper()
	return request(t, b.srv.Client(), method, b.srv.URL+path, body, header)
}

func (b *bundle) jobIDs(t *testing.T) []int64 {
	t.Helper()
	var ids []int64
	if err := b.st.Reader.Select(&ids, b.st.Rebind("SELECT CAST(args ->> 'extraterrestrial_id' AS BIGINT) FROM jobs WHERE kind = ? ORDER BY 1"), speakandspell.Kind); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (b *bundle) record(t *testing.T, id int64, status store.Status, attempt int) store.Extraterrestrial {
	t.Helper()
	var et store.Extraterrestrial
	err := b.st.InTx(context.Background(), func(tx *sqlx.Tx) error {
		var err error
		et, err = store.RecordCallTx(context.Background(), tx, id, status, attempt, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return et
}

func TestPageListsSeedNamesInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := b.do(t, "GET", "/", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var names []string
	for _, m := range regexp.MustCompile(`<td class="name">([^<]*)</td>`).FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
	}
	if got, want := strings.Join(names, ","), strings.Join(store.SeedNames, ","); got != want {
		t.Errorf("names on the page = %s, want %s", got, want)
	}
	for _, want := range []string{
		`sse-connect="/events?stream=extraterrestrials&amp;last_event_id=`,
		`id="extraterrestrial-1"`,
		`hx-trigger="sse:resync"`,
		`<span class="count-n">10</span><span class="count-label">never tried</span>`,
		`Phone Home</button>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, `id="extraterrestrial-1" hx-swap-oob`) {
		t.Error("page rows must not be marked out-of-band")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff header")
	}
}

func TestPhoneHomeEnqueuesOnlyEligibleRowsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.record(t, 1, store.StatusSpaceTaxi, 2)   // home: never again
	b.record(t, 2, store.StatusPhoningHome, 1) // in progress: its call is in flight
	if _, err := b.engine.Insert(context.Background(), speakandspell.Args{ExtraterrestrialID: 2}, jobs.InsertOpts{}); err != nil {
		t.Fatal(err)
	}
	b.record(t, 3, store.StatusNoAnswer, 5) // gave up: try again

	resp, body := b.do(t, "POST", "/api/phone-home", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"enqueued":8}` {
		t.Fatalf("first click: %d %s", resp.StatusCode, body)
	}
	want := "[2 3 4 5 6 7 8 9 10]" // row 2's call, and the new ones
	if got := jsonString(b.jobIDs(t)); got != jsonString([]int64{2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("jobs for %s, want %s", got, want)
	}
	// A double click enqueues nothing twice.
	_, body = b.do(t, "POST", "/api/phone-home", nil, nil)
	if strings.TrimSpace(body) != `{"enqueued":0}` {
		t.Errorf("second click: %s", body)
	}
	if n := len(b.jobIDs(t)); n != 9 {
		t.Errorf("%d jobs after the second click, want 9", n)
	}
	var job struct {
		Queue       string `db:"queue"`
		MaxAttempts int    `db:"max_attempts"`
		State       string `db:"state"`
	}
	if err := b.st.Reader.Get(&job, "SELECT queue, max_attempts, state FROM jobs LIMIT 1"); err != nil {
		t.Fatal(err)
	}
	if job.Queue != "phone_calls" || job.MaxAttempts != 5 || job.State != "available" {
		t.Errorf("job = %+v", job)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestPhoneHomeFormAnswersHtmxAndPlainBrowsers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, body := b.do(t, "POST", "/phone-home", nil, map[string]string{"HX-Request": "true", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != 200 || !strings.Contains(body, "10 calls enqueued") {
		t.Errorf("htmx: %d %s", resp.StatusCode, body)
	}
	_, body = b.do(t, "POST", "/phone-home", nil, map[string]string{"HX-Request": "true"})
	if !strings.Contains(body, "Nobody left to call") {
		t.Errorf("second click: %s", body)
	}
	client := *b.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Post(b.srv.URL+"/phone-home", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("plain form: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestCrossSitePostsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"cross-site fetch metadata", "/api/phone-home", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site other origin", "/phone-home", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"foreign Origin without metadata", "/api/phone-home", map[string]string{"Origin": "http://evil.example"}, 403},
		{"same origin", "/api/phone-home", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"curl", "/api/phone-home", nil, 200},
	}
	for _, tt := range tests {
		resp, body := b.do(t, "POST", tt.path, nil, tt.header)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, resp.StatusCode, tt.want, body)
		}
		if tt.want == 403 && strings.HasPrefix(tt.path, "/api/") && !strings.Contains(body, `"error":"cross-site request refused`) {
			t.Errorf("%s: body %s", tt.name, body)
		}
	}
	// Only the two allowed requests enqueued anything, and the second found nothing to do.
	if n := len(b.jobIDs(t)); n != 10 {
		t.Errorf("%d jobs, want 10", n)
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	checkAnswers(t, func(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
		return b.do(t, method, path, strings.NewReader(body), header)
	}, []answerCase{
		{"missing stream", "GET", "/events", nil, "", 400, `{"error":"missing ?stream=`},
		{"unknown stream", "GET", "/events?stream=aliens", nil, "", 404, `{"error":"unknown stream \"aliens\""}`},
		{"bad Last-Event-ID", "GET", "/events?stream=extraterrestrials", map[string]string{"Last-Event-ID": "abc"}, "", 400, "Last-Event-ID must be"},
		{"bad last_event_id", "GET", "/events?stream=extraterrestrials&last_event_id=-4", nil, "", 400, "last_event_id must be"},
		{"limit not a number", "GET", "/api/extraterrestrials?limit=ten", nil, "", 400, "limit must be a whole number"},
		{"limit too big", "GET", "/api/extraterrestrials?limit=5000", nil, "", 422, "between 1 and 1000"},
		{"unknown status", "GET", "/api/extraterrestrials?status=lost", nil, "", 422, "unknown status"},
		{"bad cursor", "GET", "/api/extraterrestrials?cursor=%25%25", nil, "", 400, "malformed cursor"},
		{"long query", "GET", "/api/extraterrestrials?q=" + strings.Repeat("x", 101), nil, "", 422, "longer than 100"},
		{"unknown API route", "GET", "/api/nothing", nil, "", 404, `{"error":`},
		{"wrong method", "DELETE", "/api/phone-home", nil, "", 405, `{"error":`},
		{"too large", "POST", "/api/phone-home", map[string]string{"Content-Type": "application/json"}, strings.Repeat("x", 2<<20), 413, "too large"},
		{"unknown page", "GET", "/nowhere", nil, "", 404, "<h1>404 · Not Found</h1>"},
		{"bad page filter", "GET", "/?status=lost", nil, "", 422, "unknown status"},
	})
	if n := len(b.jobIDs(t)); n != 0 {
		t.Errorf("bad requests enqueued %d jobs", n)
	}
}

func TestAPIListsPagesAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.record(t, 8, store.StatusSpaceTaxi, 3)
	type page struct {
		Items []struct {
			ID                   int64   `json:"id"`
			Name                 string  `json:"name"`
			CommunicationStatus  string  `json:"communication_status"`
			CommunicationAttempt int     `json:"communication_attempt"`
			LastAttemptAt        *string `json:"last_communication_attempt_at"`
		} `json:"items"`
		NextCursor *string `json:"next_cursor"`
	}
	var names []string
	path := "/api/extraterrestrials?limit=4"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("cursor never ends")
		}
		resp, body := b.do(t, "GET", path, nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		var p page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			names = append(names, it.Name)
			if it.ID == 8 {
				if it.CommunicationStatus != "space_taxi_on_the_way" || it.CommunicationAttempt != 3 || it.LastAttemptAt == nil {
					t.Errorf("row 8 = %+v", it)
				}
				if _, err := time.Parse(time.RFC3339, *it.LastAttemptAt); err != nil {
					t.Errorf("timestamp %q is not RFC 3339", *it.LastAttemptAt)
				}
			} else if it.CommunicationStatus != "" || it.LastAttemptAt != nil {
				t.Errorf("untried row = %+v", it)
			}
		}
		if p.NextCursor == nil {
			break
		}
		path = "/api/extraterrestrials?limit=4&cursor=" + *p.NextCursor
	}
	if strings.Join(names, ",") != strings.Join(store.SeedNames, ",") {
		t.Errorf("paged names = %v", names)
	}
	_, body := b.do(t, "GET", "/api/extraterrestrials?status=space_taxi_on_the_way", nil, nil)
	if !strings.Contains(body, `"name":"Korben"`) || strings.Count(body, `"id":`) != 1 {
		t.Errorf("status filter: %s", body)
	}
	_, body = b.do(t, "GET", "/api/extraterrestrials?status=none&q=ar", nil, nil)
	// Never tried and containing "ar" in any case: Dengar, Harishka, Luminara.
	if strings.Count(body, `"id":`) != 3 || !strings.Contains(body, "Dengar") || !strings.Contains(body, "Luminara") {
		t.Errorf("status=none&q=ar: %s", body)
	}
	// A search is trimmed, as the pets' is: spaces around a name still
	// find it. A NUL finds nothing (no name holds one).
	for _, q := range []string{"%20Dengar", "Dengar%20", "%09Dengar%20%20"} {
		if _, body = b.do(t, "GET", "/api/extraterrestrials?q="+q, nil, nil); strings.Count(body, `"id":`) != 1 || !strings.Contains(body, "Dengar") {
			t.Errorf("q=%s: %s", q, body)
		}
	}
	if _, body = b.do(t, "GET", "/api/extraterrestrials?q=%00", nil, nil); strings.Count(body, `"id":`) != 0 {
		t.Errorf("q=%%00: %s", body)
	}
}

func TestHealthAndStaticFiles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if resp, body := b.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	for _, path := range []string{"/static/app.css", "/static/vendor/htmx-2.0.11.min.js", "/static/vendor/htmx-ext-sse-2.2.4.min.js", "/static/app.js"} {
		if resp, _ := b.do(t, "GET", path, nil, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := b.do(t, "GET", "/static/", nil, nil); resp.StatusCode != 404 {
		t.Errorf("directory listing: %d", resp.StatusCode)
	}
}

// TestLiveRowAndCountsReachTheStream reads the real stream through the real
// router: a committed change arrives as the page's row partial, marked for an
// out-of-band swap, followed by the campaign counts.
func TestLiveRowAndCountsReachTheStream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	msgs, resp, _ := openStream(t, b.srv.Client(), b.srv.URL+"/events?stream=extraterrestrials")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	waitUntil(t, 10*time.Second, "condition", func() bool { return b.hub.Clients()[live.ExtraterrestrialsStream] == 1 })

	b.feed.Changed(b.record(t, 5, store.StatusPhoningHome, 1))

	row := next(t, msgs)
	if row.Event != "" || !strings.HasPrefix(row.Data, `<tr id="extraterrestrial-5" hx-swap-oob="true">`) ||
		!strings.Contains(row.Data, "Dengar") || !strings.Contains(row.Data, "Phoning home") || row.IDInt() == 0 {
		t.Errorf("row event = %+v", row)
	}
	counts := next(t, msgs)
	if counts.Event != live.CountsEvent || !strings.Contains(counts.Data, `id="et-counts"`) ||
		!strings.Contains(counts.Data, `<span class="count-n">1</span><span class="count-label">phoning home</span>`) {
		t.Errorf("counts event = %+v", counts)
	}
	if counts.IDInt() <= row.IDInt() {
		t.Errorf("ids do not increase: %s then %s", row.ID, counts.ID)
	}
}
