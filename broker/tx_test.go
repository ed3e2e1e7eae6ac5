package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/broker"
)

// An event written by PublishTx goes out once its transaction commits, in
// its id's place: an event committed meanwhile with a later id waits for
// it (the open transaction holds the insert lock, shared), so a row's
// change published in its own transaction always precedes any change that
// could only follow that commit. A rolled-back transaction's event never
// goes out, and the events after it are not held up.
func TestPublishTxCommitsWithItsTransaction(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: time.Minute})
	b := startNode(t, url, "b", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: time.Minute})
	onA, onB := a.connect(t, rows, "", ""), b.connect(t, rows, "", "")
	db := sqlx.NewDb(a.db, "pgx")
	ctx := context.Background()

	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.br.PublishTx(ctx, tx, rows, "", []int64{7}, [][]byte{[]byte("attempt 3")}); err != nil {
		t.Fatal(err)
	}
	rawInsert(t, b.db, "committed first") // the next id, committed while tx is open
	// An absence can only be checked over some time: several polls.
	time.Sleep(300 * time.Millisecond)
	if got := onB.got(); len(got) != 0 {
		t.Fatalf("delivered %+v past an event whose transaction is still open", got)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client{"a": onA, "b": onB} {
		got := c.waitFor(t, "both events on "+name, 2)
		if got[0].Data != "attempt 3" || got[1].Data != "committed first" || got[0].IDInt() >= got[1].IDInt() {
			t.Errorf("node %s got %+v, want attempt 3 then the later id", name, got)
		}
	}

	rolledBack, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.br.PublishTx(ctx, rolledBack, rows, "", []int64{7}, [][]byte{[]byte("never")}); err != nil {
		t.Fatal(err)
	}
	if err := rolledBack.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.br.Publish(rows, "", []byte("after")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client{"a": onA, "b": onB} {
		got := c.waitFor(t, "the event after the rollback on "+name, 3)
		if len(got) != 3 || got[2].Data != "after" {
			t.Errorf("node %s got %+v, want the rolled-back event left out", name, got)
		}
	}

	other, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if err := a.br.PublishTx(ctx, other, local, "", []int64{1}, [][]byte{[]byte("x")}); err == nil || !strings.Contains(err.Error(), "not a shared stream") {
		t.Errorf("PublishTx on a local stream: %v, want refused", err)
	}
}

// A hole is waited for only as long as the transactions that held the
// insert lock when it was found: one that takes the lock afterwards (and
// keeps it) does not hold back the events after a rolled-back insert.
func TestALaterLockHolderDoesNotProlongAHole(t *testing.T) {
	url := database(t)
	a := startNode(t, url, "a", 0, broker.Config{Poll: 20 * time.Millisecond, HoleWait: time.Hour})
	c := a.connect(t, rows, "", "")
	db := sqlx.NewDb(a.db, "pgx")
	ctx := context.Background()

	rolledBack, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rolledBack.Rollback()
	if err := a.br.PublishTx(ctx, rolledBack, rows, "", []int64{1}, [][]byte{[]byte("never")}); err != nil {
		t.Fatal(err)
	}
	rawInsert(t, a.db, "after the hole")
	// An absence can only be checked over some time: several polls, long
	// enough for the reader to have found the hole and its lock holder.
	time.Sleep(300 * time.Millisecond)
	if got := c.got(); len(got) != 0 {
		t.Fatalf("delivered %+v past an open transaction's id", got)
	}
	later, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer later.Rollback()
	if err := a.br.PublishTx(ctx, later, rows, "", []int64{2}, [][]byte{[]byte("later, still open")}); err != nil {
		t.Fatal(err)
	}
	if err := rolledBack.Rollback(); err != nil {
		t.Fatal(err)
	}
	got := c.waitFor(t, "the event after the rolled-back one", 1)
	if got[0].Data != "after the hole" {
		t.Fatalf("got %+v, want the event after the hole", got)
	}
}
