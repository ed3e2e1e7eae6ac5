package views

// The jobs dashboard's search, its actions on everything a filter matches,
// and its time charts (wait and run time p50/p95, failures per minute, per
// queue and per kind).

import (
	"fmt"
	"strings"
	"time"

	"github.com/phonehome/phonehome/jobs"
)

// The pages and partials of these features.
const (
	// PageJobsCharts is the time charts page.
	PageJobsCharts Page = "jobs_charts"
	// PartialJobTimings is the charts of the time charts page, reloaded
	// live.
	PartialJobTimings Partial = "job_timings"
	// PartialJobBulkProgress is the confirmation, progress and result of
	// an action on everything a filter matches.
	PartialJobBulkProgress Partial = "job_bulk_progress"
)

func init() {
	allPages = append(allPages, PageJobsCharts)
	allPartials = append(allPartials, PartialJobTimings, PartialJobBulkProgress)
	funcs["sub"] = func(a, b int) int { return a - b }
}

// SearchInfo is what the job list says about a search: the query as typed,
// its error, and how far its scan reached.
type SearchInfo struct {
	Query string
	// Error is why the query was refused (the form is drawn again with it).
	Error string
	// Note says how far a scan that stopped at its budget reached.
	Note string
}

// NewSearchNote is the note of a search page: empty when the page is full
// or the table was read to its end; else how far the scan reached.
func NewSearchNote(p jobs.SearchPage, took time.Duration) string {
	if !p.Stopped {
		return ""
	}
	found := "no match yet"
	switch n := len(p.Jobs); {
	case n == 1:
		found = "1 match so far"
	case n > 1:
		found = Thousands(n) + " matches so far"
	}
	return fmt.Sprintf("Searched %s jobs in %s, down to #%d: %s. “Older →” searches on from there.",
		Thousands(p.Scanned), Short(took), p.ReachedID, found)
}

// FilterDescription says what a filter matches, for a confirmation:
// "discarded jobs in phone_calls", "jobs of kind call matching tag:vip".
func FilterDescription(states []jobs.State, queue, kind, query string) string {
	var b strings.Builder
	if len(states) > 0 {
		names := make([]string, len(states))
		for i, s := range states {
			names[i] = string(s)
		}
		b.WriteString(strings.Join(names, " or ") + " ")
	}
	b.WriteString("jobs")
	if queue != "" {
		b.WriteString(" in " + queue)
	}
	if kind != "" {
		b.WriteString(" of kind " + kind)
	}
	if query != "" {
		b.WriteString(" matching " + query)
	}
	return b.String()
}

// BulkProgress is the data of job_bulk_progress: nothing, a confirmation,
// or an action's progress and result.
type BulkProgress struct {
	// Confirm: ask before acting on Count jobs.
	Confirm bool
	// Action is cancel, retry or delete; Verb its word ("Retry").
	Action string
	Count  int
	// What the filter matches (FilterDescription).
	What string
	// The filter, for the confirmation's form.
	State, Queue, Kind, Query, Back string

	// Running or finished: the action's id, progress and result.
	ID       int64
	Running  bool
	Progress jobs.FilterProgress
	Took     time.Duration
	Error    string
	OOB      bool
}

// Verb is the action as a button says it.
func (b BulkProgress) Verb() string {
	switch b.Action {
	case "cancel":
		return "Cancel"
	case "retry":
		return "Retry"
	case "delete":
		return "Delete"
	}
	return b.Action
}

// Doing is the action as it runs ("Retrying").
func (b BulkProgress) Doing() string {
	switch b.Action {
	case "cancel":
		return "Cancelling"
	case "retry":
		return "Retrying"
	case "delete":
		return "Deleting"
	}
	return b.Action
}

// Done is the action done ("retried").
func (b BulkProgress) Done() string {
	switch b.Action {
	case "cancel":
		return "Cancelled"
	case "retry":
		return "Retried"
	case "delete":
		return "Deleted"
	}
	return b.Action
}

// Shown: there is something to draw.
func (b BulkProgress) Shown() bool { return b.Confirm || b.ID != 0 }

// Per1000 is the share done, in thousandths, for the progress bar.
func (b BulkProgress) Per1000() int {
	if b.Count <= 0 {
		if b.Progress.Done {
			return 1000
		}
		return 0
	}
	return min(b.Progress.Matched*1000/b.Count, 1000)
}

// HoldText is the longest and the average time a batch held the writer.
func (b BulkProgress) HoldText() string {
	p := b.Progress
	if p.Batches == 0 {
		return ""
	}
	return fmt.Sprintf("writer held at most %s a batch (%s on average) over %s batches", Short(p.MaxHold),
		Short(p.TotalHold/time.Duration(p.Batches)), Thousands(p.Batches))
}

// TimingsPage is the data of the time charts page.
type TimingsPage struct {
	Layout
	Timings   TimingsView
	StreamURL string
}

// TimingsView is the data of job_timings: a chart card per queue and per
// kind.
type TimingsView struct {
	Minutes   int
	Window    string
	Queues    []TimingCard
	Kinds     []TimingCard
	LiveURL   string
	Choices   []TimingsChoice
	UpdatedAt time.Time
}

// TimingsChoice is a window the page offers.
type TimingsChoice struct {
	Minutes int
	URL     string
	Current bool
}

// TimingCard is one queue's or kind's three charts and totals.
type TimingCard struct {
	ID, Name string
	// Count is how many attempts finished in the window (a job that
	// failed twice and then completed is three), Failed how many failed.
	Count, Failed      int
	WaitP50, WaitP95   string
	RunP50, RunP95     string
	Wait, Run, Failure TimingChart
}

// TimingChart is one small chart: two lines (p50, p95) or failure bars.
type TimingChart struct {
	Title      string
	Label      string // for screen readers
	W, H       int
	Left       int
	Right      int
	Base       int
	P50, P95   string // polyline points
	Bars       []TimingBar
	Top, Mid   string // axis labels
	TopY, MidY string
}

// TimingBar is one minute's failures.
type TimingBar struct {
	X, Y, W, H string
	Title      string
}

// The small charts' geometry.
const (
	tcW     = 320
	tcH     = 96
	tcLeft  = 60 // room for a label such as "250.0 ms"
	tcRight = tcW - 6
	tcTop   = 8
	tcBase  = tcH - 16
)

// NewTimingsView draws t.
func NewTimingsView(t jobs.Timings) TimingsView {
	v := TimingsView{Minutes: t.Minutes, Window: Span(time.Duration(t.Minutes) * time.Minute), UpdatedAt: t.Now}
	for _, s := range t.Queues {
		v.Queues = append(v.Queues, timingCard("queue", s))
	}
	for _, s := range t.Kinds {
		v.Kinds = append(v.Kinds, timingCard("kind", s))
	}
	return v
}

func timingCard(dim string, s jobs.TimingSeries) TimingCard {
	c := TimingCard{
		ID: "timing-" + dim + "-" + cssID(s.Name), Name: s.Name,
		Count: s.Total.Count, Failed: s.Total.Failed,
		WaitP50: Short(s.Total.WaitP50), WaitP95: Short(s.Total.WaitP95),
		RunP50: Short(s.Total.RunP50), RunP95: Short(s.Total.RunP95),
	}
	wait50, wait95, run50, run95, fails := make([]float64, len(s.Points)), make([]float64, len(s.Points)),
		make([]float64, len(s.Points)), make([]float64, len(s.Points)), make([]float64, len(s.Points))
	for i, p := range s.Points {
		wait50[i], wait95[i] = float64(p.WaitP50), float64(p.WaitP95)
		run50[i], run95[i] = float64(p.RunP50), float64(p.RunP95)
		fails[i] = float64(p.Failed)
	}
	c.Wait = lineTiming("Wait (due → started)", s.Name, wait50, wait95, s.Points)
	c.Run = lineTiming("Run time", s.Name, run50, run95, s.Points)
	c.Failure = barTiming(s.Name, fails, s.Points)
	return c
}

// cssID keeps the characters of name that an id may hold.
func cssID(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func timingFrame(title string) TimingChart {
	return TimingChart{Title: title, W: tcW, H: tcH, Left: tcLeft, Right: tcRight, Base: tcBase,
		TopY: coord(tcTop + 4), MidY: coord((tcTop+tcBase)/2 + 4)}
}

// lineTiming draws p50 and p95 per minute; a minute without attempts is a
// gap in neither line (it is drawn at zero, as nothing waited or ran).
func lineTiming(title, name string, p50, p95 []float64, pts []jobs.TimingPoint) TimingChart {
	c := timingFrame(title)
	top := 0.0
	for _, v := range p95 {
		top = max(top, v)
	}
	top = niceDuration(top)
	c.Top, c.Mid = Short(time.Duration(top)), Short(time.Duration(top/2))
	n := len(pts)
	x := func(i int) float64 {
		if n <= 1 {
			return tcLeft
		}
		return tcLeft + float64(i)*float64(tcRight-tcLeft)/float64(n-1)
	}
	line := func(vs []float64) string {
		var b strings.Builder
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(coord(x(i)) + "," + coord(tcBase-scale(v, top, tcBase-tcTop)))
		}
		return b.String()
	}
	c.P50, c.P95 = line(p50), line(p95)
	last := 0.0
	if n > 0 {
		last = p95[n-1]
	}
	c.Label = fmt.Sprintf("%s of %s, p50 and p95 per minute; p95 in the last minute %s", title, name, Short(time.Duration(last)))
	return c
}

// niceDuration is the axis top for a duration in nanoseconds: 1, 2 or 5
// times a power of ten of microseconds, 1 µs at least.
func niceDuration(ns float64) float64 {
	return niceCeil(ns, float64(time.Microsecond))
}

func barTiming(name string, fails []float64, pts []jobs.TimingPoint) TimingChart {
	c := timingFrame("Failures per minute")
	top := 0.0
	total := 0
	for _, v := range fails {
		top = max(top, v)
		total += int(v)
	}
	top = niceCeil(top, 1)
	c.Top, c.Mid = Thousands(int(top)), strings.TrimSuffix(fmt.Sprintf("%g", top/2), ".0")
	n := max(len(fails), 1)
	slot := float64(tcRight-tcLeft) / float64(n)
	for i, v := range fails {
		if v == 0 {
			continue
		}
		h := scale(v, top, tcBase-tcTop)
		c.Bars = append(c.Bars, TimingBar{
			X: coord(tcLeft + float64(i)*slot + slot*0.1), W: coord(slot * 0.8), Y: coord(tcBase - h), H: coord(h),
			Title: fmt.Sprintf("%s UTC: %d of %d attempts failed", pts[i].At.Format("15:04"), int(v), pts[i].Count),
		})
	}
	c.Label = fmt.Sprintf("Failures per minute of %s: %d in the window", name, total)
	return c
}
