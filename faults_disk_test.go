package main

// Fault test: the database's writes fail while a campaign runs.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFaultWriteFailsDuringJobs makes every write of a job's outcome fail
// ("database or disk is full", raised by triggers planted in the file) while
// a campaign runs: nothing is half-written, the server keeps serving reads,
// and once writes succeed again every call is retried and recorded, its row
// and its job in agreement.
func TestFaultWriteFailsDuringJobs(t *testing.T) {
	const total = 200
	bin := phonehomeBinary(t, false)
	path := filepath.Join(t.TempDir(), "full.db")
	if code, _, stderr := runFaultBinary(t, bin, nil, "seed", "-db", path, "-ets", strconv.Itoa(total)); code != 0 {
		t.Fatalf("seed: exit %d: %s", code, stderr)
	}
	db := openFaultDB(t, path)
	// Claims (state → executing) still work; an outcome, or any change of
	// an extraterrestrial, fails as on a full disk.
	for _, q := range []string{
		"CREATE TABLE fault_injection (on_ INTEGER)",
		"INSERT INTO fault_injection VALUES (1)",
		`CREATE TRIGGER fault_outcome BEFORE UPDATE OF state ON jobs
			WHEN new.state != 'executing' AND EXISTS (SELECT 1 FROM fault_injection)
			BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		`CREATE TRIGGER fault_extraterrestrial BEFORE UPDATE ON extraterrestrials
			WHEN EXISTS (SELECT 1 FROM fault_injection)
			BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	srv := startFaultServer(t, bin, path, "-backoff", "0s", "-answer-rate", "1", "-poll", "50ms", "-grace", "5s")
	if status, body := faultCall(t, faultClient, "POST", srv.URL+"/api/phone-home", "", ""); status != 200 {
		t.Fatalf("phone home: %d %s", status, body)
	}
	// The engine keeps retrying the outcomes it cannot write.
	waitUntil(t, time.Minute, "outcome writes failing and retried", func() (bool, string) {
		retries := strings.Count(srv.stderr.String(), "will retry")
		executing := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state = 'executing'")
		return retries >= 3 && executing > 0, fmt.Sprintf("%d retries logged, %d executing", retries, executing)
	})
	executing := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state = 'executing'")
	// Reads are served meanwhile.
	for _, path := range []string{"/", "/api/extraterrestrials", "/extraterrestrials/rows", "/healthz", "/pets", "/api/pets"} {
		status, body := faultCall(t, faultClient, "GET", srv.URL+path, "", "")
		if status != 200 {
			t.Errorf("GET %s while writes fail: %d %s", path, status, body)
		}
	}
	// Nothing is half-written: no row changed, no job finished or erred.
	if n := dbCount(t, db, "SELECT count(*) FROM extraterrestrials WHERE communication_status IS NOT NULL OR communication_attempt != 0"); n != 0 {
		t.Errorf("%d extraterrestrials changed while every outcome write failed", n)
	}
	if n := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state NOT IN ('available', 'executing') OR errors != '[]'"); n != 0 {
		t.Errorf("%d jobs finished or erred while every outcome write failed", n)
	}
	if _, err := db.Exec("DELETE FROM fault_injection"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Minute, "every call recorded once writes succeed", func() (bool, string) {
		n := dbCount(t, db, "SELECT count(*) FROM jobs WHERE state = 'completed'")
		return n == total, fmt.Sprintf("%d of %d completed", n, total)
	})
	srv.stop()

	var rows []struct {
		ID         int64  `db:"id"`
		Status     string `db:"communication_status"`
		Attempt    int    `db:"communication_attempt"`
		JobAttempt int    `db:"attempt"`
		Errors     string `db:"errors"`
	}
	if err := db.Select(&rows, `SELECT e.id, coalesce(e.communication_status, '') AS communication_status, e.communication_attempt,
			j.attempt, j.errors FROM extraterrestrials e JOIN jobs j ON json_extract(j.args, '$.extraterrestrial_id') = e.id`); err != nil {
		t.Fatal(err)
	}
	if len(rows) != total {
		t.Fatalf("%d rows with jobs, want %d", len(rows), total)
	}
	retried := 0
	for _, r := range rows {
		var errs jobErrors
		json.Unmarshal([]byte(r.Errors), &errs)
		if r.Status != "space_taxi_on_the_way" || r.Attempt != r.JobAttempt || len(errs) != r.JobAttempt-1 {
			t.Errorf("extraterrestrial %d: %s attempt %d; its job: attempt %d, errors %s", r.ID, r.Status, r.Attempt, r.JobAttempt, r.Errors)
		}
		for i, e := range errs {
			if e.Attempt != i+1 || !strings.Contains(e.Error, "full") {
				t.Errorf("extraterrestrial %d: error %d is %+v, want attempt %d failing on the full disk", r.ID, i, e, i+1)
			}
		}
		if r.JobAttempt > 1 {
			retried++
		}
	}
	t.Logf("%d calls were executing while writes failed; afterwards all %d recorded, %d of them on a later attempt",
		executing, total, retried)
}
