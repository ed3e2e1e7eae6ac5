package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/phonehome/phonehome/bench/live"
	"github.com/phonehome/phonehome/bench/mdreport"
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
	nodesCounts     = flag.String("nodes", "1,2,3", "nodes scenario: the numbers of nodes to measure")
	nodesRows       = flag.Int("nodes-rows", 20_000, "nodes scenario: extraterrestrials of each campaign")
	nodesClients    = flag.Int("nodes-clients", 1000, "nodes scenario: whole-stream clients of the fan-out, spread over the nodes")
	nodesRate       = flag.Int("nodes-rate", 1000, "nodes scenario: changes a second of the fan-out")
	nodesDuration   = flag.Duration("nodes-duration", 15*time.Second, "nodes scenario: how long the fan-out's changes last")
	nodesShare      = flag.Bool("nodes-share", true, "nodes scenario: run each of N nodes with GOMAXPROCS = cores/N (at least 1), its share of the machine, as under a CPU limit of that share; false: Go's default (every node schedules on every core)")
	nodesCPUProfile = flag.String("nodes-cpuprofile", "", "nodes scenario: write each node's CPU profile (its serve -cpuprofile) into this directory, as N-nodes-nodeI.prof (the fan-out's overwrites the campaign's)")
)

// nodeProcs is the GOMAXPROCS of each of n nodes: its share of the
// machine's cores with -nodes-share (at least 1), else 0 (Go's default).
func nodeProcs(n int) int {
	if !*nodesShare {
		return 0
	}
	return max(1, runtime.NumCPU()/n)
}

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
	// Procs is each node's GOMAXPROCS (0: Go's default, every core).
	Procs int
	Err   string
}

// runNodesBench runs the scenario runs times for each number of nodes and
// replaces its section of out.
func runNodesBench(ctx context.Context, runs int, appRoot, out, analysis string) error {
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
				r.Kind, r.Nodes, r.Run, r.Procs = kind, n, run, nodeProcs(n)
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
	if err := mdreport.WriteSection(out, nodesHeading, renderNodes(results, date, machine, appRevision(), command, analysis)); err != nil {
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
	last, err := c.waitCompleted(ctx, rows, 10*time.Minute)
	if err != nil {
		return r, c.fail(err)
	}
	r.CPU = c.cpuSince(cpu0, time.Since(start))
	r.Elapsed = last.Sub(start)
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
	last, err := c.waitCompleted(ctx, total, d+5*time.Minute)
	if err != nil {
		return r, c.fail(err)
	}
	r.CPU = c.cpuSince(cpu0, time.Since(start))
	r.Elapsed = last.Sub(start)
	return r, c.fail(rec.finish(ctx, c, &r))
}
