package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/internal/testcert"
)

// TestHTTPSAndHTTP2Live serves phonehome over TLS (-tls-cert, -tls-key: a
// self-signed certificate for 127.0.0.1 made by the test), where browsers
// speak HTTP/2 (ALPN) and the hub cannot take the event stream's
// connection over, so r3labs/sse writes it. Chromium opens the page over
// HTTPS, its event stream really is HTTP/2, and after Phone Home every row
// changes live, in the same page, through that stream.
func TestHTTPSAndHTTP2Live(t *testing.T) {
	requireBinary(t)
	certFile, keyFile := testcert.Write(t)
	srv := startTLSServer(t, "-tls-cert", certFile, "-tls-key", keyFile,
		"-backoff", "300ms", "-answer-rate", "0.3", "-poll", "50ms")

	// From Go first: HTTP/2 is negotiated, and /events answers an event stream.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the test's own certificate
		ForceAttemptHTTP2: true,
	}}
	t.Cleanup(client.CloseIdleConnections)
	ctxGo, cancelGo := context.WithCancel(context.Background())
	t.Cleanup(cancelGo)
	req, _ := http.NewRequestWithContext(ctxGo, http.MethodGet, srv.httpsURL("/events?stream=extraterrestrials"), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /events over TLS: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events over TLS: status %d, HTTP/%d, %q; want 200, HTTP/2, an event stream",
			resp.StatusCode, resp.ProtoMajor, resp.Header.Get("Content-Type"))
	}
	resp.Body.Close()

	ctx := newTLSBrowser(t)
	// Record the protocol of every /events response the page gets.
	var mu sync.Mutex
	var streams []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok && strings.Contains(e.Response.URL, "/events?") {
			mu.Lock()
			streams = append(streams, e.Response.Protocol+" "+e.Response.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}

	openPhoneHome(t, ctx, "open / over HTTPS", srv.httpsURL("/"))
	if p := eval[string](t, ctx, `performance.getEntriesByType("navigation")[0].nextHopProtocol`); p != "h2" {
		t.Fatalf("the page came over %q, want h2", p)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), streams...)
		mu.Unlock()
		if len(got) > 0 {
			for _, s := range got {
				if !strings.HasPrefix(s, "h2 ") {
					t.Fatalf("an event stream came over %q, want h2", s)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the page opened no event stream the browser reported")
		}
		time.Sleep(25 * time.Millisecond)
	}

	before := eval[[]etRow](t, ctx, etRows)
	if len(before) != 10 {
		t.Fatalf("the page shows %d extraterrestrials, want the 10 seeds", len(before))
	}
	eval[bool](t, ctx, etRecorder)
	eval[bool](t, ctx, `window.__marker = "set before the click"; true`)
	do(t, ctx, "click Phone Home", chromedp.Click(chromedp.CSS(`form[hx-post="/phone-home"] button`)))
	waitFor(t, ctx, 30*time.Second, "every row to show a check or an X, and the header to agree", campaignDone,
		`JSON.stringify({rows: `+etRows+`, counts: `+etCounts+`})`)
	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set before the click" {
		t.Fatalf("window marker = %q: the page navigated or reloaded", m)
	}
	seen := eval[map[string][]string](t, ctx, `window.__seen`)
	for _, r := range eval[[]etRow](t, ctx, etRows) {
		if h := seen[r.ID]; len(h) == 0 || h[len(h)-1] != r.Status {
			t.Errorf("%s shows %q; its live swaps were %v", r.ID, r.Status, h)
		}
	}
}

// startTLSServer is startServer for a server that answers only HTTPS: it
// waits for /healthz over TLS (with the test's certificate unverified).
func startTLSServer(t *testing.T, flags ...string) *server {
	t.Helper()
	requireBinary(t)
	s := &server{t: t, addr: freeAddr(t), db: filepath.Join(t.TempDir(), "phonehome.db"), logs: &syncbuf.Buffer{}, args: flags}
	args := append([]string{"serve", "-addr", s.addr, "-db", s.db, "-grace", "2s"}, flags...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.Env = appenv.Clean()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("phonehome's output:\n%s", s.logs.String())
		}
	})

	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test's own certificate
	}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(s.httpsURL("/healthz"))
		if err == nil {
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(line) == "ok" {
				return s
			}
		}
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			t.Fatalf("phonehome exited before it served /healthz over HTTPS (does it take -tls-cert and -tls-key?):\n%s", s.logs.String())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("phonehome did not answer https://%s/healthz within 20s:\n%s", s.addr, s.logs.String())
		}
	}
}

// httpsURL is the address of path on a server started with TLS.
func (s *server) httpsURL(path string) string { return "https://" + s.addr + path }

// newTLSBrowser is newBrowser for a server with a self-signed certificate:
// Chromium accepts it (--ignore-certificate-errors). The tab is watched by
// a console, as newBrowser's is.
func newTLSBrowser(t *testing.T) context.Context {
	t.Helper()
	browserCtx, _ := startBrowser(t, chromedp.Flag("ignore-certificate-errors", true))
	return browserCtx
}
