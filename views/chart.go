package views

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/phonehome/phonehome/jobs"
)

// The charts: the jobs dashboard's stacked bars of finished jobs and the
// runtime dashboard's small line charts. Their geometry is computed here,
// so the templates only place numbers, and both share one scale: the top
// of the axis is the highest value rounded up (niceCeil), and a value maps
// to a height as its share of the top (scale).

// niceCeil rounds v up to 1, 2 or 5 times a power of ten of unit (1 unit
// at least): 1, 2, 5, 10, 20… or, with unit MiB, 1 MiB, 2 MiB, 5 MiB…
func niceCeil(v, unit float64) float64 {
	v /= unit
	if v <= 1 {
		return unit
	}
	p := 1.0
	for p*10 < v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p * unit
		}
	}
	return 10 * p * unit
}

// scale is the height of v in a plot of height h whose axis tops at top.
func scale(v, top, h float64) float64 { return v / top * h }

// coord writes a coordinate to a tenth, without a trailing ".0".
func coord(f float64) string {
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
}

// ThroughputChart is the data of the job_throughput partial: a stacked bar
// chart of completed and failed jobs per second.
type ThroughputChart struct {
	Width, Height       int
	PlotLeft, PlotRight int
	AxisY               int
	Bars                []ThroughputBar
	Grid                []GridLine
	Completed, Failed   int
	WindowText          string
	PeakText            string
	OOB                 bool
}

// ThroughputBar is one bucket of the chart: completed (C…) below failed (F…).
type ThroughputBar struct {
	X, W, CY, CH, FY, FH string
	Title                string
}

// GridLine is a horizontal line of the chart with its label.
type GridLine struct {
	X1, X2, Y, LX, LY string
	Label             string
}

// The throughput chart's geometry and window.
const (
	chartWindow = 5 * time.Minute
	chartBucket = 5 * time.Second
	chartWidth  = 720
	chartHeight = 160
	chartLeft   = 48
	chartRight  = chartWidth - 8
	chartTop    = 10
	chartBase   = chartHeight - 22
)

// NewThroughputChart buckets the last five minutes of points (one a
// second) into bars of five seconds, as rates per second, ending with the
// newest point (or now).
func NewThroughputChart(points []jobs.ThroughputPoint, now time.Time) ThroughputChart {
	ch := ThroughputChart{
		Width: chartWidth, Height: chartHeight, PlotLeft: chartLeft, PlotRight: chartRight, AxisY: chartHeight - 6,
		WindowText: Span(chartWindow),
	}
	n := int(chartWindow / chartBucket)
	per := int(chartBucket / time.Second)
	type bucket struct {
		start             time.Time
		completed, failed int
	}
	buckets := make([]bucket, n)
	end := now.UTC().Truncate(time.Second)
	if len(points) > 0 {
		end = points[len(points)-1].At
	}
	first := end.Add(-time.Duration(n*per-1) * time.Second)
	for i := range buckets {
		buckets[i].start = first.Add(time.Duration(i*per) * time.Second)
	}
	for _, p := range points {
		if p.At.Before(first) || p.At.After(end) {
			continue
		}
		i := int(p.At.Sub(first) / chartBucket)
		buckets[i].completed += p.Completed
		buckets[i].failed += p.Failed
		ch.Completed += p.Completed
		ch.Failed += p.Failed
	}
	maxRate := 0.0
	for _, b := range buckets {
		maxRate = max(maxRate, float64(b.completed+b.failed)/float64(per))
	}
	// The peak is the tallest bar's rate (a 5-second average), so that it
	// agrees with the axis; a single busy second would read higher.
	ch.PeakText = PerSecond(maxRate)
	top := niceCeil(maxRate, 1)
	plotH := float64(chartBase - chartTop)
	for _, frac := range []float64{0, 0.5, 1} {
		y := chartBase - frac*plotH
		ch.Grid = append(ch.Grid, GridLine{
			X1: coord(chartLeft), X2: coord(chartRight), Y: coord(y), LX: coord(chartLeft - 6), LY: coord(y + 4),
			Label: PerSecond(top * frac),
		})
	}
	slot := float64(chartRight-chartLeft) / float64(n)
	for i, b := range buckets {
		c := scale(float64(b.completed)/float64(per), top, plotH)
		f := scale(float64(b.failed)/float64(per), top, plotH)
		bar := ThroughputBar{
			X: coord(chartLeft + float64(i)*slot + slot*0.1), W: coord(slot * 0.8),
			Title: fmt.Sprintf("%s–%s UTC: %d completed, %d failed", b.start.Format("15:04:05"),
				b.start.Add(chartBucket).Format("15:04:05"), b.completed, b.failed),
		}
		if c > 0 {
			bar.CY, bar.CH = coord(chartBase-c), coord(c)
		}
		if f > 0 {
			bar.FY, bar.FH = coord(chartBase-c-f), coord(f)
		}
		ch.Bars = append(ch.Bars, bar)
	}
	return ch
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

// The line charts' drawing box.
const (
	dashChartW = 300
	dashChartH = 100
	// dashChartTop leaves room above the highest point.
	dashChartTop = 8
	// dashChartBuckets is how many points a line has at most.
	dashChartBuckets = 150
)

// series is one line to draw: a value per time.
type series struct {
	label, class string
	at           []time.Time
	v            []float64
	format       func(float64) string
}

// lineChart draws lines over the window ending at now: x is time, y is the
// value under a rounded maximum (of MiB when inBytes). Each line keeps the
// highest value of each of dashChartBuckets time slots, so short peaks
// stay visible.
func lineChart(id, title string, now time.Time, window time.Duration, inBytes bool, lines []series) DashChart {
	c := DashChart{ID: id, Title: title, Window: Span(window)}
	top := 0.0
	for _, l := range lines {
		for i, v := range l.v {
			if now.Sub(l.at[i]) <= window {
				top = math.Max(top, v)
			}
		}
	}
	unit := 1.0
	if inBytes {
		unit = 1 << 20
	}
	top = niceCeil(top, unit)
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
			y := float64(dashChartH) - scale(buckets[b], top, dashChartH-dashChartTop)
			if pts.Len() > 0 {
				pts.WriteByte(' ')
			}
			pts.WriteString(coord(x) + "," + coord(y))
		}
		if len(order) > 0 {
			empty = false
		}
		c.Lines = append(c.Lines, DashLine{Label: l.label, Class: l.class, Points: pts.String(), Last: last})
	}
	c.Empty = empty
	return c
}
