package main

// nodes_report.go writes the many-node scenario's section of
// BENCHMARKS.md.

import (
	"fmt"
	"strings"
	"time"
)

// renderNodes is the section: one table per measurement, a row per run.
func renderNodes(results []nodesResult, date, machine, rev, command, analysis string) string {
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
		"that also wrote the row), so it adds the commit and the wait for the broker. A client whose node cuts its " +
		"stream (a client too slow for its queue) reconnects at once to the same node with `Last-Event-ID`, as a " +
		"browser's EventSource does: \"cut\" counts those resumptions, and the events it then receives count as " +
		"delivered, with their late arrival in the latencies. Unless `-nodes-share=false`, each of N nodes runs with " +
		"GOMAXPROCS set to its share of the cores (cores/N, at least 1: the column GOMAXPROCS), as a node under a CPU " +
		"limit of that share would (Go takes GOMAXPROCS from a container's CPU limit); otherwise every node's runtime " +
		"schedules on every core, and three nodes, PostgreSQL and the clients contend for two (see the analysis below).\n\n")
	table := func(kind, title string) {
		w("%s\n\n", title)
		w("| nodes | GOMAXPROCS | run | changes | time | changes/s | clients | delivered | missing | resyncs | cut | publish→client p50 | p99 | change→client p50 | p99 | max | CPU per node | clients' CPU |\n")
		w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
		for _, r := range results {
			if r.Kind != kind {
				continue
			}
			if r.Err != "" {
				w("| %d | %s | %d | failed: %s ||||||||||||||||\n", r.Nodes, procsCell(r.Procs), r.Run, strings.ReplaceAll(firstLine(r.Err), "|", "\\|"))
				continue
			}
			w("| %d | %s | %d | %s | %.2f s | %s | %s | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %.0f %% |\n", r.Nodes, procsCell(r.Procs), r.Run,
				thousands(float64(r.Changes)), r.Elapsed.Seconds(), thousands(float64(r.Changes)/r.Elapsed.Seconds()),
				thousands(float64(r.Clients)), thousands(float64(r.Delivered)), thousands(float64(r.Missing)),
				r.Resyncs, r.Cut, durMS(r.Publish.P50), durMS(r.Publish.P99), durMS(r.Latency.P50), durMS(r.Latency.P99),
				durMS(r.Latency.Max), cpuCells(r.CPU), r.ClientCPU*100)
		}
		if kind == "fan-out" {
			for _, r := range results {
				if r.Kind == kind && r.Err == "" {
					w("%d nodes, run %d: every event delivered and publish-to-client p99 < %s: %s.  \n", r.Nodes, r.Run, nodesTarget,
						yesNo(r.Missing == 0 && r.Resyncs == 0 && r.Publish.P99 < nodesTarget))
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
	if analysis = strings.TrimSpace(analysis); analysis != "" {
		w("### What the figures say\n\n%s\n\n", analysis)
	}
	return b.String()
}

// procsCell is a node's GOMAXPROCS for the tables.
func procsCell(procs int) string {
	if procs == 0 {
		return "default"
	}
	return fmt.Sprint(procs)
}

// durMS is d in milliseconds for the tables.
func durMS(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
