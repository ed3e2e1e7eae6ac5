package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/jobs/housekeeping"
)

// maintenanceLease is one read of the maintenance lease's row.
type maintenanceLease struct {
	Node       string `db:"node"`
	Term       int64  `db:"term"`
	AcquiredAt int64  `db:"acquired_at"`
	ExpiresAt  int64  `db:"expires_at"`
	// Now is the database's clock at the read, in unix milliseconds, the
	// clock the lease's times are on.
	Now int64 `db:"now"`
}

// readLease reads the maintenance lease, ok false when nobody ever held it.
func (c *nodeCluster) readLease() (l maintenanceLease, ok bool) {
	c.t.Helper()
	err := c.Conn.Get(&l, `SELECT node, term, acquired_at, expires_at,
			CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT) AS now
			FROM cluster_leases WHERE name = 'maintenance'`)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		c.t.Fatal(err)
	}
	return l, err == nil
}

// leaderOf is the node (index) whose process holds l, or -1.
func (c *nodeCluster) leaderOf(l maintenanceLease) int {
	for i, s := range c.nodes {
		if ranOn(l.Node, s.cmd.Process.Pid) {
			return i
		}
	}
	return -1
}

// TestNodesLeaderKilled runs three nodes, finds the one holding the
// maintenance lease and kills it with SIGKILL: another node takes the lease
// once it has expired and no later than one renewal period after (never
// while the dead one's lease ran: two leaders never overlap), every
// survivor names it as the leader, and maintenance runs again under it
// (the count ledger is folded, which only the leader does). The cron entry
// was never inserted twice for one slot.
func TestNodesLeaderKilled(t *testing.T) {
	c := startNodes(t, 3, 0, false, "-backoff", "0s", "-answer-rate", "1", "-poll", "50ms")
	var old maintenanceLease
	waitUntil(t, 30*time.Second, "a node to hold the maintenance lease", func() (bool, string) {
		l, ok := c.readLease()
		old = l
		return ok && l.ExpiresAt > l.Now && c.leaderOf(l) >= 0, fmt.Sprintf("%+v", l)
	})
	victim := c.leaderOf(old)
	c.kill(victim)
	// The dead leader's lease may just have been renewed: read it again
	// now that nobody can renew it.
	old, _ = c.readLease()
	killedAt := old.Now
	t.Logf("node %c (%s) led, term %d; killed with its lease running %d ms more", nodeNames[victim], old.Node, old.Term, old.ExpiresAt-old.Now)

	renew := cluster.DefaultLeaseTTL / 3 // LeaseOptions.RenewEvery's default
	var now maintenanceLease
	waitUntil(t, cluster.DefaultLeaseTTL+renew+10*time.Second, "another node to take the maintenance lease", func() (bool, string) {
		l, _ := c.readLease()
		now = l
		return l.Node != old.Node && l.ExpiresAt > l.Now, fmt.Sprintf("%+v", l)
	})
	leader := c.leaderOf(now)
	if leader < 0 || leader == victim {
		t.Fatalf("the lease went to %q, not a surviving node", now.Node)
	}
	if now.Term <= old.Term {
		t.Errorf("the new leader's term %d is not above the old one's %d", now.Term, old.Term)
	}
	if now.AcquiredAt < old.ExpiresAt {
		t.Errorf("node %c took the lease %d ms before the dead leader's expired: two leaders at once", nodeNames[leader], old.ExpiresAt-now.AcquiredAt)
	}
	// Everyone campaigns every renewal period: the takeover comes within
	// one of the expiry (and 3 s for the statements themselves on a loaded
	// machine: a bound, not a figure).
	if late := time.Duration(now.AcquiredAt-old.ExpiresAt) * time.Millisecond; late > renew+3*time.Second {
		t.Errorf("node %c took the lease %s after the dead leader's expired, want within %s", nodeNames[leader], late, renew+3*time.Second)
	}
	t.Logf("node %c took over %d ms after the kill (term %d), %d ms after the dead leader's lease expired",
		nodeNames[leader], now.AcquiredAt-killedAt, now.Term, now.AcquiredAt-old.ExpiresAt)

	for i := range c.nodes {
		if i == victim {
			continue
		}
		waitUntil(t, 10*time.Second, fmt.Sprintf("node %c's /api/stats to name the new leader", nodeNames[i]), func() (bool, string) {
			status, body, err := tryFaultCall(faultClient, "GET", c.URL(i)+"/api/stats", "", "")
			if err != nil || status != 200 {
				return false, fmt.Sprintf("%d %v", status, err)
			}
			var st struct {
				Leader string `json:"leader"`
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				return false, err.Error()
			}
			return st.Leader == now.Node, "leader " + st.Leader
		})
	}

	// Maintenance runs under the new leader: a campaign's counts, appended
	// to the ledger one row per statement, are folded (every 5 s, by the
	// leader alone) back to one row per queue and state.
	if status, body := faultCall(t, faultClient, "POST", c.URL(leader)+"/api/phone-home", "", ""); status != 200 {
		t.Fatalf("phone home: %d %s", status, body)
	}
	waitUntil(t, 30*time.Second, "the job count ledger to be folded under the new leader", func() (bool, string) {
		rows := dbCount(t, c.Conn, "SELECT count(*) FROM job_counts")
		pairs := dbCount(t, c.Conn, "SELECT count(*) FROM (SELECT DISTINCT queue, state FROM job_counts) AS p")
		done := dbCount(t, c.Conn, "SELECT count(*) FROM jobs WHERE kind = 'speak_and_spell' AND state = 'completed'")
		return done == 10 && rows == pairs, fmt.Sprintf("%d calls completed; %d ledger rows for %d (queue, state) pairs", done, rows, pairs)
	})
	checkJobCounts(t, c.Conn)

	// The hourly cron entry: at most one job per slot, however many
	// nodes led meanwhile. (Within this test no hour may have begun: the
	// slot-by-slot test with leaders changing is the engine's,
	// TestCronOnceAcrossNodesWhoseLeaderChanges.)
	if n := dbCount(t, c.Conn, `SELECT count(*) FROM (SELECT scheduled_at FROM jobs WHERE kind = $1
			GROUP BY scheduled_at HAVING count(*) > 1) AS d`, housekeeping.Kind); n != 0 {
		t.Errorf("%d cron slots inserted more than once", n)
	}
	c.stopAll()
}
