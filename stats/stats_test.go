package stats_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testclock"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
}

func TestSampleKeepsTheLastKeepOfHistory(t *testing.T) {
	t.Parallel()
	clock := newClock()
	c := stats.New(stats.Config{Interval: time.Second, Keep: 5 * time.Second, Now: clock.Now, Started: clock.Now()})
	var ats []time.Time
	for range 7 {
		clock.Add(time.Second)
		s := c.Sample(context.Background())
		ats = append(ats, s.At)
	}
	h := c.History()
	if len(h) != 5 {
		t.Fatalf("history holds %d samples, want 5", len(h))
	}
	for i, p := range h {
		if !p.At.Equal(ats[2+i]) {
			t.Errorf("history[%d] at %v, want %v (oldest first)", i, p.At, ats[2+i])
		}
		if p.Goroutines < 1 || p.HeapInUse == 0 || p.Stacks == 0 {
			t.Errorf("history[%d] = %+v: runtime figures missing", i, p)
		}
		if runtime.GOOS == "linux" && p.RSS == 0 {
			t.Errorf("history[%d] has no resident size on Linux", i)
		}
	}
	if s := c.Current(context.Background()); s.Seq != 7 || s.Uptime != 7*time.Second {
		t.Errorf("Current: seq %d uptime %v, want 7 and 7s", s.Seq, s.Uptime)
	}
}

func TestExpensiveFiguresOnlyWhileWatched(t *testing.T) {
	t.Parallel()
	var watched atomic.Bool
	var counted, published atomic.Int32
	var got []int64
	c := stats.New(stats.Config{
		Sources: stats.Sources{
			JobCounts: func(context.Context) (map[string]int, error) {
				counted.Add(1)
				return map[string]int{"available": 3}, nil
			},
			Clients: func() map[string]int { counted.Add(1); return map[string]int{"stats": 1} },
			DB:      brokenSource(),
		},
	})
	c.Subscribe(watched.Load, func(s stats.Snapshot) { published.Add(1); got = append(got, s.Seq) })
	ctx := context.Background()

	s := c.Sample(ctx)
	if s.Full || s.Jobs != nil || counted.Load() != 0 || published.Load() != 0 {
		t.Fatalf("unwatched sample: full=%v jobs=%+v, %d counts and %d publishes; want none",
			s.Full, s.Jobs, counted.Load(), published.Load())
	}
	if s.GC.Recent != nil || s.Memory.PeakRSS != 0 || s.Streams != nil || s.DB != nil {
		t.Errorf("unwatched sample read the GC pauses, peak RSS, clients or database: %+v", s)
	}

	watched.Store(true)
	s = c.Sample(ctx)
	if !s.Full || s.Jobs.Counts["available"] != 3 || counted.Load() != 2 || published.Load() != 1 {
		t.Fatalf("watched sample: full=%v counts=%v, %d source calls and %d publishes; want 2 and 1",
			s.Full, s.Jobs.Counts, counted.Load(), published.Load())
	}
	if len(s.Streams) != 1 || s.DB == nil {
		t.Errorf("watched sample: streams %v db %v", s.Streams, s.DB)
	}
	if !slices.Equal(got, []int64{2}) {
		t.Errorf("OnSample got samples %v, want [2]", got)
	}
	if runtime.GOOS == "linux" && s.Memory.PeakRSS < s.Memory.RSS {
		t.Errorf("peak RSS %d below RSS %d", s.Memory.PeakRSS, s.Memory.RSS)
	}

	watched.Store(false)
	if s := c.Current(ctx); !s.Full || s.Jobs.Counts["available"] != 3 || s.Seq != 2 {
		t.Errorf("Current while unwatched: full=%v counts=%v seq=%d; want a full reading at seq 2", s.Full, s.Jobs.Counts, s.Seq)
	}
	if len(c.History()) != 2 {
		t.Errorf("Current recorded a sample: history has %d", len(c.History()))
	}
}

func TestJobCountsErrorIsReportedNotFatal(t *testing.T) {
	t.Parallel()
	c := stats.New(stats.Config{Sources: stats.Sources{
		JobCounts: func(context.Context) (map[string]int, error) { return nil, errors.New("database is closed") },
	}})
	s := c.Current(context.Background())
	if s.Jobs == nil || s.Jobs.Counts != nil || s.Jobs.CountsErr != "database is closed" {
		t.Fatalf("jobs = %+v, want the error and no counts", s.Jobs)
	}
	if s.Goroutines < 1 {
		t.Errorf("the other figures are missing: %+v", s)
	}
}

func TestThroughputAveragesTheLastMinute(t *testing.T) {
	t.Parallel()
	clock := newClock()
	now := clock.Now()
	points := []stats.ThroughputPoint{
		{At: now.Add(-5 * time.Minute), Completed: 1000, Failed: 1000}, // too old
		{At: now.Add(-59 * time.Second), Completed: 60, Failed: 6},
		{At: now.Add(-1 * time.Second), Completed: 60, Failed: 0},
	}
	c := stats.New(stats.Config{Now: clock.Now, Sources: stats.Sources{
		Throughput: func() []stats.ThroughputPoint { return points },
	}})
	j := c.Current(context.Background()).Jobs
	if j.CompletedPerSecond != 2 || j.FailedPerSecond != 0.1 {
		t.Errorf("per second: completed %v failed %v, want 2 and 0.1", j.CompletedPerSecond, j.FailedPerSecond)
	}
	if len(j.Throughput) != 3 {
		t.Errorf("throughput history has %d points, want the source's 3", len(j.Throughput))
	}
}

func TestPetTicksAreSummedUpOncePerTick(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	figures := stats.PetFigures{Alive: 7, Dead: 3, Watched: 2}
	c := stats.New(stats.Config{Sources: stats.Sources{Pets: func() stats.PetFigures {
		mu.Lock()
		defer mu.Unlock()
		return figures
	}}})
	tick := func(at time.Time, d time.Duration) {
		mu.Lock()
		figures.TickAt, figures.TickDuration = at, d
		mu.Unlock()
	}
	ctx := context.Background()
	if p := c.Sample(ctx).Pets; p.Ticks != 0 || p.Alive != 7 || p.Dead != 3 || p.Watched != 2 {
		t.Fatalf("before any tick: %+v", p)
	}
	base := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i, d := range []time.Duration{30, 10, 20} {
		tick(base.Add(time.Duration(i)*5*time.Second), d*time.Millisecond)
		c.Sample(ctx)
		c.Sample(ctx) // the same tick sampled again is not counted twice
	}
	p := c.Current(ctx).Pets
	if p.Ticks != 3 || p.TickP50 != 20*time.Millisecond || p.TickMax != 30*time.Millisecond {
		t.Errorf("ticks %d p50 %v max %v, want 3, 20ms, 30ms", p.Ticks, p.TickP50, p.TickMax)
	}
	// Current counts a tick the loop has not sampled yet, without keeping it.
	tick(base.Add(time.Minute), 90*time.Millisecond)
	if p := c.Current(ctx).Pets; p.Ticks != 4 || p.TickMax != 90*time.Millisecond {
		t.Errorf("with an unsampled tick: %d ticks max %v, want 4 and 90ms", p.Ticks, p.TickMax)
	}
}

func TestGroupStreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   map[string]int
		want []stats.StreamClients
	}{
		{"none", map[string]int{}, []stats.StreamClients{}},
		{"named", map[string]int{"stats": 1, "extraterrestrials": 2, "stats-5s": 0}, []stats.StreamClients{
			{Name: "extraterrestrials", Streams: 1, Clients: 2},
			{Name: "stats", Streams: 1, Clients: 1},
			{Name: "stats-5s", Streams: 1, Clients: 0},
		}},
		{"numbered grouped", map[string]int{"pet-1": 2, "pet-22": 1, "pet-333": 0, "pets": 4}, []stats.StreamClients{
			{Name: "pet-{id}", Streams: 3, Clients: 3},
			{Name: "pets", Streams: 1, Clients: 4},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stats.GroupStreams(tt.in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("GroupStreams(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSortedStates(t *testing.T) {
	t.Parallel()
	got := stats.SortedStates(map[string]int{"zombie": 1, "completed": 2, "available": 3})
	want := append(slices.Clone(stats.JobStates), "zombie")
	if !slices.Equal(got, want) {
		t.Errorf("SortedStates = %v, want %v", got, want)
	}
}

// openDB makes a real, migrated SQLite file with a write in its WAL.
func openDB(t *testing.T) (*store.Store, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stats.db")
	st := storetest.Open(t, path)
	if _, err := st.SeedExtraterrestrials(ctx); err != nil {
		t.Fatal(err)
	}
	return st, path
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestStartSamplesEveryIntervalUntilStop(t *testing.T) {
	t.Parallel()
	samples := make(chan int64, 100)
	c := stats.New(stats.Config{
		Interval: 5 * time.Millisecond,
	})
	c.Subscribe(func() bool { return true }, func(s stats.Snapshot) {
		select {
		case samples <- s.Seq:
		default:
		}
	})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Start(ctx) // a second Start is a no-op
	deadline := time.After(10 * time.Second)
	for want := int64(1); want <= 3; want++ {
		select {
		case seq := <-samples:
			if seq != want {
				t.Fatalf("sample %d arrived as number %d", seq, want)
			}
		case <-deadline:
			t.Fatalf("sample %d did not arrive", want)
		}
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Stop(ctx)
	n := len(c.History())
	if c.Current(context.Background()).Seq != int64(n) {
		t.Errorf("history %d samples, seq %d", n, c.Current(context.Background()).Seq)
	}
	if err := stats.New(stats.Config{}).Stop(ctx); err != nil { // Stop without Start returns
		t.Fatal(err)
	}
}

// scrape fetches a Prometheus handler and parses its text output.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value finds the value of the metric with the given labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Untyped != nil:
			return m.GetUntyped().GetValue()
		}
	}
	t.Fatalf("no %s with labels %v", name, labels)
	return 0
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	st, path := openDB(t)
	tick := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := stats.New(stats.Config{
		Version: "1.2.3",
		Sources: stats.Sources{
			Clients: func() map[string]int { return map[string]int{"stats": 1, "pet-1": 2, "pet-2": 3, "pets": 0} },
			JobCounts: func(context.Context) (map[string]int, error) {
				return map[string]int{"available": 3, "completed": 40}, nil
			},
			Throughput: func() []stats.ThroughputPoint { return nil },
			Pets: func() stats.PetFigures {
				return stats.PetFigures{Alive: 9, Dead: 1, Watched: 2, TickAt: tick, TickDuration: 250 * time.Millisecond}
			},
			DB: live.DBSource(st),
		},
	})
	fams := scrape(t, c.MetricsHandler())

	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{stats.MetricBuildInfo, []string{"version", "1.2.3"}, 1},
		{stats.MetricJobs, []string{"state", "available"}, 3},
		{stats.MetricJobs, []string{"state", "completed"}, 40},
		{stats.MetricJobs, []string{"state", "discarded"}, 0},
		{stats.MetricJobsPerSecond, []string{"outcome", "completed"}, 0},
		{stats.MetricSSEClients, []string{"stream", "pet-{id}"}, 5},
		{stats.MetricSSEStreams, []string{"stream", "pet-{id}"}, 2},
		{stats.MetricSSEClients, []string{"stream", "stats"}, 1},
		{stats.MetricPets, []string{"state", "alive"}, 9},
		{stats.MetricPets, []string{"state", "dead"}, 1},
		{stats.MetricPetsWatched, nil, 2},
		{stats.MetricPetTickSeconds, nil, 0.25},
		{stats.MetricDBBytes, []string{"file", "main"}, float64(fileSize(t, path))},
	}
	for _, ck := range checks {
		if got := value(t, fams, ck.name, ck.labels...); got != ck.want {
			t.Errorf("%s%v = %v, want %v", ck.name, ck.labels, got, ck.want)
		}
	}
	if got := value(t, fams, "go_goroutines"); got < 1 {
		t.Errorf("go_goroutines = %v", got)
	}
	if got := value(t, fams, stats.MetricMemoryBytes, "class", "heap_in_use"); got <= 0 {
		t.Errorf("heap in use = %v", got)
	}
	if runtime.GOOS == "linux" {
		if got := value(t, fams, "process_resident_memory_bytes"); got <= 0 {
			t.Errorf("process_resident_memory_bytes = %v", got)
		}
	}
	if _, ok := fams[stats.MetricScrapeErrors]; ok {
		t.Errorf("%s is exposed with no error", stats.MetricScrapeErrors)
	}
	// Each scrape reads afresh: the registry is the Collector's own, not the global one.
	if c.Registry() == c.Registry() {
		t.Errorf("Registry returned the same registry twice")
	}
}

func TestMetricsReportSourceErrors(t *testing.T) {
	t.Parallel()
	c := stats.New(stats.Config{Sources: stats.Sources{
		JobCounts: func(context.Context) (map[string]int, error) { return nil, errors.New("boom") },
		DB:        brokenSource(),
	}})
	fams := scrape(t, c.MetricsHandler())
	if got := value(t, fams, stats.MetricScrapeErrors, "source", "jobs"); got != 1 {
		t.Errorf("jobs error = %v, want 1", got)
	}
	if got := value(t, fams, stats.MetricScrapeErrors, "source", "db"); got != 1 {
		t.Errorf("db error = %v, want 1", got)
	}
	if _, ok := fams[stats.MetricJobs]; ok {
		t.Errorf("%s exposed although the jobs could not be counted", stats.MetricJobs)
	}
}
