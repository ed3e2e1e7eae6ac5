package main

import (
	"fmt"
	"math/rand/v2"
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
	const total, kills = 10000, 3
	c := startNodes(t, 3, total, true, "-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms", "-grace", "5s")
	rng := rand.New(rand.NewPCG(faultSeed(t), 2))
	at := killMoments(rng, total, kills)
	start := time.Now()
	phoneHomeAll(t, c.URL(0), total)
	// An interrupted attempt is a job executing in the killed process when
	// it died; one that a later kill finds still waiting counts once.
	interrupted := map[string]bool{}
	for k, n := range at {
		waitFinished(t, c.Conn, 3*time.Minute, n, fmt.Sprintf("kill %d", k+1))
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
			time.Since(start).Round(time.Millisecond), k+1, nodeNames[victim], pid, finishedCalls(t, c.Conn), total, len(interrupted)-before, others)
		c.start(victim)
	}
	// The survivors rescue a dead node's jobs at their next heartbeat (its
	// pid is gone, so they need not wait for its heartbeat to go stale).
	waitFinished(t, c.Conn, 3*time.Minute, total, "the campaign")
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
