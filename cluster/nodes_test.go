package cluster_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/internal/testclock"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// Nodes lists the job engine's live heartbeats with their age, and leaves
// out the stale ones.
func TestRegistryListsLiveNodesWithTheirAge(t *testing.T) {
	t.Parallel()
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		clock := testclock.New(t0)
		// The rows as the job engine's heartbeat writes them.
		for _, n := range []struct {
			name string
			pid  int
			ago  time.Duration
		}{{"web-1/10/aa", 10, 5 * time.Second}, {"web-2/20/bb", 20, 0}, {"web-3/30/cc", 30, 2 * time.Minute}} {
			at := t0.Add(-n.ago).UnixMilli()
			if _, err := st.Writer.ExecContext(ctx, st.Rebind(`INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at)
				VALUES (?, ?, ?, ?, ?)`), n.name, "host", n.pid, at-1000, at); err != nil {
				t.Fatal(err)
			}
		}
		nodes, err := cluster.NewRegistry(st.Reader, st.Dialect, cluster.RegistryOptions{Now: clock.Now}).Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 2 || nodes[0].Name != "web-1/10/aa" || nodes[1].Name != "web-2/20/bb" {
			t.Fatalf("nodes %+v, want web-1 and web-2 (web-3's heartbeat is stale)", nodes)
		}
		if nodes[0].Age != 5*time.Second || nodes[0].PID != 10 || nodes[0].Host != "host" ||
			!nodes[0].HeartbeatAt.Equal(t0.Add(-5*time.Second)) || nodes[1].Age != 0 {
			t.Errorf("nodes %+v", nodes)
		}
		// On the database's clock, a heartbeat written now is seconds old
		// at most.
		if _, err := st.Writer.ExecContext(ctx, st.Rebind(`UPDATE job_nodes SET heartbeat_at = ? WHERE name = 'web-3/30/cc'`),
			time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
		nodes, err = cluster.NewRegistry(st.Reader, st.Dialect, cluster.RegistryOptions{}).Nodes(ctx)
		if err != nil || len(nodes) != 1 || nodes[0].Name != "web-3/30/cc" || nodes[0].Age > 5*time.Second {
			t.Fatalf("on the database's clock: %+v, %v", nodes, err)
		}
	})
}

// A node's name says where it runs, and no two processes share one.
func TestNodeNameIsUniquePerProcess(t *testing.T) {
	t.Parallel()
	a, b := cluster.NodeName(), cluster.NodeName()
	if a == b || !regexp.MustCompile(`^[^/]+/\d+/[0-9a-f]{6}$`).MatchString(a) {
		t.Fatalf("names %q and %q", a, b)
	}
}
