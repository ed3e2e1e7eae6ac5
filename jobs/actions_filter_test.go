package jobs_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// filterEngine is an engine over st, not started: the actions need no
// running queue.
func filterEngine(t *testing.T, st *store.Store) *jobs.Engine {
	t.Helper()
	e, err := jobs.New(st.Writer, jobs.Config{Reader: st.Reader, Queues: map[string]int{"phone_calls": 1, "mailers": 1}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func statesOf(t *testing.T, st *store.Store) map[int64]string {
	t.Helper()
	var rows []struct {
		ID    int64  `db:"id"`
		State string `db:"state"`
	}
	if err := st.Reader.Select(&rows, "SELECT id, state FROM jobs"); err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	for _, r := range rows {
		out[r.ID] = r.State
	}
	return out
}

// TestActOnFilterRetriesEveryMatchInBatches: "retry all discarded in
// phone_calls" retries exactly those, in batches of the given size, with
// progress after each; the count it confirmed with is the number changed;
// the kept counts agree with the table afterwards.
func TestActOnFilterRetriesEveryMatchInBatches(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		var rows []searchRow
		for i := range 60 {
			q := []string{"phone_calls", "mailers"}[i%2]
			s := []string{"discarded", "completed", "discarded", "available", "cancelled"}[i%5]
			rows = append(rows, searchRow{state: s, queue: q, kind: "call", args: `{"i":` + itoa(i) + `}`})
		}
		ids := insertSearchRows(t, st, rows)
		e := filterEngine(t, st)
		ctx := context.Background()
		f := jobs.Filter{States: []jobs.State{jobs.StateDiscarded}, Queue: "phone_calls"}
		n, err := e.CountFilter(ctx, jobs.FilterRetry, f)
		if err != nil {
			t.Fatal(err)
		}
		var want []int64
		for i, r := range rows {
			if r.state == "discarded" && r.queue == "phone_calls" {
				want = append(want, ids[i])
			}
		}
		if n != len(want) {
			t.Fatalf("CountFilter = %d, want %d", n, len(want))
		}
		before := statesOf(t, st)
		var progress []jobs.FilterProgress
		got, err := e.ActOnFilter(ctx, jobs.FilterRetry, f, jobs.FilterOptions{Batch: 5, Progress: func(p jobs.FilterProgress) {
			progress = append(progress, p)
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Done || got.Changed != len(want) || got.Matched != len(want) || got.Batches != (len(want)+4)/5 {
			t.Fatalf("result %+v, want %d changed in %d batches", got, len(want), (len(want)+4)/5)
		}
		if len(progress) != got.Batches || !progress[len(progress)-1].Done {
			t.Fatalf("progress reports %+v for %d batches", progress, got.Batches)
		}
		for i := 1; i < len(progress); i++ {
			if progress[i].Changed <= progress[i-1].Changed {
				t.Fatalf("progress did not advance: %+v", progress)
			}
		}
		after := statesOf(t, st)
		for id, s := range before {
			wantState := s
			if slices.Contains(want, id) {
				wantState = "available"
			}
			if after[id] != wantState {
				t.Errorf("job %d is %s after, want %s (was %s)", id, after[id], wantState, s)
			}
		}
		if n, _ := e.CountFilter(ctx, jobs.FilterRetry, f); n != 0 {
			t.Fatalf("CountFilter after = %d", n)
		}
		checkCounts(t, st)
	})
}

// checkCounts compares the kept counts with the table.
func checkCounts(t *testing.T, st *store.Store) {
	t.Helper()
	if d := countsMismatch(t, t.Context(), st.Reader); d != "" {
		t.Fatalf("job_counts differs from the table:%s", d)
	}
}

// TestActOnFilterWithSearchTerms: cancel and delete follow the query's
// terms and the action's own states (an executing job is not deleted, a
// completed one not cancelled), and a job inserted after the action
// started is left alone.
func TestActOnFilterWithSearchTerms(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		var rows []searchRow
		for i := range 9000 {
			args := `{"i":` + itoa(i) + `}`
			if i%3 == 0 {
				args = `{"i":` + itoa(i) + `,"who":"Korben"}`
			}
			s := []string{"available", "completed", "executing"}[i%7%3]
			rows = append(rows, searchRow{state: s, queue: "phone_calls", kind: "call", args: args, tags: `["campaign"]`})
		}
		tx := st.Writer.MustBegin()
		now := time.Now().UnixMilli()
		for _, r := range rows {
			tx.MustExec(st.Rebind(`INSERT INTO jobs (state, queue, kind, args, tags, inserted_at, scheduled_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
				r.state, r.queue, r.kind, r.args, r.tags, now, now)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		e := filterEngine(t, st)
		ctx := context.Background()
		terms, _ := jobs.ParseSearch("args.who:Korben tag:campaign")
		f := jobs.Filter{Terms: terms}
		wantCancel := 0
		for i, r := range rows {
			if i%3 == 0 && r.state != "completed" {
				wantCancel++
			}
		}
		if n, err := e.CountFilter(ctx, jobs.FilterCancel, f); err != nil || n != wantCancel {
			t.Fatalf("CountFilter(cancel) = %d, %v; want %d", n, err, wantCancel)
		}
		var late int64
		res, err := e.ActOnFilter(ctx, jobs.FilterCancel, f, jobs.FilterOptions{Batch: 400, Progress: func(p jobs.FilterProgress) {
			if late == 0 {
				late = insertSearchRows(t, st, []searchRow{{state: "available", queue: "phone_calls", kind: "call", args: `{"who":"Korben"}`, tags: `["campaign"]`}})[0]
			}
		}})
		if err != nil || res.Changed != wantCancel {
			t.Fatalf("ActOnFilter(cancel) = %+v, %v; want %d changed", res, err, wantCancel)
		}
		if s := statesOf(t, st)[late]; s != "available" {
			t.Fatalf("a job inserted while the action ran is %s", s)
		}
		wantDelete := 0
		for i, r := range rows {
			if i%3 == 0 && r.state != "executing" {
				wantDelete++ // the cancelled ones and the completed ones
			}
		}
		res, err = e.ActOnFilter(ctx, jobs.FilterDelete, jobs.Filter{Terms: terms, States: []jobs.State{jobs.StateCancelled, jobs.StateCompleted, jobs.StateExecuting}}, jobs.FilterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cancelledExecuting := 0
		for i, r := range rows {
			if i%3 == 0 && r.state == "executing" {
				cancelledExecuting++ // cancelled above: deletable now
			}
		}
		if res.Changed != wantDelete+cancelledExecuting {
			t.Fatalf("delete changed %d, want %d", res.Changed, wantDelete+cancelledExecuting)
		}
		var left int
		if err := st.Reader.Get(&left, map[store.Dialect]string{store.SQLite: `SELECT count(*) FROM jobs WHERE json_extract(args, '$.who') = 'Korben'`, store.Postgres: `SELECT count(*) FROM jobs WHERE args->>'who' = 'Korben'`}[st.Dialect]); err != nil || left != 1 {
			t.Fatalf("%d Korben jobs left (%v), want the late one", left, err)
		}
		checkCounts(t, st)
	})
}

// TestActOnEmptyFilterNeedsAll: a filter that sets nothing would match
// every job in every state; counting or acting on it is refused with
// ErrEmptyFilter and changes nothing, unless All asks for every job.
func TestActOnEmptyFilterNeedsAll(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		insertSearchRows(t, st, []searchRow{
			{state: "available", queue: "phone_calls", kind: "call", args: `{}`},
			{state: "discarded", queue: "mailers", kind: "call", args: `{}`},
			{state: "completed", queue: "mailers", kind: "call", args: `{}`},
		})
		e := filterEngine(t, st)
		ctx := context.Background()
		if n, err := e.CountFilter(ctx, jobs.FilterDelete, jobs.Filter{}); !errors.Is(err, jobs.ErrEmptyFilter) || !errors.Is(err, jobs.ErrListParams) {
			t.Errorf("count an empty filter: %d, %v; want ErrEmptyFilter", n, err)
		}
		if _, err := e.ActOnFilter(ctx, jobs.FilterDelete, jobs.Filter{}, jobs.FilterOptions{}); !errors.Is(err, jobs.ErrEmptyFilter) {
			t.Errorf("delete an empty filter: %v; want ErrEmptyFilter", err)
		}
		if n := len(statesOf(t, st)); n != 3 {
			t.Fatalf("the refused action left %d jobs of 3", n)
		}
		all := jobs.Filter{All: true}
		if n, err := e.CountFilter(ctx, jobs.FilterDelete, all); err != nil || n != 3 {
			t.Errorf("count all: %d, %v; want 3", n, err)
		}
		if p, err := e.ActOnFilter(ctx, jobs.FilterDelete, all, jobs.FilterOptions{}); err != nil || p.Changed != 3 {
			t.Errorf("delete all: %+v, %v; want 3 changed", p, err)
		}
		if n := len(statesOf(t, st)); n != 0 {
			t.Errorf("%d jobs left after deleting all", n)
		}
	})
}
