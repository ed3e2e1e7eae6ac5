// Package e2e drives the real phonehome binary with a real browser: headless
// Chromium, through the DevTools protocol (chromedp). TestMain builds the
// binary once; each test starts it on a free loopback port over its own
// database, opens pages, clicks what a person clicks, and waits on what the
// page shows, never on fixed sleeps. Every tab also fails its test on a
// console error, an uncaught exception or a Content Security Policy
// violation (see console for the one line a test may expect: the
// browser's own network line for a refusal it provokes).
//
// Without a Chromium (chromium, chromium-browser or google-chrome on the
// PATH) the tests are skipped, except in CI (env CI set), where they fail.
// Screenshots of every page go to $PHONEHOME_ARTIFACTS when it is set.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/store/storetest"
)

// binary is the phonehome binary TestMain built; buildErr says why there is none.
var (
	binary   string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phonehome-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	// Without a browser the tests skip (outside CI): no need to build.
	if browserPath() != "" || os.Getenv("CI") != "" {
		binary, buildErr = buildBinary(dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary builds the module's main package (the directory above this one)
// into dir; with -race when the tests run with it, so that a data race in the
// server under a real browser fails the test too (see server.stop).
func buildBinary(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go tool on the PATH to build phonehome: %w", err)
	}
	out := filepath.Join(dir, "phonehome")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, ".")...)
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, msg)
	}
	return out, nil
}

// requireBinary skips the test without a browser (see chromium), and fails
// it when TestMain could not build the binary.
func requireBinary(t *testing.T) {
	t.Helper()
	chromium(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// browserPath is the first Chromium or Chrome on the PATH, or "".
func browserPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium finds a Chromium or Chrome on the PATH. With none, the test is
// skipped, or failed in CI, where .ci/run installs Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	if p := browserPath(); p != "" {
		return p
	}
	const msg = "no chromium, chromium-browser or google-chrome on the PATH: " +
		"the browser tests need one (apt-get install -y chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// server is one phonehome process: its address and database stay the same
// across stop and start, like a server restarted by its operator.
type server struct {
	t    *testing.T
	addr string
	db   string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncbuf.Buffer
}

// startServer starts phonehome on a free 127.0.0.1 port over a new database
// (storetest.DatabaseFor: SQLite, or PostgreSQL under TestBrowserOnPostgres),
// with the given flags, and stops it at the end of the test.
func startServer(t *testing.T, flags ...string) *server {
	t.Helper()
	requireBinary(t)
	s := &server{t: t, addr: freeAddr(t), db: storetest.DatabaseFor(t, "phonehome.db"), logs: &syncbuf.Buffer{}}
	s.args = flags
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("phonehome's output:\n%s", s.logs.String())
		}
	})
	return s
}

// start runs the binary on the server's address and database and waits until
// /healthz answers ok.
func (s *server) start() {
	s.t.Helper()
	s.startOn(s.addr)
}

// startOn runs the binary on addr over the server's database (another
// address: a second process on the same file while the first is stopped).
func (s *server) startOn(addr string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("server already running")
	}
	args := append([]string{"serve", "-addr", addr, "-db", s.db, "-grace", "2s"}, s.args...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.Env = appenv.Clean()
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return
			}
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("phonehome exited before it served /healthz:\n%s", s.logs.String())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("phonehome did not answer /healthz on %s within 20s:\n%s", addr, s.logs.String())
		}
	}
}

// stop sends SIGTERM and waits for the process to exit (killing it after 10 s).
func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("phonehome did not exit within 10s of SIGTERM")
	}
	if st := s.cmd.ProcessState; st != nil && !st.Success() {
		s.t.Errorf("phonehome exited with %v after SIGTERM", st)
	}
	if strings.Contains(s.logs.String(), "WARNING: DATA RACE") {
		s.t.Errorf("the race detector found a data race in phonehome")
	}
	s.cmd = nil
}

// url is the address of path on the server.
func (s *server) url(path string) string { return "http://" + s.addr + path }

// freeAddr finds a free port on 127.0.0.1.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// newBrowser starts a headless Chromium for the test and returns the context
// of its first tab, watched by a console (see newTab). The browser is closed
// at the end of the test.
func newBrowser(t *testing.T) (context.Context, *console) {
	t.Helper()
	return startBrowser(t,
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("font-render-hinting", "none"),
	)
}

// startBrowser is newBrowser with extra Chromium options in place of its
// screenshot flags.
func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) (context.Context, *console) {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.WindowSize(1280, 860),
	)
	opts = append(opts, extra...)
	// Debian's launcher script now and then fails to start the browser on a
	// loaded machine (seen once in CI: "chrome failed to start" after a
	// shell error in /etc/chromium.d): a failed start is tried again, a
	// few times, before the test fails with every reason.
	var reasons []string
	for range browserStarts {
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
		// Start the browser with no deadline: the first Run binds its life to the context.
		if err := chromedp.Do(browserCtx); err != nil {
			cancelBrowser()
			cancelAlloc()
			reasons = append(reasons, err.Error())
			continue
		}
		t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
		return browserCtx, watchConsole(t, browserCtx)
	}
	t.Fatalf("starting %s failed %d times: %s", path, browserStarts, strings.Join(reasons, "; "))
	return nil, nil
}

// browserStarts is how many times startBrowser tries to start Chromium.
const browserStarts = 3

// newTab opens another tab in the same browser (same cookies: the same
// visitor), watched by its own console. closeTab checks its console and
// closes it; the end of the test does both too.
func newTab(t *testing.T, browserCtx context.Context) (ctx context.Context, c *console, closeTab func()) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	c = watchConsole(t, ctx)
	return ctx, c, func() {
		c.check()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		cancel()
	}
}

// pageScript runs in every document before the page's own scripts: it keeps
// the page's Content Security Policy violations in window.__cspViolations
// (the console checks them too, as Chromium's log may word them
// differently), and defines htmxReady(el), true once htmx has processed el
// (its hx-* attributes are live).
const pageScript = `window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
    " at " + e.sourceFile + ":" + e.lineNumber);
});
window.htmxReady = function (el) {
  var d = el && el["htmx-internal-data"];
  return !!(d && d.initHash);
};`

// console collects what a tab wrote to its console that a person would call
// an error: console.error and console.warn calls, uncaught exceptions, the
// browser's error and warning log entries (failed loads, CSP violations);
// and, at check time, the violations pageScript saw. Every console is
// checked at the end of its test; allow excuses expected messages (a stopped
// server's refused connections).
//
// The rule for refusals: a refused form answers its real 4xx status with
// its flash (marked Phonehome-Flash; static/app.js swaps it in), and
// Chromium logs every response with an error status as a network line,
// "Failed to load resource: the server responded with a status of 422
// (Unprocessable Entity)", which no page code can silence. That line is
// expected for a refusal, and excused only where a test provokes one, for
// that status and path (expectRefusal); any other failed load, an
// unexpected 4xx or any 5xx, fails the test.
type console struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	messages []string
	excused  []string // the messages allowed, as they came
	allowed  []func(chromedp.ConsoleMessage) bool
	closed   bool // the tab is closed: nothing more to read from it
}

func watchConsole(t *testing.T, ctx context.Context) *console {
	t.Helper()
	c := &console{t: t, ctx: ctx}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: pageScript}); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
			default:
				continue
			}
			c.mu.Lock()
			allowed := false
			for _, ok := range c.allowed {
				allowed = allowed || ok(m)
			}
			where := m.URL
			if m.Source != "" {
				where = m.Source + " " + where
			}
			line := fmt.Sprintf("%s (%s)", m, where)
			if allowed {
				c.excused = append(c.excused, line)
			} else {
				c.messages = append(c.messages, line)
			}
			c.mu.Unlock()
		}
	}()
	// Runs before the tab is closed: cleanups run last registered, first run.
	t.Cleanup(c.check)
	return c
}

// allow excuses the messages ok matches from now on.
func (c *console) allow(ok func(chromedp.ConsoleMessage) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed = append(c.allowed, ok)
}

// refusalLine is the start of Chromium's network line for a response with
// status.
func refusalLine(status int) string {
	return fmt.Sprintf("Failed to load resource: the server responded with a status of %d", status)
}

// expectRefusal excuses, from now on, the browser's network line for a
// response with status (a 4xx) to a request whose URL contains path: a
// refusal the test provokes on purpose (see console).
func (c *console) expectRefusal(status int, path string) {
	if status < 400 || status > 499 {
		c.t.Fatalf("expectRefusal(%d): only a 4xx is a refusal; a %d is an error", status, status)
	}
	line := refusalLine(status)
	c.allow(func(m chromedp.ConsoleMessage) bool {
		return m.Source == "network" && strings.HasPrefix(m.Text, line) && strings.Contains(m.URL, path)
	})
}

// check fails the test for every error the tab has shown so far, and for the
// CSP violations of the current document.
func (c *console) check() {
	c.t.Helper()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	var violations []string
	if !closed {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		defer cancel()
		var err error
		violations, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__cspViolations || []`))
		if err != nil {
			c.t.Errorf("reading CSP violations: %v", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range violations {
		c.t.Errorf("CSP violation: %s", v)
	}
	for _, m := range c.messages {
		c.t.Errorf("console: %s", m)
	}
	c.messages = nil
}

// do runs steps with a deadline, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		failureShot(t, ctx)
		t.Fatalf("%s: %v", what, err)
	}
}

// openPhoneHome opens the Phone Home page at url and waits until its
// stream is live (waitIndicatorLive).
func openPhoneHome(t *testing.T, ctx context.Context, what, url string) {
	t.Helper()
	do(t, ctx, what, chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`form[hx-post="/phone-home"] button`)))
	waitIndicatorLive(t, ctx, 10*time.Second, "the live indicator to say live")
}

// waitIndicatorLive waits until the page's event stream is open and its
// indicator says "live" (waitLive: only that a page that has a stream
// has it open).
func waitIndicatorLive(t *testing.T, ctx context.Context, timeout time.Duration, why string) {
	t.Helper()
	waitFor(t, ctx, timeout, why,
		`document.body.dataset.live === "open" && document.querySelector(".live-text").textContent === "live"`,
		`document.querySelector(".live").outerHTML`)
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate every 25 ms until it is truthy, for at
// most timeout; on a timeout the test fails with why and the value of show.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, why, predicate, show string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		state := ""
		if show != "" {
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			state, _ = chromedp.Run(sctx, chromedp.Evaluate[string](show))
			scancel()
		}
		failureShot(t, ctx)
		t.Fatalf("waiting %v for %s: %v\npage: %s", timeout, why, err, state)
	}
}

// artifacts is the directory screenshots are saved in: $PHONEHOME_ARTIFACTS,
// or the test's temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("PHONEHOME_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// failureShot saves what the tab shows when a step failed, as
// failure-TestName.png in $PHONEHOME_ARTIFACTS (when set).
func failureShot(t *testing.T, ctx context.Context) {
	dir := os.Getenv("PHONEHOME_ARTIFACTS")
	if dir == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if buf, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)); err == nil && os.MkdirAll(dir, 0o755) == nil {
		path := filepath.Join(dir, "failure-"+strings.ReplaceAll(t.Name(), "/", "-")+".png")
		if os.WriteFile(path, buf, 0o644) == nil {
			t.Logf("the page at the failure: %s", path)
		}
	}
}

// screenshot saves a full-page PNG of the tab as dir/name.png.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	buf, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
