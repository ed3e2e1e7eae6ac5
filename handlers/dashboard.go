package handlers

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/views"
)

// StatsStream is the runtime dashboard's stream: one event a second, while
// it has clients, each carrying the whole live panel (the dash_live
// partial) for the page to swap in.
const StatsStream = "stats"

// StatsRefresh are the refresh intervals, in seconds, the dashboard offers.
// Each has its own stream (StatsStreamFor): the same panel, sent every N
// samples, so a page that refreshes every 30 s receives one event in 30.
var StatsRefresh = []int{1, 2, 5, 15, 30}

// StatsStreamFor names the stream of a refresh interval in seconds: "stats"
// for 1, "stats-5s" for 5.
func StatsStreamFor(seconds int) string {
	if seconds == 1 {
		return StatsStream
	}
	return StatsStream + "-" + strconv.Itoa(seconds) + "s"
}

// DashboardHub is what the dashboard needs of the event hub.
type DashboardHub interface {
	hub
	RegisterWindow(stream string, window int)
	Clients() map[string]int
}

var _ DashboardHub = (*events.Hub)(nil)

// Dashboard serves the runtime dashboard (/dashboard and its live panel),
// GET /api/stats and /metrics, and publishes the panel on the stats streams.
type Dashboard struct {
	// Stats is the collector whose samples are shown; set it before the
	// routes serve (NewDashboard leaves it to the caller, because the
	// collector's Watched and OnSample are the dashboard's methods).
	Stats   *stats.Collector
	Views   *views.Views
	Hub     DashboardHub
	Version string
	Logger  *slog.Logger

	metricsOnce sync.Once
	metrics     http.Handler
}

// NewDashboard registers the stats streams with the hub and returns the
// dashboard; set Stats before serving. Each stats event is a whole panel
// (about 10–20 KB) that the next one replaces, so the stats streams keep
// only their last event for resume.
func NewDashboard(v *views.Views, h DashboardHub, version string, logger *slog.Logger) *Dashboard {
	for _, s := range StatsRefresh {
		h.RegisterWindow(StatsStreamFor(s), 1)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Dashboard{Views: v, Hub: h, Version: version, Logger: logger}
}

// Routes registers the page, its live panel, the JSON API and /metrics.
func (h *Dashboard) Routes(e *echo.Echo) {
	e.GET("/dashboard", h.Page)
	e.GET("/dashboard/live", h.Live)
	e.GET("/api/stats", h.API)
	e.GET("/metrics", h.Metrics)
}

// Watched reports whether any stats stream has clients: the collector's
// Watched.
func (h *Dashboard) Watched() bool {
	clients := h.Hub.Clients()
	for _, s := range StatsRefresh {
		if clients[StatsStreamFor(s)] > 0 {
			return true
		}
	}
	return false
}

// Publish renders a sample's live panel once and publishes it on each stats
// stream that has clients and whose interval the sample completes (sample
// numbers are counted in seconds: stats-5s gets samples 5, 10, 15…). It is
// the collector's OnSample.
func (h *Dashboard) Publish(s stats.Snapshot) {
	clients := h.Hub.Clients()
	var due []string
	for _, every := range StatsRefresh {
		name := StatsStreamFor(every)
		if clients[name] > 0 && s.Seq%int64(every) == 0 {
			due = append(due, name)
		}
	}
	if len(due) == 0 {
		return
	}
	html, err := h.Views.Fragment("dash_live", h.live(s))
	if err != nil {
		h.Logger.Error("render dashboard", "err", err)
		return
	}
	// Every stream gets the same bytes: their resume windows share them.
	for _, name := range due {
		if _, err := h.Hub.Publish(name, "", html); err != nil {
			h.Logger.Debug("publish stats", "stream", name, "err", err)
		}
	}
}

// DashboardPage is the data of the dashboard page.
type DashboardPage struct {
	views.Layout
	// Every is the chosen refresh interval in seconds.
	Every   int
	Refresh []RefreshChoice
	// Stream is the stream of the chosen interval.
	Stream string
	Live   DashboardLive
}

// RefreshChoice is one option of the refresh menu.
type RefreshChoice struct {
	Seconds  int
	Stream   string
	Selected bool
}

// Page renders the dashboard: GET /dashboard?every=N, N one of StatsRefresh
// (1 when absent).
func (h *Dashboard) Page(c echo.Context) error {
	every := 1
	if raw := c.QueryParam("every"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil {
			return badRequest("every must be a whole number of seconds")
		}
		every = n
	}
	p := DashboardPage{
		Layout: views.Layout{Nav: "dashboard", Version: h.Version},
		Every:  every,
		Stream: StatsStreamFor(every),
		Live:   h.live(h.Stats.Current(c.Request().Context())),
	}
	valid := false
	for _, s := range StatsRefresh {
		p.Refresh = append(p.Refresh, RefreshChoice{Seconds: s, Stream: StatsStreamFor(s), Selected: s == every})
		valid = valid || s == every
	}
	if !valid {
		return invalid(fmt.Sprintf("every must be one of %s seconds", dashJoinInts(StatsRefresh)))
	}
	html, err := h.Views.Page("dashboard", p)
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, html)
}

// Live renders the live panel now: the page fetches it when its tab becomes
// visible again, rather than wait for the next event.
func (h *Dashboard) Live(c echo.Context) error {
	html, err := h.Views.Fragment("dash_live", h.live(h.Stats.Current(c.Request().Context())))
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, html)
}

// Metrics serves the Prometheus text format of the collector's registry.
func (h *Dashboard) Metrics(c echo.Context) error {
	h.metricsOnce.Do(func() { h.metrics = h.Stats.MetricsHandler() })
	h.metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}

func dashJoinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// DashboardLive is the data of the dash_live partial: every figure already
// formatted, every chart already drawn.
type DashboardLive struct {
	Seq    int64
	At     time.Time
	Facts  []DashFigure
	Tiles  []DashFigure
	Memory DashMemory
	GC     DashGC
	// Streams are the streams with clients.
	Streams []DashStream
	Clients string
	// IdleStreams counts the streams without clients ("" for none).
	IdleStreams string
	Jobs        *DashJobs
	Pets        *DashPets
	DB          *DashDB
	Charts      []DashChart
}

// DashFigure is one labelled value.
type DashFigure struct {
	Label string
	Value string
	Note  string
	Class string
}

// DashMemory is the memory split as a stacked bar with its legend.
type DashMemory struct {
	Total    string
	Segments []DashSegment
	Note     string
}

// DashSegment is one part of a stacked bar; X and W are in thousandths.
type DashSegment struct {
	Label string
	Class string
	Value string
	X, W  int
}

// DashGC shows garbage collection.
type DashGC struct {
	Figures []DashFigure
	// Bars are the recent pauses, oldest first, in a 200×40 box.
	Bars []DashBar
	Max  string
}

// DashBar is one bar of a small bar chart.
type DashBar struct {
	X, Y, W, H int
}

// DashStream is one line of the event-stream clients table.
type DashStream struct {
	Name    string
	Streams string
	Clients string
	Grouped bool
}

// DashJobs shows the job queue.
type DashJobs struct {
	States []DashFigure
	Rate   []DashFigure
	Err    string
}

// DashPets shows LivePet.
type DashPets struct {
	Figures []DashFigure
}

// DashDB shows the database files.
type DashDB struct {
	Path    string
	Figures []DashFigure
	Err     string
}

// DashChart is a small line chart of the last minutes in a 300×100 box.
type DashChart struct {
	ID     string
	Title  string
	Max    string
	Window string
	Lines  []DashLine
	Empty  bool
}

// DashLine is one series of a chart: a polyline and its legend.
type DashLine struct {
	Label  string
	Class  string
	Points string
	Last   string
}

// The charts' drawing box.
const (
	dashChartW = 300
	dashChartH = 100
	// dashChartTop leaves room above the highest point.
	dashChartTop = 8
	// dashChartBuckets is how many points a line has at most.
	dashChartBuckets = 150
)

func (h *Dashboard) live(s stats.Snapshot) DashboardLive {
	m := s.Memory
	l := DashboardLive{Seq: s.Seq, At: s.At}
	l.Facts = []DashFigure{
		{Label: "Version", Value: s.Version},
		{Label: "Go", Value: s.GoVersion},
		{Label: "System", Value: s.OS + "/" + s.Arch},
		{Label: "CPUs", Value: fmt.Sprintf("%d (GOMAXPROCS %d)", s.NumCPU, s.GOMAXPROCS)},
		{Label: "Started", Value: views.HumanTime(s.Started)},
		{Label: "Uptime", Value: dashUptime(s.Uptime)},
	}
	l.Tiles = []DashFigure{
		{Label: "goroutines", Value: views.Thousands(s.Goroutines), Class: "tile-goroutines"},
		{Label: "resident memory", Value: dashBytes(m.RSS), Note: dashPeakNote(m.PeakRSS), Class: "tile-rss"},
		{Label: "heap in use", Value: dashBytes(m.HeapInUse), Note: "next GC at " + dashBytes(m.HeapGoal), Class: "tile-heap"},
		{Label: "GC cycles", Value: views.Thousands(int(s.GC.Cycles)), Note: "paused " + dashDuration(s.GC.PauseTotal) + " in all", Class: "tile-gc"},
	}
	if s.Streams != nil {
		l.Clients = views.Thousands(stats.TotalClients(s.Streams))
		streams, idle := 0, 0
		for _, st := range s.Streams {
			streams += st.Streams
			if st.Clients == 0 {
				idle += st.Streams
				continue
			}
			l.Streams = append(l.Streams, DashStream{Name: st.Name, Streams: views.Thousands(st.Streams),
				Clients: views.Thousands(st.Clients), Grouped: strings.HasSuffix(st.Name, "-{id}")})
		}
		if idle > 0 {
			l.IdleStreams = views.Thousands(idle)
		}
		l.Tiles = append(l.Tiles, DashFigure{Label: "live clients", Value: l.Clients,
			Note: "on " + views.Thousands(streams) + " streams", Class: "tile-clients"})
	}
	if s.Jobs != nil {
		l.Tiles = append(l.Tiles, DashFigure{Label: "jobs / s", Value: dashRate(s.Jobs.CompletedPerSecond + s.Jobs.FailedPerSecond),
			Note: "last minute", Class: "tile-jobs"})
	}
	l.Memory = dashMemoryBar(m)
	l.GC = dashGCView(s.GC, s.Full)
	l.Jobs = dashJobsView(s.Jobs)
	l.Pets = dashPetsView(s.Pets)
	l.DB = dashDBView(s.DB)
	l.Charts = h.charts(s)
	return l
}

func dashPeakNote(peak uint64) string {
	if peak == 0 {
		return ""
	}
	return "peak " + dashBytes(peak)
}

func dashMemoryBar(m stats.Memory) DashMemory {
	parts := []struct {
		label, class string
		v            uint64
	}{
		{"Heap in use", "mem-heap", m.HeapInUse},
		{"Heap free", "mem-free", m.HeapFree},
		{"Stacks", "mem-stacks", m.Stacks},
		{"GC metadata", "mem-gc", m.GCMeta},
		{"Other runtime", "mem-other", m.Other},
		{"Outside Go", "mem-outside", m.Outside},
	}
	var total uint64
	for _, p := range parts {
		total += p.v
	}
	bar := DashMemory{Total: dashBytes(max(total, m.RSS))}
	x := 0
	for _, p := range parts {
		w := 0
		if total > 0 {
			w = int(p.v * 1000 / total)
		}
		bar.Segments = append(bar.Segments, DashSegment{Label: p.label, Class: p.class, Value: dashBytes(p.v), X: x, W: w})
		x += w
	}
	bar.Note = "Go has " + dashBytes(m.GoTotal) + " mapped, " + dashBytes(m.HeapReleased) + " of it returned to the OS. " +
		"Outside Go is resident memory the Go runtime does not account for: the binary and SQLite's own allocator."
	if m.RSS == 0 {
		bar.Note = "Resident memory is not available on this system; the bar shows the Go runtime's memory."
	}
	return bar
}

func dashGCView(g stats.GC, full bool) DashGC {
	v := DashGC{Figures: []DashFigure{
		{Label: "Cycles", Value: views.Thousands(int(g.Cycles))},
		{Label: "Last", Value: dashLastGC(g.Last)},
		{Label: "Pause total", Value: dashDuration(g.PauseTotal)},
	}}
	if full {
		v.Figures = append(v.Figures, DashFigure{Label: "Pause p50", Value: dashDuration(g.P50)},
			DashFigure{Label: "Pause max", Value: dashDuration(g.Max)})
	}
	var top time.Duration
	for _, p := range g.Recent {
		top = max(top, p)
	}
	if top == 0 {
		return v
	}
	v.Max = dashDuration(top)
	const w, h, slot = 200, 40, 5
	n := len(g.Recent)
	for i := range n {
		p := g.Recent[n-1-i] // oldest first
		bh := max(1, int(math.Round(float64(p)/float64(top)*h)))
		v.Bars = append(v.Bars, DashBar{X: w - (n-i)*slot, Y: h - bh, W: slot - 1, H: bh})
	}
	return v
}

func dashLastGC(t time.Time) string {
	if t.IsZero() {
		return "none yet"
	}
	return views.HumanTime(t)
}

func dashJobsView(j *stats.Jobs) *DashJobs {
	if j == nil {
		return nil
	}
	v := &DashJobs{Err: j.CountsErr}
	if j.Counts != nil {
		for _, st := range stats.SortedStates(j.Counts) {
			v.States = append(v.States, DashFigure{Label: st, Value: views.Thousands(j.Counts[st]), Class: "state-" + st})
		}
	}
	v.Rate = []DashFigure{
		{Label: "completed / s", Value: dashRate(j.CompletedPerSecond)},
		{Label: "failed / s", Value: dashRate(j.FailedPerSecond)},
	}
	return v
}

func dashPetsView(p *stats.Pets) *DashPets {
	if p == nil {
		return nil
	}
	v := &DashPets{Figures: []DashFigure{
		{Label: "Alive", Value: views.Thousands(p.Alive)},
		{Label: "Dead", Value: views.Thousands(p.Dead)},
		{Label: "Watched", Value: views.Thousands(p.Watched)},
	}}
	if p.TickAt.IsZero() {
		v.Figures = append(v.Figures, DashFigure{Label: "Last tick", Value: "none yet"})
	} else {
		v.Figures = append(v.Figures,
			DashFigure{Label: "Last tick", Value: dashDuration(p.TickDuration),
				Note: fmt.Sprintf("%s died, %s shown", views.Thousands(p.TickDied), views.Thousands(p.TickRendered))},
			DashFigure{Label: "Tick p50 / max", Value: dashDuration(p.TickP50) + " / " + dashDuration(p.TickMax),
				Note: "last " + views.Thousands(p.Ticks) + " ticks"})
	}
	return v
}

func dashDBView(d *stats.DB) *DashDB {
	if d == nil {
		return nil
	}
	v := &DashDB{Path: d.Path, Err: d.Err}
	if d.Err == "" {
		v.Figures = []DashFigure{
			{Label: "Database", Value: dashBytes(uint64(d.Bytes))},
			{Label: "Write-ahead log", Value: dashBytes(uint64(d.WALBytes))},
		}
	}
	return v
}

// dashSeries is one line to draw: a value per time.
type dashSeries struct {
	label, class string
	at           []time.Time
	v            []float64
	format       func(float64) string
}

func (h *Dashboard) charts(s stats.Snapshot) []DashChart {
	hist := h.Stats.History()
	// The charts span the history there is, in whole minutes (at least one),
	// up to all the collector keeps: a fresh process fills the width at once.
	window := time.Minute
	if len(hist) > 0 {
		window = min(h.Stats.Keep(), max(time.Minute, s.At.Sub(hist[0].At).Truncate(time.Minute)+time.Minute))
	}
	n := len(hist)
	at := make([]time.Time, n)
	rss, heap, stacks, gor := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i, p := range hist {
		at[i] = p.At
		rss[i], heap[i], stacks[i] = float64(p.RSS), float64(p.HeapInUse), float64(p.Stacks)
		gor[i] = float64(p.Goroutines)
	}
	bytesF := func(f float64) string { return dashBytes(uint64(f)) }
	countF := func(f float64) string { return views.Thousands(int(f)) }
	memLines := []dashSeries{
		{label: "heap in use", class: "line-heap", at: at, v: heap, format: bytesF},
		{label: "stacks", class: "line-stacks", at: at, v: stacks, format: bytesF},
	}
	if s.Memory.RSS > 0 {
		memLines = append([]dashSeries{{label: "resident", class: "line-rss", at: at, v: rss, format: bytesF}}, memLines...)
	}
	charts := []DashChart{
		dashDrawChart("chart-memory", "Memory", s.At, window, true, memLines),
		dashDrawChart("chart-goroutines", "Goroutines", s.At, window, false,
			[]dashSeries{{label: "goroutines", class: "line-goroutines", at: at, v: gor, format: countF}}),
	}
	if s.Jobs != nil && s.Jobs.Throughput != nil {
		tp := s.Jobs.Throughput
		tat := make([]time.Time, len(tp))
		done, failed := make([]float64, len(tp)), make([]float64, len(tp))
		for i, p := range tp {
			tat[i], done[i], failed[i] = p.At, float64(p.Completed), float64(p.Failed)
		}
		charts = append(charts, dashDrawChart("chart-throughput", "Jobs finished per second", s.At, window, false, []dashSeries{
			{label: "completed", class: "line-completed", at: tat, v: done, format: countF},
			{label: "failed", class: "line-failed", at: tat, v: failed, format: countF},
		}))
	}
	return charts
}

// dashDrawChart draws lines over the window ending at now: x is time, y is the
// value under a rounded maximum. Each line keeps the highest value of each
// of dashChartBuckets time slots, so short peaks stay visible.
func dashDrawChart(id, title string, now time.Time, window time.Duration, inBytes bool, lines []dashSeries) DashChart {
	c := DashChart{ID: id, Title: title, Window: dashUptime(window)}
	top := 0.0
	for _, l := range lines {
		for i, v := range l.v {
			if now.Sub(l.at[i]) <= window {
				top = math.Max(top, v)
			}
		}
	}
	top = dashNiceCeil(top, inBytes)
	if len(lines) > 0 {
		c.Max = lines[0].format(top)
	}
	slot := window / dashChartBuckets
	empty := true
	for _, l := range lines {
		buckets := map[int]float64{}
		order := []int{}
		last := ""
		for i, v := range l.v {
			age := now.Sub(l.at[i])
			if age > window || age < 0 {
				continue
			}
			b := dashChartBuckets - int(age/slot)
			if old, ok := buckets[b]; !ok {
				order = append(order, b)
				buckets[b] = v
			} else {
				buckets[b] = math.Max(old, v)
			}
			last = l.format(v)
		}
		var pts strings.Builder
		for _, b := range order {
			x := float64(b) * dashChartW / dashChartBuckets
			y := float64(dashChartH) - buckets[b]/top*(dashChartH-dashChartTop)
			if pts.Len() > 0 {
				pts.WriteByte(' ')
			}
			fmt.Fprintf(&pts, "%s,%s", dashFloat(x), dashFloat(y))
		}
		if len(order) > 0 {
			empty = false
		}
		c.Lines = append(c.Lines, DashLine{Label: l.label, Class: l.class, Points: pts.String(), Last: last})
	}
	c.Empty = empty
	return c
}

// dashNiceCeil rounds a chart's top up to 1, 2 or 5 times a power of ten (of
// MiB for bytes).
func dashNiceCeil(v float64, inBytes bool) float64 {
	unit := 1.0
	if inBytes {
		unit = 1 << 20
	}
	v /= unit
	if v <= 1 {
		return unit
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p * unit
		}
	}
	return 10 * p * unit
}

func dashFloat(f float64) string {
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
}

// dashBytes formats a size in IEC units: 0 B, 512 B, 1.5 KiB, 12.3 MiB.
func dashBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	prec := 1
	if v >= 100 {
		prec = 0
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + string("KMGTP"[exp]) + "iB"
}

// dashDuration formats a short duration for people: 0, 850 ns, 12 µs, 1.2 ms,
// 3.4 s.
func dashDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + " ns"
	case d < time.Millisecond:
		return dashShort(float64(d)/float64(time.Microsecond)) + " µs"
	case d < time.Second:
		return dashShort(float64(d)/float64(time.Millisecond)) + " ms"
	default:
		return dashShort(d.Seconds()) + " s"
	}
}

func dashShort(f float64) string {
	if f >= 100 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

// dashUptime formats a long duration: 42 s, 5 min 3 s, 2 h 05 min, 3 d 4 h.
func dashUptime(d time.Duration) string {
	d = d.Round(time.Second)
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	mins := int(d % time.Hour / time.Minute)
	secs := int(d % time.Minute / time.Second)
	switch {
	case days > 0:
		return fmt.Sprintf("%d d %d h", days, hours)
	case hours > 0:
		return fmt.Sprintf("%d h %02d min", hours, mins)
	case mins > 0 && secs == 0:
		return fmt.Sprintf("%d min", mins)
	case mins > 0:
		return fmt.Sprintf("%d min %d s", mins, secs)
	default:
		return fmt.Sprintf("%d s", secs)
	}
}

// dashRate formats a per-second rate: 0, 0.25, 12.5, 1,234.
func dashRate(f float64) string {
	switch {
	case f == 0:
		return "0"
	case f < 10:
		return strconv.FormatFloat(f, 'f', 2, 64)
	case f < 100:
		return strconv.FormatFloat(f, 'f', 1, 64)
	default:
		return views.Thousands(int(math.Round(f)))
	}
}
