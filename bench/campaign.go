package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/phonehome/phonehome/bench/internal/benchhttp"
	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/internal/syncbuf"
)

// The campaign scenario (issue 12): the Phone Home campaign end to end,
// through the real phonehome binary, against River draining as many no-op
// jobs in the same run.
//
// Each run seeds a fresh database with `phonehome seed -ets N`, starts
// `phonehome -answer-rate 1 -backoff 0s` on it, connects one client to the
// whole stream (/events?stream=extraterrestrials, read to the end, as curl
// would), POSTs /api/phone-home and times from just before the POST until
// the API says that no row is left outside space_taxi_on_the_way ("home").
// The time covers everything the app does for the campaign: the enqueue, the
// row update and the job's outcome in one transaction, the feed's rendering
// and publishing of every row, the counts, and the events written to the
// client. The database file is then checked read-only: every row home,
// every call's job completed.

// campaignPoll is the pause between two polls of the API: the resolution
// of the campaign's time (a 20,000-row campaign takes seconds).
const campaignPoll = 5 * time.Millisecond

// notHome are the statuses a row can be in before it is home, in the order
// a campaign empties them: a row leaves "never tried" (none) for good once
// its first call ends, and reaches no_answer only from phoning_home. Once
// none is empty it stays empty, and so on down the list (no POST is made
// meanwhile), so checking them one after the other, each until it is
// empty, proves that every row was home at the last check.
var notHome = []string{"none", "phoning_home", "no_answer"}

// appBinary is a phonehome binary built for the campaign scenario.
type appBinary struct {
	// Path is the executable.
	Path string
	// CPUProfileFlag says whether `serve` takes -cpuprofile FILE.
	CPUProfileFlag bool
}

// buildApp builds the phonehome module at root into dir (in its own module,
// with its own go.sum) and finds out which profiling it offers.
func buildApp(ctx context.Context, root, dir string) (appBinary, error) {
	bin := appBinary{Path: filepath.Join(dir, "phonehome")}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin.Path, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return bin, fmt.Errorf("go build in %s: %v: %s", root, err, out)
	}
	// "serve -h" prints the server's flags (and exits non-zero, as -h does).
	help, _ := exec.CommandContext(ctx, bin.Path, "serve", "-h").CombinedOutput()
	bin.CPUProfileFlag = bytes.Contains(help, []byte("-cpuprofile"))
	return bin, nil
}

// runCampaign runs the campaign once on a fresh database in dir with rows
// generated extraterrestrials. When profile is not empty the app writes
// its CPU profile there (its -cpuprofile flag).
func runCampaign(ctx context.Context, bin appBinary, dir string, rows int, profile string) (map[string]float64, error) {
	db, err := dbTarget(ctx, dir, "campaign")
	if err != nil {
		return nil, err
	}
	seed := exec.CommandContext(ctx, bin.Path, "seed", "-db", db, "-ets", strconv.Itoa(rows))
	seed.Env = appenv.Clean()
	if out, err := seed.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("seed: %v: %s", err, out)
	}
	total, err := countOn(ctx, db, "SELECT count(*) FROM extraterrestrials")
	if err != nil {
		return nil, err
	}
	if total < rows {
		return nil, fmt.Errorf("seed -ets %d left %d rows", rows, total)
	}

	addr, err := benchhttp.FreeAddr()
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	// The flags, every other setting at its default (log level info:
	// a completed call and a request log at debug, so nothing per row).
	args := []string{"-db", db, "-addr", addr, "-answer-rate", "1", "-backoff", "0s"}
	if profile != "" {
		if !bin.CPUProfileFlag {
			return nil, errors.New("-app-cpuprofile: this phonehome has no -cpuprofile flag (see bench/README.md)")
		}
		args = append(args, "-cpuprofile", profile)
	}
	srv := exec.Command(bin.Path, args...)
	srv.Env = appenv.Clean()
	var logs syncbuf.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(stopTimeout):
			_ = srv.Process.Kill()
			<-exited
			return fmt.Errorf("phonehome did not stop within %s of SIGTERM", stopTimeout)
		}
	}
	defer stop()
	fail := func(err error) (map[string]float64, error) {
		_ = stop()
		return nil, fmt.Errorf("%w\nphonehome's log:\n%s", err, tail(logs.String(), 20))
	}
	client := &http.Client{Timeout: time.Minute}
	if err := waitFor(ctx, time.Minute, func() (bool, error) {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return fail(fmt.Errorf("server not healthy: %w", err))
	}

	// One client on the whole stream, read to the end.
	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	sc := &streamClient{}
	streamDone := make(chan error, 1)
	go func() { streamDone <- sc.read(streamCtx, base+"/events?stream=extraterrestrials", total) }()
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		var s struct {
			SSEClients map[string]int `json:"sse_clients"`
		}
		if err := getJSON(client, base+"/api/stats", &s); err != nil {
			return false, err
		}
		return s.SSEClients["extraterrestrials"] >= 1, nil
	}); err != nil {
		return fail(fmt.Errorf("the stream client did not connect: %w", err))
	}

	start := time.Now()
	var enq struct {
		Enqueued int `json:"enqueued"`
	}
	if err := postJSON(client, base+"/api/phone-home", &enq); err != nil {
		return fail(fmt.Errorf("POST /api/phone-home: %w", err))
	}
	enqueued := time.Since(start)
	if enq.Enqueued != total {
		return fail(fmt.Errorf("POST /api/phone-home enqueued %d calls for %d rows", enq.Enqueued, total))
	}
	var took time.Duration
	polls := 0
	deadline := time.Now().Add(workloadTimeout)
	for i := 0; i < len(notHome); {
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		polls++
		if err := getJSON(client, base+"/api/extraterrestrials?limit=1&status="+notHome[i], &page); err != nil {
			return fail(err)
		}
		if len(page.Items) == 0 {
			took = time.Since(start)
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("rows still %s after %s", notHome[i], workloadTimeout))
		}
		select {
		case <-time.After(campaignPoll):
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	// The client gets every row's event (it is not timed against it).
	clientErr := waitFor(ctx, 30*time.Second, func() (bool, error) { return sc.rows.Load() >= int64(total), nil })
	cancelStream()
	<-streamDone
	if err := stop(); err != nil {
		return nil, fmt.Errorf("stop phonehome: %w\n%s", err, tail(logs.String(), 20))
	}

	// What the file says, read-only, with the server stopped.
	away, err := countOn(ctx, db, "SELECT count(*) FROM extraterrestrials WHERE communication_status IS NOT 'space_taxi_on_the_way'")
	if err != nil {
		return nil, err
	}
	if away != 0 {
		return nil, fmt.Errorf("%d rows not home in the database after the API said all were", away)
	}
	open, err := countOn(ctx, db, "SELECT count(*) FROM jobs WHERE kind = 'speak_and_spell' AND state <> 'completed'")
	if err != nil {
		return nil, err
	}
	if open != 0 {
		return nil, fmt.Errorf("%d calls not completed in the database", open)
	}
	m := map[string]float64{
		"rows":          float64(total),
		"campaign_s":    took.Seconds(),
		"rows_rate":     float64(total) / took.Seconds(),
		"post_ms":       float64(enqueued) / float64(time.Millisecond),
		"polls":         float64(polls),
		"events":        float64(sc.events.Load()),
		"row_events":    float64(sc.rows.Load()),
		"stream_mb":     float64(sc.bytes.Load()) / 1e6,
		"client_resync": float64(sc.resyncs.Load()),
	}
	if clientErr == nil {
		// POST to the client holding an event for every row: what a
		// user watching the whole stream sees.
		m["client_s"] = sc.allRowsAt().Sub(start).Seconds()
	}
	return m, nil
}

// streamClient reads one event stream to the end, counting what it gets.
type streamClient struct {
	events, rows, resyncs, bytes atomic.Int64
	mu                           sync.Mutex
	lastRow                      time.Time
	want                         int64
}

// allRowsAt is when the want-th row event arrived.
func (c *streamClient) allRowsAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRow
}

// read connects to u and reads events until ctx ends; want is the number
// of row events that marks the whole campaign as seen.
func (c *streamClient) read(ctx context.Context, u string, want int) error {
	c.want = int64(want)
	resp, err := benchhttp.OpenStream(ctx, u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 256<<10)
	name, hasData := "", false
	for {
		line, err := r.ReadSlice('\n')
		c.bytes.Add(int64(len(line)))
		if errors.Is(err, bufio.ErrBufferFull) {
			hasData = true // a long data line: read on
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if hasData {
				c.events.Add(1)
				switch name {
				case "":
					if c.rows.Add(1) == c.want {
						c.mu.Lock()
						c.lastRow = time.Now()
						c.mu.Unlock()
					}
				case "resync":
					c.resyncs.Add(1)
				}
			}
			name, hasData = "", false
		case bytes.HasPrefix(line, []byte("event:")):
			name = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			hasData = true
		}
	}
}

// waitFor polls cond every few milliseconds until it holds, fails, or limit
// passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func getJSON(c *http.Client, u string, out any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func postJSON(c *http.Client, u string, out any) error {
	resp, err := c.Post(u, "application/json", strings.NewReader("{}"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// profilePath is where run run of the campaign writes the app's profile:
// path itself for a single run, path with ".runN" before the extension
// otherwise.
func profilePath(path string, run, runs int) string {
	if path == "" || runs == 1 {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".run" + strconv.Itoa(run) + ext
}
