package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/phonehome/phonehome/bench/mdreport"
)

// scenarios are the names -only accepts, in the order they run.
var scenarios = []string{"w1", "w2", "w3", "raw", "dash", "campaign"}

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	runs := flag.Int("runs", 3, "runs of each scenario (the table shows their median and spread)")
	only := flag.String("only", strings.Join(scenarios, ","), "comma-separated scenarios to run: "+strings.Join(scenarios, ", ")+
		`; or "nodes" alone, with -pg: 1–3 phonehome binaries on one database (its own section, nodes.go)`+
		` ("none" re-renders the section from the numbers it holds, e.g. after editing analysis.md)`)
	nJobs := flag.Int("jobs", 100_000, "W1 jobs (W2 uses a tenth, raw SQLite the same number)")
	dashJobs := flag.Int("dash-jobs", 1_000_000, "jobs in the table for the dashboard scenario")
	w3Count := flag.Int("w3-count", 200, "W3 timed jobs")
	w3Seed := flag.Uint64("w3-seed", 1, "seed of W3's random gaps between inserts (run r uses seed+r-1; every system gets the same gaps)")
	systems := flag.String("systems", "phonehome,river,backlite", "comma-separated queues for W1–W3")
	out := flag.String("out", "../BENCHMARKS.md", "file whose \"## Job queue (issue 3)\" section is replaced")
	analysisPath := flag.String("analysis", "analysis.md", "markdown included as the section's analysis, if the file exists (with -pg: analysis-pg.md; with -only nodes: analysis-nodes.md)")
	flag.StringVar(&dashVia, "dash-via", dashVia, "how the dashboard is measured: app (through the router) or lib (jobs.List and the engine's counts)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole command to this file")
	flag.BoolVar(&countBatches, "count-batches", false, "W1, W2: set phonehome's Config.OnChange and report the committed batches of claims and outcomes (how many, how many of one job, jobs per batch)")
	campaignRows := flag.Int("campaign-rows", 20_000, "extraterrestrials in the campaign scenario (River drains as many no-op jobs)")
	appRoot := flag.String("app", "..", "the phonehome module's folder, built with go build for the campaign scenario")
	appProfile := flag.String("app-cpuprofile", "", "campaign: the app's CPU profile, through its -cpuprofile flag (FILE, or FILE with .runN before the extension when -runs > 1)")
	flag.StringVar(&pgServer, "pg", "", "measure on this PostgreSQL server instead of SQLite files (a postgres:// URL of a user that may create databases; each run gets a database of its own): W1–W3 and the campaign, phonehome against River, into the section \""+pgSectionHeading+"\"")
	flag.Parse()
	if onPostgres() {
		sectionHeading = pgSectionHeading
		queueSystems = pgQueueSystems
		campaignPeer = riverPGSystem
		if !flagSet("only") {
			*only = strings.Join(pgScenarios, ",")
		}
		if !flagSet("analysis") {
			*analysisPath = "analysis-pg.md"
		}
	}
	// The many-node scenario (nodes.go) writes a section of its own.
	if *only == nodesScenario {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		if !flagSet("analysis") {
			*analysisPath = "analysis-nodes.md"
		}
		analysis, _ := os.ReadFile(*analysisPath)
		if err := runNodesBench(ctx, *runs, *appRoot, *out, string(analysis)); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(strings.ToLower(s))
		if s == "" || s == "none" {
			continue
		}
		if !slices.Contains(scenarios, s) {
			log.Fatalf("-only: unknown scenario %q (want some of %s)", s, strings.Join(scenarios, ", "))
		}
		if onPostgres() && !slices.Contains(pgScenarios, s) {
			log.Fatalf("-only: scenario %q is not measured on PostgreSQL (-pg takes %s)", s, strings.Join(pgScenarios, ", "))
		}
		want[s] = true
	}
	var syss []queueSystem
	for _, s := range queueSystems {
		if strings.Contains(","+strings.ToLower(*systems)+",", ","+strings.ToLower(s.Name)+",") {
			syss = append(syss, s)
		}
	}
	if dashVia != "app" && dashVia != "lib" {
		log.Fatalf("-dash-via: %q is neither app nor lib", dashVia)
	}
	if *runs < 1 || *nJobs < 10 || *dashJobs < 100 || *w3Count < 1 || *campaignRows < 1 {
		log.Fatal("-runs, -jobs, -dash-jobs, -w3-count and -campaign-rows must be positive (-jobs ≥ 10, -dash-jobs ≥ 100)")
	}
	if *appProfile != "" {
		abs, err := filepath.Abs(*appProfile)
		if err != nil {
			log.Fatal(err)
		}
		*appProfile = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	section, err := readSection(*out)
	if err != nil {
		log.Fatal(err)
	}
	data := loadData(section)
	date := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	machine := mdreport.Machine()
	rev := appRevision()
	if onPostgres() {
		machine += fmt.Sprintf(", %s (fsync %s, synchronous_commit %s)", pgVersion(ctx), pgSetting(ctx, "fsync"), pgSetting(ctx, "synchronous_commit"))
	}
	log.Printf("%s; %s; phonehome at %s", machine, date, rev)

	sizes := map[string]int{"w1": *nJobs, "w2": max(*nJobs/10, 1), "w3": *w3Count, "raw": *nJobs, "dash": *dashJobs,
		"campaign": *campaignRows}

	// The campaign runs the real binary, built once.
	var app appBinary
	if want["campaign"] {
		binDir, err := os.MkdirTemp("", "jobsbench-app-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(binDir)
		if app, err = buildApp(ctx, *appRoot, binDir); err != nil {
			os.RemoveAll(binDir)
			log.Fatal(err)
		}
		if *appProfile != "" && !app.CPUProfileFlag {
			os.RemoveAll(binDir)
			log.Fatal("-app-cpuprofile: the phonehome built from " + *appRoot + " has no -cpuprofile flag on serve " +
				"(and no /debug/pprof); see bench/README.md")
		}
	}
	fresh := map[string]*scenarioData{}
	for _, s := range scenarios {
		if want[s] {
			fresh[s] = newScenarioData(date, machine, rev, *runs, sizes[s])
		}
	}

	for run := 1; run <= *runs; run++ {
		for _, s := range scenarios {
			if !want[s] {
				continue
			}
			sd := fresh[s]
			switch s {
			case "raw":
				measure(ctx, sd, run, s, "raw", func(dir string) (map[string]float64, error) {
					return runRaw(ctx, dir, sizes[s])
				})
			case "campaign":
				// The two take turns, the first one alternating between
				// runs, so a drift in the machine's load hits both alike.
				order := []string{"phonehome", "River"}
				if run%2 == 0 {
					order = []string{"River", "phonehome"}
				}
				for _, sys := range order {
					measure(ctx, sd, run, s, sys, func(dir string) (map[string]float64, error) {
						if sys == "River" {
							return runW1(ctx, campaignPeer, dir, sizes[s])
						}
						return runCampaign(ctx, app, dir, sizes[s], profilePath(*appProfile, run, *runs))
					})
				}
				ph, rv := sd.Values["rows_rate|phonehome"], sd.Values["drain_rate|River"]
				if len(ph) == run && len(rv) == run {
					sd.Values["ratio|phonehome"] = append(sd.Values["ratio|phonehome"], ph[run-1]/rv[run-1])
				}
			case "dash":
				measure(ctx, sd, run, s, "phonehome", func(dir string) (map[string]float64, error) {
					m, how, order, err := dashboard(ctx, dir, sizes[s])
					if err == nil {
						sd.How, sd.Order = how, order
					}
					return m, err
				})
			default:
				for _, sys := range syss {
					fn := map[string]func(context.Context, queueSystem, string, int) (map[string]float64, error){
						"w1": runW1, "w2": runW2,
						"w3": func(ctx context.Context, sys queueSystem, dir string, n int) (map[string]float64, error) {
							return runW3(ctx, sys, dir, n, *w3Seed+uint64(run-1))
						},
					}[s]
					measure(ctx, sd, run, s, sys.Name, func(dir string) (map[string]float64, error) {
						return fn(ctx, sys, dir, sizes[s])
					})
				}
			}
			if ctx.Err() != nil {
				log.Fatal("interrupted; BENCHMARKS.md left as it was")
			}
		}
	}

	command := "go run ."
	if len(os.Args) > 1 {
		command = redactCommand(command + " " + strings.Join(os.Args[1:], " "))
	}
	for s, sd := range fresh {
		sd.Command = command
		data.Scenarios[s] = sd
	}
	analysis, _ := os.ReadFile(*analysisPath)
	renderSection := render
	if onPostgres() {
		renderSection = renderPG
	}
	if err := writeSection(*out, renderSection(data, string(analysis))); err != nil {
		log.Fatal(err)
	}
	abs, _ := filepath.Abs(*out)
	log.Printf("wrote section %q of %s", sectionHeading, abs)
}

// measure runs one scenario for one system on a fresh temp directory and
// records its metrics, or the reason it failed (a failed run keeps the
// system out of that scenario's table, with the reason shown).
func measure(ctx context.Context, sd *scenarioData, run int, scenario, system string, fn func(dir string) (map[string]float64, error)) {
	if ctx.Err() != nil {
		return
	}
	if _, failed := sd.Errors[system]; failed {
		return
	}
	dir, err := os.MkdirTemp("", "jobsbench-"+scenario+"-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	m, err := fn(dir)
	if dropErr := dropDatabases(context.WithoutCancel(ctx)); dropErr != nil {
		log.Fatal(dropErr)
	}
	if err != nil {
		log.Printf("run %d %-4s %-9s FAILED after %s: %v", run, scenario, system, time.Since(t0).Round(time.Millisecond), err)
		sd.Errors[system] = err.Error()
		return
	}
	sd.add(system, m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, m[k]))
	}
	log.Printf("run %d %-4s %-9s %s (%s)", run, scenario, system, strings.Join(parts, " "), time.Since(t0).Round(time.Millisecond))
}

// dashboard runs the dashboard scenario with the best target available.
func dashboard(ctx context.Context, dir string, rows int) (map[string]float64, string, []string, error) {
	target := dashTargetFor()
	var order []string
	wrapped := func(ctx context.Context, st *storeT, rows int) ([]dashPage, string, func(), error) {
		pages, how, closeFn, err := target(ctx, st, rows)
		for _, p := range pages {
			order = append(order, p.Name)
		}
		return pages, how, closeFn, err
	}
	m, how, err := runDash(ctx, dir, rows, wrapped)
	return m, how, order, err
}

// flagSet says whether the command line set the flag name.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
