package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// W3's gaps are the same for every system given a seed, differ between
// seeds, and spread over a whole 50 ms poll period (a fixed gap locked onto
// River's poll).
func TestW3GapsSeededAndSpread(t *testing.T) {
	a, b := w3Gaps(1, 203), w3Gaps(1, 203)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave two different gap sequences")
	}
	if slices.Equal(a, w3Gaps(2, 203)) {
		t.Fatal("two seeds gave the same gaps")
	}
	lo, hi := slices.Min(a), slices.Max(a)
	if lo < w3GapMin || hi >= w3GapMin+w3GapSpread {
		t.Fatalf("gaps %v…%v outside [%v, %v)", lo, hi, w3GapMin, w3GapMin+w3GapSpread)
	}
	// Gaps modulo River's 50 ms poll must cover the period, not one phase.
	var phases [5]int
	for _, g := range a {
		phases[(g%(50*time.Millisecond))/(10*time.Millisecond)]++
	}
	for i, n := range phases {
		if n == 0 {
			t.Fatalf("no gap in phase %d0–%d0 ms of a 50 ms poll: %v", i, i+1, phases)
		}
	}
}

// The lean-table ceiling measures both variants and updates every row.
func TestLeanRates(t *testing.T) {
	perRow, ranged, err := leanRates(context.Background(), t.TempDir(), 2500)
	if err != nil {
		t.Fatal(err)
	}
	if perRow <= 0 || ranged <= 0 {
		t.Fatalf("rates %v, %v", perRow, ranged)
	}
}

// The section holds W1 and W2 to the lean-table ceiling, shows the
// own-table ceiling as a labelled row apart, and writes the campaign's
// table and the targets of issue 12.
func TestRenderCeilingsAndCampaign(t *testing.T) {
	sd := func(values map[string][]float64) *scenarioData {
		d := newScenarioData("2026-12-04 12:00 UTC", "test machine", "commit abc", 3, 20_000)
		d.Values = values
		return d
	}
	d := &benchData{Scenarios: map[string]*scenarioData{
		"w1": sd(map[string][]float64{
			"drain_rate|phonehome": {20_000, 21_000, 19_000}, "drain_rate|River": {3000, 3100, 2900},
			"insert_s|phonehome": {2, 2, 2}, "insert_s|backlite": {0.7, 0.7, 0.7},
		}),
		"raw": sd(map[string][]float64{
			"lean_row_rate|raw": {320_000, 330_000, 310_000}, "lean_job_rate|raw": {160_000, 165_000, 155_000},
			"job_rate|raw": {44_000, 44_000, 44_000}, "lean_rate|raw": {860_000, 860_000, 860_000},
		}),
		"campaign": sd(map[string][]float64{
			"rows_rate|phonehome": {6000, 7000, 6500}, "drain_rate|River": {5000, 5500, 5200},
			"ratio|phonehome": {1.2, 1.27, 1.25}, "campaign_s|phonehome": {3.3, 2.9, 3.1},
		}),
	}}
	out := render(d, "")
	for _, want := range []string{
		"160,000 (155,000–165,000) jobs/s ceiling (lean table)",
		"W1 within 3× of raw SQLite (≥ ⅓ of the 160,000 jobs/s ceiling: lean table",
		"20,000 jobs/s = **1/8.0** of the ceiling | **no** |",
		"(context, not the ceiling) W1 against the 44,000 jobs/s own-table ceiling",
		"**Raw, lean table (the ceiling)**",
		"### Targets (issue 12)",
		"| Phone Home campaign ≥ 2× River's drain of as many no-op jobs (stretch 30,000 rows/s) | 6,500 rows/s vs River 5,200 jobs/s: **1.25×**",
		"| W1 drain ≥ 40,000 jobs/s (stretch 80,000) | 20,000 jobs/s | **no** |",
		"| Bulk insert of 20,000 jobs faster than backlite | 2.00 s vs 0.70 s | **no** |",
		"### Phone Home campaign through the real binary, against River (issue 12)",
		"| ratio phonehome ÷ River (each run's own) | 1.25× (1.20×–1.27×) | |",
		"| start to every row home (phonehome) / drain (River), time | 3.10 s (2.90–3.30) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q", want)
		}
	}
	// The data round-trips, so -only keeps the scenarios it does not run.
	if back := loadData(out); back.Scenarios["campaign"] == nil || len(back.Scenarios["campaign"].Values["ratio|phonehome"]) != 3 {
		t.Error("the campaign's numbers did not survive the section's data comment")
	}
}

// The stream client counts row events, named events and resyncs, and
// reads data lines longer than its buffer.
func TestStreamClientCounts(t *testing.T) {
	long := strings.Repeat("x", 300<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": heartbeat\n\n")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "id: %d\ndata: <tr id=\"extraterrestrial-%d\">\ndata: </tr>\n\n", i, i)
		}
		fmt.Fprint(w, "id: 4\nevent: counts\ndata: {}\n\n")
		fmt.Fprintf(w, "id: 5\ndata: %s\n\n", long)
		fmt.Fprint(w, "id: 6\nevent: resync\ndata: now\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := &streamClient{}
	done := make(chan error, 1)
	go func() { done <- c.read(ctx, srv.URL, 4) }()
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) { return c.resyncs.Load() == 1, nil }); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e, r := c.events.Load(), c.rows.Load(); e != 6 || r != 4 {
		t.Fatalf("events %d, rows %d; want 6, 4", e, r)
	}
	if c.allRowsAt().IsZero() {
		t.Fatal("the time of the last wanted row was not kept")
	}
}

func TestProfilePath(t *testing.T) {
	for _, c := range []struct {
		path      string
		run, runs int
		want      string
	}{
		{"", 1, 3, ""},
		{"/tmp/c.prof", 1, 1, "/tmp/c.prof"},
		{"/tmp/c.prof", 2, 3, "/tmp/c.run2.prof"},
		{"/tmp/c", 3, 3, "/tmp/c.run3"},
	} {
		if got := profilePath(c.path, c.run, c.runs); got != c.want {
			t.Errorf("profilePath(%q, %d, %d) = %q, want %q", c.path, c.run, c.runs, got, c.want)
		}
	}
}

// The campaign through the real binary: every row home, the client got
// every row's event, and the figures are consistent. It builds the app.
func TestCampaignRealBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the phonehome binary")
	}
	ctx := context.Background()
	bin, err := buildApp(ctx, "..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const rows = 300
	m, err := runCampaign(ctx, bin, dir, rows, "")
	if err != nil {
		t.Fatal(err)
	}
	if m["rows"] != rows || m["row_events"] < rows {
		t.Fatalf("rows %v, row events %v; want %d each", m["rows"], m["row_events"], rows)
	}
	if m["campaign_s"] <= 0 || m["rows_rate"] != rows/m["campaign_s"] {
		t.Fatalf("time %v s, rate %v", m["campaign_s"], m["rows_rate"])
	}
	if _, ok := m["client_s"]; !ok {
		t.Fatal("no time for the client holding every row")
	}
	if _, err := os.Stat(filepath.Join(dir, "campaign.db")); err != nil {
		t.Fatal(err)
	}
	// Without the app's -cpuprofile flag, a profile is refused, not ignored.
	if !bin.CPUProfileFlag {
		if _, err := runCampaign(ctx, bin, t.TempDir(), 10, filepath.Join(t.TempDir(), "x.prof")); err == nil {
			t.Fatal("a profile was asked of an app without -cpuprofile, and nothing said so")
		}
	}
}
