package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// appTarget times the jobs dashboard through the app's own router: the
// Echo server of handlers.NewServer with its middleware and the Jobs area
// (templates, JSON), over an engine on the same store, requests served
// in-process (httptest), so the figure is render time without the network.
func appTarget(ctx context.Context, st *store.Store, _ int) ([]dashPage, string, func(), error) {
	v, err := views.New()
	if err != nil {
		return nil, "", nil, err
	}
	eng, err := dashEngine(st)
	if err != nil {
		return nil, "", nil, err
	}
	hub := events.New(events.Config{})
	live.Register(hub)
	area := &handlers.Jobs{Engine: eng, Reader: st.Reader, Views: v, Hub: hub, Version: "bench"}
	srv := handlers.NewServer(discardLogger, v, "bench", area)

	cursor, err := deepCursor(ctx, st)
	if err != nil {
		return nil, "", nil, err
	}
	get := func(path string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
			req.RemoteAddr = "127.0.0.1:40000"
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				return fmt.Errorf("GET %s: %d %s", path, rec.Code, truncate(rec.Body.String(), 200))
			}
			if rec.Body.Len() == 0 {
				return fmt.Errorf("GET %s: empty body", path)
			}
			return nil
		}
	}
	c := url.QueryEscape(cursor)
	pages := []dashPage{
		{"`GET /jobs` (counts, queue table, chart, newest 50)", get("/jobs")},
		{"`GET /jobs?state=completed`", get("/jobs?state=completed")},
		{"`GET /jobs?state=retryable`", get("/jobs?state=retryable")},
		{"`GET /jobs?queue=phone_calls&kind=send_email`", get("/jobs?queue=phone_calls&kind=send_email")},
		{"`GET /jobs?kind=rare_report` (0.1 % of jobs)", get("/jobs?kind=rare_report")},
		{"`GET /jobs?cursor=…` (a page half-way down)", get("/jobs?cursor=" + c)},
		{"`GET /api/jobs` (newest 50)", get("/api/jobs")},
		{"`GET /api/jobs?state=retryable,scheduled`", get("/api/jobs?state=retryable,scheduled")},
		{"`GET /api/jobs?queue=phone_calls&kind=send_email`", get("/api/jobs?queue=phone_calls&kind=send_email")},
		{"`GET /api/jobs?cursor=…` (half-way down)", get("/api/jobs?cursor=" + c)},
		{"`GET /api/queues` (queue table with counts)", get("/api/queues")},
		{"`Engine.Counts` (the counts the page shows)", func(ctx context.Context) error {
			_, err := eng.Counts(ctx)
			return err
		}},
		groupByState(st),
	}
	pages = append(pages, featurePages(srv)...) // issue 15's search, actions on a filter, time charts (dash.go)
	how := "Measured **through the app's router**: `handlers.NewServer` with its middleware and the `handlers.Jobs` " +
		"area over `jobs.New(st.Writer, jobs.Config{Reader: st.Reader, …})` (not started), the read-only pool for " +
		"the list; each request served in-process with `httptest` (templates and JSON rendered, no network)."
	return pages, how, func() {}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
