package stats_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/stats"
)

// TestNodesOnMetricsAndInFullSamples: the node's name is an info metric;
// the nodes (a database read) are read for full readings only, and give
// whether this node leads, how many nodes there are and each one's
// heartbeat age; a failure to read them is a scrape error, not a zero.
func TestNodesOnMetricsAndInFullSamples(t *testing.T) {
	t.Parallel()
	var reads atomic.Int32
	var fail atomic.Bool
	c := stats.New(stats.Config{Node: "node-b", Sources: stats.Sources{
		Nodes: func(context.Context) ([]stats.NodeInfo, error) {
			reads.Add(1)
			if fail.Load() {
				return nil, errors.New("database is away")
			}
			return []stats.NodeInfo{{Name: "node-a", HeartbeatAge: 3 * time.Second, Leader: true},
				{Name: "node-b", HeartbeatAge: 500 * time.Millisecond}}, nil
		},
	}})
	if s := c.Sample(t.Context()); s.Nodes != nil || reads.Load() != 0 || s.Node != "node-b" {
		t.Fatalf("a sample nobody watches: nodes %+v after %d reads, node %q", s.Nodes, reads.Load(), s.Node)
	}
	if s := c.Current(t.Context()); s.Nodes == nil || s.Nodes.Leader != "node-a" || len(s.Nodes.List) != 2 {
		t.Fatalf("a full reading: nodes %+v", s.Nodes)
	}
	fams := scrape(t, c.MetricsHandler())
	for _, ck := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{stats.MetricNodeInfo, []string{"node", "node-b"}, 1},
		{stats.MetricLeader, nil, 0},
		{stats.MetricNodes, nil, 2},
		{stats.MetricNodeHeartbeat, []string{"node", "node-a"}, 3},
		{stats.MetricNodeHeartbeat, []string{"node", "node-b"}, 0.5},
	} {
		if got := value(t, fams, ck.name, ck.labels...); got != ck.want {
			t.Errorf("%s%v = %v, want %v", ck.name, ck.labels, got, ck.want)
		}
	}
	fail.Store(true)
	fams = scrape(t, c.MetricsHandler())
	if got := value(t, fams, stats.MetricScrapeErrors, "source", "nodes"); got != 1 {
		t.Errorf("nodes error = %v, want 1", got)
	}
	if _, ok := fams[stats.MetricNodes]; ok {
		t.Errorf("%s exposed although the nodes could not be read", stats.MetricNodes)
	}
}
