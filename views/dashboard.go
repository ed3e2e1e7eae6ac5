package views

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/phonehome/phonehome/stats"
)

// DashboardPage is the data of the dashboard page.
type DashboardPage struct {
	Layout
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
	// Nodes lists the nodes serving the database (nil without the source).
	Nodes  *DashNodes
	Charts []DashChart
}

// DashNodes shows the nodes serving the database.
type DashNodes struct {
	Rows []DashNode
	// Leader is the leading node's name, or a sentence saying none leads.
	Leader string
	Err    string
	// LiveEvents says what this node's broker lost of the events it
	// carries between nodes ("" without a broker).
	LiveEvents string
	// LiveEventsLost marks a loss (LiveEvents then warns).
	LiveEventsLost bool
}

// DashNode is one line of the nodes table.
type DashNode struct {
	Name string
	// Age is its heartbeat's age ("4 s ago").
	Age string
	// Leader marks the node leading the maintenance; Self the node that
	// drew the page.
	Leader, Self bool
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
	// Outside is whether the resident memory is known, so that the
	// segment "Outside Go" means something: the template then says what
	// it holds on the database the views draw for (Options.Database).
	Outside bool
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

// NewDashboardLive is the live panel of sample s, with the charts of hist,
// the collector's history, which keeps at most keep.
func NewDashboardLive(s stats.Snapshot, hist []stats.Point, keep time.Duration) DashboardLive {
	m := s.Memory
	l := DashboardLive{Seq: s.Seq, At: s.At}
	l.Facts = []DashFigure{
		{Label: "Version", Value: s.Version},
		{Label: "Node", Value: s.Node},
		{Label: "Go", Value: s.GoVersion},
		{Label: "System", Value: s.OS + "/" + s.Arch},
		{Label: "CPUs", Value: fmt.Sprintf("%d (GOMAXPROCS %d)", s.NumCPU, s.GOMAXPROCS)},
		{Label: "Started", Value: HumanTime(s.Started)},
		{Label: "Uptime", Value: Span(s.Uptime)},
	}
	l.Tiles = []DashFigure{
		{Label: "goroutines", Value: Thousands(s.Goroutines), Class: "tile-goroutines"},
		{Label: "resident memory", Value: Bytes(m.RSS), Note: dashPeakNote(m.PeakRSS), Class: "tile-rss"},
		{Label: "heap in use", Value: Bytes(m.HeapInUse), Note: "next GC at " + Bytes(m.HeapGoal), Class: "tile-heap"},
		{Label: "GC cycles", Value: Thousands(int(s.GC.Cycles)), Note: "paused " + Short(s.GC.PauseTotal) + " in all", Class: "tile-gc"},
	}
	if s.Streams != nil {
		l.Clients = Thousands(stats.TotalClients(s.Streams))
		streams, idle := 0, 0
		for _, st := range s.Streams {
			streams += st.Streams
			if st.Clients == 0 {
				idle += st.Streams
				continue
			}
			l.Streams = append(l.Streams, DashStream{Name: st.Name, Streams: Thousands(st.Streams),
				Clients: Thousands(st.Clients), Grouped: strings.HasSuffix(st.Name, "-{id}")})
		}
		if idle > 0 {
			l.IdleStreams = Thousands(idle)
		}
		l.Tiles = append(l.Tiles, DashFigure{Label: "live clients", Value: l.Clients,
			Note: "on " + Thousands(streams) + " streams", Class: "tile-clients"})
	}
	if s.Jobs != nil {
		l.Tiles = append(l.Tiles, DashFigure{Label: "jobs / s", Value: Rate(s.Jobs.CompletedPerSecond + s.Jobs.FailedPerSecond),
			Note: "last minute", Class: "tile-jobs"})
	}
	l.Memory = dashMemoryBar(m)
	l.GC = dashGCView(s.GC, s.Full)
	l.Jobs = dashJobsView(s.Jobs)
	l.Pets = dashPetsView(s.Pets)
	l.DB = dashDBView(s.DB)
	l.Nodes = dashNodesView(s.Node, s.Nodes, s.LiveEvents)
	l.Charts = dashCharts(s, hist, keep)
	return l
}

// dashNodesView lists the nodes, this one (self) marked, and what this
// node's broker lost (le: nil without one).
func dashNodesView(self string, n *stats.Nodes, le *stats.LiveEvents) *DashNodes {
	if n == nil {
		return nil
	}
	v := &DashNodes{Err: n.Err, Leader: n.Leader}
	if le != nil {
		v.LiveEvents = fmt.Sprintf("%s lost, %s skipped", Thousands(int(le.Lost)), Thousands(int(le.Skipped)))
		v.LiveEventsLost = le.Lost > 0 || le.Skipped > 0
	}
	if n.Leader == "" {
		v.Leader = "none right now (a node takes the lead within seconds)"
	}
	for _, node := range n.List {
		v.Rows = append(v.Rows, DashNode{Name: node.Name, Age: Span(node.HeartbeatAge) + " ago",
			Leader: node.Leader, Self: node.Name == self})
	}
	return v
}

func dashPeakNote(peak uint64) string {
	if peak == 0 {
		return ""
	}
	return "peak " + Bytes(peak)
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
	bar := DashMemory{Total: Bytes(max(total, m.RSS))}
	x := 0
	for _, p := range parts {
		w := 0
		if total > 0 {
			w = int(p.v * 1000 / total)
		}
		bar.Segments = append(bar.Segments, DashSegment{Label: p.label, Class: p.class, Value: Bytes(p.v), X: x, W: w})
		x += w
	}
	bar.Note = "Go has " + Bytes(m.GoTotal) + " mapped, " + Bytes(m.HeapReleased) + " of it returned to the OS."
	bar.Outside = m.RSS > 0
	if !bar.Outside {
		bar.Note = "Resident memory is not available on this system; the bar shows the Go runtime's memory."
	}
	return bar
}

func dashGCView(g stats.GC, full bool) DashGC {
	v := DashGC{Figures: []DashFigure{
		{Label: "Cycles", Value: Thousands(int(g.Cycles))},
		{Label: "Last", Value: dashLastGC(g.Last)},
		{Label: "Pause total", Value: Short(g.PauseTotal)},
	}}
	if full {
		v.Figures = append(v.Figures, DashFigure{Label: "Pause p50", Value: Short(g.P50)},
			DashFigure{Label: "Pause max", Value: Short(g.Max)})
	}
	var top time.Duration
	for _, p := range g.Recent {
		top = max(top, p)
	}
	if top == 0 {
		return v
	}
	v.Max = Short(top)
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
	return HumanTime(t)
}

func dashJobsView(j *stats.Jobs) *DashJobs {
	if j == nil {
		return nil
	}
	v := &DashJobs{Err: j.CountsErr}
	if j.Counts != nil {
		for _, st := range stats.SortedStates(j.Counts) {
			v.States = append(v.States, DashFigure{Label: st, Value: Thousands(j.Counts[st]), Class: "state-" + st})
		}
	}
	v.Rate = []DashFigure{
		{Label: "completed / s", Value: Rate(j.CompletedPerSecond)},
		{Label: "failed / s", Value: Rate(j.FailedPerSecond)},
	}
	return v
}

func dashPetsView(p *stats.Pets) *DashPets {
	if p == nil {
		return nil
	}
	v := &DashPets{Figures: []DashFigure{
		{Label: "Alive", Value: Thousands(p.Alive)},
		{Label: "Dead", Value: Thousands(p.Dead)},
		{Label: "Watched", Value: Thousands(p.Watched)},
	}}
	if p.TickAt.IsZero() {
		v.Figures = append(v.Figures, DashFigure{Label: "Last tick", Value: "none yet"})
	} else {
		v.Figures = append(v.Figures,
			DashFigure{Label: "Last tick", Value: Short(p.TickDuration),
				Note: fmt.Sprintf("%s died, %s shown", Thousands(p.TickDied), Thousands(p.TickRendered))},
			DashFigure{Label: "Tick p50 / max", Value: Short(p.TickP50) + " / " + Short(p.TickMax),
				Note: "last " + Thousands(p.Ticks) + " ticks"})
	}
	return v
}

func dashDBView(d *stats.DB) *DashDB {
	if d == nil {
		return nil
	}
	v := &DashDB{Path: d.Path, Err: d.Err}
	if d.Err == "" {
		v.Figures = []DashFigure{{Label: "Database", Value: Bytes(uint64(d.Bytes))}}
		// PostgreSQL's write-ahead log is the whole server's: not shown.
		if d.WAL {
			v.Figures = append(v.Figures, DashFigure{Label: "Write-ahead log", Value: Bytes(uint64(d.WALBytes))})
		}
	}
	return v
}

func dashCharts(s stats.Snapshot, hist []stats.Point, keep time.Duration) []DashChart {
	// The charts span the history there is, in whole minutes (at least one),
	// up to all the collector keeps: a fresh process fills the width at once.
	window := time.Minute
	if len(hist) > 0 {
		window = min(keep, max(time.Minute, s.At.Sub(hist[0].At).Truncate(time.Minute)+time.Minute))
	}
	n := len(hist)
	at := make([]time.Time, n)
	rss, heap, stacks, gor := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i, p := range hist {
		at[i] = p.At
		rss[i], heap[i], stacks[i] = float64(p.RSS), float64(p.HeapInUse), float64(p.Stacks)
		gor[i] = float64(p.Goroutines)
	}
	bytesF := func(f float64) string { return Bytes(uint64(f)) }
	countF := func(f float64) string { return Thousands(int(f)) }
	memLines := []series{
		{label: "heap in use", class: "line-heap", at: at, v: heap, format: bytesF},
		{label: "stacks", class: "line-stacks", at: at, v: stacks, format: bytesF},
	}
	if s.Memory.RSS > 0 {
		memLines = append([]series{{label: "resident", class: "line-rss", at: at, v: rss, format: bytesF}}, memLines...)
	}
	charts := []DashChart{
		lineChart("chart-memory", "Memory", s.At, window, true, memLines),
		lineChart("chart-goroutines", "Goroutines", s.At, window, false,
			[]series{{label: "goroutines", class: "line-goroutines", at: at, v: gor, format: countF}}),
	}
	if s.Jobs != nil && s.Jobs.Throughput != nil {
		tp := s.Jobs.Throughput
		tat := make([]time.Time, len(tp))
		done, failed := make([]float64, len(tp)), make([]float64, len(tp))
		for i, p := range tp {
			tat[i], done[i], failed[i] = p.At, float64(p.Completed), float64(p.Failed)
		}
		charts = append(charts, lineChart("chart-throughput", "Jobs finished per second", s.At, window, false, []series{
			{label: "completed", class: "line-completed", at: tat, v: done, format: countF},
			{label: "failed", class: "line-failed", at: tat, v: failed, format: countF},
		}))
	}
	return charts
}
