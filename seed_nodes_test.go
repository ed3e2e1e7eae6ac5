package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store/storetest"
)

// waitForEvent reads msgs until an event named name, failing t after
// timeout or when the stream ends; it returns the events before it.
func waitForEvent(t *testing.T, msgs <-chan events.Message, name string, timeout time.Duration) []events.Message {
	t.Helper()
	deadline := time.After(timeout)
	var before []events.Message
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the stream ended before %q (after %d events)", name, len(before))
			}
			if m.Event == name {
				return before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("no %q event within %s (%d other events)", name, timeout, len(before))
		}
	}
}

// `phonehome seed` beside a serving node on PostgreSQL: the pages open on
// the extraterrestrials and pets streams get resync, and reload the rows
// and counts that no node's feed published (they got nothing before: the
// new rows appeared only after a reload by hand).
func TestSeedBesideNodesResyncsOpenPages(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := storetest.NewDatabase(t, pg.Server)
	app := startApp(t, Config{DB: db, Node: "node-s"})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ets := eventstest.Messages(app.openStream(t, ctx, live.ExtraterrestrialsStream).Body, 1<<10)
	petsMsgs := eventstest.Messages(app.openStream(t, ctx, live.PetsStream).Body, 1<<10)

	var out, errOut bytes.Buffer
	if code := run([]string{"seed", "-db", db, "-ets", "7", "-pets", "2"}, &out, &errOut); code != 0 {
		t.Fatalf("seed: exit %d: %s%s", code, out.String(), errOut.String())
	}
	if s := out.String(); !strings.Contains(s, "added 7 extraterrestrials") || strings.Contains(s, "reload") {
		t.Errorf("seed said %q", s)
	}
	waitForEvent(t, ets, events.ResyncEvent, 10*time.Second)
	waitForEvent(t, petsMsgs, events.ResyncEvent, 10*time.Second)
	// What the page reloads on resync: the new rows' counts (10 seeded at
	// start, 7 more).
	if rows := getBody(t, app.URL+"/extraterrestrials/rows"); !strings.Contains(rows, "17 to go") {
		t.Errorf("the reloaded counts do not count the seeded rows: %.2000s", rows)
	}
}
