package handlers

// The time charts: per queue and per kind, wait and run time p50/p95 and
// failures per minute, from the engine's in-memory telemetry
// (Engine.Timings): no query, the same cost at any table size.

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/views"
)

// timingsWindows are the windows the page offers, in minutes.
var timingsWindows = []int{5, 15, 30}

// timingsMinutes reads ?minutes= (15 when absent).
func timingsMinutes(c echo.Context) (int, error) {
	s := c.QueryParam("minutes")
	if s == "" {
		return 15, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > jobs.TimingsWindow {
		return 0, badRequest(fmt.Sprintf("minutes must be a whole number from 1 to %d", jobs.TimingsWindow))
	}
	return n, nil
}

func (h *Jobs) timingsView(minutes int) views.TimingsView {
	v := views.NewTimingsView(h.Engine.Timings(minutes))
	v.LiveURL = h.url("/charts/live?minutes=" + strconv.Itoa(minutes))
	for _, m := range timingsWindows {
		v.Choices = append(v.Choices, views.TimingsChoice{Minutes: m, URL: h.url("/charts?minutes=" + strconv.Itoa(m)), Current: m == minutes})
	}
	return v
}

// ChartsPage renders the time charts page, live on the jobs stream: each
// throughput event (jobs finished) reloads the charts.
func (h *Jobs) ChartsPage(c echo.Context) error {
	minutes, err := timingsMinutes(c)
	if err != nil {
		return err
	}
	lastID := h.Hub.StreamLastID(live.JobsStream)
	return render(c, h.Views, http.StatusOK, views.PageJobsCharts, views.TimingsPage{
		Layout:  views.Layout{Nav: "jobs", Version: h.Version},
		Timings: h.timingsView(minutes),
		// No rows: only the events about none (throughput among them).
		StreamURL: h.streamURL(lastID, []int64{}),
	})
}

// ChartsLive renders the charts, which the page swaps in.
func (h *Jobs) ChartsLive(c echo.Context) error {
	minutes, err := timingsMinutes(c)
	if err != nil {
		return err
	}
	return fragments(c, h.Views, views.Part{Name: views.PartialJobTimings, Data: h.timingsView(minutes)})
}

// TimingPointJSON is one minute (or a window's total) in the JSON API.
type TimingPointJSON struct {
	At        time.Time `json:"at"`
	Count     int       `json:"count"`
	Failed    int       `json:"failed"`
	WaitP50MS float64   `json:"wait_p50_ms"`
	WaitP95MS float64   `json:"wait_p95_ms"`
	RunP50MS  float64   `json:"run_p50_ms"`
	RunP95MS  float64   `json:"run_p95_ms"`
}

// TimingSeriesJSON is one queue's or kind's minutes in the JSON API.
type TimingSeriesJSON struct {
	Name    string            `json:"name"`
	Total   TimingPointJSON   `json:"total"`
	Minutes []TimingPointJSON `json:"minutes"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func timingPointJSON(p jobs.TimingPoint) TimingPointJSON {
	return TimingPointJSON{At: p.At.UTC(), Count: p.Count, Failed: p.Failed,
		WaitP50MS: ms(p.WaitP50), WaitP95MS: ms(p.WaitP95), RunP50MS: ms(p.RunP50), RunP95MS: ms(p.RunP95)}
}

func timingSeriesJSON(list []jobs.TimingSeries) []TimingSeriesJSON {
	out := make([]TimingSeriesJSON, 0, len(list))
	for _, s := range list {
		js := TimingSeriesJSON{Name: s.Name, Total: timingPointJSON(s.Total), Minutes: make([]TimingPointJSON, len(s.Points))}
		for i, p := range s.Points {
			js.Minutes[i] = timingPointJSON(p)
		}
		out = append(out, js)
	}
	return out
}

// APITimings answers GET /api/jobs/timings?minutes=N (1…30, 15 when
// absent) with {"minutes", "queues": [series…], "kinds": [series…]}: per
// minute, oldest first, the attempts finished and failed and the wait and
// run time p50/p95 in milliseconds (quantiles of a histogram: within
// 12.5 %).
func (h *Jobs) APITimings(c echo.Context) error {
	minutes, err := timingsMinutes(c)
	if err != nil {
		return err
	}
	t := h.Engine.Timings(minutes)
	return c.JSON(http.StatusOK, map[string]any{
		"minutes": t.Minutes, "until": t.Now, "queues": timingSeriesJSON(t.Queues), "kinds": timingSeriesJSON(t.Kinds),
	})
}
