package broker_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/phonehome/phonehome/broker"
	"github.com/phonehome/phonehome/internal/testwait"
)

// Without notifications (an insert that sent none), the poll delivers.
func TestThePollDeliversWithoutNotifications(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{Poll: 50 * time.Millisecond})
	c := a.connect(t, rows, "", "")
	rawInsert(t, a.db, "unannounced")
	if got := c.waitFor(t, "the unannounced event", 1); got[0].Data != "unannounced" {
		t.Fatalf("got %+v", got)
	}
}

// The LISTEN connection killed by the server is opened again, and what
// was published meanwhile is delivered (the poll is an hour here: only
// the notifications and the reconnection can deliver).
func TestTheListenConnectionComesBack(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{Poll: time.Hour})
	c := a.connect(t, rows, "", "")
	if _, err := a.br.Publish(rows, "", []byte("before")); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "the first event", 1)
	var killed int
	testwait.Until(t, failAfter, "the listener killed", func() bool {
		err := a.db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN ` + broker.Channel + `' AND pid <> pg_backend_pid()`).Scan(&killed)
		return err == nil && killed > 0
	})
	if _, err := a.br.Publish(rows, "", []byte("after")); err != nil {
		t.Fatal(err)
	}
	got := c.waitFor(t, "the event published while reconnecting", 2)
	if got[1].Data != "after" {
		t.Fatalf("got %+v", got)
	}
}

// Publish-to-client latency through the broker: three nodes, a client on
// each, 1,000 events a second for two seconds; logs the percentiles (the
// figure in the notes). Fails only if an event is lost.
func TestLatencyAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for 2 s")
	}
	url := database(t)
	nodes := []*node{startNode(t, url, "a", 0, broker.Config{}), startNode(t, url, "b", 0, broker.Config{}), startNode(t, url, "c", 0, broker.Config{})}
	var clients []*client
	for _, n := range nodes {
		clients = append(clients, n.connect(t, rows, "", ""))
	}
	const total = 2000
	sent := make([]time.Time, total)
	tick := time.NewTicker(time.Millisecond)
	for i := range total {
		<-tick.C
		sent[i] = time.Now()
		if _, err := nodes[i%3].br.Publish(rows, "", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	var lat []time.Duration
	for _, c := range clients {
		got := c.waitFor(t, "every event", total)
		c.mu.Lock()
		for j, m := range got[:total] {
			i, _ := strconv.Atoi(m.Data)
			lat = append(lat, c.at[j].Sub(sent[i]))
		}
		c.mu.Unlock()
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)] }
	t.Logf("publish-to-client over 3 nodes, %d events at 1,000/s, %d deliveries: p50 %s, p90 %s, p99 %s, max %s",
		total, len(lat), pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1])
}
