package jobs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// Nodes lists the live heartbeats by name with their age on the engine's
// clock, leaves out the stale ones, and lists the engine itself once it
// has started.
func TestNodesListsLiveNodesWithTheirAge(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		b.addNode(t, "web-2/20/bb", "host", 20, 0)
		b.addNode(t, "web-1/10/aa", "host", 10, 5*time.Second)
		b.addNode(t, "web-3/30/cc", "host", 30, 2*time.Minute) // past NodeTimeout (1 min)
		nodes, err := b.eng.Nodes(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 2 || nodes[0].Name != "web-1/10/aa" || nodes[1].Name != "web-2/20/bb" {
			t.Fatalf("nodes %+v, want web-1 and web-2 (web-3's heartbeat is stale)", nodes)
		}
		if n := nodes[0]; n.Age != 5*time.Second || n.PID != 10 || n.Host != "host" ||
			!n.HeartbeatAt.Equal(t0.Add(-5*time.Second)) || !n.StartedAt.Equal(t0.Add(-time.Hour)) || nodes[1].Age != 0 {
			t.Errorf("nodes %+v", nodes)
		}

		// A heartbeat from a clock ahead of this one is no age, not a
		// negative one.
		b.addNode(t, "web-4/40/dd", "host", 40, -3*time.Second)
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		nodes, err = b.eng.Nodes(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := make(map[string]time.Duration)
		for _, n := range nodes {
			names[n.Name] = n.Age
		}
		if len(nodes) != 4 || names["web-4/40/dd"] != 0 {
			t.Errorf("nodes %+v, want web-1, web-2, web-4 (age 0) and the started engine", nodes)
		}
		if age, ok := names["test-node"]; !ok || age != 0 {
			t.Errorf("the started engine: listed %v, age %v; nodes %+v", ok, age, nodes)
		}
	})
}

// Start refuses the name of a node that another process still serves (its
// heartbeat fresh, on another host here): two engines under one name would
// take each other's running jobs for orphans. A stale row, or one this
// process left, is no refusal.
func TestStartRefusesANameAnotherProcessServes(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		b.addNode(t, "test-node", "other-host", 4242, 3*time.Second)
		err := b.eng.Start(b.ctx)
		if !errors.Is(err, jobs.ErrNodeNameInUse) || !strings.Contains(err.Error(), "pid 4242 on other-host") ||
			!strings.Contains(err.Error(), "choose another -node") {
			t.Fatalf("Start under a name other-host serves: %v", err)
		}
		if n := b.count(t, "SELECT count(*) FROM job_nodes WHERE name = 'test-node' AND host = 'other-host'"); n != 1 {
			t.Fatalf("the refused Start touched the other process's row")
		}

		// The other process stops beating: a minute on, the name is free.
		b.clock.Advance(2 * time.Minute)
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatalf("Start once the other node's heartbeat is stale: %v", err)
		}
	})
}
