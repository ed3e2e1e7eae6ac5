package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNodesKillOneMidCampaign runs a campaign on three nodes over one
// PostgreSQL database and kills one of them with SIGKILL three times at
// random moments, starting it again each time. The survivors and the
// restarted node rescue what the killed one left executing, so the checks
// are the one-node kill test's: every extraterrestrial home or out of
// attempts, exactly one job each, finished, its attempts and errors
// agreeing with its row, and one rescue recorded per interrupted attempt.
func TestNodesKillOneMidCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("three real servers and a campaign with kills; not with -short")
	}
	const total, kills = 10000, 3
	c := startNodes(t, 3, total, true, "-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms", "-grace", "5s")
	rng := rand.New(rand.NewPCG(faultSeed(t), 2))
	var at []int
	for range kills {
		at = append(at, rng.IntN(total*85/100))
	}
	slices.Sort(at)
	finished := func() int {
		return dbCount(t, c.Conn, "SELECT count(*) FROM jobs WHERE state IN ('completed', 'discarded', 'cancelled')")
	}

	start := time.Now()
	if status, body := faultCall(t, faultClient, "POST", c.URL(0)+"/api/phone-home", "", ""); status != 200 || strings.TrimSpace(body) != fmt.Sprintf(`{"enqueued":%d}`, total) {
		t.Fatalf("phone home on node A: %d %s", status, body)
	}
	// An interrupted attempt is a job executing in the killed process when
	// it died; one that a later kill finds still waiting counts once.
	interrupted := map[string]bool{}
	for k, n := range at {
		waitUntil(t, 3*time.Minute, fmt.Sprintf("kill %d: %d calls finished", k+1, n), func() (bool, string) {
			f := finished()
			return f >= n, fmt.Sprintf("%d finished", f)
		})
		victim := rng.IntN(3)
		pid := c.PID(victim)
		c.kill(victim)
		var executing []struct {
			ID int64  `db:"id"`
			By string `db:"attempted_by"`
		}
		if err := c.Conn.Select(&executing, "SELECT id, attempted_by FROM jobs WHERE state = 'executing'"); err != nil {
			t.Fatal(err)
		}
		before, others := len(interrupted), 0
		for _, e := range executing {
			if ranOn(e.By, pid) {
				interrupted[fmt.Sprintf("%d %s", e.ID, e.By)] = true
			} else {
				others++
			}
		}
		t.Logf("%s: kill %d of node %c (pid %d) after %d of %d calls finished: %d of its attempts interrupted; %d executing elsewhere",
			time.Since(start).Round(time.Millisecond), k+1, nodeNames[victim], pid, finished(), total, len(interrupted)-before, others)
		c.start(victim)
	}
	// The survivors rescue a dead node's jobs at their next heartbeat (its
	// pid is gone, so they need not wait for its heartbeat to go stale).
	waitUntil(t, 3*time.Minute, "the campaign to finish", func() (bool, string) {
		f := finished()
		return f == total, fmt.Sprintf("%d of %d finished", f, total)
	})
	t.Logf("%s: the campaign is finished", time.Since(start).Round(time.Millisecond))
	c.stopAll()
	tally := checkCampaign(t, c.Conn, total)
	if tally.rescued != len(interrupted) {
		t.Errorf("%d rescues recorded for %d attempts interrupted by the kills", tally.rescued, len(interrupted))
	}
	var by []string
	if err := c.Conn.Select(&by, "SELECT DISTINCT attempted_by FROM jobs WHERE kind = 'speak_and_spell' ORDER BY 1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills survived: %d calls made, %d attempts interrupted and rescued; %d home, %d no answer; last attempts made by %d processes",
		kills, tally.attempts, len(interrupted), tally.home, tally.noAnswer, len(by))
}
