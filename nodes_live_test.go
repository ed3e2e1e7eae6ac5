package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/live"
)

// TestNodesStreamEveryChange starts a campaign on node A of three and reads
// the whole extraterrestrials stream on each of A, B and C, as `curl -N`
// would. The three nodes' workers share the calls, so each stream shows
// other nodes' changes as much as its own: every client must see every
// row's every call, in order per row, ending as the database ends.
func TestNodesStreamEveryChange(t *testing.T) {
	c := startStreamNodes(t, 3)
	streams := make([]<-chan events.Message, 3)
	for i := range streams {
		streams[i] = c.stream(i)
	}
	phoneHomeAll(t, c.URL(0), streamTotal)

	// Each client reads until every row has ended (home, or no answer
	// after its last attempt), in a goroutine of its own so that the three
	// drain their streams at once.
	seen := make([]map[int64][]call, 3)
	counts := make([][4]int, 3)
	problems := make([]string, 3)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[i], counts[i], problems[i] = readCampaign(streams[i], streamTotal, time.Minute)
		}()
	}
	wg.Wait()
	for i, p := range problems {
		if p != "" {
			t.Errorf("node %c's stream: %s", nodeNames[i], p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	var rows []struct {
		ID      int64      `db:"id"`
		Status  sql0String `db:"communication_status"`
		Attempt int        `db:"communication_attempt"`
	}
	if err := c.Conn.Select(&rows, "SELECT id, communication_status, communication_attempt FROM extraterrestrials ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	if len(rows) != streamTotal {
		t.Fatalf("%d extraterrestrials in the database, want %d", len(rows), streamTotal)
	}
	for i := range seen {
		bad := 0
		for _, r := range rows {
			calls := seen[i][r.ID]
			problem := checkCalls(calls)
			if problem == "" {
				if last := calls[len(calls)-1]; string(r.Status) != last.status || r.Attempt != last.attempt {
					problem = fmt.Sprintf("the stream ends at %s/%d, the database at %s/%d", last.status, last.attempt, r.Status, r.Attempt)
				}
			}
			if problem != "" {
				if bad++; bad <= 10 {
					t.Errorf("node %c's stream, extraterrestrial %d: %s (events %v)", nodeNames[i], r.ID, problem, calls)
				}
			}
		}
		if bad > 10 {
			t.Errorf("node %c's stream: %d rows wrong in all", nodeNames[i], bad)
		}
	}
	// The campaign header: each stream's counts end as the database's
	// (they may come after the last row, at most 4 a second).
	var want [4]int
	for _, r := range rows {
		switch r.Status {
		case "space_taxi_on_the_way":
			want[1]++
		case "no_answer":
			want[2]++
		case "phoning_home":
			want[0]++
		default:
			want[3]++
		}
	}
	for i := range streams {
		if got := untilCounts(streams[i], counts[i], want, 15*time.Second); got != want {
			t.Errorf("node %c's stream: the last counts (phoning, home, no answer, never tried) %v, the database's %v", nodeNames[i], got, want)
		}
	}
	if t.Failed() {
		return
	}
	var by int
	if err := c.Conn.Get(&by, "SELECT count(DISTINCT attempted_by) FROM jobs WHERE kind = 'speak_and_spell'"); err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, cs := range seen[0] {
		calls += len(cs)
	}
	t.Logf("each of 3 streams saw all %d calls of %d rows, in order, and the final counts; the last attempts ran on %d nodes", calls, streamTotal, by)
	c.stopAll()
}

// streamTotal is the size of the campaigns whose whole streams the node
// tests read: a thousand extraterrestrials.
const streamTotal = 1000

// startStreamNodes starts n nodes over a database of streamTotal
// extraterrestrials whose calls go fast: no backoff, half of them answered,
// polled every 50 ms.
func startStreamNodes(t *testing.T, n int) *nodeCluster {
	t.Helper()
	return startNodes(t, n, streamTotal, false, "-backoff", "0s", "-answer-rate", "0.5", "-poll", "50ms")
}

// readCampaign reads row events from a whole extraterrestrials stream until
// total rows have ended (home, or no answer), and returns each row's calls
// in the order they came, or what went wrong: the stream ended, an event it
// cannot read, or the deadline passed first.
func readCampaign(msgs <-chan events.Message, total int, within time.Duration) (seen map[int64][]call, counts [4]int, problem string) {
	seen = map[int64][]call{}
	problem = readRows(msgs, total, within, func(m events.Message) (bool, string) {
		switch m.Event {
		case "":
		case events.ResyncEvent:
			return false, "resync: the node could not keep up and dropped events"
		case live.CountsEvent:
			counts = countsOf(m.Data)
			return false, ""
		default:
			return false, ""
		}
		id, c, ok := rowCall(m.Data)
		if !ok {
			return false, fmt.Sprintf("unexpected event %q", m.Data)
		}
		seen[id] = append(seen[id], c)
		return c.ended(), ""
	})
	if problem != "" {
		problem += fmt.Sprintf(" (%d rows seen at all)", len(seen))
	}
	return seen, counts, problem
}

// readRows reads a whole extraterrestrials stream until total rows have
// ended, as read says of each event (or what is wrong with it), and says
// what went wrong: the stream ended, read's problem, or within passed
// first ("" when nothing did).
func readRows(msgs <-chan events.Message, total int, within time.Duration, read func(m events.Message) (ended bool, problem string)) string {
	ended := 0
	deadline := time.After(within)
	for ended < total {
		select {
		case m, ok := <-msgs:
			if !ok {
				return fmt.Sprintf("the stream ended after %d of %d rows ended", ended, total)
			}
			rowEnded, problem := read(m)
			if problem != "" {
				return problem
			}
			if rowEnded {
				ended++
			}
		case <-deadline:
			return fmt.Sprintf("only %d of %d rows ended within %s", ended, total, within)
		}
	}
	return ""
}

var countN = regexp.MustCompile(`class="count-n">([^<]*)<`)

// countsOf reads a campaign header: phoning home, home, no answer, never
// tried.
func countsOf(html string) (c [4]int) {
	for i, m := range countN.FindAllStringSubmatch(html, 4) {
		c[i], _ = strconv.Atoi(strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, m[1]))
	}
	return c
}

// untilCounts reads msgs until a campaign header says want, and returns
// the last one read (last when none came) at the deadline or at the end of
// the stream.
func untilCounts(msgs <-chan events.Message, last, want [4]int, within time.Duration) [4]int {
	deadline := time.After(within)
	for last != want {
		select {
		case m, ok := <-msgs:
			if !ok {
				return last
			}
			if m.Event == live.CountsEvent {
				last = countsOf(m.Data)
			}
		case <-deadline:
			return last
		}
	}
	return last
}

// checkCalls says what is wrong with one row's calls as a stream showed
// them ("" when nothing): one event per attempt, numbered from 1, "phoning
// home" until the last, which ended the row (no answer only after 5).
func checkCalls(calls []call) string {
	if len(calls) == 0 {
		return "no events"
	}
	for i, c := range calls {
		last := i == len(calls)-1
		switch {
		case c.attempt != i+1:
			return fmt.Sprintf("event %d is attempt %d", i+1, c.attempt)
		case !last && c.status != "phoning_home":
			return fmt.Sprintf("attempt %d says %s before the end", c.attempt, c.status)
		case last && c.status != "space_taxi_on_the_way" && c.status != "no_answer":
			return fmt.Sprintf("the last event says %q", c.status)
		case last && c.status == "no_answer" && c.attempt != 5:
			return fmt.Sprintf("no answer after %d attempts, want 5", c.attempt)
		}
	}
	return ""
}
