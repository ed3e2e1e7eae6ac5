package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// nodeStats is what the tests read of /api/stats about the nodes.
type nodeStats struct {
	Node   string `json:"node"`
	Leader string `json:"leader"`
	Nodes  []struct {
		Name   string  `json:"name"`
		Age    float64 `json:"heartbeat_age_seconds"`
		Leader bool    `json:"leader"`
		Self   bool    `json:"self"`
	} `json:"nodes"`
	NodesError string `json:"nodes_error"`
	// LiveEvents is null on SQLite (no broker).
	LiveEvents *struct {
		Lost    *int64 `json:"lost"`
		Skipped *int64 `json:"skipped"`
	} `json:"live_events"`
}

func readNodeStats(t *testing.T, app *testApp) nodeStats {
	t.Helper()
	var s nodeStats
	if err := json.Unmarshal([]byte(getBody(t, app.URL+"/api/stats")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// readAPINodes reads GET /api/nodes of app and checks what every entry
// must hold: the keys CONTRACT.md names, this process (every test app
// runs in it), and a start no later than the last heartbeat, which is
// recent.
func readAPINodes(t *testing.T, app *testApp) []handlers.StatsNodeJSON {
	t.Helper()
	body := []byte(getBody(t, app.URL+"/api/nodes"))
	var raw []map[string]any
	var nodes []handlers.StatsNodeJSON
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range raw {
		for _, key := range []string{"name", "host", "pid", "started_at", "heartbeat_at", "leader"} {
			if _, ok := n[key]; !ok {
				t.Errorf("/api/nodes entry %v lacks %q", n, key)
			}
		}
	}
	host, _ := os.Hostname()
	for _, n := range nodes {
		if n.PID != os.Getpid() || n.Host != host || n.StartedAt.IsZero() || n.HeartbeatAt.Before(n.StartedAt) ||
			time.Since(n.HeartbeatAt) > time.Minute || n.HeartbeatAt.Location() != time.UTC {
			t.Errorf("/api/nodes entry %+v: want this process (%s, pid %d), started before its heartbeat, heartbeat recent, UTC",
				n, host, os.Getpid())
		}
	}
	return nodes
}

// nodesLine sums up the node list of s: "node-a(leader,self) node-b".
func nodesLine(s nodeStats) string {
	var parts []string
	for _, n := range s.Nodes {
		var marks []string
		if n.Leader {
			marks = append(marks, "leader")
		}
		if n.Self {
			marks = append(marks, "self")
		}
		if n.Age < 0 || n.Age > 60 {
			marks = append(marks, fmt.Sprintf("age %.0fs", n.Age))
		}
		p := n.Name
		if len(marks) > 0 {
			p += "(" + strings.Join(marks, ",") + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// TestTwoNodesOneLeaderOnPostgres: two servers on one PostgreSQL database.
// The first one started leads the maintenance, the second follows; each
// names itself, every node and the leader in /api/stats, /metrics and the
// runtime dashboard, and its log lines carry its name. When the leader
// shuts down it resigns, and the other takes over at once: well before its
// next campaign (5 s), by the resignation's NOTIFY.
func TestTwoNodesOneLeaderOnPostgres(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	var logA syncbuf.Buffer
	a := startAppLogged(t, Config{DB: db, Node: "node-a"}, slog.New(slog.NewTextHandler(&logA, nil)))
	b := startApp(t, Config{DB: db, Node: "node-b"})
	if !a.IsLeader() || b.IsLeader() {
		t.Fatalf("A leads %v, B leads %v; want A alone (it started first)", a.IsLeader(), b.IsLeader())
	}
	if a.Node() != "node-a" || a.engine.Node() != "node-a" {
		t.Fatalf("A's node %q, its engine's %q; want node-a for both", a.Node(), a.engine.Node())
	}

	for _, c := range []struct {
		app  *testApp
		want string
	}{
		{a, "node-a(leader,self) node-b"},
		{b, "node-a(leader) node-b(self)"},
	} {
		s := readNodeStats(t, c.app)
		if s.Node != c.app.Node() || s.Leader != "node-a" || s.NodesError != "" || nodesLine(s) != c.want {
			t.Errorf("%s's /api/stats: node %q, leader %q, nodes %q (%s); want %s, node-a, %q",
				c.app.Node(), s.Node, s.Leader, nodesLine(s), s.NodesError, c.app.Node(), c.want)
		}
		if le := s.LiveEvents; le == nil || le.Lost == nil || *le.Lost != 0 || le.Skipped == nil || *le.Skipped != 0 {
			t.Errorf("%s's /api/stats: live_events %+v, want lost 0 and skipped 0", c.app.Node(), le)
		}
	}
	if nodes := readAPINodes(t, b); len(nodes) != 2 || nodes[0].Name != "node-a" || !nodes[0].Leader ||
		nodes[1].Name != "node-b" || nodes[1].Leader {
		t.Errorf("B's /api/nodes: %+v, want node-a (leader) and node-b", nodes)
	}
	metricsB := getBody(t, b.URL+"/metrics")
	for _, want := range []string{`phonehome_node_info{node="node-b"} 1`, "phonehome_leader 0", "phonehome_nodes 2",
		`phonehome_node_heartbeat_age_seconds{node="node-a"}`, "phonehome_live_events_lost_total 0",
		"phonehome_live_events_skipped_total 0"} {
		if !strings.Contains(metricsB, want) {
			t.Errorf("B's /metrics lacks %s", want)
		}
	}
	if m := getBody(t, a.URL+"/metrics"); !strings.Contains(m, "phonehome_leader 1") {
		t.Errorf("A's /metrics lacks phonehome_leader 1")
	}
	dash := getBody(t, b.URL+"/dashboard")
	for _, want := range []string{`id="dash-nodes-h"`, "<code>node-a</code>", "<code>node-b</code> <span class=\"muted\">(this one)</span>",
		"Maintenance leader: node-a.", "Live events carried between nodes by this one: 0 lost, 0 skipped."} {
		if !strings.Contains(dash, want) {
			t.Errorf("B's dashboard lacks %s", want)
		}
	}
	if log := logA.String(); !strings.Contains(log, "msg=leading") || !strings.Contains(log, "node=node-a") {
		t.Errorf("A's log does not say it leads, with its name:\n%s", log)
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitUntil(t, 10*time.Second, "B to lead", func() (bool, string) { return b.IsLeader(), "" })
	if took := time.Since(stopped); took > 2*time.Second {
		t.Errorf("B took %s to lead after A resigned; want at once (NOTIFY), not at its next campaign", took)
	}
	if a.IsLeader() {
		t.Error("A still believes it leads after its shutdown")
	}
	if s := readNodeStats(t, b); s.Leader != "node-b" || nodesLine(s) != "node-b(leader,self)" {
		t.Errorf("B's /api/stats after A left: leader %q, nodes %q", s.Leader, nodesLine(s))
	}
	if log := logA.String(); !strings.Contains(log, "msg=\"not leading\"") {
		t.Errorf("A's log does not say it stopped leading:\n%s", log)
	}
}

// TestOneNodeOnSQLite: on SQLite the process is alone and always leads;
// it still names itself in /api/stats and /metrics.
func TestOneNodeOnSQLite(t *testing.T) {
	t.Parallel()
	app := startApp(t, Config{DB: appDatabaseFor(t), Node: "solo"})
	if !app.IsLeader() {
		t.Fatal("a SQLite server does not lead")
	}
	if s := readNodeStats(t, app); s.Node != "solo" || s.Leader != "solo" || nodesLine(s) != "solo(leader,self)" || s.LiveEvents != nil {
		t.Errorf("/api/stats: node %q, leader %q, nodes %q, live_events %+v (want null: no broker)", s.Node, s.Leader, nodesLine(s), s.LiveEvents)
	}
	if nodes := readAPINodes(t, app); len(nodes) != 1 || nodes[0].Name != "solo" || !nodes[0].Leader {
		t.Errorf("/api/nodes: %+v, want solo, leading", nodes)
	}
	m := getBody(t, app.URL+"/metrics")
	for _, want := range []string{`phonehome_node_info{node="solo"} 1`, "phonehome_leader 1", "phonehome_nodes 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m, "phonehome_live_events") {
		t.Errorf("/metrics on SQLite has live-event figures, but there is no broker")
	}
}

// TestAFollowersWatchersSeeTheLeadersDeathOnPostgres: a pet watched on the
// node that does not lead dies: the leader records the death (the follower
// never sweeps), and the follower's watcher is still told, live, on its
// own stream; the follower's page reads the pet dead and its counts follow.
func TestAFollowersWatchersSeeTheLeadersDeathOnPostgres(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	const tick = 100 * time.Millisecond
	a := startApp(t, Config{DB: db, Node: "node-a", PetTick: tick})
	b := startApp(t, Config{DB: db, Node: "node-b", PetTick: tick})
	if !a.IsLeader() || b.IsLeader() {
		t.Fatalf("A leads %v, B leads %v; want A alone", a.IsLeader(), b.IsLeader())
	}
	p, err := b.pets.Adopt(t.Context(), "keeper-b", "Mortal", "cat")
	if err != nil {
		t.Fatal(err)
	}
	// Its life ends in a second and a half.
	conn := openTestDB(t, db)
	bornAt := time.Now().Add(-b.pets.Rules().Lifespan() + 1500*time.Millisecond)
	if _, err := conn.Exec("UPDATE pets SET born_at = $1, hunger_at = $1 WHERE id = $2", bornAt.UnixMilli(), p.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs := eventstest.Messages(b.openStream(t, ctx, fmt.Sprintf("pet-%d", p.ID)).Body, 1<<10)
	deadline := time.After(15 * time.Second)
	for told := false; !told; {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("B's pet stream ended before the death was shown")
			}
			told = strings.Contains(m.Data, "pet-dead") && strings.Contains(m.Data, "It died on")
		case <-deadline:
			t.Fatal("B's watcher was not told of the death within 15 s")
		}
	}
	waitUntil(t, 10*time.Second, "the leader to record the death", func() (bool, string) {
		n := dbCount(t, conn, fmt.Sprintf("SELECT count(*) FROM pets WHERE id = %d AND died_at IS NOT NULL", p.ID))
		return n == 1, ""
	})
	if b.IsLeader() {
		t.Fatal("B leads: the death may be its own")
	}
	if page := getBody(t, fmt.Sprintf("%s/pets/%d", b.URL, p.ID)); !strings.Contains(page, "pet-dead") {
		t.Errorf("B's page of the pet does not show it dead")
	}
	waitUntil(t, 10*time.Second, "B's counts to follow the leader's sweep", func() (bool, string) {
		want := dbCount(t, conn, "SELECT count(*) FROM pets WHERE died_at IS NOT NULL")
		got := b.pets.Counts().Dead
		return got == want && want > 0, fmt.Sprintf("B counts %d dead, the database %d", got, want)
	})
}

// TestANodeNameIsOneProcesss: a server started under the name of a node
// that another process still serves (a fresh heartbeat from another host)
// is refused before anything runs under that name (the lease would lead,
// then resign, in that node's name), saying which process holds it.
func TestANodeNameIsOneProcesss(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	a := startApp(t, Config{DB: db, Node: "node-a"})
	if err := a.stop(); err != nil { // the lease is free: a resigned
		t.Fatal(err)
	}
	st := storetest.Open(t, db)
	var term int64
	if err := st.Reader.Get(&term, "SELECT term FROM cluster_leases WHERE name = 'maintenance'"); err != nil {
		t.Fatal(err)
	}
	beat := time.Now().Add(-3 * time.Second).UnixMilli()
	if _, err := st.Writer.Exec(`INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at)
		VALUES ('node-x', 'elsewhere', 77, $1, $1)`, beat); err != nil {
		t.Fatal(err)
	}
	_, err := NewApp(t.Context(), Config{DB: db, Node: "node-x", Addr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, jobs.ErrNodeNameInUse) || !strings.Contains(err.Error(), "pid 77 on elsewhere") {
		t.Fatalf("a second node-x: %v, want ErrNodeNameInUse naming pid 77 on elsewhere", err)
	}
	var held, after int64
	if err := st.Reader.Get(&held, "SELECT heartbeat_at FROM job_nodes WHERE name = 'node-x'"); err != nil || held != beat {
		t.Errorf("node-x's row after the refusal: heartbeat %d (%v), want %d untouched", held, err, beat)
	}
	if err := st.Reader.Get(&after, "SELECT term FROM cluster_leases WHERE name = 'maintenance'"); err != nil || after != term {
		t.Errorf("the lease's term went %d -> %d (%v): the refused node-x led for a moment", term, after, err)
	}
}
