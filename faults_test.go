package main

// Process-level fault tests: they build the real binary once, run it on a
// free port over a database in a temp folder, and kill it with SIGKILL, break
// its database, or make its writes fail, then check what is in the file.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
)

// builtBinary is one build of the binary under test.
type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// skipShort skips t under -short: what, a long test's reason, is what it
// runs ("runs the real binary").
func skipShort(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip(what + "; not with -short")
	}
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
	db      string // the -db it serves
	URL     string
	stderr  *lockedBuffer
	exited  chan struct{}
	waitErr error
	// raceChecked: its stderr was searched for data races, once it had all
	// of it.
	raceChecked bool
}

var listeningURL = regexp.MustCompile(`msg="phonehome is listening" .*?\burl=(http://\S+)`)

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
	s := &faultServer{t: t, cmd: cmd, db: db, stderr: &lockedBuffer{}, exited: make(chan struct{})}
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
	s.waitSessionsGone()
}

// waitSessionsGone waits, on PostgreSQL, until the server notices that the
// killed process's sessions are gone. Until then a COMMIT the process sent
// just before it died may still be applied: the state read at once could
// miss it (say, jobs claimed by that commit, executing, to be rescued).
func (s *faultServer) waitSessionsGone() {
	s.t.Helper()
	if !store.IsPostgresURL(s.db) {
		return
	}
	db, err := sqlx.Open("pgx", s.db)
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	name := store.ApplicationName(s.cmd.Process.Pid)
	testwait.Until(s.t, time.Minute, "the killed process's database sessions gone", func() bool {
		var n int
		return db.Get(&n, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name) == nil && n == 0
	})
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
