package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/internal/testcert"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
)

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// TestHeadAnswersEveryGetRoute asks every GET route of the real router with
// HEAD: same status and content type as the GET, no body, and the event
// stream answers at once instead of streaming.
func TestHeadAnswersEveryGetRoute(t *testing.T) {
	app := startApp(t, Config{})
	paths := map[string]bool{}
	for _, r := range app.router.Routes() {
		if r.Method != http.MethodGet {
			continue
		}
		p := strings.ReplaceAll(r.Path, ":id", "1")
		p = strings.ReplaceAll(p, ":name", "phone_calls")
		p = strings.ReplaceAll(p, "*", "htmx.min.js")
		if strings.Contains(p, ":") {
			t.Fatalf("route %s has a parameter this test does not fill: add it", r.Path)
		}
		paths[p] = true
	}
	// The stream with a valid, an unknown and a missing name.
	delete(paths, "/events")
	paths["/events?stream=extraterrestrials"] = true
	paths["/events?stream=nope"] = true
	paths["/events"] = true
	paths["/no-such-page"] = true
	if len(paths) < 15 {
		t.Fatalf("only %d GET routes found: %v", len(paths), paths)
	}
	for p := range paths {
		t.Run(p, func(t *testing.T) {
			head := do(t, http.MethodHead, app.URL+p, nil)
			if len(head.body) != 0 {
				t.Errorf("HEAD %s sent a body of %d bytes", p, len(head.body))
			}
			if p == "/events?stream=extraterrestrials" {
				if head.status != 200 || head.header.Get("Content-Type") != "text/event-stream" {
					t.Errorf("HEAD %s: %d %q, want 200 text/event-stream", p, head.status, head.header.Get("Content-Type"))
				}
				return
			}
			get := do(t, http.MethodGet, app.URL+p, nil)
			if head.status != get.status {
				t.Errorf("HEAD %s = %d, GET = %d", p, head.status, get.status)
			}
			if hc, gc := head.header.Get("Content-Type"), get.header.Get("Content-Type"); hc != gc {
				t.Errorf("HEAD %s content type %q, GET %q", p, hc, gc)
			}
		})
	}
	// A route that only takes POST still says so.
	if r := do(t, http.MethodHead, app.URL+"/api/phone-home", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /api/phone-home = %d, want 405", r.status)
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with the given Host (nil: the URL's) and reads the
// whole answer.
func do(t *testing.T, method, url string, mutate func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(req)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

// TestHostCheckRefusesRebinding is the DNS-rebinding case: bound to
// loopback without a token, a request that names another host is refused
// with a message saying what to do, and changes nothing.
func TestHostCheckRefusesRebinding(t *testing.T) {
	app := startApp(t, Config{AllowHosts: []string{"phonehome.lan"}})
	_, port, _ := net.SplitHostPort(app.Addr())
	withHost := func(host string) func(*http.Request) {
		return func(r *http.Request) { r.Host = host }
	}
	for _, tt := range []struct {
		host string
		want int
	}{
		{host: "127.0.0.1:" + port, want: 200},
		{host: "localhost:" + port, want: 200},
		{host: "LOCALHOST.:" + port, want: 200},
		{host: "[::1]:" + port, want: 200},
		{host: "127.0.0.2", want: 200},
		{host: "phonehome.lan:" + port, want: 200},
		{host: "evil.example:" + port, want: 403},
		{host: "evil.example", want: 403},
		{host: "localhost.evil.example", want: 403},
		{host: "10.0.0.1:" + port, want: 403},
	} {
		for _, path := range []string{"/", "/api/extraterrestrials"} {
			got := do(t, http.MethodGet, app.URL+path, withHost(tt.host))
			if got.status != tt.want {
				t.Errorf("GET %s with Host %q = %d, want %d", path, tt.host, got.status, tt.want)
			}
			if tt.want == 403 && !strings.Contains(string(got.body), "-allow-host") {
				t.Errorf("GET %s with Host %q: the refusal does not say what to do: %s", path, tt.host, got.body)
			}
		}
	}
	// A rebound page's POST looks same-origin to the browser: refused, and
	// no campaign starts.
	got := do(t, http.MethodPost, app.URL+"/api/phone-home", func(r *http.Request) {
		r.Host = "evil.example:" + port
		r.Header.Set("Origin", "http://evil.example:"+port)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	})
	if got.status != 403 {
		t.Fatalf("rebound POST /api/phone-home = %d %s, want 403", got.status, got.body)
	}
	var n int
	if err := app.store.Reader.Get(&n, "SELECT count(*) FROM jobs"); err != nil || n != 0 {
		t.Fatalf("jobs after a refused POST: %d (err %v), want 0", n, err)
	}
}

// TestHostCheckOnEveryInterface: listening on 0.0.0.0, the machine's own
// addresses are not known in advance, so any IP literal is accepted; names
// still need -allow-host.
func TestHostCheckOnEveryInterface(t *testing.T) {
	t.Parallel()
	e := echo.New()
	e.Use(handlers.HostCheck("0.0.0.0:8080", nil))
	e.GET("/", func(c echo.Context) error { return c.String(200, "ok") })
	for host, want := range map[string]int{
		"192.168.1.20:8080": 200, "[fe80::1]:8080": 200, "localhost:8080": 200,
		"rebind.example:8080": 403,
	} {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q = %d, want %d", host, rec.Code, want)
		}
	}
}

// TestTokenNeverLogged runs at debug level, where every request is logged,
// and passes the token in the address the way a browser does once: the
// log shows the request, never the token.
func TestTokenNeverLogged(t *testing.T) {
	var log syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app := startAppLogged(t, Config{Token: testToken}, logger)
	for _, path := range []string{
		"/?token=" + testToken,
		"/jobs?state=available&token=" + testToken,
		"/?TOKEN=" + testToken,
		"/events?stream=nope&token=" + testToken,
		"/?token=" + testToken + "&x=%zz", // unparseable query
	} {
		do(t, http.MethodGet, app.URL+path, nil)
	}
	out := log.String()
	if !strings.Contains(out, `uri="/?token=REDACTED"`) {
		t.Errorf("the request log does not show the redacted request:\n%s", out)
	}
	if strings.Contains(out, testToken) {
		t.Fatalf("the token is in the log:\n%s", out)
	}
}

// TestPlainHTTPBeyondLoopbackWarnsOnce: a token sent over plain HTTP to
// another machine travels in clear, and the server says so once.
func TestPlainHTTPBeyondLoopbackWarnsOnce(t *testing.T) {
	for _, tt := range []struct {
		name  string
		tls   bool
		warns int
	}{{name: "plain", warns: 1}, {name: "tls", tls: true, warns: 0}} {
		t.Run(tt.name, func(t *testing.T) {
			var log syncbuf.Buffer
			cfg := Config{Addr: "0.0.0.0:0", Token: testToken, DB: filepath.Join(t.TempDir(), "x.db"), Grace: time.Second}
			if tt.tls {
				cfg.TLSCert, cfg.TLSKey = testcert.Write(t)
			}
			app, err := NewApp(context.Background(), cfg, slog.New(slog.NewTextHandler(&log, nil)))
			if err != nil {
				t.Fatal(err)
			}
			app.close()
			if n := strings.Count(log.String(), "travels in clear"); n != tt.warns {
				t.Errorf("%d warnings about the token in clear, want %d:\n%s", n, tt.warns, log.String())
			}
		})
	}
}

// TestTLSServesHTTP2WithASecureCookie: with -tls-cert and -tls-key the
// server speaks HTTPS and HTTP/2, the token cookie is Secure, and the event
// stream delivers over HTTP/2 (where the hub cannot take the connection
// over, so the r3labs/sse path writes it).
func TestTLSServesHTTP2WithASecureCookie(t *testing.T) {
	cert, key := testcert.Write(t)
	app := startApp(t, Config{Token: testToken, TLSCert: cert, TLSKey: key, Backoff: jobs.FixedBackoff(0), AnswerRate: 1})
	if !strings.HasPrefix(app.URL, "https://") {
		t.Fatalf("URL %s is not https", app.URL)
	}
	client := tlsClient(t, cert)

	resp, err := client.Get(app.URL + "/?token=" + testToken)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET /?token= over TLS: %d, want 303", resp.StatusCode)
	}
	checkTokenCookie(t, resp, true)

	// The stream over HTTP/2, then a campaign: its events arrive.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, app.URL+"/events?stream=extraterrestrials", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	stream, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 || stream.ProtoMajor != 2 {
		t.Fatalf("stream: %d over %s, want 200 over HTTP/2", stream.StatusCode, stream.Proto)
	}
	waitFor(t, 10*time.Second, "the stream client to register", func() bool {
		return app.hub.Clients()[live.ExtraterrestrialsStream] > 0
	})
	post, _ := http.NewRequest(http.MethodPost, app.URL+"/api/phone-home", nil)
	post.Header.Set("Authorization", "Bearer "+testToken)
	presp, err := client.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != 200 {
		t.Fatalf("POST /api/phone-home over HTTP/2: %d", presp.StatusCode)
	}
	r := events.NewReader(bufio.NewReader(stream.Body))
	for {
		m, err := r.Next()
		if err != nil {
			t.Fatalf("stream ended before a row event: %v", err)
		}
		if strings.Contains(m.Data, `id="extraterrestrial-`) {
			break
		}
	}
}

// TestSyncReachesTheDatabase: -sync full is what the writer connection runs
// with.
func TestSyncReachesTheDatabase(t *testing.T) {
	app := startApp(t, Config{Sync: store.SyncFull})
	var got int
	if err := app.store.Writer.Get(&got, "PRAGMA synchronous"); err != nil || got != 2 {
		t.Fatalf("PRAGMA synchronous = %d (err %v), want 2 (FULL)", got, err)
	}
}

// TestBadTLSFilesSayWhatToDo: a certificate that cannot be read stops the
// server at start with one line naming the flags.
func TestBadTLSFilesSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "x.db"), "-tls-cert", bad, "-tls-key", bad)
	if code != 1 || !strings.Contains(stderr, "-tls-cert") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("bad TLS files: exit %d, stderr %q; want exit 1 and one line naming -tls-cert", code, stderr)
	}
}

// tlsClient trusts only the test's certificate and speaks HTTP/2.
func tlsClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in " + certFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, timeout, what, cond)
}
