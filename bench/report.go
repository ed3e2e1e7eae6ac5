package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/phonehome/phonehome/bench/mdreport"
	"github.com/phonehome/phonehome/views"
)

// sectionHeading is the heading of the one section of BENCHMARKS.md this
// command owns; everything else in the file belongs to others.
const sectionHeading = "## Job queue (issue 3)"

// dataMarker starts the HTML comment that carries the raw numbers, so a
// later run with -only can keep the scenarios it did not run.
const dataMarker = "<!-- jobsbench:data "

// scenarioData is what one scenario measured in one invocation.
type scenarioData struct {
	Date    string               `json:"date"`
	Machine string               `json:"machine"`
	Runs    int                  `json:"runs"`
	Size    int                  `json:"size"`
	Values  map[string][]float64 `json:"values"`            // "metric|system" → one value per run
	Errors  map[string]string    `json:"errors"`            // system → why it has no numbers
	Rev     string               `json:"rev,omitempty"`     // the app's commit measured
	Command string               `json:"command,omitempty"` // the command that measured it
	How     string               `json:"how,omitempty"`
	Order   []string             `json:"order,omitempty"` // dashboard rows in order
}

func newScenarioData(date, machine, rev string, runs, size int) *scenarioData {
	return &scenarioData{Date: date, Machine: machine, Rev: rev, Runs: runs, Size: size,
		Values: map[string][]float64{}, Errors: map[string]string{}}
}

func (d *scenarioData) add(system string, metrics map[string]float64) {
	for m, v := range metrics {
		k := m + "|" + system
		d.Values[k] = append(d.Values[k], v)
	}
}

// benchData is every scenario's latest numbers.
type benchData struct {
	Scenarios map[string]*scenarioData `json:"scenarios"`
}

// moduleVersions lists the versions of the modules that matter here.
func moduleVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	want := map[string]string{
		"github.com/riverqueue/river":                         "river",
		"github.com/riverqueue/river/riverdriver/riversqlite": "riversqlite",
		"github.com/mikestefanello/backlite":                  "backlite",
		"modernc.org/sqlite":                                  "modernc.org/sqlite",
	}
	var parts []string
	for _, m := range bi.Deps {
		if name, ok := want[m.Path]; ok {
			v := m.Version
			if m.Replace != nil {
				v = m.Replace.Version
			}
			parts = append(parts, name+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// cell formats the median and spread of values.
func cell(values []float64, format func(float64) string) string {
	if len(values) == 0 {
		return "—"
	}
	lo, hi := values[0], values[0]
	for _, v := range values {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if len(values) == 1 {
		return format(values[0])
	}
	bare := func(v float64) string { return strings.TrimSuffix(format(v), " s") }
	return fmt.Sprintf("%s (%s–%s)", format(median(values)), bare(lo), bare(hi))
}

// thousands formats v rounded, with thin thousands separators, as the
// app's pages do.
func thousands(v float64) string { return views.Thousands(int(math.RoundToEven(v))) }

func secs(v float64) string { return fmt.Sprintf("%.2f s", v) }

func millis(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// comparisonPrefix starts the names of dashboard rows that are shown for
// comparison only, not pages the target applies to.
const comparisonPrefix = "for comparison"

// row is one line of the main table.
type row struct {
	scenario, metric, label string
	format                  func(float64) string
	raw                     string // the raw-SQLite metric shown beside it, if any
}

func mainRows(d *benchData) []row {
	size := func(s string) string {
		if sd := d.Scenarios[s]; sd != nil {
			return thousands(float64(sd.Size))
		}
		return "?"
	}
	return []row{
		{"w1", "insert_s", "W1 bulk insert of " + size("w1") + " jobs (time)", secs, "insert_s"},
		{"w1", "drain_rate", "W1 drain, 50 workers, no-op (jobs/s)", thousands, "job_rate"},
		{"w1", "drain_s", "W1 drain (time)", secs, ""},
		{"w2", "attempt_rate", "W2 retry, " + size("w2") + " jobs, ≤ 5 attempts (attempts/s)", thousands, "job_rate"},
		{"w2", "drain_s", "W2 time to drain", secs, ""},
		{"w3", "p50_ms", "W3 insert-to-start p50 (ms)", millis, ""},
		{"w3", "p99_ms", "W3 insert-to-start p99 (ms)", millis, ""},
		{"raw", "update_rate", "Raw, phonehome's table: UPDATE rows/s, one statement per row, 1,000 rows per transaction", thousands, "update_rate"},
		{"raw", "range_rate", "Raw, phonehome's table: UPDATE rows/s, one statement per 1,000-row range", thousands, "range_rate"},
		{"raw", "lean_rate", "Raw, lean table (one partial index): UPDATE rows/s, 1,000-row ranges", thousands, "lean_rate"},
		{"raw", "single_commits", "Raw, phonehome's table: single-row UPDATE commits/s", thousands, "single_commits"},
	}
}

// render writes the section (heading included) from d.
func render(d *benchData, analysis string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s\n\n", sectionHeading)
	latest, machine, rev, command := "", "", "", "go run ."
	names := make([]string, 0, len(d.Scenarios))
	for name, sd := range d.Scenarios {
		names = append(names, name)
		if sd.Date > latest {
			latest, machine, rev = sd.Date, sd.Machine, sd.Rev
			if sd.Command != "" {
				command = sd.Command
			}
		}
	}
	slices.Sort(names)
	w("Command, from `bench/`: `%s` (one `go run .` runs every scenario; `-only` picks some). ", command)
	w("Last run %s on: %s. phonehome at %s; %s.\n\n", latest, machine, rev, moduleVersions())
	w("> **Shared machine.** The 2-core machine ran other work now and then during the runs (the spread shows it); " +
		"trust ratios more than absolute figures, and re-run the command to compare on yours.\n\n")
	w("Each cell is the **median of the runs, with the spread (min–max)** in brackets. Every run of every scenario " +
		"uses a fresh file-backed SQLite database (WAL) in a new temp directory; the systems take turns within each " +
		"run, so background noise hits them alike.\n\n")

	for _, name := range names {
		sd := d.Scenarios[name]
		if sd.Date != latest || sd.Machine != machine || sd.Rev != rev {
			w("- Scenario %s was measured at another time (%s, runs: %d, phonehome at %s, on %s) and kept from then.\n",
				name, sd.Date, sd.Runs, sd.Rev, sd.Machine)
		}
	}

	w("\n### Queues: phonehome vs River vs backlite, and raw SQLite's ceiling\n\n")
	w("| workload | phonehome | River | backlite | raw SQLite |\n|---|---:|---:|---:|---:|\n")
	var notes []string
	note := func(s string) string {
		for i, n := range notes {
			if n == s {
				return fmt.Sprintf("n/a [%d]", i+1)
			}
		}
		notes = append(notes, s)
		return fmt.Sprintf("n/a [%d]", len(notes))
	}
	for _, r := range mainRows(d) {
		sd := d.Scenarios[r.scenario]
		if sd == nil {
			continue
		}
		cells := make([]string, 0, 4)
		if r.scenario == "raw" {
			cells = append(cells, "", "", "")
		} else {
			for _, sys := range queueSystems {
				if reason, ok := sd.Errors[sys.Name]; ok {
					cells = append(cells, note(sys.Name+" "+r.scenario+": "+reason))
					continue
				}
				cells = append(cells, cell(sd.Values[r.metric+"|"+sys.Name], r.format))
			}
		}
		rawCell := ""
		if r.raw != "" {
			if raw := d.Scenarios["raw"]; raw != nil {
				if reason, ok := raw.Errors["raw"]; ok {
					rawCell = note("raw: " + reason)
				} else if r.raw == "insert_s" {
					// The raw insert of the same number of rows, for scale.
					if v := raw.Values["insert_rate|raw"]; len(v) > 0 && sd.Size > 0 {
						t := make([]float64, len(v))
						for i, x := range v {
							t[i] = float64(sd.Size) / x
						}
						rawCell = cell(t, secs)
					}
				} else {
					rawCell = cell(raw.Values[r.raw+"|raw"], thousands)
					if r.raw == "job_rate" {
						rawCell += " jobs/s ceiling"
					}
				}
			}
		}
		w("| %s | %s | %s |\n", r.label, strings.Join(cells, " | "), rawCell)
	}
	w("\n")
	for i, n := range notes {
		w("[%d] %s\n\n", i+1, n)
	}
	if sd := d.Scenarios["w2"]; sd != nil {
		if v := sd.Values["attempts|phonehome"]; len(v) > 0 {
			w("W2 makes exactly %s attempts in every system (the hash decides; the command checks the count).\n\n", thousands(v[0]))
		}
	}

	renderTargets(&b, d)
	renderDash(&b, d)

	w("### How each system was set up\n\n")
	w("All use modernc.org/sqlite (pure Go), a file-backed database in WAL mode with `synchronous=NORMAL`, " +
		"`busy_timeout=5000`, `cache_size=-32000`, `temp_store=MEMORY`, one write connection, 50 concurrent workers, " +
		"no backoff, 5 attempts at most, and no logging.\n\n")
	for _, s := range queueSystems {
		w("- **%s**: %s\n", s.Name, s.Settings)
	}
	w("- **raw SQLite**: phonehome's own `jobs` table (its indexes and triggers) through its writer connection " +
		"(`store.Open`, same pragmas); 2N rows inserted, then each updated twice — a claim (`state`, `attempt`, " +
		"`attempted_at`, `attempted_by`) and a finish (`state`, `completed_at`): N rows by primary key with one " +
		"prepared `UPDATE` per row, 1,000 rows per transaction, and N rows with one `UPDATE … WHERE id >= ? AND id < ?` " +
		"per 1,000-row range and transaction. Rows/s counts both updates; the **jobs/s ceiling** is N ÷ the time of the " +
		"faster variant's two passes: the least write work a queue does per job (or per attempt), batched as well as " +
		"possible, on the same schema. The *lean table* repeats the range variant on a table with only the columns " +
		"written and one partial fetch index, to show what the schema costs. Single-row commits: 5,000 `UPDATE`s, " +
		"each in its own transaction.\n\n")
	w("### Workloads\n\n")
	w("- **W1 drain**: N jobs (`-jobs`, 100,000) inserted in bulk before the workers start (insert time reported " +
		"apart), then worked by 50 workers with a no-op handler. Timed from `Start` until a graceful `Stop` returns " +
		"after the last job ran, so every outcome is written; the command then checks that no job is left unfinished.\n")
	w("- **W2 retry**: N/10 jobs, at most 5 attempts, zero backoff; attempt *a* of job *n* succeeds when " +
		"splitmix64(n<<8 | a) mod 5 = 0 (probability 1/5, identical in every system). Timed like W1; attempts/s = " +
		"all attempts ÷ time to drain.\n")
	w("- **W3 latency**: workers started and idle; 200 times (after 3 untimed), insert one job the way an application " +
		"does (`Insert` in its own transaction, in the same process) and measure until the handler's first line runs; " +
		"20 ms pause after each so the workers are idle again.\n")
	fmt.Fprint(&b, "- **Dashboard**: a fresh database filled with 1,000,000 jobs (`-dash-jobs`) in one SQL statement — 90 % "+
		"completed, 4 % discarded (with an error), 2 % available, 1.5 % retryable, 1.5 % scheduled, 0.9 % cancelled, "+
		"0.1 % executing; 3 queues, 6 kinds (one rare, 0.1 %) — then `ANALYZE`; each page 3 times untimed, then 21 "+
		"times; a run reports the p50.\n\n")
	if analysis != "" {
		w("### What holds phonehome back, and what costs it throughput\n\n%s\n", strings.TrimSpace(analysis))
		w("\n")
	}
	js, _ := json.Marshal(d)
	w("%s%s -->\n", dataMarker, js)
	return b.String()
}

func medianOf(sd *scenarioData, key string) (float64, bool) {
	if sd == nil {
		return 0, false
	}
	v := sd.Values[key]
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

func renderTargets(b *strings.Builder, d *benchData) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("### Targets (issue 3)\n\n| target | measured (medians) | met? |\n|---|---|---|\n")
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	raw, rawOK := medianOf(d.Scenarios["raw"], "job_rate|raw")
	for _, t := range []struct{ scenario, metric, what, unit string }{
		{"w1", "drain_rate", "W1", "jobs/s"},
		{"w2", "attempt_rate", "W2", "attempts/s"},
	} {
		sd := d.Scenarios[t.scenario]
		ph, ok := medianOf(sd, t.metric+"|phonehome")
		if !ok {
			continue
		}
		best, bestName := 0.0, ""
		for _, s := range queueSystems[1:] {
			if v, ok := medianOf(sd, t.metric+"|"+s.Name); ok && v > best {
				best, bestName = v, s.Name
			}
		}
		if bestName != "" {
			w("| %s ≥ 2× the faster peer | phonehome %s %s vs %s %s: **%.1f×** | %s |\n", t.what, thousands(ph), t.unit,
				bestName, thousands(best), ph/best, yes(ph >= 2*best))
		}
		if rawOK {
			w("| %s within 3× of raw SQLite (≥ ⅓ of the %s jobs/s ceiling on phonehome's table) | %s %s = **1/%.1f** of the ceiling | %s |\n",
				t.what, thousands(raw), thousands(ph), t.unit, raw/ph, yes(3*ph >= raw))
		}
		if lean, ok := medianOf(d.Scenarios["raw"], "lean_rate|raw"); ok {
			ceil := lean / 2
			w("| (context, not a target) %s against the lean table's %s jobs/s ceiling | **1/%.1f** of it | — |\n",
				t.what, thousands(ceil), ceil/ph)
		}
	}
	if p50, ok := medianOf(d.Scenarios["w3"], "p50_ms|phonehome"); ok {
		w("| W3 p50 < 5 ms in-process | %s ms | %s |\n", millis(p50), yes(p50 < 5))
	}
	if sd := d.Scenarios["dash"]; sd != nil && len(sd.Order) > 0 {
		worst, worstName := 0.0, ""
		for _, name := range sd.Order {
			if strings.HasPrefix(name, comparisonPrefix) {
				continue
			}
			if v, ok := medianOf(sd, name+"|phonehome"); ok && v > worst {
				worst, worstName = v, name
			}
		}
		w("| Dashboard < 50 ms at %s jobs | slowest: %s, %s ms | %s |\n", thousands(float64(sd.Size)), worstName,
			millis(worst), yes(worst < 50))
	}
	w("\n")
}

func renderDash(b *strings.Builder, d *benchData) {
	sd := d.Scenarios["dash"]
	if sd == nil {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("### Dashboard with %s jobs in the table\n\n", thousands(float64(sd.Size)))
	if reason, ok := sd.Errors["phonehome"]; ok {
		w("Not measured: %s\n\n", reason)
		return
	}
	if sd.How != "" {
		w("%s\n\n", sd.How)
	}
	w("| page | p50 (ms) |\n|---|---:|\n")
	for _, name := range sd.Order {
		w("| %s | %s |\n", name, cell(sd.Values[name+"|phonehome"], millis))
	}
	if v := sd.Values["fill_s|phonehome"]; len(v) > 0 {
		w("\nFilling the table took %s per run (one `INSERT … SELECT`).\n", cell(v, secs))
	}
	w("\n")
}

// loadData reads the numbers a previous run left in the section, if any.
func loadData(section string) *benchData {
	d := &benchData{Scenarios: map[string]*scenarioData{}}
	i := strings.Index(section, dataMarker)
	if i < 0 {
		return d
	}
	rest := section[i+len(dataMarker):]
	j := strings.Index(rest, " -->")
	if j < 0 {
		return d
	}
	var old benchData
	if err := json.Unmarshal([]byte(rest[:j]), &old); err == nil && old.Scenarios != nil {
		return &old
	}
	return d
}

// readSection returns our section of the file at path ("" when the file or
// the section is missing).
func readSection(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	_, section, _ := mdreport.SplitSection(string(b), sectionHeading)
	return section, nil
}

// writeSection replaces our section of the file at path with section.
func writeSection(path, section string) error {
	return mdreport.WriteSection(path, sectionHeading, section)
}

// appRevision names the phonehome commit being measured, and says so when
// the engine's files had uncommitted changes.
func appRevision() string {
	out, err := exec.Command("git", "-C", "..", "log", "-1", "--format=%h").Output()
	if err != nil {
		return "an unknown commit"
	}
	rev := "commit " + strings.TrimSpace(string(out))
	dirty, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--", "jobs", "store", "migrations").Output()
	if err == nil && len(bytes.TrimSpace(dirty)) > 0 {
		rev += " (with uncommitted changes in jobs/, store/ or migrations/)"
	}
	return rev
}
