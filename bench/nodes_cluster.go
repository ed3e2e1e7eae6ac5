package main

// nodes_cluster.go holds the many-node scenario's nodes: real phonehome
// binaries started, stopped, killed and measured (/proc), and the cluster
// of them on one database.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
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

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/appenv"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/store"
)

// benchNode is one `phonehome serve` process.
type benchNode struct {
	cmd    *exec.Cmd
	url    string
	port   int
	logs   syncbuf.Buffer
	exited chan struct{}
}

var listeningLine = regexp.MustCompile(`msg="phonehome is listening" .*?\burl=(http://\S+)`)

// startBenchNode starts `phonehome serve` on a free loopback port over db
// with args and waits until it listens; with GOMAXPROCS procs when procs >
// 0 (else Go's default: every core).
func startBenchNode(bin, db string, procs int, args ...string) (*benchNode, error) {
	cmd := exec.Command(bin, append([]string{"serve", "-db", db, "-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = appenv.Clean()
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
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
	for i := range n {
		a := args
		if *nodesCPUProfile != "" { // each node's own file; the later scenario of a run overwrites the earlier's
			a = append(slices.Clip(args), "-cpuprofile", filepath.Join(*nodesCPUProfile, fmt.Sprintf("%d-nodes-node%d.prof", n, i+1)))
		}
		nd, err := startBenchNode(bin, db, nodeProcs(n), a...)
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

// waitCompleted waits until want Speak & Spell jobs are completed,
// failing after within or on a discarded one, and returns when the last
// one completed (its completed_at). It reads the engine's count ledger
// (the counts the dashboard shows, exact at each commit) every 20 ms: a
// count over the jobs table itself took the server 12 ms, and polled that
// often it took the nodes' database a good part of a core.
func (c *benchCluster) waitCompleted(ctx context.Context, want int, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		var done, failed int
		err := c.conn.QueryRowContext(ctx, `SELECT coalesce(sum(n) FILTER (WHERE state = 'completed'), 0),
				coalesce(sum(n) FILTER (WHERE state IN ('discarded', 'cancelled')), 0) FROM job_counts WHERE queue = $1`,
			speakandspell.Queue).Scan(&done, &failed)
		switch {
		case err != nil:
			return time.Time{}, err
		case failed > 0:
			return time.Time{}, fmt.Errorf("%d calls discarded or cancelled", failed)
		case done >= want:
			var last int64
			err := c.conn.QueryRowContext(ctx, `SELECT max(completed_at) FROM jobs WHERE kind = 'speak_and_spell'`).Scan(&last)
			return time.UnixMilli(last), err
		case time.Now().After(deadline):
			return time.Time{}, fmt.Errorf("%d of %d calls completed within %s", done, want, within)
		}
		time.Sleep(20 * time.Millisecond)
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
