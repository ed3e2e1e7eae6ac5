package main

// Fault test: a campaign survives SIGKILL with every call recorded once.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestFaultKillMidCampaign kills the server with SIGKILL several times at
// random moments of a 10,000-extraterrestrial campaign, restarting it each
// time, and checks the file once it is done: every extraterrestrial is home
// or out of attempts, exactly one job each, finished, whose attempts,
// errors and state agree with its row. The server is the plain build even
// under -race (with the race detector 10,000 calls take three minutes);
// under -race a 1,000-extraterrestrial campaign with 3 kills runs on the
// race-built server too, whose every run must report no data race.
func TestFaultKillMidCampaign(t *testing.T) {
	skipShort(t, "a 10,000-extraterrestrial campaign with kills and restarts of the real binary")
	t.Run("10000 calls, plain server", func(t *testing.T) { killMidCampaign(t, 10000, 5, true) })
	if raceEnabled() {
		t.Run("1000 calls, race-built server", func(t *testing.T) { killMidCampaign(t, 1000, 3, false) })
	}
}

// killMidCampaign is TestFaultKillMidCampaign with total extraterrestrials
// and kills kills, on the plain or the race-built server.
func killMidCampaign(t *testing.T, total, kills int, plain bool) {
	bin := phonehomeBinary(t, plain)
	path := storetest.DatabaseFor(t, "campaign.db")
	if code, _, stderr := runFaultBinary(t, bin, nil, "seed", "-db", path, "-ets", strconv.Itoa(total)); code != 0 {
		t.Fatalf("seed: exit %d: %s", code, stderr)
	}
	at := killMoments(rand.New(rand.NewPCG(faultSeed(t), 1)), total, kills)
	db := openFaultDB(t, path)
	args := []string{"-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms", "-grace", "5s"}
	srv := startFaultServer(t, bin, path, args...)
	start := time.Now()
	phoneHomeAll(t, srv.URL, total)
	// An interrupted attempt is a job executing in the killed process; one
	// that a later kill finds still waiting for its rescue counts once.
	interrupted := map[string]bool{}
	for i, n := range at {
		waitFinished(t, db, 3*time.Minute, n, fmt.Sprintf("kill %d", i+1))
		srv.kill()
		var executing []string
		if err := db.Select(&executing, "SELECT id || ' ' || attempted_by FROM jobs WHERE state = 'executing'"); err != nil {
			t.Fatal(err)
		}
		before := len(interrupted)
		for _, e := range executing {
			interrupted[e] = true
		}
		t.Logf("%s: kill %d after %d of %d calls finished: %d attempts interrupted (%d executing, waiting for their rescue)",
			time.Since(start).Round(time.Millisecond), i+1, finishedCalls(t, db), total, len(interrupted)-before, len(executing))
		srv = startFaultServer(t, bin, path, args...)
	}
	// The interrupted attempts are rescued once their process's heartbeat
	// is stale, so the last ones may take a minute or so.
	waitFinished(t, db, 4*time.Minute, total, "the campaign")
	t.Logf("%s: the campaign is finished", time.Since(start).Round(time.Millisecond))
	// Nothing runs anymore, but a stray claim would show in the checks below.
	if status, _ := faultCall(t, faultClient, "GET", srv.URL+"/api/extraterrestrials?limit=1", "", ""); status != 200 {
		t.Errorf("after the campaign: GET /api/extraterrestrials = %d", status)
	}
	srv.stop()
	tally := checkCampaign(t, db, total)
	if tally.rescued != len(interrupted) {
		t.Errorf("%d rescues recorded for %d attempts interrupted by the kills", tally.rescued, len(interrupted))
	}
	t.Logf("%d kills survived: %d calls made, %d attempts interrupted and rescued, none lost or counted twice; %d home, %d no answer after %d attempts",
		kills, tally.attempts, len(interrupted), tally.home, tally.noAnswer, 5)
}

// killMoments are when to kill a server during a campaign of total calls,
// as how many calls have finished by then: random, increasing, in the
// first 85 % of the campaign (a kill may come before any has).
func killMoments(rng *rand.Rand, total, kills int) []int {
	at := make([]int, kills)
	for i := range at {
		at[i] = rng.IntN(total * 85 / 100)
	}
	slices.Sort(at)
	return at
}

// finishedCalls is how many of the campaign's calls have finished, in the
// database db.
func finishedCalls(t *testing.T, db *sqlx.DB) int {
	return dbCount(t, db, "SELECT count(*) FROM jobs WHERE state IN ('completed', 'discarded', 'cancelled')")
}

// waitFinished waits, at most within, until n calls have finished (what
// names the moment in the failure).
func waitFinished(t *testing.T, db *sqlx.DB, within time.Duration, n int, what string) {
	t.Helper()
	waitUntil(t, within, fmt.Sprintf("%s: %d calls finished", what, n), func() (bool, string) {
		f := finishedCalls(t, db)
		return f >= n, fmt.Sprintf("%d finished", f)
	})
}

// phoneHomeAll starts the campaign on the server at url: every one of the
// total extraterrestrials enqueued.
func phoneHomeAll(t *testing.T, url string, total int) {
	t.Helper()
	if status, body := faultCall(t, faultClient, "POST", url+"/api/phone-home", "", ""); status != 200 || strings.TrimSpace(body) != fmt.Sprintf(`{"enqueued":%d}`, total) {
		t.Fatalf("phone home on %s: %d %s", url, status, body)
	}
}

// sql0String is a TEXT column that may be NULL (read as "").
type sql0String string

func (s *sql0String) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s = ""
	case string:
		*s = sql0String(v)
	case []byte:
		*s = sql0String(v)
	default:
		return fmt.Errorf("sql0String: %T", v)
	}
	return nil
}

// checkJobCounts compares the engine's per-queue, per-state counts (kept by
// triggers, when the schema has them) with the jobs table.
func checkJobCounts(t *testing.T, db *sqlx.DB) {
	t.Helper()
	if !slices.Contains(tableNames(t, db), "job_counts") {
		return
	}
	// Summed: on PostgreSQL job_counts is a ledger of deltas.
	if n := dbCount(t, db, `SELECT count(*) FROM (
			`+ledgerSums["job_counts"]+`
			EXCEPT SELECT queue, state, count(*) FROM jobs GROUP BY queue, state) AS d`); n != 0 {
		t.Errorf("job_counts disagrees with the jobs table in %d (queue, state) pairs", n)
	}
	if n := dbCount(t, db, `SELECT count(*) FROM (
			SELECT queue, state, count(*) FROM jobs GROUP BY queue, state
			EXCEPT SELECT queue, state, sum(n) FROM job_counts GROUP BY queue, state) AS d`); n != 0 {
		t.Errorf("job_counts misses %d (queue, state) pairs of the jobs table", n)
	}
}

// campaignTally is what a finished campaign did.
type campaignTally struct{ attempts, rescued, home, noAnswer int }

// checkCampaign checks a finished campaign of total extraterrestrials in
// the database, with the server gone: every extraterrestrial is home or out
// of attempts, exactly one job each, finished, whose attempts, errors and
// state agree with its row (an attempt run twice or lost shows there), and
// the job counts agree with the jobs.
func checkCampaign(t *testing.T, db *sqlx.DB, total int) campaignTally {
	t.Helper()
	// Each row beside its jobs.
	type jobRow struct {
		ET          int64  `db:"et"`
		State       string `db:"state"`
		Attempt     int    `db:"attempt"`
		MaxAttempts int    `db:"max_attempts"`
		Rescues     int    `db:"rescues"`
		Errors      string `db:"errors"`
	}
	var jobRows []jobRow
	if err := db.Select(&jobRows, `SELECT coalesce(CAST(args ->> 'extraterrestrial_id' AS BIGINT), 0) AS et, state, attempt,
			max_attempts, rescues, errors FROM jobs WHERE kind = 'speak_and_spell'`); err != nil {
		t.Fatal(err)
	}
	jobsOf := map[int64][]jobRow{}
	for _, j := range jobRows {
		jobsOf[j.ET] = append(jobsOf[j.ET], j)
	}
	var ets []struct {
		ID      int64      `db:"id"`
		Status  sql0String `db:"communication_status"`
		Attempt int        `db:"communication_attempt"`
		At      *int64     `db:"last_communication_attempt_at"`
	}
	if err := db.Select(&ets, "SELECT id, communication_status, communication_attempt, last_communication_attempt_at FROM extraterrestrials ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID          int64
		Status      sql0String
		Attempt     int
		At          *int64
		Jobs        int
		JobState    string
		JobAttempt  int
		MaxAttempts int
		Rescues     int
		Errors      string
	}
	var rows []row
	for _, e := range ets {
		r := row{ID: e.ID, Status: e.Status, Attempt: e.Attempt, At: e.At, Jobs: len(jobsOf[e.ID]), Errors: "[]"}
		if js := jobsOf[e.ID]; len(js) > 0 {
			j := js[0]
			r.JobState, r.JobAttempt, r.MaxAttempts, r.Rescues, r.Errors = j.State, j.Attempt, j.MaxAttempts, j.Rescues, j.Errors
		}
		rows = append(rows, r)
	}
	if len(rows) != total {
		t.Fatalf("%d extraterrestrials, want %d", len(rows), total)
	}
	if n := dbCount(t, db, "SELECT count(*) FROM jobs"); n != total {
		t.Errorf("%d jobs, want exactly one per extraterrestrial (%d)", n, total)
	}
	if n := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'discarded')"); n != 0 {
		t.Errorf("%d jobs left unfinished (executing, available, scheduled, retryable or cancelled)", n)
	}
	var home, noAnswer, attempts, rescued, bad int
	for _, r := range rows {
		problem := func(format string, args ...any) {
			bad++
			if bad <= 20 {
				t.Errorf("extraterrestrial %d (%s/%d, job %s/%d, rescues %d, errors %s): %s", r.ID, r.Status, r.Attempt,
					r.JobState, r.JobAttempt, r.Rescues, r.Errors, fmt.Sprintf(format, args...))
			}
		}
		attempts += r.JobAttempt
		rescued += r.Rescues
		if r.Jobs != 1 {
			problem("%d jobs, want 1", r.Jobs)
			continue
		}
		switch {
		case r.Status == "space_taxi_on_the_way" && r.JobState == "completed":
			home++
		case r.Status == "no_answer" && r.JobState == "discarded" && r.Attempt == r.MaxAttempts:
			noAnswer++
		default:
			problem("status and job state disagree, or no answer before the last attempt")
		}
		if r.Attempt != r.JobAttempt {
			problem("the row counts %d attempts, its job %d", r.Attempt, r.JobAttempt)
		}
		if r.At == nil {
			problem("no time of the last attempt")
		}
		var errs jobErrors
		if err := json.Unmarshal([]byte(r.Errors), &errs); err != nil {
			problem("errors column: %v", err)
			continue
		}
		// Every failed attempt has exactly one "no answer"; interruptions
		// are noted once per rescue and count no attempt.
		var failed []int
		interruptions := 0
		for _, e := range errs {
			switch {
			case e.Error == "no answer":
				failed = append(failed, e.Attempt)
			case strings.HasPrefix(e.Error, "interrupted"):
				interruptions++
			default:
				problem("unexpected error %q", e.Error)
			}
		}
		wantFailed := r.JobAttempt - 1
		if r.JobState == "discarded" {
			wantFailed = r.JobAttempt
		}
		want := make([]int, wantFailed)
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(failed, want) {
			problem("failed attempts recorded %v, want %v", failed, want)
		}
		if interruptions != r.Rescues {
			problem("%d interruptions noted for %d rescues", interruptions, r.Rescues)
		}
	}
	checkJobCounts(t, db)
	return campaignTally{attempts: attempts, rescued: rescued, home: home, noAnswer: noAnswer}
}
