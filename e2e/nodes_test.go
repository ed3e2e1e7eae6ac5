package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/store/storetest"
)

// startNode starts phonehome as startServer does, but over the given
// database: several nodes on one PostgreSQL database.
func startNode(t *testing.T, db string, flags ...string) *server {
	t.Helper()
	s := &server{t: t, addr: freeAddr(t), db: db, logs: &syncbuf.Buffer{}, args: flags}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("the output of phonehome on %s:\n%s", s.addr, s.logs.String())
		}
	})
	return s
}

// TestNodesPageShowsAnotherNodesChanges opens the Phone Home page on node C
// and starts the campaign on node B (its API), two nodes over one
// PostgreSQL database: the page on C turns every row live, with no reload,
// including the rows whose calls node B made, and ends showing what the
// database holds.
func TestNodesPageShowsAnotherNodesChanges(t *testing.T) {
	requireBinary(t)
	db := storetest.Postgres(t).Target(t)
	flags := []string{"-backoff", "300ms", "-answer-rate", "0.3"}
	// B first: a new database is migrated and seeded by the first node.
	// Node C never polls: it may take first calls (the insert notifies
	// every node) but never a retry, which comes due after the backoff and
	// is found by a poll. So node B makes calls, whichever node wins the
	// first ones, unless all ten connect at the first try on C (0.3^10).
	nodeB := startNode(t, db, append(flags, "-poll", "50ms")...)
	nodeC := startNode(t, db, append(flags, "-poll", "1h")...)
	ctx, _ := newBrowser(t)

	openPhoneHome(t, ctx, "open / on node C", nodeC.url("/"))
	eval[bool](t, ctx, etRecorder)
	eval[bool](t, ctx, `window.__marker = "set before the campaign"; true`)

	resp, err := http.Post(nodeB.url("/api/phone-home"), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /api/phone-home on node B: %s", resp.Status)
	}
	waitFor(t, ctx, 30*time.Second, "every row on node C's page to show a check or an X, and the header to agree", campaignDone,
		`JSON.stringify({rows: `+etRows+`, counts: `+etCounts+`})`)
	if m := eval[string](t, ctx, `window.__marker || ""`); m != "set before the campaign" {
		t.Fatalf("window marker = %q: the page navigated or reloaded", m)
	}

	after := eval[[]etRow](t, ctx, etRows)
	seen := eval[map[string][]string](t, ctx, `window.__seen`)
	api := apiStatuses(t, nodeB)
	for _, r := range after {
		if h := seen[r.ID]; len(h) == 0 || h[len(h)-1] != r.Status {
			t.Errorf("%s: shows %q, swapped in live: %v", r.ID, r.Status, h)
		}
		want := map[string]string{"space_taxi_on_the_way": "status-home", "no_answer": "status-no-answer"}[api[r.ID]]
		if r.Status != want {
			t.Errorf("%s: node C's page shows %q, node B's API says %q", r.ID, r.Status, api[r.ID])
		}
	}

	// Which node made each call: the job's attempted_by names the process
	// ("host/pid/…") of the last, each failed attempt's error the others'.
	conn, err := sqlx.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var by []string
	if err := conn.Select(&by, `SELECT attempted_by FROM jobs WHERE kind = 'speak_and_spell'
		UNION ALL SELECT e->>'node' FROM jobs, jsonb_array_elements(errors) AS e
		WHERE kind = 'speak_and_spell' AND e ? 'node'`); err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, b := range by {
		if parts := strings.Split(b, "/"); len(parts) >= 2 {
			pids[parts[1]]++
		}
	}
	onB := pids[strconv.Itoa(nodeB.pid())]
	if onB == 0 {
		t.Fatalf("node B made none of the calls (%v): the page on C showed only its own node's changes", pids)
	}
	t.Logf("node C's page showed all 10 rows live; node B made %d of the calls, node C %d", onB, pids[strconv.Itoa(nodeC.pid())])
}

// pid is the running process's id.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}
