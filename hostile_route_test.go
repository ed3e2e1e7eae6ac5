package main

// The run of TestHostileInputOnEveryRoute: each case of hostile_test.go sent to
// the App over HTTP, its answer checked, and the database unchanged.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs"
)

// hostileRouter is the App's Echo router.
func hostileRouter(t *testing.T, app *testApp) *echo.Echo {
	t.Helper()
	if app.router == nil {
		t.Fatal("the App has no Echo router to list routes from: update hostileRouter")
	}
	return app.router
}

// dbChecksum hashes every row of every table (but the engine's node
// heartbeats, which change by themselves; the count ledgers by their sums),
// table by table.
func dbChecksum(t *testing.T, app *testApp) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, table := range tableNames(t, app.store.Reader) {
		if table == "job_nodes" {
			continue
		}
		query, ok := ledgerSums[table]
		if !ok {
			query = `SELECT * FROM "` + table + `"`
		}
		rows, err := app.store.Reader.Queryx(query)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			cols, err := rows.SliceScan()
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%q", cols))
		}
		rows.Close()
		sort.Strings(lines)
		sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
		sums[table] = fmt.Sprintf("%d rows %s", len(lines), hex.EncodeToString(sum[:8]))
	}
	return sums
}

// send makes the request and returns the answer; an event stream is not
// read beyond its headers.
func (h hostileRequest) send(t *testing.T, base string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader = strings.NewReader(h.body)
	if h.size > 0 {
		body = bytes.NewReader(bytes.Repeat([]byte("x"), h.size))
	}
	if h.chunked {
		body = io.MultiReader(body) // hides the length: sent chunked
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, h.method, base+h.target, body)
	if err != nil {
		t.Fatalf("%s %s: %v", h.method, h.target, err)
	}
	for k, v := range h.header {
		req.Header.Set(k, v)
	}
	// A HEAD of a stream leaves its handler running: its connection must
	// not be taken for the next request.
	req.Close = h.method == "HEAD"
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", h.method, h.target, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, resp.Header, ""
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("%s %s: read: %v", h.method, h.target, err)
	}
	return resp.StatusCode, resp.Header, string(data)
}

// checkAnswer says what is wrong with an answer, or "".
func (h hostileRequest) checkAnswer(status int, header http.Header, body string) string {
	if !slices.Contains(h.want, status) {
		return fmt.Sprintf("status %d, want one of %v; body %.300q", status, h.want, body)
	}
	path, _, _ := strings.Cut(h.target, "?")
	ctype := header.Get("Content-Type")
	if h.method == "HEAD" {
		// No body to read a message in: the error's headers say what the
		// GET's body would be.
		switch {
		case body != "":
			return fmt.Sprintf("HEAD answered with a body: %.300q", body)
		case status < 400:
		case (strings.HasPrefix(path, "/api/") || path == "/events") && !strings.HasPrefix(ctype, "application/json"):
			return fmt.Sprintf("HEAD of an API error: Content-Type %q, want JSON's", ctype)
		case !strings.HasPrefix(path, "/api/") && path != "/events" && !strings.HasPrefix(path, "/static/") &&
			!strings.HasPrefix(ctype, "text/html"):
			return fmt.Sprintf("HEAD of a page's error: Content-Type %q, want a page's", ctype)
		}
		return ""
	}
	if status < 400 {
		return ""
	}
	if strings.Contains(body, "goroutine ") || strings.Contains(body, ".go:") || strings.Contains(body, "panic") {
		return fmt.Sprintf("a stack trace in the answer: %.300q", body)
	}
	var msg string
	if strings.HasPrefix(path, "/api/") || path == "/events" {
		var e map[string]any
		if !strings.HasPrefix(ctype, "application/json") || json.Unmarshal([]byte(body), &e) != nil {
			return fmt.Sprintf("want a JSON error, got %q: %.300q", ctype, body)
		}
		m, ok := e["error"].(string)
		if len(e) != 1 || !ok || strings.TrimSpace(m) == "" || strings.Contains(m, "\n") {
			return fmt.Sprintf(`want {"error": "one line"}, got %.300q`, body)
		}
		msg = m
	} else if strings.HasPrefix(path, "/static/") {
		// Files, not pages: the file server's plain answer.
		msg = body
	} else if header.Get(handlers.FlashHeader) != "" {
		// A refused htmx form: the flash message alone, for the form's
		// flash region, with the refusal's status.
		if !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "flash-error") {
			return fmt.Sprintf("want a flash message, got %q: %.300q", ctype, body)
		}
		msg = body
	} else {
		if !strings.HasPrefix(ctype, "text/html") || !strings.Contains(strings.ToLower(body), "<html") {
			return fmt.Sprintf("want an HTML page, got %q: %.300q", ctype, body)
		}
		msg = html.UnescapeString(body)
	}
	if h.msg != "" && !strings.Contains(strings.ToLower(msg), strings.ToLower(h.msg)) {
		return fmt.Sprintf("the message does not mention %q: %.300q", h.msg, msg)
	}
	return ""
}

// TestHostileInputOnEveryRoute sends bad requests to every route the App
// registers: generic ones (bad ids, wrong methods, oversized bodies, unknown
// parameters, other sites' requests) to all, and the cases of routeCases to
// each. A route without cases of its own fails the test, asking for them,
// but for HEAD X, which gets the cases of GET X sent as HEAD: whether the
// router lists HEAD routes, or the server answers HEAD for its GET routes
// without them.
func TestHostileInputOnEveryRoute(t *testing.T) {
	app := startApp(t, Config{Backoff: jobs.FixedBackoff(time.Hour), PetTick: time.Hour})
	e := hostileRouter(t, app)
	cases := routeCases()
	methodsOf := map[string][]string{}
	var routes []*echo.Route
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound || r.Method == "echo_route_any" {
			continue
		}
		if !slices.Contains(methodsOf[r.Path], r.Method) {
			methodsOf[r.Path] = append(methodsOf[r.Path], r.Method)
			routes = append(routes, r)
		}
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].Path+routes[i].Method < routes[j].Path+routes[j].Method })

	// Paths no route has.
	unknown := []hostileRequest{
		{name: "unknown page", method: "GET", target: "/nope", want: []int{404}},
		{name: "unknown API", method: "GET", target: "/api/nope", want: []int{404}},
		{name: "unknown API action", method: "POST", target: "/api/pets/1/pet", want: []int{404, 405}},
		{name: "NUL in the path", method: "GET", target: "/%00", want: []int{404, 400}},
		{name: "very long path", method: "GET", target: "/" + longText("a", 8000), want: []int{404, 414, 431}},
	}

	before := dbChecksum(t, app)
	tried := 0
	check := func(t *testing.T, h hostileRequest) {
		t.Helper()
		if h.method == "" {
			h.method = "GET"
		}
		status, header, body := h.send(t, app.URL)
		tried++
		if problem := h.checkAnswer(status, header, body); problem != "" {
			t.Errorf("%s %.120s (%s): %s", h.method, h.target, h.name, problem)
		}
		if after := dbChecksum(t, app); !mapsEqual(before, after) {
			t.Errorf("%s %.120s (%s) changed the database: before %v, after %v", h.method, h.target, h.name, before, after)
			before = after
		}
	}
	covered := map[string]bool{}
	var uncovered []string
	headDerived := 0
	for _, r := range routes {
		key := r.Method + " " + r.Path
		specific := cases[key]
		covered[key] = true
		if r.Method == "HEAD" && len(specific) == 0 && len(cases["GET "+r.Path]) > 0 {
			specific = headCases(cases["GET "+r.Path])
			covered["GET "+r.Path] = true
			headDerived++
		}
		if len(specific) == 0 {
			uncovered = append(uncovered, key)
		}
		t.Run(key, func(t *testing.T) {
			if len(specific) == 0 {
				t.Errorf("%s has no cases in hostile_test.go: add some to routeCases (it got only the generic ones)", key)
			}
			for _, h := range genericCases(r, methodsOf) {
				check(t, h)
			}
			for _, h := range specific {
				if h.method == "" {
					h.method = r.Method
				}
				check(t, h)
			}
			// HEAD served without routes of its own (the GET's answer
			// without its body): the GET's cases, sent as HEAD.
			if r.Method == "GET" && !slices.Contains(methodsOf[r.Path], "HEAD") {
				probe := hostileRequest{method: "HEAD", target: routeTarget(r.Path), want: []int{405}}
				if status, _, _ := probe.send(t, app.URL); status != http.StatusMethodNotAllowed {
					headDerived++
					for _, h := range headCases(specific) {
						check(t, h)
					}
				}
			}
		})
	}
	t.Run("unknown routes", func(t *testing.T) {
		for _, h := range unknown {
			check(t, h)
		}
	})
	if len(uncovered) > 0 {
		t.Errorf("%d routes have no cases of their own: %s", len(uncovered), strings.Join(uncovered, ", "))
	}
	if headDerived > 0 {
		t.Logf("HEAD on %d GET routes got their GET's cases", headDerived)
	}
	for key := range cases {
		if _, ok := covered[key]; !ok {
			t.Logf("routeCases has cases for %s, which is not registered", key)
		}
	}
	t.Logf("%d hostile requests over %d routes: each answered with the contract's status and a clear message, the database unchanged", tried, len(routes))
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
