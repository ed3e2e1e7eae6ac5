package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/phonehome/phonehome/bench/internal/benchdb"
	"github.com/phonehome/phonehome/internal/jobfill"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// dashSamples is how many timed requests each dashboard page gets per run
// (after dashWarmup untimed ones); the run reports their p50.
const (
	dashSamples = 21
	dashWarmup  = 3
)

// dashPage is one page (or query) of the jobs dashboard under test.
type dashPage struct {
	// Name is the row label in BENCHMARKS.md.
	Name string
	// Run renders the page once and fails on anything but success.
	Run func(ctx context.Context) error
}

// dashTarget builds the pages to time over a database holding the generated
// jobs; how says how they are measured, for BENCHMARKS.md. close releases
// what it built.
type dashTarget func(ctx context.Context, st *store.Store, rows int) (pages []dashPage, how string, close func(), err error)

// runDash fills a fresh database with rows jobs and times each dashboard
// page, reporting the p50 in ms per page name.
func runDash(ctx context.Context, dir string, rows int, pages dashTarget) (map[string]float64, string, error) {
	target, err := dbTarget(ctx, dir, "dash")
	if err != nil {
		return nil, "", err
	}
	st, err := benchdb.Open(ctx, target)
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	t0 := time.Now()
	if err := jobfill.Fill(ctx, st, rows, jobfill.Dashboard); err != nil {
		return nil, "", err
	}
	fill := time.Since(t0)
	list, how, closeTarget, err := pages(ctx, st, rows)
	if err != nil {
		return nil, "", err
	}
	defer closeTarget()
	out := map[string]float64{"fill_s": fill.Seconds()}
	for _, p := range list {
		for range dashWarmup {
			if err := p.Run(ctx); err != nil {
				return nil, "", fmt.Errorf("%s: %w", p.Name, err)
			}
		}
		lat := make([]float64, 0, dashSamples)
		for range dashSamples {
			t := time.Now()
			if err := p.Run(ctx); err != nil {
				return nil, "", fmt.Errorf("%s: %w", p.Name, err)
			}
			lat = append(lat, float64(time.Since(t))/float64(time.Millisecond))
		}
		out[p.Name] = percentile(lat, 50)
	}
	return out, how, nil
}

// dashEngine is the engine both dashboard targets time, not started: the
// seeded queues, reading through the read-only pool.
func dashEngine(st *store.Store) (*jobs.Engine, error) {
	return jobs.New(st.Writer, jobs.Config{
		Queues: map[string]int{"default": 50, "phone_calls": 50, "mailers": 10},
		Reader: st.Reader,
		Logger: discardLogger,
	})
}

// libTarget times the app's own pieces under the dashboard, without the web
// layer: jobs.List (the job list, keyset pages) on the read-only pool, and the
// engine's Counts and Queues (both read the job_counts table the triggers
// keep). A plain count over the table is timed too, for comparison.
func libTarget(ctx context.Context, st *store.Store, rows int) ([]dashPage, string, func(), error) {
	eng, err := dashEngine(st)
	if err != nil {
		return nil, "", nil, err
	}
	cursor, err := deepCursor(ctx, st)
	if err != nil {
		return nil, "", nil, err
	}
	list := func(p jobs.ListParams) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			page, err := jobs.List(ctx, st.Reader, p)
			if err != nil {
				return err
			}
			if len(page.Jobs) == 0 {
				return fmt.Errorf("no jobs for %+v", p)
			}
			return nil
		}
	}
	pages := []dashPage{
		{"`Engine.Counts` (jobs per state)", func(ctx context.Context) error {
			_, err := eng.Counts(ctx)
			return err
		}},
		{"`Engine.Queues` (queue table with counts)", func(ctx context.Context) error {
			_, err := eng.Queues(ctx)
			return err
		}},
		{"`jobs.List`: newest 50", list(jobs.ListParams{})},
		{"`jobs.List`: state=completed", list(jobs.ListParams{States: []jobs.State{jobs.StateCompleted}})},
		{"`jobs.List`: state=retryable", list(jobs.ListParams{States: []jobs.State{jobs.StateRetryable}})},
		{"`jobs.List`: queue+kind", list(jobs.ListParams{Queue: "phone_calls", Kind: "send_email"})},
		{"`jobs.List`: rare kind (0.1 %)", list(jobs.ListParams{Kind: "rare_report"})},
		{"`jobs.List`: a page half-way down (cursor)", list(jobs.ListParams{Cursor: cursor})},
		groupByState(st),
	}
	how := "**Measured without the web layer**: the calls the job list " +
		"page makes — `jobs.List` on the read-only pool (`store.Open(...).Reader`), `Engine.Counts` and `Engine.Queues` " +
		"(an engine over the same store, not started) — with rows decoded into `jobs.Job`; no template, no HTTP."
	return pages, how, func() {}, nil
}

// deepCursor returns a List cursor about half-way down the table, got the
// way a client gets one: by paging (1,000 cancelled jobs a page, 0.9 % of
// the table, so a few pages go deep).
func deepCursor(ctx context.Context, st *store.Store) (string, error) {
	p := jobs.ListParams{States: []jobs.State{jobs.StateCancelled}, Limit: jobs.MaxListLimit}
	var total int
	if err := st.Reader.GetContext(ctx, &total, "SELECT count(*) FROM jobs WHERE state = 'cancelled'"); err != nil {
		return "", err
	}
	for seen := 0; seen < total/2; {
		page, err := jobs.List(ctx, st.Reader, p)
		if err != nil {
			return "", err
		}
		if page.NextCursor == "" {
			break
		}
		seen += len(page.Jobs)
		p.Cursor = page.NextCursor
	}
	return p.Cursor, nil
}

// storeT is phonehome's store, named short for the target signatures.
type storeT = store.Store

// dashVia chooses how the dashboard is measured (-dash-via).
var dashVia = "app"

// dashTargetFor picks how the dashboard is measured: through the app's
// router ("app"), or through jobs.List and the engine's counts ("lib").
func dashTargetFor() dashTarget {
	if dashVia == "lib" {
		return libTarget
	}
	return appTarget
}

// groupByState times counting the jobs per state over the table itself,
// for comparison with the job_counts table the engine reads.
func groupByState(st *store.Store) dashPage {
	return dashPage{comparisonPrefix + ": `SELECT state, count(*) FROM jobs GROUP BY state`", func(ctx context.Context) error {
		var out []struct {
			State string `db:"state"`
			N     int    `db:"n"`
		}
		return st.Reader.SelectContext(ctx, &out, "SELECT state, count(*) AS n FROM jobs GROUP BY state")
	}}
}

// featurePages are the dashboard's search, action-on-a-filter confirmation
// and time charts (issue 15), through the app's router srv. Searches over
// fillJobs's rows: "no answer" is every discarded job's last error (4 %),
// args.to names 1 job in 9,973, and no job has a tag, so tag:campaign is
// the worst case: the scan reads to its budget and answers with a cursor.
func featurePages(srv http.Handler) []dashPage {
	do := func(method, path, body string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			req := httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
			req.RemoteAddr = "127.0.0.1:40000"
			if body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("HX-Request", "true")
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
				return fmt.Errorf("%s %s: %d %s", method, path, rec.Code, truncate(rec.Body.String(), 200))
			}
			return nil
		}
	}
	q := url.QueryEscape
	return []dashPage{
		{"`GET /jobs?state=discarded&q=\"no answer\"` (search: every row matches)", do("GET", "/jobs?state=discarded&q="+q(`"no answer"`), "")},
		{"`GET /jobs?q=args.to:user42@example.com` (search: 1 job in 9,973)", do("GET", "/jobs?q="+q("args.to:user42@example.com"), "")},
		{"`GET /jobs?q=tag:campaign` (search: no match, the scan's budget)", do("GET", "/jobs?q="+q("tag:campaign"), "")},
		{"`GET /api/jobs?queue=phone_calls&q=timeout` (search, API)", do("GET", "/api/jobs?queue=phone_calls&q=timeout", "")},
		{"`POST /jobs/bulk-filter` confirmation: retry discarded in phone_calls (kept counts)",
			do("POST", "/jobs/bulk-filter", "action=retry&state=discarded&queue=phone_calls")},
		{"`POST /jobs/bulk-filter` confirmation: retry discarded matching \"no answer\" (counted rows)",
			do("POST", "/jobs/bulk-filter", "action=retry&state=discarded&q="+q(`"no answer"`))},
		{"`GET /jobs/charts` (time charts, from memory)", do("GET", "/jobs/charts", "")},
		{"`GET /api/jobs/timings`", do("GET", "/api/jobs/timings", "")},
	}
}
