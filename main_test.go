package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// testApp is the real server running on 127.0.0.1:0 over a new database
// (appDatabaseFor: SQLite, or PostgreSQL under TestAppOnPostgres).
type testApp struct {
	*App
	URL  string
	DB   string
	stop func() error
}

// openStream opens the App's event stream named stream, failing t unless it
// answers 200, and waits until the hub counts its client, so that whatever
// is published next reaches it. It ends when ctx does or its body is closed.
func (app *testApp) openStream(t *testing.T, ctx context.Context, stream string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", app.URL+"/events?stream="+stream, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream %s: %v %v", stream, resp, err)
	}
	waitUntil(t, 10*time.Second, stream+" stream client registered", func() (bool, string) {
		n := app.hub.Clients()[stream]
		return n > 0, fmt.Sprintf("%d clients", n)
	})
	return resp
}

// startApp runs the real server and stops it at the end of the test; stop
// shuts it down early and reports Run's error.
func startApp(t *testing.T, cfg Config) *testApp {
	t.Helper()
	return startAppLogged(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startAppLogged is startApp with the server's log going to logger.
func startAppLogged(t *testing.T, cfg Config, logger *slog.Logger) *testApp {
	t.Helper()
	if cfg.DB == "" {
		cfg.DB = appDatabaseFor(t)
	}
	cfg.Addr = "127.0.0.1:0"
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if cfg.Grace == 0 {
		cfg.Grace = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(cfg.Grace + 10*time.Second):
				t.Fatal("Run did not return after shutdown")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &testApp{App: app, URL: app.URL(), DB: cfg.DB, stop: stop}
}

// subscribe opens the extraterrestrials stream, waits until the hub has
// registered it, and delivers its events on a channel closed when it ends.
func (a *testApp) subscribe(t *testing.T) <-chan events.Message {
	t.Helper()
	before := a.hub.Clients()[live.ExtraterrestrialsStream]
	msgs := subscribe(t, a.URL)
	testwait.Until(t, 10*time.Second, "stream client registered", func() bool {
		return a.hub.Clients()[live.ExtraterrestrialsStream] > before
	})
	return msgs
}

// subscribe opens the event stream and delivers its events on a channel
// that is closed when the stream ends.
func subscribe(t *testing.T, url string) <-chan events.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/events?stream=extraterrestrials", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("event stream: %d", resp.StatusCode)
	}
	return eventstest.Messages(resp.Body, 1<<16)
}

// post POSTs an empty JSON request to url and fails t unless it answers
// 200; the body, trimmed.
func post(t *testing.T, url string) string {
	t.Helper()
	return strings.TrimSpace(body200(t, http.MethodPost, url))
}

// getBody GETs url and fails t unless it answers 200; the body.
func getBody(t *testing.T, url string) string {
	t.Helper()
	return body200(t, http.MethodGet, url)
}

// body200 sends an empty request (a POST's typed JSON) to url and fails t
// unless it answers 200; the body.
func body200(t *testing.T, method, url string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, body)
	}
	return string(body)
}

// seedDatabase migrates the database at target and adds n
// extraterrestrials to it, as `phonehome seed` does.
func seedDatabase(t *testing.T, target string, n int) {
	t.Helper()
	st := storetest.Open(t, target)
	if err := st.GenerateExtraterrestrials(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	st.Close()
}

var rowEvent = regexp.MustCompile(`(?s)^<tr id="extraterrestrial-(\d+)".*?<td class="num">(\d+)</td>`)

type call struct {
	attempt int
	status  string
}

// ended reports whether the call was the row's last.
func (c call) ended() bool { return finalStatus(c.status) }

// finalStatus reports whether a row with status s has ended: answered, or
// out of attempts.
func finalStatus(s string) bool { return s == "space_taxi_on_the_way" || s == "no_answer" }

// rowCall is the row and the call a row event shows; ok is false for any
// other event.
func rowCall(data string) (id int64, c call, ok bool) {
	sub := rowEvent.FindStringSubmatch(data)
	if sub == nil {
		return 0, call{}, false
	}
	id, _ = strconv.ParseInt(sub[1], 10, 64)
	attempt, _ := strconv.Atoi(sub[2])
	return id, call{attempt: attempt, status: statusOf(data)}, true
}

func statusOf(html string) string {
	switch {
	case strings.Contains(html, "Space taxi on the way"):
		return "space_taxi_on_the_way"
	case strings.Contains(html, "No answer"):
		return "no_answer"
	case strings.Contains(html, "Phoning home"):
		return "phoning_home"
	}
	return ""
}

// TestCampaignEndToEnd runs the seed's whole story on the real binary's
// wiring: Phone Home with no backoff and a fixed random source ends with
// every extraterrestrial home or out of attempts, and a stream client saw
// one event per attempt, in order per row.
func TestCampaignEndToEnd(t *testing.T) {
	app := startApp(t, Config{
		Backoff:    jobs.FixedBackoff(0),
		AnswerRate: 0.2,
		Rand:       rand.New(rand.NewPCG(2022, 6)),
	})
	msgs := app.subscribe(t)

	if got := post(t, app.URL+"/api/phone-home"); got != `{"enqueued":10}` {
		t.Fatalf("phone home: %s", got)
	}

	seen := map[int64][]call{}
	finished := 0
	deadline := time.After(30 * time.Second)
	for finished < 10 {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("stream ended early")
			}
			if m.Event != "" {
				continue // counts
			}
			id, c, ok := rowCall(m.Data)
			if !ok {
				t.Fatalf("unexpected event %q", m.Data)
			}
			seen[id] = append(seen[id], c)
			if c.ended() {
				finished++
			}
		case <-deadline:
			t.Fatalf("campaign did not finish: %d of 10 done; seen %v", finished, seen)
		}
	}

	ctx := context.Background()
	for id, calls := range seen {
		for i, c := range calls {
			if c.attempt != i+1 {
				t.Errorf("extraterrestrial %d: event %d is attempt %d, want %d (events %v)", id, i+1, c.attempt, i+1, calls)
			}
			last := i == len(calls)-1
			switch {
			case !last && c.status != "phoning_home":
				t.Errorf("extraterrestrial %d: attempt %d says %s before the end", id, c.attempt, c.status)
			case last && c.status == "no_answer" && c.attempt != 5:
				t.Errorf("extraterrestrial %d: no answer after %d attempts, want 5", id, c.attempt)
			}
		}
	}
	if err := app.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The database agrees with what the stream said, and every job is finished.
	st, err := store.Open(ctx, app.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, _, err := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	home := 0
	for _, et := range rows {
		calls := seen[et.ID]
		if len(calls) == 0 {
			t.Errorf("%s: no events", et.Name)
			continue
		}
		last := calls[len(calls)-1]
		if string(et.CommunicationStatus) != last.status || et.CommunicationAttempt != last.attempt {
			t.Errorf("%s: database %s/%d, stream %s/%d", et.Name, et.CommunicationStatus, et.CommunicationAttempt, last.status, last.attempt)
		}
		var state string
		if err := st.Reader.Get(&state, st.Rebind("SELECT state FROM jobs WHERE CAST(args ->> 'extraterrestrial_id' AS BIGINT) = ?"), et.ID); err != nil {
			t.Fatal(err)
		}
		want := map[store.Status]string{store.StatusSpaceTaxi: "completed", store.StatusNoAnswer: "discarded"}[et.CommunicationStatus]
		if state != want {
			t.Errorf("%s is %s but its job is %s", et.Name, et.CommunicationStatus, state)
		}
		if et.CommunicationStatus == store.StatusSpaceTaxi {
			home++
		}
	}
	t.Logf("%d of 10 got a space taxi", home)
}

// TestShutdownWithStreamsAndRunningJobs stops the server mid-campaign with a
// stream client connected: Run returns within the grace period, the client's
// stream ends, and no job is left executing.
func TestShutdownWithStreamsAndRunningJobs(t *testing.T) {
	path := appDatabaseFor(t)
	seedDatabase(t, path, 3000)

	const grace = 3 * time.Second
	app := startApp(t, Config{DB: path, Backoff: jobs.FixedBackoff(0), AnswerRate: 0, Grace: grace})
	msgs := app.subscribe(t)
	if got := post(t, app.URL+"/api/phone-home"); got != `{"enqueued":3000}` {
		t.Fatalf("phone home: %s", got)
	}
	// Wait until calls are being made, then stop.
	select {
	case <-msgs:
	case <-time.After(10 * time.Second):
		t.Fatal("no call started")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- app.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(grace + 5*time.Second):
		t.Fatal("shutdown took longer than the grace period")
	}
	// The stream client was disconnected, not left hanging.
	ended := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-msgs:
		case <-ended:
			t.Fatal("stream still open after shutdown")
		}
	}

	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var executing, finished int
	if err := st.Reader.Get(&executing, "SELECT count(*) FROM jobs WHERE state = 'executing'"); err != nil {
		t.Fatal(err)
	}
	if err := st.Reader.Get(&finished, "SELECT count(*) FROM jobs WHERE state = 'discarded'"); err != nil {
		t.Fatal(err)
	}
	if executing != 0 {
		t.Errorf("%d jobs left executing after a graceful shutdown", executing)
	}
	t.Logf("stopped with %d of 3000 calls finished", finished)
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "cli.db")
	// Where a bad flag is given with it, a command that read the flag
	// wrongly fails at once, for want of the folder, instead of serving.
	missing := filepath.Join(dir, "no", "such", "x.db")
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database\n"), 200), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "unknown flag", args: []string{"-nope"}, wantCode: 2, wantStderr: "flag provided but not defined: -nope"},
		{name: "unknown flag after serve", args: []string{"serve", "-nope"}, wantCode: 2, wantStderr: "-nope"},
		{name: "answer rate out of range", args: []string{"-answer-rate", "2"}, wantCode: 2, wantStderr: "-answer-rate: 2 is not a probability"},
		{name: "bad backoff", args: []string{"-backoff", "soon"}, wantCode: 2, wantStderr: "-backoff: invalid backoff \"soon\""},
		{name: "bad poll", args: []string{"-poll", "0s"}, wantCode: 2, wantStderr: "-poll"},
		{name: "bad addr", args: []string{"-addr", "8080"}, wantCode: 2, wantStderr: "-addr"},
		{name: "addr port out of range", args: []string{"-addr", "127.0.0.1:99999", "-db", missing}, wantCode: 2, wantStderr: `-addr "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{name: "addr port not a number", args: []string{"-addr", "127.0.0.1:abc", "-db", missing}, wantCode: 2, wantStderr: `-addr "127.0.0.1:abc": port "abc" is not a number`},
		{name: "addr port a service name", args: []string{"-addr", "127.0.0.1:http", "-db", missing}, wantCode: 2, wantStderr: `port "http" is not a number`},
		{name: "addr port negative", args: []string{"-addr", "127.0.0.1:-1", "-db", missing}, wantCode: 2, wantStderr: `port "-1" is not a number`},
		{name: "addr port missing", args: []string{"-addr", "127.0.0.1:", "-db", missing}, wantCode: 2, wantStderr: "-addr \"127.0.0.1:\": the port is missing"},
		{name: "addr host not an IP", args: []string{"-addr", "999.1.1.1:18090", "-db", missing}, wantCode: 2, wantStderr: `host "999.1.1.1" is neither an IP address nor a host name`},
		{name: "addr host not a name", args: []string{"-addr", "my_host!:8080", "-db", missing}, wantCode: 2, wantStderr: `host "my_host!" is neither`},
		{name: "addr from env", args: []string{"-db", missing}, env: map[string]string{"PHONEHOME_ADDR": "127.0.0.1:70000"}, wantCode: 2, wantStderr: "-addr"},
		{name: "addr IPv6 loopback", args: []string{"-addr", "[::1]:0", "-db", missing}, wantCode: 1},
		{name: "addr host name", args: []string{"-addr", "localhost:0", "-db", missing}, wantCode: 1, wantStderr: "does not exist"},
		{name: "addr beyond loopback without a token", args: []string{"-addr", "0.0.0.0:8080", "-db", missing}, wantCode: 2, wantStderr: "set -token"},
		{name: "empty db", args: []string{"-db", ""}, wantCode: 2, wantStderr: "-db: must not be empty"},
		{name: "empty db from env", args: []string{"serve"}, env: map[string]string{"PHONEHOME_DB": ""}, wantCode: 2, wantStderr: "-db: must not be empty"},
		{name: "empty db for migrate", args: []string{"migrate", "-db", ""}, wantCode: 2, wantStderr: "-db"},
		{name: "empty db for seed", args: []string{"seed", "-db", ""}, wantCode: 2, wantStderr: "-db"},
		{name: "empty db for reset", args: []string{"reset", "-db", ""}, wantCode: 2, wantStderr: "-db"},
		{name: "too many ets", args: []string{"seed", "-db", missing, "-ets", "10000001"}, wantCode: 2, wantStderr: "-ets: 10000001 is over the most one seed adds, 10,000,000"},
		{name: "too many pets", args: []string{"seed", "-db", missing, "-pets", "99999999999999"}, wantCode: 2, wantStderr: "-pets: 99999999999999 is over"},
		{name: "db is a folder", args: []string{"-db", dir, "-addr", "127.0.0.1:0"}, wantCode: 1, wantStderr: dir + " is a folder, not a database file"},
		{name: "db is a folder for migrate", args: []string{"migrate", "-db", dir}, wantCode: 1, wantStderr: "is a folder, not a database file"},
		{name: "db is a folder for reset", args: []string{"reset", "-db", dir}, wantCode: 1, wantStderr: "is a folder, not a database file"},
		{name: "bad env", args: []string{"-db", db}, env: map[string]string{"PHONEHOME_ANSWER_RATE": "lots"}, wantCode: 2, wantStderr: "PHONEHOME_ANSWER_RATE"},
		{name: "unknown command", args: []string{"launch"}, wantCode: 2, wantStderr: `unknown command "launch"`},
		{name: "stray argument", args: []string{"seed", "-db", db, "extra"}, wantCode: 2, wantStderr: `unexpected argument "extra"`},
		{name: "negative ets", args: []string{"seed", "-db", db, "-ets", "-5"}, wantCode: 2, wantStderr: "-ets"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "phonehome "},
		{name: "migrate", args: []string{"migrate", "-db", db}, wantCode: 0, wantStdout: "schema at version " + strconv.Itoa(int(store.LatestSchemaVersion()))},
		{name: "seed", args: []string{"seed", "-db", db}, wantCode: 0, wantStdout: "added 10 seed extraterrestrials"},
		{name: "seed again adds none", args: []string{"seed", "-db", db}, wantCode: 0, wantStdout: "added 0 seed"},
		{name: "seed generated", args: []string{"seed", "-db", db, "-ets", "500"}, wantCode: 0, wantStdout: "added 500 extraterrestrials"},
		{name: "db from env", args: []string{"seed", "-ets", "5"}, env: map[string]string{"PHONEHOME_DB": db}, wantCode: 0, wantStdout: db + ": added 5"},
		{name: "seed pets", args: []string{"seed", "-db", db, "-pets", "300"}, wantCode: 0, wantStdout: "added 300 pets"},
		{name: "negative pets", args: []string{"seed", "-db", db, "-pets", "-1"}, wantCode: 2, wantStderr: "-pets"},
		{name: "bad pet tick", args: []string{"-pet-tick", "0s"}, wantCode: 2, wantStderr: "-pet-tick"},
		{name: "removed persist interval", args: []string{"-persist-every", "60s"}, wantCode: 2, wantStderr: "-persist-every"},
		{name: "bad sync", args: []string{"-sync", "off"}, wantCode: 2, wantStderr: "-sync"},
		{name: "tls cert without key", args: []string{"-tls-cert", "cert.pem"}, wantCode: 2, wantStderr: "-tls-key"},
		{name: "allow-host with a port", args: []string{"-allow-host", "example.com:80"}, wantCode: 2, wantStderr: "-allow-host"},
		{name: "reset", args: []string{"reset", "-db", db}, wantCode: 0, wantStdout: "reset; added 10 seed extraterrestrials and 10 pets"},
		{name: "not a database", args: []string{"migrate", "-db", notDB}, wantCode: 1, wantStderr: "not a SQLite database"},
		{name: "missing folder", args: []string{"migrate", "-db", missing}, wantCode: 1, wantStderr: "database folder " + filepath.Dir(missing) + " does not exist: create it"},
		{name: "missing folder for serve", args: []string{"-db", missing, "-addr", "127.0.0.1:0"}, wantCode: 1, wantStderr: "or choose another -db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCLI(tt.args...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("phonehome %v: exit %d\nstdout %q\nstderr %q\nwant exit %d, stdout ∋ %q, stderr ∋ %q",
					tt.args, code, stdout, stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
			if code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("error is more than one line: %q", stderr)
			}
		})
	}
	// Nothing was made beside a folder given as the file, nor in a
	// missing folder.
	for _, p := range []string{cluster.LockFile(dir), filepath.Dir(missing)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was made", p)
		}
	}
	// reset left exactly the seed rows.
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts, _ := st.CountByStatus(context.Background())
	if counts.Total() != 10 {
		t.Errorf("after reset: %d extraterrestrials, want 10", counts.Total())
	}
	if pc, err := st.CountPets(context.Background()); err != nil || pc.Alive+pc.Dead != 10 {
		t.Errorf("after reset: pets %+v (%v), want the 10 seed pets", pc, err)
	}
}

func TestServeRefusesPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := runCLI("-db", filepath.Join(t.TempDir(), "x.db"), "-addr", ln.Addr().String())
	if code != 1 || !strings.Contains(stderr, "listen on "+ln.Addr().String()) || !strings.Contains(stderr, "is another phonehome running?") ||
		strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// An address no interface of this machine has (TEST-NET-1) is no sign of
// another phonehome: the hint says what is wrong instead.
func TestServeExplainsAnAddressNotOfThisMachine(t *testing.T) {
	code, _, stderr := runCLI("-db", filepath.Join(t.TempDir(), "x.db"), "-addr", "192.0.2.1:0", "-token", "0123456789abcdef")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1] // a warning about plain HTTP beyond loopback comes first
	if code != 1 || !strings.Contains(last, "listen on 192.0.2.1:0") || !strings.Contains(last, "no network interface of this machine has that address") ||
		strings.Contains(last, "another phonehome") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestEnvNames(t *testing.T) {
	for flag, want := range map[string]string{"addr": "PHONEHOME_ADDR", "answer-rate": "PHONEHOME_ANSWER_RATE", "allow-host": "PHONEHOME_ALLOW_HOST"} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}
