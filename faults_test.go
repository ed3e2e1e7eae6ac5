package main

// Process-level fault tests: they build the real binary once, run it on a
// free port over a database in a temp folder, and kill it with SIGKILL, break
// its database, or make its writes fail, then check what is in the file.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

// builtBinary is one build of the binary under test.
type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// binaries are the plain build and, when the tests run with -race, the
// race-detecting one.
var binaries = map[bool]*builtBinary{false: {}, true: {}}

// phonehomeBinary builds the real binary once per test run: with -race when
// the tests run with it (a data race in the server then fails its run),
// unless plain is set. It goes into the folder of the test binary, which
// `go test` removes afterwards, or into a temp folder when that is not
// writable.
func phonehomeBinary(t *testing.T, plain bool) string {
	t.Helper()
	race := raceEnabled() && !plain
	b := binaries[race]
	b.once.Do(func() {
		dir := ""
		if exe, err := os.Executable(); err == nil && strings.Contains(exe, "go-build") {
			dir = filepath.Dir(exe)
		}
		if dir == "" || !dirWritable(dir) {
			var err error
			if dir, err = os.MkdirTemp("", "phonehome-faults-"); err != nil {
				b.err = err
				return
			}
		}
		b.path = filepath.Join(dir, "phonehome-under-test")
		args := []string{"build", "-o", b.path}
		if race {
			b.path += "-race"
			args = []string{"build", "-race", "-o", b.path}
		}
		cmd := exec.Command("go", append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// raceEnabled reports whether the tests run with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

func dirWritable(dir string) bool {
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// runFaultBinary runs a command of the binary to its end.
func runFaultBinary(t *testing.T, bin string, cred *syscall.Credential, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = appenv.Clean()
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	failOnDataRace(t, "phonehome "+strings.Join(args, " "), errOut.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("phonehome %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// lockedBuffer collects a process's stderr for the test to read meanwhile.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) add(line string) {
	l.mu.Lock()
	l.b.WriteString(line)
	l.b.WriteByte('\n')
	l.mu.Unlock()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// faultServer is one run of `phonehome serve`.
type faultServer struct {
	t       *testing.T
	cmd     *exec.Cmd
	URL     string
	stderr  *lockedBuffer
	exited  chan struct{}
	waitErr error
	// raceChecked: its stderr was searched for data races, once it had all
	// of it.
	raceChecked bool
}

var listeningURL = regexp.MustCompile(`msg="phonehome is listening" url=(http://\S+)`)

// startFaultServer runs the binary's server on a free port of 127.0.0.1 over db
// and waits until it listens. The test's end kills it if it still runs.
func startFaultServer(t *testing.T, bin, db string, args ...string) *faultServer {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "-db", db, "-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = appenv.Clean()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &faultServer{t: t, cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		// Every byte is kept, however long its line: a data race report
		// must not be lost.
		r := bufio.NewReaderSize(pipe, 64*1024)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				line = strings.TrimSuffix(line, "\n")
				s.stderr.add(line)
				if m := listeningURL.FindStringSubmatch(line); m != nil {
					select {
					case urls <- m[1]:
					default:
					}
				}
			}
			if err != nil {
				break
			}
		}
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
		s.checkRaces()
	})
	select {
	case s.URL = <-urls:
	case <-s.exited:
		s.checkRaces()
		t.Fatalf("phonehome serve exited before listening: %v\n%s", s.waitErr, s.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("phonehome serve did not listen within 60 s\n%s", s.stderr)
	}
	return s
}

// checkRaces fails the test if the exited process reported a data race;
// it looks once, when the whole of stderr has been read.
func (s *faultServer) checkRaces() {
	s.t.Helper()
	if s.raceChecked {
		return
	}
	s.raceChecked = true
	failOnDataRace(s.t, "phonehome "+strings.Join(s.cmd.Args[1:], " "), s.stderr.String())
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *faultServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill: %v", err)
	}
	<-s.exited
	s.checkRaces()
}

// stop sends SIGTERM and expects a clean exit within the deadline.
func (s *faultServer) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("no exit within 60 s of SIGTERM\n%s", s.stderr)
	}
	s.checkRaces()
	if s.waitErr != nil {
		s.t.Errorf("exit after SIGTERM: %v\n%s", s.waitErr, lastLines(s.stderr.String(), 20))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var faultClient = &http.Client{Timeout: 30 * time.Second}

// faultCall makes one request and returns the status and body.
func faultCall(t *testing.T, c *http.Client, method, url, contentType, body string) (int, string) {
	t.Helper()
	status, data, err := tryFaultCall(c, method, url, contentType, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, data
}

func tryFaultCall(c *http.Client, method, url, contentType, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), err
}

// openFaultDB opens the database (a file or a URL) for the test's own
// queries, beside the server.
func openFaultDB(t *testing.T, target string) *sqlx.DB {
	t.Helper()
	return openTestDB(t, target)
}

func dbCount(t *testing.T, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Get(&n, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// waitUntil polls cond until it holds, failing the test at the deadline with
// cond's last description of what it saw.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%s)", what, timeout, saw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faultSeed is the seed of a test's random choices: PHONEHOME_FAULT_SEED
// repeats a run; otherwise a new one, logged.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PHONEHOME_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PHONEHOME_FAULT_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("random seed %d (repeat with PHONEHOME_FAULT_SEED=%d)", seed, seed)
	return seed
}

// jobErrors is a job's errors column.
type jobErrors []struct {
	Attempt int    `json:"attempt"`
	Error   string `json:"error"`
}

// TestFaultKillMidCampaign kills the server with SIGKILL several times at
// random moments of a 10,000-extraterrestrial campaign, restarting it each
// time, and checks the file once it is done: every extraterrestrial is home
// or out of attempts, exactly one job each, finished, whose attempts,
// errors and state agree with its row. The server is the plain build even
// under -race (with the race detector 10,000 calls take three minutes);
// under -race a 1,000-extraterrestrial campaign with 3 kills runs on the
// race-built server too, whose every run must report no data race.
func TestFaultKillMidCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10,000-extraterrestrial campaign with kills and restarts of the real binary; not with -short")
	}
	t.Run("10000 calls, plain server", func(t *testing.T) { killMidCampaign(t, 10000, 5, true) })
	if raceEnabled() {
		t.Run("1000 calls, race-built server", func(t *testing.T) { killMidCampaign(t, 1000, 3, false) })
	}
}

// killMidCampaign is TestFaultKillMidCampaign with total extraterrestrials
// and kills kills, on the plain or the race-built server.
func killMidCampaign(t *testing.T, total, kills int, plain bool) {
	bin := phonehomeBinary(t, plain)
	path := faultDatabaseFor(t, "campaign.db")
	if code, _, stderr := runFaultBinary(t, bin, nil, "seed", "-db", path, "-ets", strconv.Itoa(total)); code != 0 {
		t.Fatalf("seed: exit %d: %s", code, stderr)
	}
	rng := rand.New(rand.NewPCG(faultSeed(t), 1))
	// Kill when this many calls have finished: random, increasing, in the
	// first 85 % of the campaign (a kill may come before any has).
	var at []int
	for range kills {
		at = append(at, rng.IntN(total*85/100))
	}
	slices.Sort(at)

	db := openFaultDB(t, path)
	finished := func() int {
		return dbCount(t, db, "SELECT count(*) FROM jobs WHERE state IN ('completed', 'discarded', 'cancelled')")
	}
	args := []string{"-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms", "-grace", "5s"}
	srv := startFaultServer(t, bin, path, args...)
	start := time.Now()
	if status, body := faultCall(t, faultClient, "POST", srv.URL+"/api/phone-home", "", ""); status != 200 || strings.TrimSpace(body) != fmt.Sprintf(`{"enqueued":%d}`, total) {
		t.Fatalf("phone home: %d %s", status, body)
	}
	// An interrupted attempt is a job executing in the killed process; one
	// that a later kill finds still waiting for its rescue counts once.
	interrupted := map[string]bool{}
	for i, n := range at {
		waitUntil(t, 3*time.Minute, fmt.Sprintf("kill %d: %d calls finished", i+1, n), func() (bool, string) {
			f := finished()
			return f >= n, fmt.Sprintf("%d finished", f)
		})
		srv.kill()
		var executing []string
		if err := db.Select(&executing, "SELECT id || ' ' || attempted_by FROM jobs WHERE state = 'executing'"); err != nil {
			t.Fatal(err)
		}
		before := len(interrupted)
		for _, e := range executing {
			interrupted[e] = true
		}
		t.Logf("%s: kill %d after %d of %d calls finished: %d attempts interrupted (%d executing, waiting for their rescue)",
			time.Since(start).Round(time.Millisecond), i+1, finished(), total, len(interrupted)-before, len(executing))
		srv = startFaultServer(t, bin, path, args...)
	}
	// The interrupted attempts are rescued once their process's heartbeat
	// is stale, so the last ones may take a minute or so.
	waitUntil(t, 4*time.Minute, "the campaign to finish", func() (bool, string) {
		f := finished()
		return f == total, fmt.Sprintf("%d of %d finished", f, total)
	})
	t.Logf("%s: the campaign is finished", time.Since(start).Round(time.Millisecond))
	// Nothing runs anymore, but a stray claim would show in the checks below.
	if status, _ := faultCall(t, faultClient, "GET", srv.URL+"/api/extraterrestrials?limit=1", "", ""); status != 200 {
		t.Errorf("after the campaign: GET /api/extraterrestrials = %d", status)
	}
	srv.stop()
	tally := checkCampaign(t, db, total)
	if tally.rescued != len(interrupted) {
		t.Errorf("%d rescues recorded for %d attempts interrupted by the kills", tally.rescued, len(interrupted))
	}
	t.Logf("%d kills survived: %d calls made, %d attempts interrupted and rescued, none lost or counted twice; %d home, %d no answer after %d attempts",
		kills, tally.attempts, len(interrupted), tally.home, tally.noAnswer, 5)
}

// campaignTally is what a finished campaign did.
type campaignTally struct{ attempts, rescued, home, noAnswer int }

// checkCampaign checks a finished campaign of total extraterrestrials in
// the database, with the server gone: every extraterrestrial is home or out
// of attempts, exactly one job each, finished, whose attempts, errors and
// state agree with its row (an attempt run twice or lost shows there), and
// the job counts agree with the jobs.
func checkCampaign(t *testing.T, db *sqlx.DB, total int) campaignTally {
	t.Helper()
	// Each row beside its jobs.
	type jobRow struct {
		ET          int64  `db:"et"`
		State       string `db:"state"`
		Attempt     int    `db:"attempt"`
		MaxAttempts int    `db:"max_attempts"`
		Rescues     int    `db:"rescues"`
		Errors      string `db:"errors"`
	}
	var jobRows []jobRow
	if err := db.Select(&jobRows, `SELECT coalesce(CAST(args ->> 'extraterrestrial_id' AS BIGINT), 0) AS et, state, attempt,
			max_attempts, rescues, errors FROM jobs WHERE kind = 'speak_and_spell'`); err != nil {
		t.Fatal(err)
	}
	jobsOf := map[int64][]jobRow{}
	for _, j := range jobRows {
		jobsOf[j.ET] = append(jobsOf[j.ET], j)
	}
	var ets []struct {
		ID      int64      `db:"id"`
		Status  sql0String `db:"communication_status"`
		Attempt int        `db:"communication_attempt"`
		At      *int64     `db:"last_communication_attempt_at"`
	}
	if err := db.Select(&ets, "SELECT id, communication_status, communication_attempt, last_communication_attempt_at FROM extraterrestrials ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID          int64
		Status      sql0String
		Attempt     int
		At          *int64
		Jobs        int
		JobState    string
		JobAttempt  int
		MaxAttempts int
		Rescues     int
		Errors      string
	}
	var rows []row
	for _, e := range ets {
		r := row{ID: e.ID, Status: e.Status, Attempt: e.Attempt, At: e.At, Jobs: len(jobsOf[e.ID]), Errors: "[]"}
		if js := jobsOf[e.ID]; len(js) > 0 {
			j := js[0]
			r.JobState, r.JobAttempt, r.MaxAttempts, r.Rescues, r.Errors = j.State, j.Attempt, j.MaxAttempts, j.Rescues, j.Errors
		}
		rows = append(rows, r)
	}
	if len(rows) != total {
		t.Fatalf("%d extraterrestrials, want %d", len(rows), total)
	}
	if n := dbCount(t, db, "SELECT count(*) FROM jobs"); n != total {
		t.Errorf("%d jobs, want exactly one per extraterrestrial (%d)", n, total)
	}
	if n := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'discarded')"); n != 0 {
		t.Errorf("%d jobs left unfinished (executing, available, scheduled, retryable or cancelled)", n)
	}
	var home, noAnswer, attempts, rescued, bad int
	for _, r := range rows {
		problem := func(format string, args ...any) {
			bad++
			if bad <= 20 {
				t.Errorf("extraterrestrial %d (%s/%d, job %s/%d, rescues %d, errors %s): %s", r.ID, r.Status, r.Attempt,
					r.JobState, r.JobAttempt, r.Rescues, r.Errors, fmt.Sprintf(format, args...))
			}
		}
		attempts += r.JobAttempt
		rescued += r.Rescues
		if r.Jobs != 1 {
			problem("%d jobs, want 1", r.Jobs)
			continue
		}
		switch {
		case r.Status == "space_taxi_on_the_way" && r.JobState == "completed":
			home++
		case r.Status == "no_answer" && r.JobState == "discarded" && r.Attempt == r.MaxAttempts:
			noAnswer++
		default:
			problem("status and job state disagree, or no answer before the last attempt")
		}
		if r.Attempt != r.JobAttempt {
			problem("the row counts %d attempts, its job %d", r.Attempt, r.JobAttempt)
		}
		if r.At == nil {
			problem("no time of the last attempt")
		}
		var errs jobErrors
		if err := json.Unmarshal([]byte(r.Errors), &errs); err != nil {
			problem("errors column: %v", err)
			continue
		}
		// Every failed attempt has exactly one "no answer"; interruptions
		// are noted once per rescue and count no attempt.
		var failed []int
		interruptions := 0
		for _, e := range errs {
			switch {
			case e.Error == "no answer":
				failed = append(failed, e.Attempt)
			case strings.HasPrefix(e.Error, "interrupted"):
				interruptions++
			default:
				problem("unexpected error %q", e.Error)
			}
		}
		wantFailed := r.JobAttempt - 1
		if r.JobState == "discarded" {
			wantFailed = r.JobAttempt
		}
		want := make([]int, wantFailed)
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(failed, want) {
			problem("failed attempts recorded %v, want %v", failed, want)
		}
		if interruptions != r.Rescues {
			problem("%d interruptions noted for %d rescues", interruptions, r.Rescues)
		}
	}
	checkJobCounts(t, db)
	return campaignTally{attempts: attempts, rescued: rescued, home: home, noAnswer: noAnswer}
}

// sql0String is a TEXT column that may be NULL (read as "").
type sql0String string

func (s *sql0String) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s = ""
	case string:
		*s = sql0String(v)
	case []byte:
		*s = sql0String(v)
	default:
		return fmt.Errorf("sql0String: %T", v)
	}
	return nil
}

// checkJobCounts compares the engine's per-queue, per-state counts (kept by
// triggers, when the schema has them) with the jobs table.
func checkJobCounts(t *testing.T, db *sqlx.DB) {
	t.Helper()
	if !slices.Contains(tableNames(t, db), "job_counts") {
		return
	}
	// Summed: on PostgreSQL job_counts is a ledger of deltas.
	if n := dbCount(t, db, `SELECT count(*) FROM (
			`+ledgerSums["job_counts"]+`
			EXCEPT SELECT queue, state, count(*) FROM jobs GROUP BY queue, state) AS d`); n != 0 {
		t.Errorf("job_counts disagrees with the jobs table in %d (queue, state) pairs", n)
	}
	if n := dbCount(t, db, `SELECT count(*) FROM (
			SELECT queue, state, count(*) FROM jobs GROUP BY queue, state
			EXCEPT SELECT queue, state, sum(n) FROM job_counts GROUP BY queue, state) AS d`); n != 0 {
		t.Errorf("job_counts misses %d (queue, state) pairs of the jobs table", n)
	}
}

// petAnswer is a pet as the API answers it.
type petAnswer struct {
	ID      int64     `json:"id"`
	Name    string    `json:"name"`
	Species string    `json:"species"`
	Age     int       `json:"age"`
	Hunger  int       `json:"hunger"`
	Alive   bool      `json:"alive"`
	BornAt  time.Time `json:"born_at"`
}

// TestFaultKillLivePet adopts and feeds pets through the JSON API while the
// server is killed with SIGKILL and restarted, several times. Every answer
// is the action's success (201, 200) or a connection cut by the kill; an
// adoption answered 201 is in the file with its name, species and birth;
// every feed answered 200 lowered the hunger the rules give at its tick by
// pets.FeedAmount, and the file holds the last one's hunger (or that of a
// cut feed made after it). Actions cut by a kill may or may not be in the
// file, but nothing else is. The pets live on: older, feedable, their
// page's stream live.
func TestFaultKillLivePet(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the real binary; not with -short")
	}
	const (
		kills = 3
		tick  = 100 * time.Millisecond
	)
	bin := phonehomeBinary(t, false)
	path := faultDatabaseFor(t, "pets.db")
	rng := rand.New(rand.NewPCG(faultSeed(t), 2))
	args := []string{"-pet-tick", tick.String(), "-poll", "50ms"}
	srv := startFaultServer(t, bin, path, args...)

	jar, _ := cookiejar.New(nil)
	// Its own connections, dropped after each kill: a connection to the
	// killed server must not be reused for the next one.
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar, Transport: &http.Transport{}}
	// One keeper for every request: its cookie comes with the form.
	if status, _ := faultCall(t, client, "GET", srv.URL+"/pets/new", "", ""); status != 200 {
		t.Fatalf("GET /pets/new: %d", status)
	}
	u, _ := http.NewRequest("GET", srv.URL, nil)
	var keeperID string
	for _, c := range jar.Cookies(u.URL) {
		if c.Name == "phonehome_keeper" {
			keeperID = c.Value
		}
	}
	if keeperID == "" {
		t.Fatal("no keeper cookie")
	}

	ledger := newPetLedger(tick)
	species := []string{"cat", "dog", "fish", "fox", "rabbit", "turtle", "crab", "owl", "phoenix"}
	// feed feeds a pet and records what came of it; false when the answer
	// was neither 200 nor a cut the kill explains.
	feed := func(round *killRound, id int64) bool {
		res := round.call(client, "POST", fmt.Sprintf("%s/api/pets/%d/feed", round.base, id), "", "")
		var p petAnswer
		switch {
		case res.err != nil && res.how == refused:
			ledger.wasRefused()
			return true
		case res.err != nil && res.how == cut:
			ledger.fed(id, petTry{sent: res.sent, done: res.done})
			return true
		case res.err != nil:
			t.Errorf("feed pet %d: %v (not caused by a kill)", id, res.err)
		case res.status != 200:
			t.Errorf("feed pet %d: %d %s, want 200", id, res.status, res.data)
		case json.Unmarshal([]byte(res.data), &p) != nil || p.ID != id || !p.Alive:
			t.Errorf("feed pet %d answered 200 with %q", id, res.data)
		default:
			ledger.fed(id, petTry{sent: res.sent, done: res.done, acked: true, hunger: p.Hunger, age: p.Age})
			return true
		}
		return false
	}
	// stopped counts the workers that met a failure and stopped.
	var stopped atomic.Int32
	load := func(ctx context.Context, round *killRound, worker int, r *rand.Rand) {
		for n := 0; ctx.Err() == nil; n++ {
			if id := ledger.pick(worker, r); id != 0 {
				if !feed(round, id) {
					stopped.Add(1)
					return
				}
				continue
			}
			// Some names end in a space, which the server trims.
			asked := fmt.Sprintf("Crashy %d-%d-%d %s", round.n, worker, n, strings.Repeat("z", r.IntN(20)))
			name := strings.TrimSpace(asked)
			sp := species[r.IntN(len(species))]
			body := fmt.Sprintf(`{"name":%q,"species":%q}`, asked, sp)
			res := round.call(client, "POST", round.base+"/api/pets", "application/json", body)
			var p petAnswer
			switch {
			case res.err != nil && res.how == refused:
				ledger.wasRefused()
				continue
			case res.err != nil && res.how == cut:
				ledger.adoptionCut(name, sp, res.sent, res.done)
				continue
			case res.err != nil:
				t.Errorf("adopt %q: %v (not caused by a kill)", name, res.err)
			case res.status != 201:
				t.Errorf("adopt %q: %d %s, want 201", name, res.status, res.data)
			case json.Unmarshal([]byte(res.data), &p) != nil:
				t.Errorf("adopt answered 201 with %q", res.data)
			case p.Name != name || p.Species != sp || p.Hunger != pets.NewbornHunger || p.Age != 0 || !p.Alive:
				t.Errorf("adopt %q (%s) answered %+v: not a newborn %s of that name", name, sp, p, sp)
			default:
				ledger.adopted(worker, p, res.sent, res.done)
				continue
			}
			stopped.Add(1)
			return
		}
	}
	acked := func() int {
		a, f := ledger.acked()
		return a + f
	}
	for k := range kills {
		round := &killRound{n: k + 1, base: srv.URL}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 4 {
			r := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			wg.Go(func() { load(ctx, round, w, r) })
		}
		// Kill at a random moment while requests are in flight. The workers
		// are stopped before the test ends on a failure: they report to t.
		target := acked() + 20 + rng.IntN(400)
		for deadline := time.Now().Add(time.Minute); acked() < target && stopped.Load() == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("round %d: %d acknowledged actions: not within a minute (%d acknowledged)", k+1, target, acked())
			}
		}
		round.killing.Store(true)
		srv.kill()
		round.dead.Store(true)
		cancel()
		wg.Wait()
		client.CloseIdleConnections()
		if stopped.Load() > 0 {
			t.FailNow() // the workers said why
		}
		adoptions, feeds := ledger.acked()
		t.Logf("kill %d after %d adoptions and %d feeds acknowledged", k+1, adoptions, feeds)
		srv = startFaultServer(t, bin, path, args...)
	}

	// Pets resume: a pet adopted before the first kill is older, alive,
	// its keeper can still feed it, and its page's stream is live.
	first := ledger.first()
	waitUntil(t, 30*time.Second, fmt.Sprintf("pet %d older and alive after the kills", first.ID), func() (bool, string) {
		status, body := faultCall(t, client, "GET", fmt.Sprintf("%s/api/pets/%d", srv.URL, first.ID), "", "")
		var now petAnswer
		if status != 200 || json.Unmarshal([]byte(body), &now) != nil {
			t.Fatalf("GET pet %d after the kills: %d %s", first.ID, status, body)
		}
		if !now.Alive || now.Name != first.Name {
			t.Fatalf("pet %d after the kills: %+v; adopted as %+v", first.ID, now, first)
		}
		return now.Age > first.Age, fmt.Sprintf("age %d, adopted at age %d", now.Age, first.Age)
	})
	// No kill comes now: every error is a failure.
	feed(&killRound{base: srv.URL}, first.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/events?stream=pet-%d", srv.URL, first.ID), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("pet stream after the kills: %d", resp.StatusCode)
	}
	m, err := events.NewReader(resp.Body).Next()
	resp.Body.Close()
	if err != nil || !strings.Contains(m.Data, "pet") {
		t.Errorf("pet stream after the kills: %+v, %v", m, err)
	}
	srv.stop()

	db := openFaultDB(t, path)
	var stored []storedPet
	if err := db.Select(&stored, db.Rebind("SELECT id, name, species, born_at, hunger_base, hunger_at, died_at FROM pets WHERE keeper_id = ?"), keeperID); err != nil {
		t.Fatal(err)
	}
	got := ledger.check(t, stored)
	adoptions, feeds := ledger.acked()
	t.Logf("%d kills survived: %d adoptions and %d feeds acknowledged, none lost: %d pets stored; %s (%d adoptions and %d feeds were cut by the kills, %d requests refused while the server was down)",
		kills, adoptions, feeds, len(stored), got, len(ledger.cut), ledger.cutFeeds, ledger.refused)
}

// TestFaultStartup breaks the database or the port in the ways a person
// might, and expects one line on stderr that says what to do, a non-zero
// exit, and no stack trace. When run as root, which file permissions do not
// stop, the permission cases run the binary as user nobody (65534); if it
// cannot, they are skipped, but under CI=1 (where the suite runs as root)
// they fail instead.
func TestFaultStartup(t *testing.T) {
	bin := phonehomeBinary(t, false)
	// A folder anybody may enter, so that nobody can run the binary in it:
	// under a temp folder whose every parent others may enter.
	base, err := os.MkdirTemp(reachableTempRoot(), "phonehome-startup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if d != nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(base)
	})
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	var nobody *syscall.Credential
	noNobody := "" // why the permission cases cannot run as nobody
	if os.Geteuid() == 0 {
		t.Log("running as root: the permission cases run the binary as user nobody (65534)")
		nobody = &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}
		copied := filepath.Join(base, "phonehome")
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copied, data, 0o755); err != nil {
			t.Fatal(err)
		}
		bin = copied
		// A container may forbid changing user: then root cannot be
		// stopped by permissions, and those cases are skipped.
		cmd := exec.Command(bin, "version")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		if out, err := cmd.CombinedOutput(); err != nil {
			noNobody = fmt.Sprintf("cannot run %s as user nobody: %v %s", bin, err, bytes.TrimSpace(out))
			t.Log(noNobody)
			nobody = nil
		}
	}
	latest := int(store.LatestSchemaVersion())
	// migrated makes a folder (mode 0777) with a migrated database in it.
	migrated := func(t *testing.T, name string) (dir, db string) {
		dir = filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o777)
		db = filepath.Join(dir, "phonehome.db")
		if code, _, stderr := runFaultBinary(t, bin, nil, "migrate", "-db", db); code != 0 {
			t.Fatalf("migrate: %d %s", code, stderr)
		}
		for _, f := range []string{db, db + "-wal", db + "-shm"} {
			os.Chmod(f, 0o666)
		}
		return dir, db
	}
	sqlExec := func(t *testing.T, db, q string) {
		conn := openFaultDB(t, db)
		if _, err := conn.Exec(q); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name  string
		setup func(t *testing.T) (db string, args []string)
		cred  *syscall.Credential
		// permissions: the case relies on file permissions.
		permissions bool
		want        string // the line contains this
	}{
		{name: "database file unreadable", cred: nobody, permissions: true, want: "readable",
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "unreadable")
				os.Chmod(db, 0)
				return db, nil
			}},
		{name: "not a database", want: "not a SQLite database",
			setup: func(t *testing.T) (string, []string) {
				db := filepath.Join(base, "notes.db")
				os.WriteFile(db, bytes.Repeat([]byte("these are my notes, not a database\n"), 300), 0o666)
				return db, nil
			}},
		{name: "read-only folder, database in it", cred: nobody, permissions: true, want: "cannot write",
			setup: func(t *testing.T) (string, []string) {
				dir, db := migrated(t, "readonly-existing")
				os.Remove(db + "-wal")
				os.Remove(db + "-shm")
				os.Chmod(dir, 0o555)
				return db, nil
			}},
		{name: "read-only folder, new database", cred: nobody, permissions: true, want: "cannot",
			setup: func(t *testing.T) (string, []string) {
				dir := filepath.Join(base, "readonly-new")
				os.Mkdir(dir, 0o555)
				os.Chmod(dir, 0o555)
				return filepath.Join(dir, "phonehome.db"), nil
			}},
		{name: "dirty migration", want: "phonehome migrate -force " + strconv.Itoa(latest-1),
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "dirty")
				sqlExec(t, db, "UPDATE schema_migrations SET dirty = 1")
				return db, nil
			}},
		{name: "database from a newer version", want: "run a newer phonehome",
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "newer")
				sqlExec(t, db, fmt.Sprintf("UPDATE schema_migrations SET version = %d", latest+1))
				return db, nil
			}},
		{name: "port in use", want: "listen on " + busy.Addr().String(),
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "port")
				return db, []string{"-addr", busy.Addr().String()}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.permissions && os.Geteuid() == 0 && tt.cred == nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("CI=%s: this case must run, but the test runs as root, which permissions do not stop, and %s",
						os.Getenv("CI"), noNobody)
				}
				t.Skip("running as root, which permissions do not stop, and user nobody is not available: " + noNobody)
			}
			db, extra := tt.setup(t)
			for _, cmd := range [][]string{
				append([]string{"serve", "-db", db, "-addr", "127.0.0.1:0"}, extra...),
				{"migrate", "-db", db},
			} {
				if tt.name == "port in use" && cmd[0] == "migrate" {
					continue
				}
				code, _, stderr := runFaultBinary(t, bin, tt.cred, cmd...)
				line := strings.TrimSpace(stderr)
				switch {
				case code == 0:
					t.Errorf("phonehome %s: exit 0, want an error (stderr %q)", cmd[0], stderr)
				case strings.Count(line, "\n") > 0:
					t.Errorf("phonehome %s: more than one line on stderr:\n%s", cmd[0], stderr)
				case !strings.HasPrefix(line, "phonehome: "):
					t.Errorf("phonehome %s: the line does not start with \"phonehome: \": %q", cmd[0], line)
				case strings.Contains(line, "goroutine ") || strings.Contains(line, "panic") || strings.Contains(line, ".go:"):
					t.Errorf("phonehome %s: a stack trace or panic: %q", cmd[0], line)
				case !strings.Contains(line, tt.want):
					t.Errorf("phonehome %s: %q does not say %q", cmd[0], line, tt.want)
				default:
					t.Logf("phonehome %s: exit %d: %s", cmd[0], code, line)
				}
			}
		})
	}
}

// reachableTempRoot is the temp folder if every folder on its path lets
// others in (so user nobody can reach what the test makes in it), else
// /tmp, which does: a private $TMPDIR would stop nobody before the
// permissions under test do.
func reachableTempRoot() string {
	dir := os.TempDir()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// TestFaultWriteFailsDuringJobs makes every write of a job's outcome fail
// ("database or disk is full", raised by triggers planted in the file) while
// a campaign runs: nothing is half-written, the server keeps serving reads,
// and once writes succeed again every call is retried and recorded, its row
// and its job in agreement.
func TestFaultWriteFailsDuringJobs(t *testing.T) {
	const total = 200
	bin := phonehomeBinary(t, false)
	path := filepath.Join(t.TempDir(), "full.db")
	if code, _, stderr := runFaultBinary(t, bin, nil, "seed", "-db", path, "-ets", strconv.Itoa(total)); code != 0 {
		t.Fatalf("seed: exit %d: %s", code, stderr)
	}
	db := openFaultDB(t, path)
	// Claims (state → executing) still work; an outcome, or any change of
	// an extraterrestrial, fails as on a full disk.
	for _, q := range []string{
		"CREATE TABLE fault_injection (on_ INTEGER)",
		"INSERT INTO fault_injection VALUES (1)",
		`CREATE TRIGGER fault_outcome BEFORE UPDATE OF state ON jobs
			WHEN new.state != 'executing' AND EXISTS (SELECT 1 FROM fault_injection)
			BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		`CREATE TRIGGER fault_extraterrestrial BEFORE UPDATE ON extraterrestrials
			WHEN EXISTS (SELECT 1 FROM fault_injection)
			BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	srv := startFaultServer(t, bin, path, "-backoff", "0s", "-answer-rate", "1", "-poll", "50ms", "-grace", "5s")
	if status, body := faultCall(t, faultClient, "POST", srv.URL+"/api/phone-home", "", ""); status != 200 {
		t.Fatalf("phone home: %d %s", status, body)
	}
	// The engine keeps retrying the outcomes it cannot write.
	waitUntil(t, time.Minute, "outcome writes failing and retried", func() (bool, string) {
		retries := strings.Count(srv.stderr.String(), "will retry")
		executing := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state = 'executing'")
		return retries >= 3 && executing > 0, fmt.Sprintf("%d retries logged, %d executing", retries, executing)
	})
	executing := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state = 'executing'")
	// Reads are served meanwhile.
	for _, path := range []string{"/", "/api/extraterrestrials", "/extraterrestrials/rows", "/healthz", "/pets", "/api/pets"} {
		status, body := faultCall(t, faultClient, "GET", srv.URL+path, "", "")
		if status != 200 {
			t.Errorf("GET %s while writes fail: %d %s", path, status, body)
		}
	}
	// Nothing is half-written: no row changed, no job finished or erred.
	if n := dbCount(t, db, "SELECT count(*) FROM extraterrestrials WHERE communication_status IS NOT NULL OR communication_attempt != 0"); n != 0 {
		t.Errorf("%d extraterrestrials changed while every outcome write failed", n)
	}
	if n := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state NOT IN ('available', 'executing') OR errors != '[]'"); n != 0 {
		t.Errorf("%d jobs finished or erred while every outcome write failed", n)
	}
	if _, err := db.Exec("DELETE FROM fault_injection"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Minute, "every call recorded once writes succeed", func() (bool, string) {
		n := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state = 'completed'")
		return n == total, fmt.Sprintf("%d of %d completed", n, total)
	})
	srv.stop()

	var rows []struct {
		ID         int64  `db:"id"`
		Status     string `db:"communication_status"`
		Attempt    int    `db:"communication_attempt"`
		JobAttempt int    `db:"attempt"`
		Errors     string `db:"errors"`
	}
	if err := db.Select(&rows, `SELECT e.id, coalesce(e.communication_status, '') AS communication_status, e.communication_attempt,
			j.attempt, j.errors FROM extraterrestrials e JOIN jobs j ON json_extract(j.args, '$.extraterrestrial_id') = e.id`); err != nil {
		t.Fatal(err)
	}
	if len(rows) != total {
		t.Fatalf("%d rows with jobs, want %d", len(rows), total)
	}
	retried := 0
	for _, r := range rows {
		var errs jobErrors
		json.Unmarshal([]byte(r.Errors), &errs)
		if r.Status != "space_taxi_on_the_way" || r.Attempt != r.JobAttempt || len(errs) != r.JobAttempt-1 {
			t.Errorf("extraterrestrial %d: %s attempt %d; its job: attempt %d, errors %s", r.ID, r.Status, r.Attempt, r.JobAttempt, r.Errors)
		}
		for i, e := range errs {
			if e.Attempt != i+1 || !strings.Contains(e.Error, "full") {
				t.Errorf("extraterrestrial %d: error %d is %+v, want attempt %d failing on the full disk", r.ID, i, e, i+1)
			}
		}
		if r.JobAttempt > 1 {
			retried++
		}
	}
	t.Logf("%d calls were executing while writes failed; afterwards all %d recorded, %d of them on a later attempt",
		executing, total, retried)
}
