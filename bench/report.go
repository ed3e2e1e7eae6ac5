package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/phonehome/phonehome/bench/mdreport"
	"github.com/phonehome/phonehome/views"
)

// sectionHeading is the heading of the one section of BENCHMARKS.md this
// command owns; everything else in the file belongs to others.
var sectionHeading = "## Job queue (issue 3)"

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
		"github.com/riverqueue/river/riverdriver/riverpgxv5":  "riverpgxv5",
		"github.com/jackc/pgx/v5":                             "pgx",
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
		{"w1", "drain_rate", "W1 drain, 50 workers, no-op (jobs/s)", thousands, "lean_job_rate"},
		{"w1", "drain_s", "W1 drain (time)", secs, ""},
		{"w2", "attempt_rate", "W2 retry, " + size("w2") + " jobs, ≤ 5 attempts (attempts/s)", thousands, "lean_job_rate"},
		{"w2", "drain_s", "W2 time to drain", secs, ""},
		{"w3", "p50_ms", "W3 insert-to-start p50 (ms)", millis, ""},
		{"w3", "p99_ms", "W3 insert-to-start p99 (ms)", millis, ""},
		{"raw", "lean_row_rate", "**Raw, lean table (the ceiling)**: UPDATE rows/s, one statement per row, 1,000 rows per transaction", thousands, "lean_row_rate"},
		{"raw", "lean_rate", "Raw, lean table: UPDATE rows/s, one statement per 1,000-row range (no queue can batch this way; context)", thousands, "lean_rate"},
		{"raw", "job_rate", "Raw, phonehome's own table (its indexes and triggers): jobs/s, the faster variant below ÷ 2 (own-table ceiling)", thousands, "job_rate"},
		{"raw", "update_rate", "Raw, phonehome's table: UPDATE rows/s, one statement per row, 1,000 rows per transaction", thousands, "update_rate"},
		{"raw", "range_rate", "Raw, phonehome's table: UPDATE rows/s, one statement per 1,000-row range", thousands, "range_rate"},
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
	w("> **Shared machine.** The 2-core machine is a virtual machine on shared hardware, whose speed varies from run " +
		"to run (the spreads show it); trust ratios more than absolute figures, and re-run the command to compare on yours.\n\n")
	w("Each cell is the **median of the runs, with the spread (min–max)** in brackets. Every run of every scenario " +
		"uses a fresh file-backed SQLite database (WAL) in a new temp directory; the systems take turns within each " +
		"run, so background noise hits them alike.\n\n")

	for _, name := range names {
		sd := d.Scenarios[name]
		if sd.Date != latest || sd.Machine != machine || sd.Rev != rev {
			w("- Scenario %s was measured at another time (%s, runs: %d, phonehome at %s, on %s%s) and kept from then.\n",
				name, sd.Date, sd.Runs, sd.Rev, sd.Machine, commandNote(sd.Command))
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
					if r.raw == "lean_job_rate" && rawCell != "—" {
						rawCell += " jobs/s ceiling (lean table)"
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
	renderCampaign(&b, d)
	renderDash(&b, d)

	w("### How each system was set up\n\n")
	w("All use modernc.org/sqlite (pure Go), a file-backed database in WAL mode with `synchronous=NORMAL`, " +
		"`busy_timeout=5000`, `cache_size=-32000`, `temp_store=MEMORY`, one write connection, 50 concurrent workers, " +
		"no backoff, 5 attempts at most, and no logging.\n\n")
	for _, s := range queueSystems {
		w("- **%s**: %s\n", s.Name, s.Settings)
	}
	w("- **raw SQLite, the ceiling**: a *lean* queue table (`id`, `state`, `queue`, `args`, `attempt`, `scheduled_at`, " +
		"`attempted_at`, `completed_at`; one partial fetch index; no triggers) in a database file of its own, opened with " +
		"the pragmas above and one connection; N rows each updated twice by primary key — a claim (`state`, `attempt`, " +
		"`attempted_at`) and a finish (`state`, `completed_at`) — one prepared `UPDATE` per row, 1,000 rows per " +
		"transaction. Rows/s counts both updates; the **jobs/s ceiling** is rows/s ÷ 2 (a job is two writes): the least " +
		"write work a queue does per job (or per attempt), batched as well as a queue can. The same two updates as one " +
		"`UPDATE … WHERE id >= ? AND id < ?` per 1,000-row range are shown for context (no queue finishes jobs in id " +
		"ranges).\n")
	w("- **raw SQLite on phonehome's own table** (labelled apart; it includes the schema's cost): the `jobs` table with " +
		"its indexes and triggers, through its writer connection (`store.Open`, same pragmas); 2N rows inserted, then " +
		"the same claim (also `attempted_by`) and finish: N rows with one prepared `UPDATE` per row, 1,000 rows per " +
		"transaction, and N rows with one `UPDATE` per 1,000-row range; the own-table jobs/s is N ÷ the faster variant's " +
		"two passes. Single-row commits: 5,000 `UPDATE`s, each in its own transaction.\n\n")
	w("### Workloads\n\n")
	w("- **W1 drain**: N jobs (`-jobs`, 100,000) inserted in bulk before the workers start (insert time reported " +
		"apart), then worked by 50 workers with a no-op handler. Timed from `Start` until a graceful `Stop` returns " +
		"after the last job ran, so every outcome is written; the command then checks that no job is left unfinished.\n")
	w("- **W2 retry**: N/10 jobs, at most 5 attempts, zero backoff; attempt *a* of job *n* succeeds when " +
		"splitmix64(n<<8 | a) mod 5 = 0 (probability 1/5, identical in every system). Timed like W1; attempts/s = " +
		"all attempts ÷ time to drain.\n")
	w("- **W3 latency**: workers started and idle; 200 times (after 3 untimed), insert one job the way an application " +
		"does (`Insert` in its own transaction, in the same process) and measure until the handler's first line runs; " +
		"after each, a random pause of 10–60 ms (uniform, so no system's polling locks onto the inserts; drawn from a " +
		"seeded generator, `-w3-seed`, the same sequence for every system in a run) so the workers are idle again.\n")
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

// mediansOf is medianOf of each key, and whether every one was measured.
func mediansOf(sd *scenarioData, keys ...string) ([]float64, bool) {
	out := make([]float64, len(keys))
	for i, k := range keys {
		v, ok := medianOf(sd, k)
		if !ok {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// bestPeer is the peer with the highest median of metric in sd (higher is
// better), or "" when none has one.
func bestPeer(sd *scenarioData, metric string) (float64, string) {
	best, bestName := 0.0, ""
	for _, s := range queueSystems[1:] {
		if v, ok := medianOf(sd, metric+"|"+s.Name); ok && v > best {
			best, bestName = v, s.Name
		}
	}
	return best, bestName
}

func renderTargets(b *strings.Builder, d *benchData) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("### Targets (issue 3)\n\n| target | measured (medians) | met? |\n|---|---|---|\n")
	lean, leanOK := medianOf(d.Scenarios["raw"], "lean_job_rate|raw")
	own, ownOK := medianOf(d.Scenarios["raw"], "job_rate|raw")
	for _, t := range []struct{ scenario, metric, what, unit string }{
		{"w1", "drain_rate", "W1", "jobs/s"},
		{"w2", "attempt_rate", "W2", "attempts/s"},
	} {
		sd := d.Scenarios[t.scenario]
		ph, ok := medianOf(sd, t.metric+"|phonehome")
		if !ok {
			continue
		}
		if best, bestName := bestPeer(sd, t.metric); bestName != "" {
			w("| %s ≥ 2× the faster peer | phonehome %s %s vs %s %s: **%.1f×** | %s |\n", t.what, thousands(ph), t.unit,
				bestName, thousands(best), ph/best, yesNo(ph >= 2*best))
		}
		if leanOK {
			w("| %s within 3× of raw SQLite (≥ ⅓ of the %s jobs/s ceiling: lean table, one UPDATE per row, 1,000 rows per transaction, two writes a job) | %s %s = **1/%.1f** of the ceiling | %s |\n",
				t.what, thousands(lean), thousands(ph), t.unit, lean/ph, yesNo(3*ph >= lean))
		}
		if ownOK {
			w("| (context, not the ceiling) %s against the %s jobs/s own-table ceiling (phonehome's indexes and triggers) | **1/%.1f** of it | — |\n",
				t.what, thousands(own), own/ph)
		}
	}
	if p50, ok := medianOf(d.Scenarios["w3"], "p50_ms|phonehome"); ok {
		w("| W3 p50 < 5 ms in-process | %s ms | %s |\n", millis(p50), yesNo(p50 < 5))
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
			millis(worst), yesNo(worst < 50))
	}
	w("\n")
	renderSpeedTargets(b, d)
}

// renderSpeedTargets writes the targets of issue 12 ("Speed"), each from
// the medians of the same invocation's runs.
func renderSpeedTargets(b *strings.Builder, d *benchData) {
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }
	if m, ok := mediansOf(d.Scenarios["campaign"], "rows_rate|phonehome", "drain_rate|River", "ratio|phonehome"); ok {
		ph, rv, ratio := m[0], m[1], m[2]
		add("| Phone Home campaign ≥ 2× River's drain of as many no-op jobs (stretch 30,000 rows/s) | %s rows/s vs River %s jobs/s: **%.2f×** (median of the runs' ratios) | %s |",
			thousands(ph), thousands(rv), ratio, yesNo(ratio >= 2))
	}
	if ph, ok := medianOf(d.Scenarios["w1"], "drain_rate|phonehome"); ok {
		add("| W1 drain ≥ 40,000 jobs/s (stretch 80,000) | %s jobs/s | %s |", thousands(ph), yesNo(ph >= 40_000))
	}
	if ph, ok := medianOf(d.Scenarios["w2"], "attempt_rate|phonehome"); ok {
		add("| W2 ≥ 35,000 attempts/s | %s attempts/s | %s |", thousands(ph), yesNo(ph >= 35_000))
	}
	if m, ok := mediansOf(d.Scenarios["w1"], "insert_s|phonehome", "insert_s|backlite"); ok {
		ph, bl := m[0], m[1]
		add("| Bulk insert of %s jobs faster than backlite | %s vs %s | %s |", thousands(float64(d.Scenarios["w1"].Size)), secs(ph), secs(bl), yesNo(ph < bl))
	}
	if m, ok := mediansOf(d.Scenarios["w3"], "p50_ms|phonehome", "p99_ms|phonehome", "p99_ms|backlite"); ok {
		p50, p99, bl99 := m[0], m[1], m[2]
		add("| W3 insert-to-start p50 < 0.4 ms and p99 below backlite's | p50 %s ms; p99 %s ms vs backlite %s ms | %s |",
			millis(p50), millis(p99), millis(bl99), yesNo(p50 < 0.4 && p99 < bl99))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### Targets (issue 12)\n\n| target | measured (medians) | met? |\n|---|---|---|\n%s\n\n", strings.Join(lines, "\n"))
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

// renderCampaign writes the table of the campaign scenario.
func renderCampaign(b *strings.Builder, d *benchData) {
	sd := d.Scenarios["campaign"]
	if sd == nil {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("### Phone Home campaign through the real binary, against River (issue 12)\n\n")
	w("Each run: `phonehome seed -ets %s` on a fresh database; `phonehome -answer-rate 1 -backoff 0s` on it; one "+
		"client reading the whole stream (`/events?stream=extraterrestrials`, every event); `POST /api/phone-home`, timed "+
		"from just before the POST until `GET /api/extraterrestrials?status=…&limit=1` finds no row never tried, "+
		"phoning home or without answer (polled every %d ms); then the file is checked read-only (every row "+
		"`space_taxi_on_the_way`, every call's job completed). In the same run River drains as many no-op jobs "+
		"(W1's code: bulk insert apart, then timed from `Start` to a graceful `Stop`); the two take turns, the first "+
		"one alternating between runs. The campaign's time includes its enqueue; River's does not include its insert.\n\n",
		thousands(float64(sd.Size)), campaignPoll.Milliseconds())
	for _, sys := range []string{"phonehome", "River"} {
		if reason, ok := sd.Errors[sys]; ok {
			w("%s: not measured: %s\n\n", sys, reason)
		}
	}
	v := func(key string, format func(float64) string) string { return cell(sd.Values[key], format) }
	oneDec := func(x float64) string { return fmt.Sprintf("%.1f", x) }
	twoDec := func(x float64) string { return fmt.Sprintf("%.2f×", x) }
	w("| %s rows (jobs) | phonehome campaign | River, no-op jobs |\n|---|---:|---:|\n", thousands(float64(sd.Size)))
	w("| start to every row home (phonehome) / drain (River), time | %s | %s |\n", v("campaign_s|phonehome", secs), v("drain_s|River", secs))
	w("| rows home per second / jobs per second | %s | %s |\n", v("rows_rate|phonehome", thousands), v("drain_rate|River", thousands))
	w("| ratio phonehome ÷ River (each run's own) | %s | |\n", v("ratio|phonehome", twoDec))
	w("| enqueue: `POST /api/phone-home` round trip (ms) / River's bulk insert (s, not in its time) | %s | %s |\n",
		v("post_ms|phonehome", oneDec), v("insert_s|River", secs))
	w("| POST to the whole-stream client holding every row's event | %s | |\n", v("client_s|phonehome", secs))
	w("| events the client received; of them row events; resyncs | %s; %s; %s | |\n",
		v("events|phonehome", thousands), v("row_events|phonehome", thousands), v("client_resync|phonehome", thousands))
	w("| bytes the client read (MB) | %s | |\n\n", v("stream_mb|phonehome", oneDec))
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

// commandNote names the command that measured a scenario kept from an
// earlier run (its -out left out: where it wrote is not how it measured).
func commandNote(command string) string {
	if command == "" {
		return ""
	}
	return ", with `" + regexp.MustCompile(` -out \S+`).ReplaceAllString(command, "") + "`"
}
