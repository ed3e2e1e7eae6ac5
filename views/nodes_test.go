package views

import (
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/stats"
)

// TestJobPageNamesTheNodeOfEachAttempt: the job page says which node ran
// the latest attempt (timeline) and each failed one (its error), and
// leaves the node out of errors recorded before nodes were named.
func TestJobPageNamesTheNodeOfEachAttempt(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	j := &jobs.Job{ID: 7, Kind: "speak_and_spell", Queue: "phone_calls", State: jobs.StateRetryable, Attempt: 3, MaxAttempts: 5,
		InsertedAt: at, ScheduledAt: at.Add(time.Hour), AttemptedAt: &at, AttemptedBy: "node-c", Args: []byte("{}"),
		Errors: []jobs.AttemptError{
			{Attempt: 1, At: at, Error: "old", Node: ""},
			{Attempt: 2, At: at, Error: "no answer", Node: "node-a"},
			{Attempt: 3, At: at, Error: "no answer", Node: "node-c"},
		}}
	html, err := v.Fragment(PartialJobPanel, JobPanel{Job: JobView{Job: j, Now: at}, ID: 7})
	if err != nil {
		t.Fatal(err)
	}
	s := string(html)
	for _, want := range []string{"attempt 3 of 5 on node-c", `<span class="muted job-error-node">on node-a</span>`,
		`<span class="muted job-error-node">on node-c</span>`} {
		if !strings.Contains(s, want) {
			t.Errorf("the job page lacks %s:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "job-error-node"); n != 2 {
		t.Errorf("%d errors name a node, want 2 (the first has none)", n)
	}
}

// TestDashboardNodesPanel: every node with its heartbeat's age, the leader
// and this node marked; none leading says so; an error is shown as one.
func TestDashboardNodesPanel(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	render := func(n *stats.Nodes) string {
		t.Helper()
		l := NewDashboardLive(stats.Snapshot{Node: "node-b", Nodes: n, Full: true}, nil, time.Minute)
		html, err := v.Fragment(PartialDashLive, l)
		if err != nil {
			t.Fatal(err)
		}
		return string(html)
	}
	s := render(&stats.Nodes{Leader: "node-a", List: []stats.NodeInfo{
		{Name: "node-a", HeartbeatAge: 4 * time.Second, Leader: true}, {Name: "node-b", HeartbeatAge: 12 * time.Second}}})
	for _, want := range []string{`Nodes <span class="muted">2</span>`, "<code>node-a</code></td><td class=\"num\">4 s ago</td><td><b>leader</b>",
		`<tr class="dash-node-self"><td><code>node-b</code> <span class="muted">(this one)</span></td><td class="num">12 s ago</td><td><span class="muted">follower</span>`,
		"Maintenance leader: node-a.", "<dt>Node</dt><dd>node-b",
		// What the engine does (jobs.Engine's dead): a live process is
		// never taken for dead; only another machine's nodes wait a minute.
		"on its own machine, a node whose process is gone (a live process keeps its jobs, even a stalled one); on another machine, a node whose heartbeat is a minute old."} {
		if !strings.Contains(s, want) {
			t.Errorf("the panel lacks %s", want)
		}
	}
	if s := render(&stats.Nodes{List: []stats.NodeInfo{{Name: "node-b"}}}); !strings.Contains(s, "Maintenance leader: none right now") {
		t.Errorf("no leader is not said")
	}
	if s := render(&stats.Nodes{Err: "database is away"}); !strings.Contains(s, "Could not list the nodes: database is away") {
		t.Errorf("the error is not shown")
	}
	if s := render(nil); strings.Contains(s, "dash-nodes-h") {
		t.Errorf("a panel without a nodes source")
	}

	// What the broker lost: said on PostgreSQL (a warning when anything
	// was), absent without a broker.
	nodes := &stats.Nodes{Leader: "node-b", List: []stats.NodeInfo{{Name: "node-b", Leader: true}}}
	withLosses := func(le *stats.LiveEvents) string {
		t.Helper()
		l := NewDashboardLive(stats.Snapshot{Node: "node-b", Nodes: nodes, LiveEvents: le, Full: true}, nil, time.Minute)
		html, err := v.Fragment(PartialDashLive, l)
		if err != nil {
			t.Fatal(err)
		}
		return string(html)
	}
	if s := withLosses(nil); strings.Contains(s, "dash-live-events") {
		t.Errorf("live-event losses shown without a broker")
	}
	if s := withLosses(&stats.LiveEvents{}); !strings.Contains(s, `<p class="dash-note" id="dash-live-events">Live events carried between nodes by this one: 0 lost, 0 skipped.</p>`) {
		t.Errorf("no losses are not said plainly")
	}
	if s := withLosses(&stats.LiveEvents{Lost: 1200, Skipped: 3}); !strings.Contains(s, `flash flash-error" id="dash-live-events">Live events carried between nodes by this one: 1,200 lost, 3 skipped (their streams' pages were told to reload).`) {
		t.Errorf("losses are not shown as a warning")
	}
}
