package broker_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonehome/phonehome/broker"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store/storetest"
)

// failAfter bounds every wait: only ever a failure timeout.
const failAfter = 15 * time.Second

// The streams of these tests: two shared, one local.
const (
	rows  = "rows"
	other = "other"
	local = "local"
	chart = "chart" // a volatile event name on rows
)

// node is one phonehome node as far as live events go: a hub, its broker
// and an HTTP server serving the hub's streams.
type node struct {
	name string
	db   *sql.DB
	hub  *events.Hub
	br   *broker.Broker
	srv  *httptest.Server
}

// database is a new migrated PostgreSQL database's URL (the test skips
// without one).
func database(t *testing.T) string {
	t.Helper()
	return storetest.Postgres(t).Target(t)
}

// startNode starts a node on the database at url with its own pool.
func startNode(t *testing.T, url, name string, window int, cfg broker.Config) *node {
	t.Helper()
	st := storetest.Open(t, url)
	hub := events.New(events.Config{Window: window, FlushEvery: time.Millisecond})
	hub.Register(local)
	cfg.Streams = []string{rows, other}
	if cfg.Volatile == nil {
		cfg.Volatile = func(stream, event string) bool { return event == chart }
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	br := broker.New(st.Writer.DB, hub, cfg)
	if err := br.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
		var keys []int64
		if ids := r.URL.Query().Get("ids"); ids != "" {
			for _, p := range strings.Split(ids, ",") {
				k, _ := strconv.ParseInt(p, 10, 64)
				keys = append(keys, k)
			}
		}
		if err := hub.ServeKeys(w, r, r.URL.Query().Get("stream"), after, keys); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), failAfter)
		defer cancel()
		if err := br.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
		hub.Close()
		srv.Close()
	})
	return &node{name: name, db: st.Writer.DB, hub: hub, br: br, srv: srv}
}

// client is a real SSE client of one node's stream, collecting what it
// receives.
type client struct {
	mu   sync.Mutex
	msgs []events.Message
	at   []time.Time // when each arrived
	err  error
}

// connect opens the stream (resuming after lastID when not empty) and
// reads it until the test ends.
func (n *node) connect(t *testing.T, stream, lastID, ids string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url := n.srv.URL + "/events?stream=" + stream
	if ids != "" {
		url += "&ids=" + ids
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	c := &client{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := events.NewReader(resp.Body)
		for {
			m, err := r.Next()
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			c.msgs = append(c.msgs, m)
			c.at = append(c.at, time.Now())
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return c
}

// got returns a copy of what the client received.
func (c *client) got() []events.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// waitFor waits until the client received n events.
func (c *client) waitFor(t *testing.T, what string, n int) []events.Message {
	t.Helper()
	testwait.Until(t, failAfter, what, func() bool { return len(c.got()) >= n })
	return c.got()
}

// ids are the ids of msgs.
func ids(msgs []events.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.IDInt()
	}
	return out
}

// Every event published on any node reaches every node's clients, with
// the same ids in the same order; each node's events keep their publish
// order, and so each row's changes (published in order by one node) are
// in order everywhere. Events of local streams stay on their node, and
// volatile events go out without an id.
func TestEveryNodeSeesEveryEventWithTheSameIDs(t *testing.T) {
	url := database(t)
	nodes := []*node{startNode(t, url, "a", 0, broker.Config{}), startNode(t, url, "b", 0, broker.Config{}), startNode(t, url, "c", 0, broker.Config{})}
	var clients []*client
	for _, n := range nodes {
		clients = append(clients, n.connect(t, rows, "", ""))
	}
	localClient := nodes[1].connect(t, local, "", "")

	const perNode, keysPerNode = 200, 5
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for v := range perNode {
				key := int64(i*keysPerNode + v%keysPerNode + 1)
				data := fmt.Sprintf("node=%s key=%d v=%d", n.name, key, v)
				if _, err := n.br.PublishKey(rows, "", key, []byte(data)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if _, err := nodes[1].br.Publish(local, "", []byte("only on b")); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].br.Publish(rows, chart, []byte("c's own figure")); err != nil {
		t.Fatal(err)
	}

	total := perNode * len(nodes)
	first := clients[0].waitFor(t, "every event on a", total)
	for i, c := range clients {
		got := c.waitFor(t, "every event on "+nodes[i].name, total)
		var shared []events.Message
		for _, m := range got {
			if m.Event == chart {
				if i != 2 || m.ID != "" {
					t.Errorf("%s got volatile event %+v: want it on c only, without an id", nodes[i].name, m)
				}
				continue
			}
			shared = append(shared, m)
		}
		if len(shared) != total {
			t.Fatalf("%s: %d shared events, want %d", nodes[i].name, len(shared), total)
		}
		if !slices.Equal(ids(shared), ids(first[:total])) {
			t.Fatalf("%s's ids differ from a's", nodes[i].name)
		}
		for j := range shared {
			if shared[j].Data != first[j].Data {
				t.Fatalf("%s's event %d is %q, a's %q", nodes[i].name, j, shared[j].Data, first[j].Data)
			}
			if j > 0 && shared[j].IDInt() <= shared[j-1].IDInt() {
				t.Fatalf("%s: ids not increasing at %d", nodes[i].name, j)
			}
		}
	}
	// Each node's events in its publish order.
	for _, n := range nodes {
		v := -1
		for _, m := range first[:total] {
			if !strings.HasPrefix(m.Data, "node="+n.name+" ") {
				continue
			}
			var got int
			fmt.Sscanf(m.Data[strings.Index(m.Data, "v=")+2:], "%d", &got)
			if got != v+1 {
				t.Fatalf("%s's events out of order: %d after %d", n.name, got, v)
			}
			v = got
		}
	}
	localClient.waitFor(t, "b's local event", 1)
	var traveled int
	if err := nodes[0].db.QueryRow("SELECT count(*) FROM live_events WHERE stream <> 'rows' OR event = 'chart'").Scan(&traveled); err != nil || traveled != 0 {
		t.Errorf("%d local or volatile events in the table (%v), want none", traveled, err)
	}
	for _, n := range nodes {
		if got, want := n.hub.StreamLastID(rows), first[total-1].IDInt(); got != want {
			t.Errorf("%s: StreamLastID(rows) = %d, want %d", n.name, got, want)
		}
	}
}

// A state read under Ordered is published after every event whose change
// it may not have seen: three nodes that each change a counter and then
// publish it as read never leave a client with a smaller value after a
// larger one, and the last event is the final value.
func TestOrderedReadsPublishTheLatestStateLast(t *testing.T) {
	url := database(t)
	nodes := []*node{startNode(t, url, "a", 0, broker.Config{}), startNode(t, url, "b", 0, broker.Config{}), startNode(t, url, "c", 0, broker.Config{})}
	db := nodes[0].db
	if _, err := db.Exec("CREATE TABLE counter (v bigint NOT NULL); INSERT INTO counter VALUES (0)"); err != nil {
		t.Fatal(err)
	}
	c := nodes[2].connect(t, rows, "", "")
	const perNode = 40
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			for range perNode {
				if _, err := n.db.Exec("UPDATE counter SET v = v + 1"); err != nil {
					t.Error(err)
					return
				}
				err := n.br.Ordered(context.Background(), func(ctx context.Context, publish func(stream, event string, key int64, data []byte)) {
					var v int64
					if err := n.db.QueryRowContext(ctx, "SELECT v FROM counter").Scan(&v); err != nil {
						t.Error(err)
						return
					}
					publish(rows, "counts", 0, []byte(strconv.FormatInt(v, 10)))
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := c.waitFor(t, "every count", perNode*len(nodes))
	prev := int64(0)
	for _, m := range got {
		v, _ := strconv.ParseInt(m.Data, 10, 64)
		if v < prev {
			t.Fatalf("count %d after %d: an older read published later", v, prev)
		}
		prev = v
	}
	if want := int64(perNode * len(nodes)); prev != want {
		t.Fatalf("last count %d, want %d", prev, want)
	}
}

// A client that read part of the stream on one node and reconnects to
// another with its Last-Event-ID gets exactly what it missed: from the
// other node's window, or, beyond it, from the table.
func TestResumeOnAnotherNode(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{})
	b := startNode(t, url, "b", 8, broker.Config{}) // a small window: older resumes come from the table
	ca := a.connect(t, rows, "", "")
	cb := b.connect(t, rows, "", "")
	for i := range 30 {
		if _, err := a.br.PublishKey(rows, "", int64(i%3+1), []byte("e"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	all := ca.waitFor(t, "30 events on a", 30)
	cb.waitFor(t, "30 events on b", 30)
	for _, tc := range []struct {
		name string
		from int // index of the last event the client had
		ids  string
	}{
		{"in the window", 25, ""},
		{"beyond the window", 3, ""},
		{"beyond the window, one row", 3, "2"},
		{"from the start", -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lastID string
			var want []events.Message
			if tc.from >= 0 {
				lastID = all[tc.from].ID
				want = all[tc.from+1:]
			} else {
				// A page rendered on a before any event passes the point
				// the stream was at.
				lastID = strconv.FormatInt(all[0].IDInt()-1, 10)
				want = all
			}
			if tc.ids != "" {
				want = slices.DeleteFunc(slices.Clone(want), func(m events.Message) bool {
					n, _ := strconv.Atoi(strings.TrimPrefix(m.Data, "e"))
					return strconv.Itoa(n%3+1) != tc.ids
				})
			}
			c := b.connect(t, rows, lastID, tc.ids)
			got := c.waitFor(t, "the replay", len(want))
			if !slices.Equal(ids(got), ids(want)) {
				t.Fatalf("replay ids %v, want %v", ids(got), ids(want))
			}
			for i := range got {
				if got[i].Data != want[i].Data {
					t.Fatalf("replay %d: %q, want %q", i, got[i].Data, want[i].Data)
				}
			}
		})
	}
}

// A client resuming from before the trim point gets resync, never a
// silent gap; one from after it resumes. Ids from before the table (the
// hub's time-based ids of an earlier version) resync too.
func TestResumeBeforeTheTrimPointResyncs(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 4, broker.Config{Keep: 5, KeepFor: time.Hour, TrimEvery: time.Hour})
	ca := a.connect(t, rows, "", "")
	for i := range 20 {
		if _, err := a.br.Publish(rows, "", []byte("e"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	all := ca.waitFor(t, "20 events", 20)
	if err := a.br.Trim(context.Background(), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := a.db.QueryRow("SELECT count(*) FROM live_events").Scan(&left); err != nil || left != 5 {
		t.Fatalf("%d events left after trim (%v), want 5", left, err)
	}
	b := startNode(t, url, "b", 4, broker.Config{})
	for _, from := range []int64{all[2].IDInt(), all[13].IDInt(), time.Now().Add(-time.Hour).UnixMicro()} {
		c := b.connect(t, rows, strconv.FormatInt(from, 10), "")
		got := c.waitFor(t, "resync", 1)
		if got[0].Event != events.ResyncEvent {
			t.Errorf("resume from %d: got %+v, want resync", from, got[0])
		}
	}
	// From the 15th (still in the table, beyond b's empty window): resumes.
	c := b.connect(t, rows, all[14].ID, "")
	got := c.waitFor(t, "the last 5", 5)
	if !slices.Equal(ids(got), ids(all[15:])) {
		t.Fatalf("resume after the trim point: %v, want %v", ids(got), ids(all[15:]))
	}
	// Older than KeepFor: trimmed however few, and a resume resyncs.
	if err := a.br.Trim(context.Background(), time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := a.db.QueryRow("SELECT count(*) FROM live_events").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d events left after trimming by age (%v), want 0", left, err)
	}
	c = b.connect(t, rows, all[14].ID, "")
	if got := c.waitFor(t, "resync", 1); got[0].Event != events.ResyncEvent {
		t.Errorf("resume from before the age trim: got %+v, want resync", got[0])
	}
}

// beginHole begins a transaction holding the insert lock, as the writer's
// do: a row inserted in it is a hole in the ids until it commits or rolls
// back.
func beginHole(t *testing.T, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT pg_advisory_xact_lock($1)", int64(0x6c766576)); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	return tx
}

// rawInsert inserts an event the way the broker does, in tx (nil: on its
// own), and returns its id.
func rawInsert(t *testing.T, q interface {
	QueryRow(string, ...any) *sql.Row
}, data string) int64 {
	t.Helper()
	var id int64
	err := q.QueryRow(`INSERT INTO live_events (stream, event, key, data, created_at)
		VALUES ('rows', '', 0, $1, $2) RETURNING id`, data, time.Now().UnixMilli()).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A hole in the ids (an insert not committed yet) holds the later events
// back until it commits, then both go out in id order.
func TestAHoleIsWaitedFor(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: time.Minute})
	c := a.connect(t, rows, "", "")
	tx := beginHole(t, a.db)
	defer tx.Rollback()
	early := rawInsert(t, tx, "early")
	late := rawInsert(t, a.db, "late") // committed first, with the next id
	if late != early+1 {
		t.Fatalf("ids %d, %d", early, late)
	}
	// An absence can only be checked over some time: several polls.
	time.Sleep(300 * time.Millisecond)
	if got := c.got(); len(got) != 0 {
		t.Fatalf("delivered %+v past a hole still being inserted", got)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	got := c.waitFor(t, "both events", 2)
	if got[0].Data != "early" || got[1].Data != "late" {
		t.Fatalf("got %+v, want early then late", got)
	}
}

// A hole left by a rolled-back insert is skipped as soon as nobody is
// inserting; one held longer than HoleWait is skipped then.
func TestAHoleIsSkippedOnceItCannotFill(t *testing.T) {
	url := database(t)
	t.Run("rolled back", func(t *testing.T) {
		a := startNode(t, url, "a", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: time.Hour})
		c := a.connect(t, rows, "", "")
		tx := beginHole(t, a.db)
		rawInsert(t, tx, "rolled back")
		rawInsert(t, a.db, "after")
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		got := c.waitFor(t, "the event after the hole", 1)
		if got[0].Data != "after" {
			t.Fatalf("got %+v", got)
		}
		if n := a.br.Skipped(); n != 0 {
			t.Errorf("Skipped() = %d after a rolled-back insert, want 0 (nothing was given up on)", n)
		}
	})
	t.Run("held too long", func(t *testing.T) {
		a := startNode(t, url, "b", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: 200 * time.Millisecond})
		c := a.connect(t, rows, "", "")
		tx := beginHole(t, a.db)
		defer tx.Rollback()
		rawInsert(t, tx, "stuck")
		rawInsert(t, a.db, "after the stuck one")
		got := c.waitFor(t, "the event after the stuck hole", 1)
		if got[0].Data != "after the stuck one" {
			t.Fatalf("got %+v", got)
		}
		// The stuck insert commits after all: too late to be sent in
		// order, so the clients resync rather than miss it silently.
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		got = c.waitFor(t, "a resync", 2)
		if got[1].Event != events.ResyncEvent {
			t.Fatalf("after the late commit: %+v, want resync", got[1])
		}
		if n := a.br.Skipped(); n != 1 {
			t.Errorf("Skipped() = %d, want the one id given up on", n)
		}
	})
}

// A node whose reader lags behind the trim (here: held at a hole while the
// rows after it are trimmed) does not skip the trimmed events silently:
// the stream's clients resync.
func TestEventsTrimmedBeforeDeliveryResync(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: time.Hour, Keep: 2, KeepFor: time.Hour, TrimEvery: time.Hour})
	c := a.connect(t, rows, "", "")
	tx := beginHole(t, a.db)
	defer tx.Rollback()
	rawInsert(t, tx, "held")
	for i := range 5 {
		rawInsert(t, a.db, "e"+strconv.Itoa(i))
	}
	if err := a.br.Trim(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The reader may have read the rows before the trim (then it sends
	// them all after the resync) or not (then only e3 and e4): either way
	// the resync comes before anything that follows the gap.
	testwait.Until(t, failAfter, "e4", func() bool {
		got := c.got()
		return len(got) > 0 && got[len(got)-1].Data == "e4"
	})
	if got := c.got(); got[0].Event != events.ResyncEvent {
		t.Fatalf("got %+v, want a resync first", got)
	}
}

// Events the database refused until the writer gave up are not lost
// silently: the next batch stored starts with a resync on their stream,
// which every node's clients receive.
func TestEventsGivenUpOnMakeTheStreamResync(t *testing.T) {
	pg := storetest.Postgres(t)
	url := pg.Target(t)
	a := startNode(t, url, "a", 0, broker.Config{WriteAttempts: 1})
	b := startNode(t, url, "b", 0, broker.Config{})
	c := b.connect(t, rows, "", "")
	restore := storetest.Outage(t, pg.Server, url)
	if _, err := a.br.Publish(rows, "", []byte("lost")); err != nil {
		t.Fatal(err)
	}
	// The one attempt fails while the database is away; then it is back.
	testwait.Until(t, failAfter, "the batch given up", func() bool { return a.br.Lost() == 1 })
	restore()
	if _, err := a.br.Publish(rows, "", []byte("after")); err != nil {
		t.Fatal(err)
	}
	got := c.waitFor(t, "a resync, then the next event", 2)
	if got[0].Event != events.ResyncEvent || got[1].Data != "after" {
		t.Fatalf("got %+v, want resync then after", got)
	}
}
