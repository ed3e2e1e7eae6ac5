package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// pgSectionHeading is the section of BENCHMARKS.md that -pg writes.
const pgSectionHeading = "## Job queue on PostgreSQL (issue 13)"

// pgScenarios are the scenarios -pg measures.
var pgScenarios = []string{"w1", "w2", "w3", "dash", "campaign"}

// phonehomePGSystem is phonehome's engine on PostgreSQL.
var phonehomePGSystem = queueSystem{
	Name: "phonehome",
	Settings: "`store.Open(url)` (a `database/sql` pool of pgx v5 `stdlib`, 16 connections at most) and `Migrate`; " +
		"`jobs.New(st.Writer, jobs.Config{Queues: {\"default\": 50}, Backoff: jobs.FixedBackoff(0), Reader: st.Reader, " +
		"Logger: discard})` with every other setting at its default (`PollInterval` 1 s; inserts wake the queue through " +
		"LISTEN/NOTIFY); bulk insert with `InsertMany` (one transaction), single insert with `Insert`; `MaxAttempts` 5 " +
		"per job.",
	Open: openPhonehome,
}

// pgQueueSystems are the systems W1–W3 run on with -pg, in table order.
var pgQueueSystems = []queueSystem{phonehomePGSystem, riverPGSystem}

// renderPG writes the PostgreSQL section (heading included) from d.
func renderPG(d *benchData, analysis string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s\n\n", pgSectionHeading)
	latest, machine, rev, command := "", "", "", "go run . -pg URL"
	for _, sd := range d.Scenarios {
		if sd.Date > latest {
			latest, machine, rev = sd.Date, sd.Machine, sd.Rev
			if sd.Command != "" {
				command = redactCommand(sd.Command)
			}
		}
	}
	w("Command, from `bench/`, with a server started by `scripts/pg-test-server start` (its URL in "+
		"`$PHONEHOME_TEST_POSTGRES`): `%s`. Last run %s on: %s. phonehome at %s; %s.\n\n",
		command, latest, machine, rev, moduleVersions())
	w("Both systems use the **same server, with the same settings** (the test server: `fsync` off, as stated above; so " +
		"these figures measure the queues' own work, not the disk), a **new database of their own for every run**, " +
		"and take turns within each run. Each cell is the median of the runs with the spread (min–max). Same machine " +
		"caveat as the SQLite section: the server, the queue and its workers share the 2 cores.\n\n")
	for name, sd := range d.Scenarios {
		if sd.Date != latest || sd.Rev != rev {
			w("- Scenario %s was measured at another time (%s, phonehome at %s, on %s%s) and kept from then.\n", name, sd.Date, sd.Rev, sd.Machine, commandNote(sd.Command))
		}
	}
	w("| workload | phonehome | River | phonehome ÷ River |\n|---|---:|---:|---:|\n")
	type pgRow struct {
		scenario, metric, label string
		format                  func(float64) string
		higherBetter            bool
	}
	rows := []pgRow{
		{"w1", "insert_s", "W1 bulk insert of %s jobs (time)", secs, false},
		{"w1", "drain_rate", "W1 drain of %s jobs, 50 workers, no-op (jobs/s)", thousands, true},
		{"w2", "attempt_rate", "W2 retry, %s jobs, ≤ 5 attempts (attempts/s)", thousands, true},
		{"w3", "p50_ms", "W3 insert-to-start p50, %s jobs (ms)", millis, false},
		{"w3", "p99_ms", "W3 insert-to-start p99, %s jobs (ms)", millis, false},
		{"campaign", "rows_rate", "Campaign, %s rows: rows home/s (phonehome, real binary) vs River's drain of as many no-op jobs (jobs/s)", thousands, true},
	}
	var notes []string
	for _, r := range rows {
		sd := d.Scenarios[r.scenario]
		if sd == nil {
			continue
		}
		label := fmt.Sprintf(r.label, thousands(float64(sd.Size)))
		riverMetric := r.metric
		if r.scenario == "campaign" {
			riverMetric = "drain_rate"
		}
		cells := []string{}
		for _, sys := range []string{"phonehome", "River"} {
			if reason, ok := sd.Errors[sys]; ok {
				notes = append(notes, fmt.Sprintf("%s %s: %s", sys, r.scenario, reason))
				cells = append(cells, fmt.Sprintf("n/a [%d]", len(notes)))
				continue
			}
			metric := r.metric
			if sys == "River" {
				metric = riverMetric
			}
			cells = append(cells, cell(sd.Values[metric+"|"+sys], r.format))
		}
		ratio := "—"
		ph, ok1 := medianOf(sd, r.metric+"|phonehome")
		rv, ok2 := medianOf(sd, riverMetric+"|River")
		if ok1 && ok2 && ph > 0 && rv > 0 {
			switch {
			case r.higherBetter:
				ratio = fmt.Sprintf("%.2f×", ph/rv)
			case ph <= rv:
				ratio = fmt.Sprintf("%.2f× faster", rv/ph)
			default:
				ratio = fmt.Sprintf("%.2f× slower", ph/rv)
			}
		}
		w("| %s | %s | %s |\n", label, strings.Join(cells, " | "), ratio)
	}
	w("\n")
	for i, n := range notes {
		w("[%d] %s\n\n", i+1, n)
	}

	w("### Targets (issue 13)\n\n| target | measured (medians) | met? |\n|---|---|---|\n")
	cmp := func(scenario, metric, label string, format func(float64) string, stretch float64) {
		sd := d.Scenarios[scenario]
		ph, ok1 := medianOf(sd, metric+"|phonehome")
		rv, ok2 := medianOf(sd, metric+"|River")
		if !ok1 || !ok2 {
			w("| %s | not measured | — |\n", label)
			return
		}
		met := "no"
		switch {
		case ph >= stretch*rv:
			met = "yes, and the stretch"
		case ph >= rv:
			met = "yes"
		}
		w("| %s | %s vs %s (%.2f×) | %s |\n", label, format(ph), format(rv), ph/rv, met)
	}
	cmp("w1", "drain_rate", "W1 drain at least River's (stretch 2×)", thousands, 2)
	cmp("w2", "attempt_rate", "W2 attempts/s at least River's (stretch 2×)", thousands, 2)
	if p50, ok := medianOf(d.Scenarios["w3"], "p50_ms|phonehome"); ok {
		w("| W3 p50 < 2 ms | %s ms | %s |\n", millis(p50), yesNo(p50 < 2))
	} else {
		w("| W3 p50 < 2 ms | not measured | — |\n")
	}
	if p, ok := medianOf(d.Scenarios["dash"], "`GET /jobs` (counts, queue table, chart, newest 50)|phonehome"); ok {
		w("| the 1M-job dashboard page (`GET /jobs`) under 50 ms | %s ms | %s |\n", millis(p), yesNo(p < 50))
	}
	w("\n")
	renderDash(&b, d)
	w("\n### How each system was set up\n\n")
	for _, s := range pgQueueSystems {
		w("- **%s**: %s\n", s.Name, s.Settings)
	}
	w("\nThe workloads are the SQLite section's (W1, W2, W3 with the same seeded random gaps; the campaign through " +
		"the real binary with `-db` naming the run's database, checked in the database at the end: every row home, " +
		"every call's job completed).\n\n")
	if analysis = strings.TrimSpace(analysis); analysis != "" {
		w("### What the figures say\n\n%s\n\n", analysis)
	}
	js, _ := json.Marshal(d)
	w("%s%s -->\n", dataMarker, js)
	return b.String()
}

// redactCommand hides the -pg URL's credentials in the command shown.
func redactCommand(command string) string {
	fields := strings.Fields(command)
	for i, f := range fields {
		if i > 0 && (fields[i-1] == "-pg" || fields[i-1] == "--pg") {
			fields[i] = "$PHONEHOME_TEST_POSTGRES"
		} else if v, ok := strings.CutPrefix(f, "-pg="); ok && v != "" {
			fields[i] = "-pg=$PHONEHOME_TEST_POSTGRES"
		}
	}
	return strings.Join(fields, " ")
}
