package main

// The many-node harness (issue 14): several real phonehome binaries on free
// loopback ports over one fresh PostgreSQL database, each node's log kept
// for the failure message, a node killed with SIGKILL and started again,
// and whole-stream clients on any node. It is the fault tests' one-server
// harness (startFaultServer) times N, not a second copy of it.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/store/storetest"
)

// nodeNames name the nodes in messages: A, B, C, …
const nodeNames = "ABCDEFGH"

// nodeCluster is n `phonehome serve` processes over one PostgreSQL database.
type nodeCluster struct {
	t *testing.T
	// bin is the binary every node runs.
	bin string
	// DB is the database's URL; Conn the test's own connection to it.
	DB   string
	Conn *sqlx.DB
	// args are every node's serve flags beside -db and -addr.
	args []string
	// nodes are the current run of each node; runs every run so far, for
	// the logs of a failure.
	nodes []*faultServer
	runs  []nodeRun
	// starts counts each node's runs.
	starts []int
}

// nodeRun is one process of one node.
type nodeRun struct {
	name string
	srv  *faultServer
}

// startNodes starts n nodes over a new PostgreSQL database seeded with ets
// generated extraterrestrials (the 10 seed ones when ets is 0), each with
// the serve flags args, and waits until every one listens. It skips the
// test without PHONEHOME_TEST_POSTGRES (fails it under CI): several nodes
// need PostgreSQL. plain runs the plain build even under -race (a campaign
// of thousands of calls on three race-built servers would take minutes on
// two cores). When the test fails, its log has every node's last lines.
func startNodes(t *testing.T, n, ets int, plain bool, args ...string) *nodeCluster {
	t.Helper()
	skipShort(t, fmt.Sprintf("%d real servers", n))
	pg := storetest.Postgres(t)
	c := &nodeCluster{t: t, bin: phonehomeBinary(t, plain), DB: storetest.NewDatabase(t, pg.Server), args: args}
	seed := []string{"seed", "-db", c.DB}
	if ets > 0 {
		seed = append(seed, "-ets", strconv.Itoa(ets))
	}
	if code, _, stderr := runFaultBinary(t, c.bin, nil, seed...); code != 0 {
		t.Fatalf("seed: exit %d: %s", code, stderr)
	}
	c.Conn = openFaultDB(t, c.DB)
	// Registered before the servers' own clean-ups, so it runs after them:
	// every log is complete by then.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, r := range c.runs {
			t.Logf("node %s (pid %d), last lines of its log:\n%s", r.name, r.srv.cmd.Process.Pid, lastLines(r.srv.stderr.String(), 40))
		}
	})
	c.nodes, c.starts = make([]*faultServer, n), make([]int, n)
	for i := range n {
		c.start(i)
	}
	return c
}

// start runs node i (again).
func (c *nodeCluster) start(i int) {
	c.t.Helper()
	srv := startFaultServer(c.t, c.bin, c.DB, c.args...)
	c.nodes[i] = srv
	c.starts[i]++
	c.runs = append(c.runs, nodeRun{name: fmt.Sprintf("%c, run %d", nodeNames[i], c.starts[i]), srv: srv})
}

// URL is node i's base URL.
func (c *nodeCluster) URL(i int) string { return c.nodes[i].URL }

// PID is node i's process id.
func (c *nodeCluster) PID(i int) int { return c.nodes[i].cmd.Process.Pid }

// kill sends SIGKILL to node i and waits until its process is gone.
func (c *nodeCluster) kill(i int) { c.nodes[i].kill() }

// stopAll stops every running node with SIGTERM, each expected to exit
// cleanly (a node killed and not started again is left as it is).
func (c *nodeCluster) stopAll() {
	c.t.Helper()
	for _, s := range c.nodes {
		select {
		case <-s.exited:
		default:
			s.stop()
		}
	}
}

// stream opens the whole extraterrestrials stream on node i, as `curl -N`
// would, and delivers its events on a channel closed when it ends. The
// node has registered the client once this returns: its hub joins a client
// before it writes the response head.
func (c *nodeCluster) stream(i int) <-chan events.Message {
	c.t.Helper()
	return subscribe(c.t, c.URL(i))
}

// ranOn reports whether a job's attempted_by names the process pid: the
// engine's node names are "host/pid" or "host/pid/suffix".
func ranOn(attemptedBy string, pid int) bool {
	parts := strings.Split(attemptedBy, "/")
	return len(parts) >= 2 && parts[1] == strconv.Itoa(pid)
}
