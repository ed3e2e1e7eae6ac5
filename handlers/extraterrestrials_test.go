package handlers_test

import (
	"context"
	"html"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/live"
)

// liveServer is the whole live path: a database of ets extraterrestrials,
// the real router, hub and feed, and a running job engine with no backoff.
type liveServer struct{ *testServer }

func startLive(t *testing.T, ets int) *liveServer {
	t.Helper()
	return &liveServer{setupServer(t, serverOptions{generate: ets, start: true, answerRate: 0.3})}
}

var (
	streamAttr = regexp.MustCompile(`sse-connect="([^"]*)"`)
	rowHTML    = regexp.MustCompile(`(?s)<tr id="extraterrestrial-(\d+)"[^>]*>.*?</tr>`)
	nextLink   = regexp.MustCompile(`<a class="btn" href="([^"]*)">Next page`)
)

// rowsOf maps each row id of an HTML text to its row, without the
// out-of-band marker that events carry.
func rowsOf(text string) map[string]string {
	out := map[string]string{}
	for _, m := range rowHTML.FindAllStringSubmatch(text, -1) {
		out[m[1]] = strings.Replace(m[0], ` hx-swap-oob="true"`, "", 1)
	}
	return out
}

// pageClient is a browser on one page: its table as rendered, then kept up
// to date by its event stream the way htmx swaps rows.
type pageClient struct {
	path string
	mu   sync.Mutex
	rows map[string]string
	// foreign counts row events for rows the page does not show.
	foreign int
}

func openPage(t *testing.T, l *liveServer, path string) *pageClient {
	t.Helper()
	body := l.get(t, path)
	m := streamAttr.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s has no sse-connect", path)
	}
	stream := html.UnescapeString(m[1])
	if !strings.Contains(stream, "&ids=") {
		t.Fatalf("%s subscribes to %s: not to its rows", path, stream)
	}
	pc := &pageClient{path: path, rows: rowsOf(body)}
	msgs, _, _ := openStream(t, l.srv.Client(), l.srv.URL+stream)
	go func() {
		for m := range msgs {
			if m.Event != "" {
				continue // counts
			}
			pc.mu.Lock()
			for id, row := range rowsOf(m.Data) {
				if _, ok := pc.rows[id]; ok {
					pc.rows[id] = row
				} else {
					pc.foreign++
				}
			}
			pc.mu.Unlock()
		}
	}()
	return pc
}

// stale lists the rows whose shown state differs from the database's.
func (pc *pageClient) stale(want map[string]string) []string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	var out []string
	for id, row := range want {
		if pc.rows[id] != row {
			out = append(out, id)
		}
	}
	return out
}

// Every page of a table that a campaign changes throughout ends showing
// each of its rows exactly as the database has it, and receives no event
// about a row it does not show.
func TestPagesEndShowingTheDatabase(t *testing.T) {
	t.Parallel()
	l := startLive(t, 500)
	// Open every page (100 rows each) by following the cursor.
	var pages []*pageClient
	for path := "/"; path != ""; {
		pc := openPage(t, l, path)
		pages = append(pages, pc)
		body := l.get(t, path)
		path = ""
		if m := nextLink.FindStringSubmatch(body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if len(pages) != 5 {
		t.Fatalf("%d pages, want 5", len(pages))
	}
	waitUntil(t, 10*time.Second, "condition", func() bool { return l.hub.Clients()[live.ExtraterrestrialsStream] == len(pages) })

	if got := postPhoneHome(t, l); got != `{"enqueued":500}` {
		t.Fatalf("phone home: %s", got)
	}
	// The campaign ends: no call in flight.
	waitUntil(t, 2*time.Minute, "the campaign to end", func() bool {
		var n int
		_ = l.st.Reader.Get(&n, "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'discarded')")
		return n == 0
	})
	for _, pc := range pages {
		want := rowsOf(l.get(t, pc.path))
		if len(want) != 100 {
			t.Fatalf("%s: %d rows", pc.path, len(want))
		}
		waitUntil(t, 2*time.Minute, pc.path+" to show the database", func() bool { return len(pc.stale(want)) == 0 })
		if pc.foreign != 0 {
			t.Errorf("%s received %d events about rows it does not show", pc.path, pc.foreign)
		}
	}
	// The header counts agree with the table.
	counts, err := l.st.CountByStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts.Total() != 500 || counts.Never != 0 || counts.PhoningHome != 0 {
		t.Errorf("counts after the campaign: %+v", counts)
	}
	if body := l.get(t, "/"); !strings.Contains(body, "· 0 to go</p>") {
		t.Errorf("campaign header lacks the summary line")
	}
}

func postPhoneHome(t *testing.T, l *liveServer) string {
	t.Helper()
	resp, err := l.srv.Client().Post(l.srv.URL+"/api/phone-home", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body))
}

// The page asks for its own rows, and ids= is checked.
func TestStreamIDsAreChecked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := b.get(t, "/?status=none")
	m := streamAttr.FindStringSubmatch(body)
	if m == nil || !strings.HasSuffix(html.UnescapeString(m[1]), "&ids=1,2,3,4,5,6,7,8,9,10") {
		t.Errorf("stream of the first page: %v", m)
	}
	if m := streamAttr.FindStringSubmatch(b.get(t, "/?q=nobody")); m == nil || !strings.HasSuffix(m[1], "&amp;ids=") {
		t.Errorf("stream of an empty page: %v", m)
	}
	tests := []struct {
		name, query string
		want        int
		wantBody    string
	}{
		{"not a number", "&ids=1,x", 400, "ids must be positive whole numbers"},
		{"zero", "&ids=0", 400, "ids must be positive whole numbers"},
		{"trailing comma", "&ids=1,", 400, "ids must be positive whole numbers"},
		{"too many", "&ids=" + strings.Repeat("1,", events.MaxKeys) + "1", 422, "more than 1000 ids"},
	}
	for _, tt := range tests {
		resp, body := b.do(t, "GET", "/events?stream=extraterrestrials"+tt.query, nil, nil)
		if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %d %q, want %d containing %q", tt.name, resp.StatusCode, body, tt.want, tt.wantBody)
		}
	}
}
