package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/bench/live"
	"github.com/phonehome/phonehome/bench/mdreport"
	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/store"
)

// The many-node scenario (issue 14): 1, 2 and 3 real phonehome binaries
// on one PostgreSQL database. Two measurements for each number of nodes:
//
//   - campaign: `seed -ets N`, the nodes started with `-answer-rate 1
//     -backoff 0s`, one whole-stream client on each node; POST
//     /api/phone-home on the first node, timed until every job is completed
//     (the database says so), then until every client has every row's event.
//   - fan-out: 1,000 whole-stream clients spread over the nodes in turn
//     while the nodes make 1,000 changes a second for 15 s: the benchmark
//     inserts one Speak & Spell job per row, each scheduled 1 ms after the
//     one before, and the nodes' engines claim them as they come due (the
//     calls all connect, so each is one change and one event).
//
// Publish-to-client is from the event's row in live_events (its
// created_at, in milliseconds: when the node that made the change gave it
// to the broker; read while the run lasts, as the broker trims the table)
// to its arrival at a client, whichever node's hub sent it; the issue's
// target (p99 < 250 ms) is on it. Change-to-client is from the job's
// completed_at (recorded just before the commit that also wrote the row):
// it adds the commit and the wait for the broker. CPU per node is each process's user+system
// time from /proc over the measurement, as a share of one core.

// nodesScenario is the -only value that runs this scenario instead of the
// job-queue sections.
const nodesScenario = "nodes"

// nodesHeading is the BENCHMARKS.md section this scenario replaces.
const nodesHeading = "## Many nodes (issue 14)"

var (
	nodesCounts   = flag.String("nodes", "1,2,3", "nodes scenario: the numbers of nodes to measure")
	nodesRows     = flag.Int("nodes-rows", 20_000, "nodes scenario: extraterrestrials of each campaign")
	nodesClients  = flag.Int("nodes-clients", 1000, "nodes scenario: whole-stream clients of the fan-out, spread over the nodes")
	nodesRate     = flag.Int("nodes-rate", 1000, "nodes scenario: changes a second of the fan-out")
	nodesDuration = flag.Duration("nodes-duration", 15*time.Second, "nodes scenario: how long the fan-out's changes last")
)

// nodesTarget is the bound on the fan-out's publish-to-client p99.
const nodesTarget = 250 * time.Millisecond

// nodesResult is one measurement of the scenario.
type nodesResult struct {
	Kind    string // "campaign" or "fan-out"
	Nodes   int
	Run     int
	Clients int
	Changes int
	// Elapsed is the campaign's time to the last completed job, or the
	// fan-out's from the first change due to the last one completed.
	Elapsed time.Duration
	// Delivered row events, all clients; Missing = Changes×Clients −
	// Delivered; Twice: a row's event a client received again.
	Delivered, Missing, Twice int64
	Resyncs                   int64
	Cut                       int
	Latency                   live.Latency
	// Publish is publish-to-client: from the event's row in live_events
	// (its created_at, in milliseconds: when a node gave it to the broker)
	// to its arrival.
	Publish live.Latency
	// CPU is each node's share of one core over Elapsed; ClientCPU the
	// clients' (this process's poller thread) over their connection's life.
	CPU       []float64
	ClientCPU float64
	Err       string
}

// runNodesBench runs the scenario runs times for each number of nodes and
// replaces its section of out.
func runNodesBench(ctx context.Context, runs int, appRoot, out string) error {
	if !onPostgres() {
		return errors.New("-only nodes needs -pg: several nodes share one PostgreSQL database")
	}
	var counts []int
	for _, f := range strings.Split(*nodesCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 8 {
			return fmt.Errorf("-nodes: %q is not a number of nodes from 1 to 8", f)
		}
		counts = append(counts, n)
	}
	if *nodesRows < 1 || *nodesClients < 1 || *nodesRate < 1 || *nodesDuration < time.Second {
		return errors.New("-nodes-rows, -nodes-clients and -nodes-rate must be positive, -nodes-duration at least 1s")
	}
	binDir, err := os.MkdirTemp("", "nodesbench-app-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	app, err := buildApp(ctx, appRoot, binDir)
	if err != nil {
		return err
	}
	date := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	machine := mdreport.Machine() + fmt.Sprintf(", %s (fsync %s, synchronous_commit %s)", pgVersion(ctx), pgSetting(ctx, "fsync"), pgSetting(ctx, "synchronous_commit"))
	log.Printf("%s; %s; phonehome at %s", machine, date, appRevision())
	var results []nodesResult
	for run := 1; run <= runs; run++ {
		for _, n := range counts {
			for _, kind := range []string{"campaign", "fan-out"} {
				dir, err := os.MkdirTemp("", "nodesbench-")
				if err != nil {
					return err
				}
				var r nodesResult
				if kind == "campaign" {
					r, err = nodesCampaign(ctx, app.Path, dir, n, *nodesRows)
				} else {
					r, err = nodesFanOut(ctx, app.Path, dir, n, *nodesClients, *nodesRate, *nodesDuration)
				}
				os.RemoveAll(dir)
				if dropErr := dropDatabases(context.WithoutCancel(ctx)); dropErr != nil {
					return dropErr
				}
				if ctx.Err() != nil {
					return errors.New("interrupted; BENCHMARKS.md left as it was")
				}
				r.Kind, r.Nodes, r.Run = kind, n, run
				if err != nil {
					r.Err = err.Error()
					log.Printf("run %d %s, %d nodes: FAILED: %v", run, kind, n, err)
				} else {
					log.Printf("run %d %s, %d nodes: %s", run, kind, n, r.summary())
				}
				results = append(results, r)
			}
		}
	}
	command := redactCommand("go run . " + strings.Join(os.Args[1:], " "))
	if err := mdreport.WriteSection(out, nodesHeading, renderNodes(results, date, machine, appRevision(), command)); err != nil {
		return err
	}
	log.Printf("wrote section %q of %s", nodesHeading, out)
	return nil
}

func (r nodesResult) summary() string {
	return fmt.Sprintf("%d changes in %s (%.0f/s), %d clients: delivered %d, missing %d, twice %d, resyncs %d, cut %d; publish-to-client p50 %s p99 %s; change-to-client p50 %s p99 %s max %s; CPU per node %s, clients %.0f %%",
		r.Changes, r.Elapsed.Round(time.Millisecond), float64(r.Changes)/r.Elapsed.Seconds(), r.Clients, r.Delivered, r.Missing, r.Twice,
		r.Resyncs, r.Cut, r.Publish.P50, r.Publish.P99, r.Latency.P50, r.Latency.P99, r.Latency.Max, cpuCells(r.CPU), r.ClientCPU*100)
}

// nodesCampaign is the campaign measurement with n nodes.
func nodesCampaign(ctx context.Context, bin, dir string, n, rows int) (nodesResult, error) {
	r := nodesResult{Changes: rows, Clients: n}
	c, err := startCluster(ctx, bin, dir, n, rows, "-answer-rate", "1", "-backoff", "0s")
	if err != nil {
		return r, err
	}
	defer c.stop()
	rec, err := c.listen(n)
	if err != nil {
		return r, c.fail(err)
	}
	defer rec.close()
	cpu0 := c.cpu()
	start := time.Now()
	resp, err := http.Post(c.nodes[0].url+"/api/phone-home", "application/json", nil)
	if err != nil {
		return r, c.fail(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, c.fail(fmt.Errorf("POST /api/phone-home: %s", resp.Status))
	}
	if err := c.waitCompleted(ctx, rows, 10*time.Minute); err != nil {
		return r, c.fail(err)
	}
	r.Elapsed = time.Since(start)
	r.CPU = c.cpuSince(cpu0, r.Elapsed)
	return r, c.fail(rec.finish(ctx, c, &r))
}

// nodesFanOut is the fan-out measurement with n nodes: clients clients,
// rate changes a second for d.
func nodesFanOut(ctx context.Context, bin, dir string, n, clients, rate int, d time.Duration) (nodesResult, error) {
	total := rate * int(d/time.Second)
	r := nodesResult{Changes: total, Clients: clients}
	// The engines poll for due jobs every 20 ms: a scheduled job waits for
	// a poll, which delays its change, not the change's way to the clients.
	c, err := startCluster(ctx, bin, dir, n, total, "-answer-rate", "1", "-backoff", "0s", "-poll", "20ms")
	if err != nil {
		return r, err
	}
	defer c.stop()
	rec, err := c.listen(clients)
	if err != nil {
		return r, c.fail(err)
	}
	defer rec.close()
	first, err := c.schedule(ctx, total, rate)
	if err != nil {
		return r, c.fail(err)
	}
	// CPU counts from the first change due, so the inserts are not in it.
	if wait := time.Until(first); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
	cpu0 := c.cpu()
	start := time.Now()
	if err := c.waitCompleted(ctx, total, d+5*time.Minute); err != nil {
		return r, c.fail(err)
	}
	r.Elapsed = time.Since(start)
	r.CPU = c.cpuSince(cpu0, r.Elapsed)
	return r, c.fail(rec.finish(ctx, c, &r))
}

// benchNode is one `phonehome serve` process.
type benchNode struct {
	cmd    *exec.Cmd
	url    string
	port   int
	logs   syncbuf.Buffer
	exited chan struct{}
}

var listeningLine = regexp.MustCompile(`msg="phonehome is listening" url=(http://\S+)`)

// startBenchNode starts `phonehome serve` on a free loopback port over db
// with args and waits until it listens.
func startBenchNode(bin, db string, args ...string) (*benchNode, error) {
	cmd := exec.Command(bin, append([]string{"serve", "-db", db, "-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = appenv.Clean()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	nd := &benchNode{cmd: cmd, exited: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			nd.logs.Write([]byte(line + "\n"))
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(nd.exited)
	}()
	select {
	case nd.url = <-urls:
	case <-nd.exited:
		return nil, fmt.Errorf("phonehome serve exited before listening:\n%s", tail(nd.logs.String(), 20))
	case <-time.After(time.Minute):
		nd.stop()
		return nil, fmt.Errorf("phonehome serve did not listen within a minute:\n%s", tail(nd.logs.String(), 20))
	}
	u, err := url.Parse(nd.url)
	if err != nil {
		nd.stop()
		return nil, err
	}
	nd.port, _ = strconv.Atoi(u.Port())
	return nd, nil
}

// stop ends the node with SIGTERM, or SIGKILL after stopTimeout.
func (nd *benchNode) stop() {
	_ = nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.exited:
	case <-time.After(stopTimeout):
		_ = nd.cmd.Process.Kill()
		<-nd.exited
	}
}

// cpu is the process's user and system time so far, from /proc/PID/stat.
func (nd *benchNode) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", nd.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) in
	// parentheses: state is field 3, utime 14 and stime 15, in clock ticks
	// (100 a second on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// benchCluster is n nodes over one database, with the benchmark's own
// connection to it.
type benchCluster struct {
	db    string
	conn  *sqlx.DB
	nodes []*benchNode
	// rowIndex maps an extraterrestrial's id to its place, 0…rows-1, or
	// -1: a slice, not a map, as the clients look up a million events a
	// second (the seed's ids are dense).
	rowIndex []int32
	rows     []int64
}

// startCluster makes a new database in dir's name, seeds rows generated
// extraterrestrials, and starts n nodes on it with args.
func startCluster(ctx context.Context, bin, dir string, n, rows int, args ...string) (*benchCluster, error) {
	db, err := dbTarget(ctx, dir, "nodes")
	if err != nil {
		return nil, err
	}
	seed := exec.CommandContext(ctx, bin, "seed", "-db", db, "-ets", strconv.Itoa(rows))
	seed.Env = appenv.Clean()
	if out, err := seed.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("seed: %v: %s", err, out)
	}
	conn, err := sqlx.Open("pgx", db)
	if err != nil {
		return nil, err
	}
	c := &benchCluster{db: db, conn: conn}
	if err := conn.SelectContext(ctx, &c.rows, "SELECT id FROM extraterrestrials ORDER BY id"); err != nil {
		conn.Close()
		return nil, err
	}
	if len(c.rows) < rows {
		conn.Close()
		return nil, fmt.Errorf("seed -ets %d left %d rows", rows, len(c.rows))
	}
	c.rowIndex = make([]int32, c.rows[len(c.rows)-1]+1)
	for i := range c.rowIndex {
		c.rowIndex[i] = -1
	}
	for i, id := range c.rows {
		c.rowIndex[id] = int32(i)
	}
	for range n {
		nd, err := startBenchNode(bin, db, args...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

// stop stops every node and closes the connection.
func (c *benchCluster) stop() {
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nd.stop() }()
	}
	wg.Wait()
	c.nodes = nil
	c.conn.Close()
}

// fail adds each node's last log lines to err (nil stays nil).
func (c *benchCluster) fail(err error) error {
	if err == nil {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v", err)
	for i, nd := range c.nodes {
		fmt.Fprintf(&b, "\nnode %d's log:\n%s", i+1, tail(nd.logs.String(), 10))
	}
	return errors.New(b.String())
}

func (c *benchCluster) ports() []int {
	var ps []int
	for _, nd := range c.nodes {
		ps = append(ps, nd.port)
	}
	return ps
}

func (c *benchCluster) cpu() []time.Duration {
	var out []time.Duration
	for _, nd := range c.nodes {
		out = append(out, nd.cpu())
	}
	return out
}

// cpuSince is each node's CPU since before, as a share of one core over
// elapsed.
func (c *benchCluster) cpuSince(before []time.Duration, elapsed time.Duration) []float64 {
	var out []float64
	for i, now := range c.cpu() {
		out = append(out, (now-before[i]).Seconds()/elapsed.Seconds())
	}
	return out
}

// waitCompleted polls the database until want Speak & Spell jobs are
// completed, failing after within or on a discarded one.
func (c *benchCluster) waitCompleted(ctx context.Context, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var done, failed int
		err := c.conn.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'),
				count(*) FILTER (WHERE state IN ('discarded', 'cancelled')) FROM jobs WHERE kind = 'speak_and_spell'`).Scan(&done, &failed)
		switch {
		case err != nil:
			return err
		case failed > 0:
			return fmt.Errorf("%d calls discarded or cancelled", failed)
		case done >= want:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%d of %d calls completed within %s", done, want, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// schedule inserts one call for each of the first total rows, each due
// 1/rate after the one before, the first once the inserts are surely done
// (2 s, plus 1 s for every 4,000 calls: they must not overlap the changes
// they are for), and returns the time the first is due.
func (c *benchCluster) schedule(ctx context.Context, total, rate int) (time.Time, error) {
	st, err := store.Open(ctx, c.db)
	if err != nil {
		return time.Time{}, err
	}
	defer st.Close()
	eng, err := jobs.New(st.Writer, jobs.Config{Logger: discardLogger, Reader: st.Reader})
	if err != nil {
		return time.Time{}, err
	}
	lead := 2*time.Second + time.Duration(total)*time.Second/4000
	first := time.Now().Add(lead)
	params := make([]jobs.InsertParams, total)
	for i := range total {
		args := speakandspell.Args{ExtraterrestrialID: c.rows[i]}
		opts := args.InsertOpts()
		opts.ScheduledAt = first.Add(time.Duration(i) * time.Second / time.Duration(rate))
		params[i] = jobs.InsertParams{Args: args, Opts: opts}
	}
	n, err := eng.InsertMany(ctx, params)
	if err := insertedAll(n, total, err); err != nil {
		return time.Time{}, err
	}
	if time.Now().After(first) {
		return time.Time{}, fmt.Errorf("inserting the calls took longer than the %s before the first is due", lead)
	}
	return first, nil
}

// arrivals records when each client received each row's event: the
// microseconds since base, 0 for not yet, one slot per (row, client).
type arrivals struct {
	base    time.Time
	clients int
	at      []uint32
	twice   int64 // written on the poller's thread only; read after close
	index   []int32
	// eventID is the id of each row's event (the same on every node),
	// from the first client that got it; poller's thread, as twice.
	eventID []int64
	streams *live.StreamClients
	// published maps the broker's event ids to their created_at, read
	// from live_events while the run lasts (the table is trimmed).
	published map[int64]int64
	lastRead  int64
	stopRead  chan struct{}
	readDone  chan error
}

// listen connects clients whole-stream clients, spread over the nodes,
// and waits until every node counts its own.
func (c *benchCluster) listen(clients int) (*arrivals, error) {
	a := &arrivals{base: time.Now(), clients: clients, at: make([]uint32, len(c.rows)*clients), index: c.rowIndex,
		eventID: make([]int64, len(c.rows)), published: map[int64]int64{}, stopRead: make(chan struct{}), readDone: make(chan error, 1)}
	s, err := live.DialStreams(c.ports(), clients, "/events?stream=extraterrestrials", a.add)
	if err != nil {
		return nil, err
	}
	a.streams = s
	go func() { a.readDone <- a.readPublished(c.conn) }()
	want := make([]int, len(c.nodes))
	for i := range clients {
		want[i%len(c.nodes)]++
	}
	deadline := time.Now().Add(time.Minute)
	for i, nd := range c.nodes {
		for {
			n, err := streamClients(nd.url)
			if err == nil && n >= want[i] {
				break
			}
			if time.Now().After(deadline) {
				a.close()
				return nil, fmt.Errorf("node %d counts %d of its %d stream clients after a minute (%v)", i+1, n, want[i], err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return a, nil
}

// place is row id's place in the run's rows.
func (a *arrivals) place(id int64) (int32, bool) {
	if id < 0 || id >= int64(len(a.index)) || a.index[id] < 0 {
		return 0, false
	}
	return a.index[id], true
}

// add is the clients' row handler, on the poller's thread.
func (a *arrivals) add(ev live.RowEvent) {
	i, ok := a.place(ev.Row)
	if !ok {
		return
	}
	if a.eventID[i] == 0 {
		a.eventID[i] = ev.ID
	}
	slot := &a.at[int(i)*a.clients+ev.Client]
	if *slot != 0 {
		a.twice++
		return
	}
	*slot = uint32(max(ev.At.Sub(a.base)/time.Microsecond, 1))
}

// close closes the clients and stops reading live_events (once).
func (a *arrivals) close() error {
	a.streams.Close()
	select {
	case <-a.stopRead:
		return nil
	default:
	}
	close(a.stopRead)
	return <-a.readDone
}

// readPublished reads the extraterrestrials stream's events from
// live_events every 100 ms until close, keeping each id's created_at: the
// broker trims the table by age and count, so one read at the end could
// miss the first.
func (a *arrivals) readPublished(conn *sqlx.DB) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := a.readNew(context.Background(), conn); err != nil {
			return err
		}
		select {
		case <-a.stopRead:
			return nil
		case <-tick.C:
		}
	}
}

// readNew reads the events of live_events above the last one read, and
// those of the last few seconds again: an id is drawn when its row is
// inserted, not when it commits, so a row written in a longer transaction
// (a call's event, written with the call) may become visible after rows
// with higher ids.
func (a *arrivals) readNew(ctx context.Context, conn *sqlx.DB) error {
	var rows []struct {
		ID        int64 `db:"id"`
		CreatedAt int64 `db:"created_at"`
	}
	recent := time.Now().Add(-5 * time.Second).UnixMilli()
	if err := conn.SelectContext(ctx, &rows, `SELECT id, created_at FROM live_events
			WHERE stream = 'extraterrestrials' AND (id > $1 OR created_at >= $2) ORDER BY id`, a.lastRead, recent); err != nil {
		return fmt.Errorf("read live_events: %w", err)
	}
	for _, r := range rows {
		a.published[r.ID] = r.CreatedAt
		a.lastRead = max(a.lastRead, r.ID)
	}
	return nil
}

// finish waits (up to 30 s) until every client has every changed row's
// event, closes the clients, and fills r's deliveries and latency from the
// jobs' completed_at.
func (a *arrivals) finish(ctx context.Context, c *benchCluster, r *nodesResult) error {
	want := int64(r.Changes) * int64(r.Clients)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, _, _ := a.streams.Stats()
		if rows >= want || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One more read of live_events after the last event arrived.
	if err := a.close(); err != nil {
		return err
	}
	if err := a.readNew(ctx, c.conn); err != nil {
		return err
	}
	rows, resyncs, ended := a.streams.Stats()
	r.Resyncs, r.Cut, r.Twice = resyncs, ended, a.twice
	r.ClientCPU = a.streams.CPU().Seconds() / time.Since(a.base).Seconds()
	var done []struct {
		ET          int64 `db:"et"`
		CompletedAt int64 `db:"completed_at"`
	}
	if err := c.conn.SelectContext(ctx, &done, `SELECT CAST(args ->> 'extraterrestrial_id' AS BIGINT) AS et, completed_at
			FROM jobs WHERE kind = 'speak_and_spell' AND state = 'completed'`); err != nil {
		return err
	}
	var h, pub latencyHistogram
	unpublished := 0
	for _, j := range done {
		i, ok := a.place(j.ET)
		if !ok {
			continue
		}
		committed := time.UnixMilli(j.CompletedAt)
		created, published := a.published[a.eventID[i]]
		if !published && a.eventID[i] != 0 {
			unpublished++
		}
		for _, at := range a.at[int(i)*a.clients : int(i+1)*a.clients] {
			if at == 0 {
				continue
			}
			r.Delivered++
			arrived := a.base.Add(time.Duration(at) * time.Microsecond)
			h.add(arrived.Sub(committed))
			if published {
				pub.add(arrived.Sub(time.UnixMilli(created)))
			}
		}
	}
	r.Missing = want - r.Delivered
	r.Latency, r.Publish = h.summary(), pub.summary()
	if unpublished > 0 {
		return fmt.Errorf("%d rows' events have no row in live_events (not published through the broker, or trimmed before they were read)", unpublished)
	}
	if rows-r.Twice != r.Delivered {
		return fmt.Errorf("the clients counted %d row events (%d twice) but %d match a completed call", rows, r.Twice, r.Delivered)
	}
	return nil
}

// streamClients is the node's count of extraterrestrials stream clients,
// from /metrics.
func streamClients(base string) (int, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `phonehome_sse_clients{stream="extraterrestrials"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, sc.Err()
}

// latencyHistogram counts latencies in 100 µs buckets up to a minute (a
// million-odd deliveries a second would not fit a sorted slice).
type latencyHistogram struct {
	buckets []int64
	n       int64
	max     time.Duration
}

const latencyBucket = 100 * time.Microsecond

func (h *latencyHistogram) add(d time.Duration) {
	if h.buckets == nil {
		h.buckets = make([]int64, int(time.Minute/latencyBucket)+1)
	}
	d = max(d, 0) // completed_at is in whole milliseconds
	h.n++
	h.max = max(h.max, d)
	h.buckets[min(int(d/latencyBucket), len(h.buckets)-1)]++
}

func (h *latencyHistogram) quantile(q float64) time.Duration {
	want := int64(q * float64(h.n))
	var seen int64
	for i, n := range h.buckets {
		seen += n
		if seen > want {
			return time.Duration(i+1) * latencyBucket
		}
	}
	return h.max
}

func (h *latencyHistogram) summary() live.Latency {
	if h.n == 0 {
		return live.Latency{}
	}
	return live.Latency{N: h.n, P50: h.quantile(0.5), P99: h.quantile(0.99), Max: h.max}
}

func cpuCells(cpu []float64) string {
	var parts []string
	for _, c := range cpu {
		parts = append(parts, fmt.Sprintf("%.0f %%", c*100))
	}
	return strings.Join(parts, " / ")
}

// renderNodes is the section: one table per measurement, a row per run.
func renderNodes(results []nodesResult, date, machine, rev, command string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s\n\n", nodesHeading)
	w("Measured %s on %s, phonehome at %s, with `%s` (`bench/nodes.go`).\n\n", date, machine, rev, command)
	w("Every node is a real `phonehome serve` binary on a loopback port, all on one PostgreSQL database on this machine. " +
		"**This machine has 2 cores**, shared by PostgreSQL, every node and the clients: more nodes cannot make more " +
		"CPU, so the figures show what several nodes cost and that every change reaches every client, not how far " +
		"nodes scale on machines of their own. CPU per node is its process's user+system time (`/proc/PID/stat`) as a " +
		"share of one core; the clients' CPU is the benchmark's one poller thread reading every client (this " +
		"process, same cores). Publish-to-client is from the event's row in `live_events` (its `created_at`, in " +
		"milliseconds: when the node that made the change gave it to the broker) to its arrival at a client, " +
		"whichever node sent it; change-to-client is from the job's `completed_at` (recorded just before the commit " +
		"that also wrote the row), so it adds the commit and the wait for the broker.\n\n")
	table := func(kind, title string) {
		w("%s\n\n", title)
		w("| nodes | run | changes | time | changes/s | clients | delivered | missing | resyncs | cut | publish→client p50 | p99 | change→client p50 | p99 | max | CPU per node | clients' CPU |\n")
		w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
		for _, r := range results {
			if r.Kind != kind {
				continue
			}
			if r.Err != "" {
				w("| %d | %d | failed: %s ||||||||||||||||\n", r.Nodes, r.Run, strings.ReplaceAll(firstLine(r.Err), "|", "\\|"))
				continue
			}
			w("| %d | %d | %s | %.2f s | %s | %s | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %.0f %% |\n", r.Nodes, r.Run,
				thousands(float64(r.Changes)), r.Elapsed.Seconds(), thousands(float64(r.Changes)/r.Elapsed.Seconds()),
				thousands(float64(r.Clients)), thousands(float64(r.Delivered)), thousands(float64(r.Missing)),
				r.Resyncs, r.Cut, durMS(r.Publish.P50), durMS(r.Publish.P99), durMS(r.Latency.P50), durMS(r.Latency.P99),
				durMS(r.Latency.Max), cpuCells(r.CPU), r.ClientCPU*100)
		}
		if kind == "fan-out" {
			for _, r := range results {
				if r.Kind == kind && r.Err == "" {
					w("%d nodes, run %d: every event delivered and publish-to-client p99 < %s: %s.  \n", r.Nodes, r.Run, nodesTarget,
						yesNo(r.Missing == 0 && r.Resyncs == 0 && r.Cut == 0 && r.Publish.P99 < nodesTarget))
				}
			}
		}
		w("\n")
	}
	table("campaign", fmt.Sprintf("**Campaign** (`seed -ets %s`, `-answer-rate 1 -backoff 0s`, one whole-stream client per node, "+
		"POST on the first node; time to the last job completed):", thousands(float64(*nodesRows))))
	table("fan-out", fmt.Sprintf("**Fan-out** (%s whole-stream clients spread over the nodes, %s changes a second for %s, "+
		"made by the nodes' engines from jobs scheduled 1/%d s apart; time from the first change due to the last "+
		"completed; target: every event delivered, publish-to-client p99 < %s):", thousands(float64(*nodesClients)),
		thousands(float64(*nodesRate)), *nodesDuration, *nodesRate, nodesTarget))
	return b.String()
}

// durMS is d in milliseconds for the tables.
func durMS(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
