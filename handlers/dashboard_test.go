package handlers_test

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
)

// dashBundle is a testServer holding 10 available jobs (the seed's Phone
// Home, engine not started) whose collector the tests sample by hand.
type dashBundle struct{ *testServer }

func dashSetup(t *testing.T) *dashBundle {
	t.Helper()
	return &dashBundle{setupServer(t, serverOptions{seed: true, phoneHome: true})}
}

func (b *dashBundle) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	return request(t, b.srv.Client(), "GET", b.srv.URL+path, nil, nil)
}

// subscribe connects to a stream and returns its events; it returns once
// the hub counts the client.
func (b *dashBundle) subscribe(t *testing.T, stream string) <-chan events.Message {
	t.Helper()
	msgs, _, _ := openStream(t, b.srv.Client(), b.srv.URL+"/events?stream="+stream)
	deadline := time.After(10 * time.Second)
	for b.hub.Clients()[stream] == 0 {
		select {
		case <-b.joined:
		case <-deadline:
			t.Fatalf("the hub never counted the client of %s", stream)
		}
	}
	return msgs
}

var sampleAttr = regexp.MustCompile(`^<div id="dash-live" class="dash" data-sample="(\d+)">`)

func sampleOf(t *testing.T, m events.Message) string {
	t.Helper()
	s := sampleAttr.FindStringSubmatch(m.Data)
	if s == nil {
		t.Fatalf("event is not the live panel: %.200q", m.Data)
	}
	return s[1]
}

func TestDashboardPage(t *testing.T) {
	t.Parallel()
	b := dashSetup(t)
	resp, body := b.get(t, "/dashboard")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`<div id="dashboard" data-stream="stats" data-live-url="/dashboard/live">`,
		`<div id="dash-live" class="dash"`,
		`<option value="1" data-stream="stats" selected>every 1 s</option>`,
		`<option value="30" data-stream="stats-30s">every 30 s</option>`,
		`<script src="/static/dashboard.js" defer></script>`,
		`<link rel="stylesheet" href="/static/dashboard.css">`,
		`<dt>available</dt><dd>10</dd>`,
		`<dt>Alive</dt><dd>1,234</dd>`,
		`id="chart-memory"`, `id="chart-goroutines"`, `id="chart-throughput"`,
		`<dt>Version</dt><dd>test</dd>`,
		`<dt>Go</dt><dd>` + runtime.Version() + `</dd>`,
		`<h3>Database <code class="dash-path">` + template.HTMLEscapeString(b.st.Path) + `</code></h3>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The Content Security Policy allows no inline style or script.
	if strings.Contains(body, " style=") || strings.Contains(body, "<style") {
		t.Errorf("page has inline style")
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(tag, ` src="/static/`) {
			t.Errorf("inline script: %s", tag)
		}
	}

	_, body = b.get(t, "/dashboard?every=5")
	if !strings.Contains(body, `data-stream="stats-5s"`) || !strings.Contains(body, `<option value="5" data-stream="stats-5s" selected>`) {
		t.Errorf("?every=5 does not choose stats-5s")
	}
	for _, bad := range []struct {
		query  string
		status int
	}{{"?every=3", http.StatusUnprocessableEntity}, {"?every=soon", http.StatusBadRequest}, {"?every=0", http.StatusUnprocessableEntity}} {
		if resp, _ := b.get(t, "/dashboard"+bad.query); resp.StatusCode != bad.status {
			t.Errorf("/dashboard%s: status %d, want %d", bad.query, resp.StatusCode, bad.status)
		}
	}

	resp, body = b.get(t, "/dashboard/live")
	if resp.StatusCode != http.StatusOK || !sampleAttr.MatchString(body) {
		t.Errorf("/dashboard/live: %d %.100q", resp.StatusCode, body)
	}
	for _, path := range []string{"/static/dashboard.js", "/static/dashboard.css"} {
		if resp, _ := b.get(t, path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
	}
}

func TestStatsStreamsCarryTheLivePanelAtTheirInterval(t *testing.T) {
	t.Parallel()
	b := dashSetup(t)
	ctx := context.Background()

	// Nobody watches: a sample counts no jobs and publishes nothing.
	last := b.hub.LastID()
	b.stats.Sample(ctx)
	if b.counted.Load() != 0 || b.hub.LastID() != last {
		t.Fatalf("unwatched sample counted jobs %d times or published (last id %d → %d)",
			b.counted.Load(), last, b.hub.LastID())
	}

	every1 := b.subscribe(t, live.StatsStream)
	every5 := b.subscribe(t, live.StatsStreamFor(5))
	for range 9 { // samples 2 … 10
		b.stats.Sample(ctx)
	}
	for want := 2; want <= 10; want++ {
		m := next(t, every1)
		if got := sampleOf(t, m); got != strconv.Itoa(want) {
			t.Fatalf("stats: sample %s, want %d", got, want)
		}
		if m.Event != "" || m.IDInt() == 0 {
			t.Errorf("stats event %d: name %q id %q", want, m.Event, m.ID)
		}
		if !strings.Contains(m.Data, `<dt>available</dt><dd>10</dd>`) || !strings.Contains(m.Data, `id="chart-memory"`) {
			t.Errorf("sample %d lacks the job counts or the charts", want)
		}
		// The goroutines line has a point per sample, the newest at the right edge.
		line := regexp.MustCompile(`<polyline class="line-goroutines" points="([^"]*)"/>`).FindStringSubmatch(m.Data)
		if line == nil || len(strings.Fields(line[1])) != want || !strings.HasPrefix(strings.Fields(line[1])[want-1], "300,") {
			t.Errorf("sample %d: goroutines line %q, want %d points ending at x=300", want, line, want)
		}
	}
	for _, want := range []string{"5", "10"} {
		if got := sampleOf(t, next(t, every5)); got != want {
			t.Errorf("stats-5s: sample %s, want %s", got, want)
		}
	}
	if n := b.counted.Load(); n != 9 {
		t.Errorf("jobs counted %d times for 9 watched samples", n)
	}
}

func TestUnknownStatsStreamIs404(t *testing.T) {
	t.Parallel()
	b := dashSetup(t)
	if resp, _ := b.get(t, "/events?stream=stats-3s"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("stats-3s: status %d, want 404", resp.StatusCode)
	}
}

func TestStatsAPI(t *testing.T) {
	t.Parallel()
	b := dashSetup(t)
	b.subscribe(t, live.StatsStreamFor(2))
	resp, body := b.get(t, "/api/stats")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The figures are read into the answer's own type; the names on the
	// wire that a client reads are checked apart from it.
	var got handlers.StatsJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if missing := missingKeys(t, body, "version", "go_version", "goroutines", "heap_bytes", "rss_bytes",
		"memory.peak_rss_bytes", "memory.heap_in_use_bytes", "memory.stacks_bytes", "sse_clients", "sse_clients_total",
		"jobs", "jobs_per_second.completed", "gc.cycles", "gc.recent_pauses_seconds", "pets.alive", "pets.dead",
		"pets.watched", "pets.tick_seconds", "db.path", "db.bytes", "db.wal_bytes"); len(missing) > 0 {
		t.Errorf("the answer lacks %v: %s", missing, body)
	}
	if got.Version != "test" || got.GoVersion != runtime.Version() || got.Goroutines < 1 || got.HeapBytes == 0 {
		t.Errorf("runtime figures: %+v", got)
	}
	if runtime.GOOS == "linux" && (got.RSSBytes == 0 || got.Memory.PeakRSS < got.RSSBytes) {
		t.Errorf("rss %d peak %d", got.RSSBytes, got.Memory.PeakRSS)
	}
	if got.Memory.HeapInUse != got.HeapBytes || got.Memory.Stacks == 0 {
		t.Errorf("memory split: %+v", got.Memory)
	}
	if got.SSEClients["stats-2s"] != 1 || got.SSEClients["stats"] != 0 || got.SSEClientsTotal != 1 {
		t.Errorf("sse clients %v total %d, want stats-2s: 1", got.SSEClients, got.SSEClientsTotal)
	}
	if got.Jobs["available"] != 10 || got.Jobs["completed"] != 0 {
		t.Errorf("jobs %v, want 10 available", got.Jobs)
	}
	if got.JobsPerSecond == nil || got.JobsPerSecond.Completed != 0 {
		t.Errorf("jobs_per_second = %+v", got.JobsPerSecond)
	}
	if p := got.Pets; p == nil || p.Alive != 1234 || p.Dead != 56 || p.Watched != 7 || p.TickSeconds != 0.012 {
		t.Errorf("pets %+v", p)
	}
	if strings.Contains(body, "persist") {
		t.Errorf("pets are never persisted periodically, yet the answer names a persist: %s", body)
	}
	fi, err := os.Stat(b.path)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.DB; d == nil || d.Path != b.path || d.Bytes != fi.Size() || d.WALBytes == 0 {
		t.Errorf("db %+v, want %d bytes and a WAL", d, fi.Size())
	}
	if got.GC.RecentPausesSeconds == nil {
		t.Errorf("recent_pauses_seconds is null, want a list")
	}
}

// missingKeys lists the keys of the JSON object body that are not there: a
// key is a name, or a path of names joined by dots into nested objects.
func missingKeys(t *testing.T, body string, keys ...string) []string {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal([]byte(body), &root); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var missing []string
	for _, key := range keys {
		obj, names := root, strings.Split(key, ".")
		for _, name := range names[:len(names)-1] {
			obj, _ = obj[name].(map[string]any)
		}
		if _, ok := obj[names[len(names)-1]]; !ok {
			missing = append(missing, key)
		}
	}
	return missing
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	b := dashSetup(t)
	b.subscribe(t, live.StatsStream)
	resp, err := b.srv.Client().Get(b.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name, label, value string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s", name)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if label == "" || (l.GetName() == label && l.GetValue() == value) {
					return m.GetGauge().GetValue()
				}
			}
			if label == "" {
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s{%s=%q}", name, label, value)
		return 0
	}
	size, err := b.st.Size(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name, label, value string
		want               float64
	}{
		{stats.MetricJobs, "state", "available", 10},
		{stats.MetricJobs, "state", "executing", 0},
		{stats.MetricSSEClients, "stream", "stats", 1},
		{stats.MetricSSEClients, "stream", "stats-30s", 0},
		{stats.MetricPets, "state", "alive", 1234},
		{stats.MetricPetsWatched, "", "", 7},
		{stats.MetricBuildInfo, "version", "test", 1},
	}
	// A file's size is exact; a PostgreSQL database may grow between reads.
	if b.st.Dialect == store.SQLite {
		checks = append(checks, struct {
			name, label, value string
			want               float64
		}{stats.MetricDBBytes, "file", "main", float64(size.Bytes)})
	} else if got := gauge(stats.MetricDBBytes, "file", "main"); got < float64(size.Bytes)/2 {
		t.Errorf("%s = %v, want about %d", stats.MetricDBBytes, got, size.Bytes)
	}
	for _, c := range checks {
		if got := gauge(c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if gauge("go_goroutines", "", "") < 1 {
		t.Errorf("go_goroutines < 1")
	}
	if runtime.GOOS == "linux" && gauge("process_resident_memory_bytes", "", "") <= 0 {
		t.Errorf("process_resident_memory_bytes <= 0")
	}
}

// windowHub is a hub that records the resume window of each stream.
type windowHub struct {
	*events.Hub
	windows map[string]int
}

func (w *windowHub) RegisterWindow(stream string, window int) {
	w.windows[stream] = window
	w.Hub.RegisterWindow(stream, window)
}

func TestStatsStreamsKeepOneEvent(t *testing.T) {
	t.Parallel()
	h := &windowHub{Hub: events.New(events.Config{}), windows: map[string]int{}}
	t.Cleanup(h.Close)
	live.Register(h)
	for _, every := range live.StatsRefresh() {
		name := live.StatsStreamFor(every)
		if h.windows[name] != 1 || !h.Has(name) {
			t.Errorf("%s: window %d registered %v, want 1 and registered", name, h.windows[name], h.Has(name))
		}
	}
}
