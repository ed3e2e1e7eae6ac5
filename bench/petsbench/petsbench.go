// Package petsbench measures LivePet at its target scale on the real
// binary: a million pets seeded in bulk, the start-up of a server over
// them, its resident memory idle and with a thousand pet pages watched, the
// duration of its ticks, and the time from pressing Feed to the fed state
// arriving on the pet's event stream.
package petsbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/phonehome/phonehome/bench/internal/benchhttp"
)

// Options describe one run.
type Options struct {
	// Binary is the phonehome executable to measure.
	Binary string
	// Dir holds the run's database; it must be empty.
	Dir string
	// Pets is how many pets are seeded (1,000,000).
	Pets int
	// Watched is how many pet pages are kept open, one event stream each (1,000).
	Watched int
	// Feeds is how many feed-to-event samples are taken (200).
	Feeds int
	// Tick is the server's -pet-tick (1 s: five times the default rate, so
	// that more feeds land near a tick).
	Tick time.Duration
	// Log receives progress lines.
	Log io.Writer
}

// Results are one run's figures.
type Results struct {
	Seed           time.Duration
	StartToServing time.Duration
	RSSIdle        int64 // bytes, after start-up
	RSSWatched     int64 // bytes, with Watched streams open after several ticks
	Ticks          []time.Duration
	FeedToEvent    []time.Duration
}

// Run seeds a database, starts the server over it and takes the figures.
func Run(ctx context.Context, o Options) (Results, error) {
	if o.Pets == 0 {
		o.Pets = 1_000_000
	}
	if o.Watched == 0 {
		o.Watched = 1000
	}
	if o.Feeds == 0 {
		o.Feeds = 200
	}
	if o.Tick == 0 {
		o.Tick = time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	var res Results
	db := filepath.Join(o.Dir, "pets.db")

	start := time.Now()
	seed := exec.CommandContext(ctx, o.Binary, "seed", "-db", db, "-pets", strconv.Itoa(o.Pets), "-pet-tick", o.Tick.String())
	if out, err := seed.CombinedOutput(); err != nil {
		return res, fmt.Errorf("seed: %v: %s", err, out)
	}
	res.Seed = time.Since(start)
	fmt.Fprintf(o.Log, "seeded %d pets in %s\n", o.Pets, res.Seed.Round(time.Millisecond))

	addr, err := benchhttp.FreeAddr()
	if err != nil {
		return res, err
	}
	base := "http://" + addr
	srv := exec.Command(o.Binary, "-db", db, "-addr", addr, "-pet-tick", o.Tick.String(), "-log-level", "debug")
	logs, err := srv.StderrPipe()
	if err != nil {
		return res, err
	}
	ticks := make(chan time.Duration, 1024)
	start = time.Now()
	if err := srv.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	go readTicks(logs, ticks)
	if err := waitHealthy(ctx, base, 60*time.Second); err != nil {
		return res, err
	}
	res.StartToServing = time.Since(start)
	res.RSSIdle = rss(srv.Process.Pid)
	fmt.Fprintf(o.Log, "serving after %s, RSS %d MB\n", res.StartToServing.Round(time.Millisecond), res.RSSIdle>>20)

	ids, err := livingPets(ctx, base, o.Watched)
	if err != nil {
		return res, err
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWatching()
	for _, id := range ids {
		wg.Go(func() { _ = watch(watchCtx, base, id, nil) })
	}
	// Let a few ticks render every watched pet, then keep the tick figures
	// of the rest of the run.
	drain(ticks)
	for range 3 {
		select {
		case <-ticks:
		case <-time.After(10 * o.Tick):
			return res, errors.New("no pet tick logged: is the server at -log-level debug?")
		}
	}
	res.RSSWatched = rss(srv.Process.Pid)
	fmt.Fprintf(o.Log, "%d pages watched, RSS %d MB\n", len(ids), res.RSSWatched>>20)

	drain(ticks) // from here on, ticks overlap the feeds
	jar, _ := cookiejar.New(nil)
	keeper := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	for range o.Feeds {
		d, err := feedToEvent(ctx, base, keeper, o.Tick)
		if err != nil {
			return res, err
		}
		res.FeedToEvent = append(res.FeedToEvent, d)
	}
	// At least 10 ticks with every watched pet rendered, feeds included.
	for len(res.Ticks) < 10 {
		select {
		case d := <-ticks:
			res.Ticks = append(res.Ticks, d)
		case <-time.After(10 * o.Tick):
			return res, errors.New("the server stopped logging ticks")
		}
	}
	drain(ticks)
	fmt.Fprintf(o.Log, "%d feeds, %d ticks measured\n", len(res.FeedToEvent), len(res.Ticks))
	return res, nil
}

// feedToEvent adopts a pet, opens its page's stream, and times one Feed
// until the stream shows the fed hunger. A newborn's hunger (250 and up
// until fed) is never the fed value, so no tick can be mistaken for it.
func feedToEvent(ctx context.Context, base string, keeper *http.Client, tick time.Duration) (time.Duration, error) {
	var pet struct {
		ID     int64 `json:"id"`
		Hunger int   `json:"hunger"`
	}
	if err := postJSON(keeper, base+"/api/pets", `{"name":"Bench pet","species":"fox"}`, &pet); err != nil {
		return 0, fmt.Errorf("adopt: %w", err)
	}
	events := make(chan string, 64)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = watch(ctx, base, pet.ID, events) }()
	select { // the page's first state: the stream is live
	case <-events:
	case <-time.After(10 * time.Second):
		return 0, errors.New("no first event on a new pet's stream")
	}
	// A keeper presses Feed some time after the page has loaded: at a
	// random phase of the tick, as it would be.
	time.Sleep(time.Duration(rand.Int64N(int64(tick))))
	start := time.Now()
	var fed struct {
		Hunger int `json:"hunger"`
	}
	if err := postJSON(keeper, fmt.Sprintf("%s/api/pets/%d/feed", base, pet.ID), "", &fed); err != nil {
		return 0, fmt.Errorf("feed: %w", err)
	}
	// The answer's hunger is the pet's at the feed; the event is drawn a
	// moment later, and when a tick falls in between it shows one tick
	// more (+5). Either is the fed pet (unfed, it is 250 or more).
	want := []string{fmt.Sprintf(">%d / 500", fed.Hunger), fmt.Sprintf(">%d / 500", fed.Hunger+5)}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case data := <-events:
			if strings.Contains(data, want[0]) || strings.Contains(data, want[1]) {
				return time.Since(start), nil
			}
		case <-deadline:
			return 0, fmt.Errorf("pet %d: no event showing hunger %d within 10 s", pet.ID, fed.Hunger)
		}
	}
}

// watch reads the stream of pet id until ctx ends, sending each event's
// data to events when it is not nil.
func watch(ctx context.Context, base string, id int64, events chan<- string) error {
	resp, err := benchhttp.OpenStream(ctx, fmt.Sprintf("%s/events?stream=pet-%d", base, id))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(line, "data:"))
			data.WriteByte('\n')
		case line == "" && data.Len() > 0:
			if events != nil {
				select {
				case events <- data.String():
				default:
				}
			}
			data.Reset()
		}
	}
	return sc.Err()
}

func livingPets(ctx context.Context, base string, n int) ([]int64, error) {
	var ids []int64
	cursor := ""
	for len(ids) < n {
		u := base + "/api/pets?alive=true&limit=100"
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		var page struct {
			Items []struct {
				ID int64 `json:"id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list pets: %w", err)
		}
		for _, p := range page.Items {
			ids = append(ids, p.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	return ids[:min(n, len(ids))], nil
}

func postJSON(c *http.Client, url, body string, out any) error {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

var tookPattern = regexp.MustCompile(`msg="pet tick" (?:\S+=\S+ )*?took=(\S+)`)

// readTicks passes on the duration of every tick the server logs.
func readTicks(r io.Reader, out chan<- time.Duration) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := tookPattern.FindStringSubmatch(sc.Text()); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				select {
				case out <- d:
				default:
				}
			}
		}
	}
}

func drain(c <-chan time.Duration) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func waitHealthy(ctx context.Context, base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("server not healthy within %s", limit)
}

// rss is a process's resident set in bytes (0 when unknown).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Percentile is the p-th percentile (0–100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}
