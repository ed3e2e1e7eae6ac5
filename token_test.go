package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
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

func TestTokenGuardsEveryRouteButHealth(t *testing.T) {
	app := startApp(t, Config{Token: testToken})
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	get := func(path string, header http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, app.URL+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
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
	resp, body := get("/api/extraterrestrials", http.Header{"Authorization": {"Bearer " + testToken}})
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
	if resp, _ := get("/?token=nope", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong ?token=: %d, want 401", resp.StatusCode)
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
}
