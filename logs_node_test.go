package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/store/storetest"
)

// logLines are the lines of log whose message is msg.
func logLines(log, msg string) []string {
	var out []string
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) || strings.Contains(line, "msg="+msg+" ") {
			out = append(out, line)
		}
	}
	return out
}

// checkNodeOnce fails t unless every line of log with message msg names
// the node, once.
func checkNodeOnce(t *testing.T, log, msg, node string) {
	t.Helper()
	lines := logLines(log, msg)
	if len(lines) == 0 {
		t.Errorf("no line %q in the log:\n%s", msg, log)
	}
	for _, line := range lines {
		if n := strings.Count(line, " node="); n != 1 || !strings.Contains(line+" ", " node="+node+" ") {
			t.Errorf("%q has node= %d times, want once, node=%s: %s", msg, n, node, line)
		}
	}
}

// The start line says which node listens where, as every line names its
// node: once (README: "Every log line carries node=…").
func TestListeningLineNamesTheNode(t *testing.T) {
	t.Parallel()
	var log syncbuf.Buffer
	app := startAppLogged(t, Config{Node: "node-l"}, slog.New(slog.NewTextHandler(&log, nil)))
	waitUntil(t, 10*time.Second, "the listening line", func() (bool, string) {
		return len(logLines(log.String(), "phonehome is listening")) > 0, log.String()
	})
	checkNodeOnce(t, log.String(), "phonehome is listening", "node-l")
	if line := logLines(log.String(), "phonehome is listening")[0]; !strings.Contains(line, " url="+app.URL+" ") {
		t.Errorf("the listening line lacks url=%s: %s", app.URL, line)
	}
}

// On PostgreSQL, LivePet's presence lines during an outage of the
// database, and after it, name the node once (they named it twice: the
// app's logger and the presence's own both added it). The same node's
// cron entry and runtime dashboard describe PostgreSQL, not SQLite.
func TestPresenceOutageLinesNameTheNodeOnce(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	var log syncbuf.Buffer
	app := startAppLogged(t, Config{DB: db, Node: "node-p"}, slog.New(slog.NewTextHandler(&log, nil)))

	cron := getBody(t, app.URL+"/api/cron")
	if !strings.Contains(cron, "(ANALYZE)") || strings.Contains(cron, "PRAGMA") {
		t.Errorf("GET /api/cron on PostgreSQL: %s; want db-optimize described as ANALYZE, without PRAGMA", cron)
	}
	if dash := getBody(t, app.URL+"/dashboard"); strings.Contains(dash, "SQLite") ||
		!strings.Contains(dash, "PostgreSQL runs in its own server processes") {
		t.Errorf("the runtime dashboard on PostgreSQL names SQLite, or not PostgreSQL's memory")
	}

	// Presence refreshes its rows every 2 s: the first refresh in the
	// outage fails, the first after it succeeds.
	restore := storetest.Outage(t, pg.Server, db)
	waitUntil(t, 20*time.Second, "presence to fail", func() (bool, string) {
		return len(logLines(log.String(), "cannot write presence")) > 0, "no line yet"
	})
	restore()
	waitUntil(t, 20*time.Second, "presence to be written again", func() (bool, string) {
		return len(logLines(log.String(), "writing presence again")) > 0, "no line yet"
	})
	for _, msg := range []string{"phonehome is listening", "cannot write presence", "writing presence again"} {
		checkNodeOnce(t, log.String(), msg, "node-p")
	}
}

// A PostgreSQL outage is logged once per failing part and once when it
// works again, not at every poll: the queues' claims (polled every 50 ms
// here: some sixty times in the outage), the shared telemetry (every
// second) and the live events' reader. (Its first moments may flap: the
// test's outage ends the pool's connections one by one, and a claim on
// one still open succeeds.)
func TestAnOutageIsLoggedOncePerPart(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	var log syncbuf.Buffer
	startAppLogged(t, Config{DB: db, Node: "node-o"}, slog.New(slog.NewTextHandler(&log, nil)))

	restore := storetest.Outage(t, pg.Server, db)
	began := time.Now()
	waitUntil(t, 20*time.Second, "both queues' claims and the telemetry to fail, over 3 s", func() (bool, string) {
		l := log.String()
		return len(logLines(l, "claim jobs")) >= 2 && len(logLines(l, "share job telemetry")) >= 1 &&
			time.Since(began) > 3*time.Second, l
	})
	restore()
	// Every queue that logged its claims failing logs them working again.
	waitUntil(t, 20*time.Second, "claims and the telemetry to work again", func() (bool, string) {
		l := log.String()
		shares := len(logLines(l, "share job telemetry works again"))
		return len(logLines(l, "claiming jobs again")) == len(logLines(l, "claim jobs")) &&
			shares >= 1 && shares == len(logLines(l, "share job telemetry")), l
	})
	l := log.String()
	perQueue := map[string]int{}
	for _, line := range logLines(l, "claim jobs") {
		_, q, _ := strings.Cut(line, " queue=")
		q, _, _ = strings.Cut(q, " ")
		perQueue[q]++
	}
	// A few lines while the outage begins, not one a poll.
	for q, n := range perQueue {
		if n > 8 {
			t.Errorf("queue %s: %d lines \"claim jobs\" in one outage, want one (a few while it begins):\n%s", q, n, l)
		}
	}
	if n := len(logLines(l, "share job telemetry")); n > 3 {
		t.Errorf("%d lines \"share job telemetry\" in one outage, want one:\n%s", n, l)
	}
	if n := len(logLines(l, "read live events")); n > 8 {
		t.Errorf("%d lines \"read live events\" in one outage, want one (a few while it begins):\n%s", n, l)
	}
}
