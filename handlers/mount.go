package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/views"
)

// DashboardEngine is what a mounted jobs dashboard needs of its engine:
// the actions and figures, and the change subscription that makes it
// live. *jobs.Engine is one.
type DashboardEngine interface {
	JobEngine
	live.JobSource
}

var _ DashboardEngine = (*jobs.Engine)(nil)

// JobsDashboardConfig configures a jobs dashboard that another Go program
// mounts (NewJobsDashboard).
type JobsDashboardConfig struct {
	// Engine is the program's own job engine.
	Engine DashboardEngine
	// Reader is the pool the job list and pages are read from (the
	// engine's database; a read-only pool is best).
	Reader sqlx.QueryerContext
	// Prefix is the path the dashboard is mounted under, such as
	// "/admin/jobs": it starts with "/" and does not end with one.
	Prefix string
	// ReadOnly shows everything and refuses every action with 403.
	ReadOnly bool
	// Logger receives server errors (slog.Default() when nil).
	Logger *slog.Logger
	// Version is shown in the footer (none when empty).
	Version string
}

// JobsDashboard is the jobs dashboard as an http.Handler: its pages
// (Prefix, Prefix/{id}, Prefix/cron), their forms and fragments, the JSON
// API (Prefix/api/jobs, …/api/queues, …/api/cron), its static files
// (Prefix/static/…) and its own event stream (Prefix/events?stream=jobs),
// every URL it renders carrying the prefix. Mount it for the prefix and
// everything under it:
//
//	mux.Handle("/admin/jobs", d)
//	mux.Handle("/admin/jobs/", d)
//
// It sets its own security headers (CSP, nosniff, no framing), refuses
// cross-site writes and bodies over 1 MiB; authentication is the host
// program's (wrap it). Close it when done.
type JobsDashboard struct {
	prefix  string
	handler http.Handler
	hub     *events.Hub
	feed    *live.JobsFeed
}

// NewJobsDashboard builds a jobs dashboard over cfg.Engine and starts its
// live feed (it subscribes to the engine's changes: build it before the
// engine starts to hear of everything).
func NewJobsDashboard(cfg JobsDashboardConfig) (*JobsDashboard, error) {
	if cfg.Engine == nil || cfg.Reader == nil {
		return nil, errors.New("jobs dashboard: Engine and Reader are required")
	}
	p := cfg.Prefix
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#%\"'<> ") {
		return nil, fmt.Errorf("jobs dashboard: prefix %q must start with / and not end with one, such as /admin/jobs", p)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	v, err := views.NewWith(views.Options{Mount: p, JobsReadOnly: cfg.ReadOnly})
	if err != nil {
		return nil, err
	}
	hub := events.New(events.Config{})
	hub.Register(live.JobsStream)
	feed := live.NewJobsFeed(cfg.Engine, cfg.Reader, v, hub, logger, live.JobsFeedConfig{})
	if err := feed.Start(context.Background()); err != nil {
		hub.Close()
		return nil, err
	}
	router := NewServer(logger, v, cfg.Version,
		&Events{Hub: hub},
		&Jobs{Engine: cfg.Engine, Reader: cfg.Reader, Views: v, Hub: hub, Feed: feed, Version: cfg.Version, ReadOnly: cfg.ReadOnly},
	)
	return &JobsDashboard{prefix: p, handler: AnswerHead(router), hub: hub, feed: feed}, nil
}

// ServeHTTP serves a request under the prefix (the router sees the path
// without it); anything else is a 404.
func (d *JobsDashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, d.prefix)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		http.NotFound(w, r)
		return
	}
	if rest == "" {
		rest = "/"
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = rest
	if raw, ok := strings.CutPrefix(r.URL.RawPath, d.prefix); ok && raw != "" {
		r2.URL.RawPath = raw
	} else {
		r2.URL.RawPath = ""
	}
	d.handler.ServeHTTP(w, r2)
}

// Close stops the live feed and ends the dashboard's open event streams
// (call it before shutting the host's server down, or streams hold it).
func (d *JobsDashboard) Close() error {
	d.hub.Close()
	return d.feed.Stop(context.Background())
}
