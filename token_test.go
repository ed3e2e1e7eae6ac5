package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/static"
)

const testToken = "0123456789abcdef0123"

func TestListeningBeyondLoopbackNeedsAToken(t *testing.T) {
	for _, tt := range []struct {
		addr, token string
		wantErr     string
	}{
		{addr: "127.0.0.1:8080"},
		{addr: "[::1]:8080"},
		{addr: "localhost:8080"},
		{addr: "0.0.0.0:8080", wantErr: "set -token"},
		{addr: ":8080", wantErr: "set -token"},
		{addr: "192.168.1.20:8080", wantErr: "reachable from other machines"},
		{addr: "0.0.0.0:8080", token: testToken},
		{addr: "127.0.0.1:8080", token: "short", wantErr: "at least 16 characters"},
	} {
		err := checkExposure(tt.addr, tt.token)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkExposure(%q, %q) = %v, want error containing %q", tt.addr, tt.token, err, tt.wantErr)
		}
	}
	code, _, stderr := runCLI("-addr", "0.0.0.0:0", "-db", t.TempDir()+"/x.db")
	if code != 2 || !strings.Contains(stderr, "-token") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("serving on 0.0.0.0 without a token: exit %d, stderr %q; want exit 2 and one line naming -token", code, stderr)
	}
}

// TestTokenGuardsEveryRouteButHealth runs the real server with a token and
// checks the guard where it matters: the pages, API and streams refuse a
// request without the token (401); every route that changes something
// refuses it too, whichever way a wrong token comes, and the database does
// not change, while with the token each is let through; the static files
// and /healthz stay open, without opening a way around the guard; the
// event streams need the token like the pages, by cookie or header; and
// the cookie a ?token= link sets is HttpOnly, SameSite=Strict, for the
// whole site, and not Secure on plain HTTP.
func TestTokenGuardsEveryRouteButHealth(t *testing.T) {
	app := startApp(t, Config{Token: testToken, PetTick: time.Hour})
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	bearer := http.Header{"Authorization": {"Bearer " + testToken}}

	send := func(method, path, ctype, body string, header http.Header) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, app.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, string(data)
	}
	get := func(path string, header http.Header) (*http.Response, string) {
		t.Helper()
		return send(http.MethodGet, path, "", "", header)
	}

	for _, path := range []string{"/", "/pets", "/api/extraterrestrials", "/events?stream=extraterrestrials"} {
		resp, body := get(path, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "access token") {
			t.Errorf("GET %s without a token: %d %q, want 401 saying an access token is needed", path, resp.StatusCode, body)
		}
	}
	if resp, body := get("/api/extraterrestrials", http.Header{"Authorization": {"Bearer wrong-token-wrong-token"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong bearer token: %d %q, want 401", resp.StatusCode, body)
	}
	resp, body := get("/api/extraterrestrials", bearer)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("right bearer token: %d %q, want 200", resp.StatusCode, body)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Items) != 10 {
		t.Errorf("with the token the API answers the 10 seed rows, got %d (%v)", len(list.Items), err)
	}
	if resp, _ := get("/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without a token: %d, want 200 (health checks carry no token)", resp.StatusCode)
	}
	if resp, _ := get("/?token=nope", nil); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("wrong ?token=: %d, cookies %v; want 401 and no cookie", resp.StatusCode, resp.Cookies())
	}

	// A browser opens the link with ?token= once: it gets a cookie and is sent
	// on to the same page without the token in its address.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	r, err := browser.Get(app.URL + "/pets?alive=true&token=" + testToken)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK || r.Request.URL.RawQuery != "alive=true" {
		t.Errorf("after ?token=: %d at %s, want 200 at /pets?alive=true", r.StatusCode, r.Request.URL)
	}
	r, err = browser.Get(app.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("with the cookie: GET / = %d, want 200", r.StatusCode)
	}

	t.Run("cookie", func(t *testing.T) {
		resp, _ := get("/pets?alive=true&token="+testToken, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/pets?alive=true" {
			t.Errorf("?token=: %d to %q, want 303 to /pets?alive=true (the token out of the address)", resp.StatusCode, resp.Header.Get("Location"))
		}
		checkTokenCookie(t, resp, false)
		// Under TLS the same link sets it Secure:
		// TestTLSServesHTTP2WithASecureCookie (edge_test.go).
	})

	t.Run("writes", func(t *testing.T) {
		// Jobs to act on that stay put: the queue is paused first.
		if resp, body := send("POST", "/api/queues/phone_calls/pause", "", "", bearer); resp.StatusCode != http.StatusOK {
			t.Fatalf("pause with the token: %d %s", resp.StatusCode, body)
		}
		if resp, body := send("POST", "/api/phone-home", "", "", bearer); resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != `{"enqueued":10}` {
			t.Fatalf("phone home with the token: %d %s", resp.StatusCode, body)
		}
		var job int64
		if err := app.store.Reader.Get(&job, "SELECT min(id) FROM jobs"); err != nil {
			t.Fatal(err)
		}
		jobID := strconv.FormatInt(job, 10)
		const form, jsonType = "application/x-www-form-urlencoded", "application/json"
		// One request for every route that changes something, made to
		// change it if the guard let it through.
		writes := map[string]struct{ target, ctype, body string }{
			"POST /phone-home":                {"/phone-home", form, ""},
			"POST /api/phone-home":            {"/api/phone-home", "", ""},
			"POST /pets":                      {"/pets", form, "name=Sneaky&species=cat"},
			"POST /api/pets":                  {"/api/pets", jsonType, `{"name":"Sneaky","species":"cat"}`},
			"POST /pets/:id/feed":             {"/pets/1/feed", form, ""},
			"POST /api/pets/:id/feed":         {"/api/pets/1/feed", "", ""},
			"POST /pets/:id/treat":            {"/pets/1/treat", form, ""},
			"POST /api/pets/:id/treat":        {"/api/pets/1/treat", "", ""},
			"POST /jobs/bulk":                 {"/jobs/bulk", form, "action=cancel&id=" + jobID},
			"POST /api/jobs/bulk":             {"/api/jobs/bulk", jsonType, `{"action":"cancel","ids":[` + jobID + `]}`},
			"POST /jobs/bulk-filter":          {"/jobs/bulk-filter", form, "action=cancel&queue=phone_calls&confirm=1"},
			"POST /api/jobs/bulk-filter":      {"/api/jobs/bulk-filter", jsonType, `{"action":"cancel","queue":"phone_calls"}`},
			"POST /jobs/:id/:action":          {"/jobs/" + jobID + "/cancel", form, ""},
			"POST /api/jobs/:id/cancel":       {"/api/jobs/" + jobID + "/cancel", "", ""},
			"POST /api/jobs/:id/retry":        {"/api/jobs/" + jobID + "/retry", "", ""},
			"DELETE /api/jobs/:id":            {"/api/jobs/" + jobID, "", ""},
			"POST /jobs/queues/:name/:action": {"/jobs/queues/phone_calls/resume", form, ""},
			"POST /api/queues/:name/:action":  {"/api/queues/phone_calls/resume", "", ""},
			"POST /jobs/cron/:name/:action":   {"/jobs/cron/db-optimize/pause", form, ""},
			"POST /api/cron/:name/:action":    {"/api/cron/db-optimize/run", "", ""},
		}
		var keys []string
		for _, r := range hostileRouter(t, app).Routes() {
			switch r.Method {
			case http.MethodGet, http.MethodHead, echo.RouteNotFound, "echo_route_any":
				continue
			}
			key := r.Method + " " + r.Path
			if _, ok := writes[key]; !ok {
				t.Errorf("%s changes something but has no request in this test: add one to writes", key)
				continue
			}
			if !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
		slices.Sort(keys)
		wrong := []struct {
			name   string
			query  string
			header http.Header
		}{
			{name: "no token"},
			{name: "a wrong bearer token", header: http.Header{"Authorization": {"Bearer " + strings.Repeat("x", len(testToken))}}},
			{name: "a wrong cookie", header: http.Header{"Cookie": {handlers.TokenCookie + "=" + strings.Repeat("x", len(testToken))}}},
			{name: "the token in the address (taken from GETs only)", query: "?token=" + testToken},
			{name: "the token as a Basic password", header: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+testToken))}}},
		}
		before := dbChecksum(t, app)
		refused := 0
		for _, key := range keys {
			w := writes[key]
			method, _, _ := strings.Cut(key, " ")
			for _, bad := range wrong {
				resp, body := send(method, w.target+bad.query, w.ctype, w.body, bad.header)
				if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "token") {
					t.Errorf("%s %s with %s: %d %.200q, want 401 asking for the token", method, w.target, bad.name, resp.StatusCode, body)
				}
				refused++
			}
		}
		if after := dbChecksum(t, app); !mapsEqual(before, after) {
			t.Errorf("writes without the token changed the database: before %v, after %v", before, after)
		}
		if !t.Failed() {
			t.Logf("%d writes on %d routes without the right token: each refused with 401, the database unchanged", refused, len(keys))
		}

		// With the token each goes through the guard (the route may still
		// refuse it for its own reasons: a treat for a pet nobody watches).
		for _, key := range keys {
			w := writes[key]
			method, _, _ := strings.Cut(key, " ")
			resp, body := send(method, w.target, w.ctype, w.body, bearer)
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden && strings.Contains(body, "token") || resp.StatusCode >= 500 {
				t.Errorf("%s %s with the token: %d %.200q, want it let through", method, w.target, resp.StatusCode, body)
			}
		}
		var sneaky int
		if err := app.store.Reader.Get(&sneaky, "SELECT count(*) FROM pets WHERE name = 'Sneaky'"); err != nil || sneaky != 2 {
			t.Errorf("with the token the two adoptions made %d pets (%v), want 2", sneaky, err)
		}
		// A browser posts its forms with the cookie alone.
		resp, err := browser.PostForm(app.URL+"/pets", url.Values{"name": {"Cookie Monster"}, "species": {"owl"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var id int64
		if resp.StatusCode != http.StatusOK || app.store.Reader.Get(&id, "SELECT id FROM pets WHERE name = 'Cookie Monster'") != nil ||
			resp.Request.URL.Path != "/pets/"+strconv.FormatInt(id, 10) {
			t.Errorf("adopting by the form with the cookie: %d at %s (pet %d), want the new pet's page", resp.StatusCode, resp.Request.URL, id)
		}
	})

	t.Run("static files", func(t *testing.T) {
		// Open without the token: they reveal nothing, and the 401 page
		// itself needs its stylesheet.
		n := 0
		err := fs.WalkDir(static.FS, ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || name == "embed.go" {
				return err
			}
			want, _ := fs.ReadFile(static.FS, name)
			resp, body := get("/static/"+name, nil)
			if resp.StatusCode != http.StatusOK || body != string(want) {
				t.Errorf("GET /static/%s without a token: %d, %d bytes; want 200 and the file's %d", name, resp.StatusCode, len(body), len(want))
			}
			n++
			return nil
		})
		if err != nil || n == 0 {
			t.Fatalf("static files: %d (%v)", n, err)
		}
		// The open prefixes lead nowhere else.
		for _, path := range []string{
			"/static/../api/extraterrestrials", "/static/%2e%2e/api/extraterrestrials", "/static/..%2fapi%2fextraterrestrials",
			"/static/x/../../api/extraterrestrials", "/static//api/extraterrestrials", "/healthz/../api/extraterrestrials",
			"/static/../events?stream=extraterrestrials",
		} {
			resp, body := get(path, nil)
			if resp.StatusCode == http.StatusOK || strings.Contains(body, `"items"`) || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Errorf("GET %s without a token: %d %q %.200q: the open prefix let it through", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		}
		t.Logf("%d static files served without the token", n)
	})

	t.Run("event streams", func(t *testing.T) {
		for _, stream := range []string{"extraterrestrials", "pets", "pet-1", "jobs", "stats"} {
			resp, body := get("/events?stream="+stream, nil)
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("stream %s without a token: %d %q %.200q, want a JSON 401", stream, resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			resp, _ = get("/events?stream="+stream, http.Header{"Cookie": {handlers.TokenCookie + "=nope-nope-nope-nope"}})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("stream %s with a wrong cookie: %d, want 401", stream, resp.StatusCode)
			}
		}
		// An EventSource opened with ?token= follows the redirect with the cookie.
		resp, _ := get("/events?stream=pets&token="+testToken, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/events?stream=pets" {
			t.Errorf("stream with ?token=: %d to %q, want 303 to /events?stream=pets", resp.StatusCode, resp.Header.Get("Location"))
		}
		checkTokenCookie(t, resp, false)

		// With the token, by header (curl) and by cookie (a browser), the
		// stream is open and carries events.
		for _, how := range []struct {
			name   string
			client *http.Client
			header http.Header
		}{{"the bearer token", http.DefaultClient, bearer}, {"the cookie", browser, nil}} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			req, _ := http.NewRequestWithContext(ctx, "GET", app.URL+"/events?stream=pets", nil)
			maps.Copy(req.Header, how.header)
			// One stream at a time: the last one is gone from the hub.
			waitUntil(t, 10*time.Second, "no pets stream client", func() (bool, string) {
				n := app.hub.Clients()["pets"]
				return n == 0, fmt.Sprintf("%d clients", n)
			})
			resp, err := how.client.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Errorf("pets stream with %s: %d %q, want 200 and an event stream", how.name, resp.StatusCode, resp.Header.Get("Content-Type"))
				resp.Body.Close()
				cancel()
				continue
			}
			waitUntil(t, 10*time.Second, "pets stream client registered", func() (bool, string) {
				n := app.hub.Clients()["pets"]
				return n > 0, fmt.Sprintf("%d clients", n)
			})
			name := "Streamed " + strings.Fields(how.name)[1]
			if r, body := send("POST", "/api/pets", "application/json", `{"name":"`+name+`","species":"fox"}`, bearer); r.StatusCode != http.StatusCreated {
				t.Fatalf("adopt with the token: %d %s", r.StatusCode, body)
			}
			reader := events.NewReader(resp.Body)
			for {
				m, err := reader.Next()
				if err != nil {
					t.Errorf("pets stream with %s ended before the adoption of %q: %v", how.name, name, err)
					break
				}
				if m.Event == "adopted" && strings.Contains(m.Data, name) {
					break
				}
			}
			resp.Body.Close()
			cancel()
		}
	})
}

// checkTokenCookie checks the cookie an answer to ?token= sets: the token,
// HttpOnly (no script reads it), SameSite=Strict (no other site's page
// sends it), for the whole site, kept for a while, and Secure exactly when
// the server speaks TLS (a Secure cookie over plain HTTP would be dropped;
// one without Secure under TLS could be sent in clear).
func checkTokenCookie(t *testing.T, resp *http.Response, wantSecure bool) {
	t.Helper()
	var c *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == handlers.TokenCookie {
			c = ck
		}
	}
	switch {
	case c == nil:
		t.Errorf("no %s cookie set; Set-Cookie: %q", handlers.TokenCookie, resp.Header.Values("Set-Cookie"))
	case c.Value != testToken:
		t.Errorf("the cookie carries %q, want the token", c.Value)
	case !c.HttpOnly:
		t.Errorf("the token cookie is not HttpOnly: %s", c)
	case c.SameSite != http.SameSiteStrictMode:
		t.Errorf("the token cookie is not SameSite=Strict: %s", c)
	case c.Path != "/":
		t.Errorf("the token cookie is for path %q, want /: %s", c.Path, c)
	case c.MaxAge <= 0:
		t.Errorf("the token cookie is not kept (Max-Age %d): %s", c.MaxAge, c)
	case c.Secure != wantSecure:
		t.Errorf("the token cookie has Secure=%t, want %t: %s", c.Secure, wantSecure, c)
	}
}
