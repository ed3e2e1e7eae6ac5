package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/views"
)

// Dashboard serves the runtime dashboard (/dashboard and its live panel),
// GET /api/stats and /metrics. live.StatsFeed publishes the panel on the
// stats streams.
type Dashboard struct {
	// Stats is the collector whose samples are shown.
	Stats   *stats.Collector
	Views   *views.Views
	Version string

	metricsOnce sync.Once
	metrics     http.Handler
}

// Routes registers the page, its live panel, the JSON API (/api/stats,
// /api/nodes) and /metrics.
func (h *Dashboard) Routes(e *echo.Echo) {
	e.GET("/dashboard", h.Page)
	e.GET("/dashboard/live", h.Live)
	e.GET("/api/stats", h.API)
	e.GET("/api/nodes", h.Nodes)
	e.GET("/metrics", h.Metrics)
}

// Page renders the dashboard: GET /dashboard?every=N, N one of
// live.StatsRefresh (1 when absent).
func (h *Dashboard) Page(c echo.Context) error {
	every := 1
	if raw := c.QueryParam("every"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil {
			return badRequest("every must be a whole number of seconds")
		}
		every = n
	}
	p := views.DashboardPage{
		Layout: views.Layout{Nav: "dashboard", Version: h.Version},
		Every:  every,
		Stream: live.StatsStreamFor(every),
		Live:   h.panel(c),
	}
	valid := false
	choices := live.StatsRefresh()
	for _, s := range choices {
		p.Refresh = append(p.Refresh, views.RefreshChoice{Seconds: s, Stream: live.StatsStreamFor(s), Selected: s == every})
		valid = valid || s == every
	}
	if !valid {
		return invalid(fmt.Sprintf("every must be one of %s seconds", joinInts(choices)))
	}
	return render(c, h.Views, http.StatusOK, views.PageDashboard, p)
}

// Live renders the live panel now: the page fetches it when its tab becomes
// visible again, rather than wait for the next event.
func (h *Dashboard) Live(c echo.Context) error {
	return fragments(c, h.Views, views.Part{Name: views.PartialDashLive, Data: h.panel(c)})
}

// panel is the live panel of a reading taken now.
func (h *Dashboard) panel(c echo.Context) views.DashboardLive {
	return views.NewDashboardLive(h.Stats.Current(c.Request().Context()), h.Stats.History(), h.Stats.Keep())
}

// Metrics serves the Prometheus text format of the collector's registry.
func (h *Dashboard) Metrics(c echo.Context) error {
	h.metricsOnce.Do(func() { h.metrics = h.Stats.MetricsHandler() })
	h.metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
