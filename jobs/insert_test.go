// Inserting jobs: uniqueness, validation, scheduling, bulk inserts and
// inserts inside the caller's transaction.
package jobs_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

func TestUniqueInsert(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		gate := make(chan struct{})
		b := setup(t, be, options{},
			funcWorker{kind: "unique", fn: func(ctx context.Context, _ *jobs.Job) error { return released(ctx, gate) }},
			funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})

		first, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "a"}, jobs.InsertOpts{})
		if err != nil || first.Duplicate {
			t.Fatalf("first insert: %+v, %v", first, err)
		}
		if j := b.get(t, first.ID); j.MaxAttempts != 3 {
			t.Errorf("max_attempts = %d, want the args' default 3", j.MaxAttempts)
		}
		// Executing is still in flight.
		b.waitState(t, first.ID, jobs.StateExecuting)

		second, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "a"}, jobs.InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if !second.Duplicate || second.ID != first.ID {
			t.Errorf("second insert = %+v, want duplicate of %d", second, first.ID)
		}
		other, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "b"}, jobs.InsertOpts{})
		if err != nil || other.Duplicate || other.ID == first.ID {
			t.Errorf("insert with other args = %+v, %v: want a new job", other, err)
		}
		if n := b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'unique'"); n != 2 {
			t.Errorf("%d unique jobs stored, want 2", n)
		}

		// Without Unique, equal args make two jobs.
		for range 2 {
			b.insert(t, testArgs{Name: "same"}, jobs.InsertOpts{})
		}
		// Unique in the insert options works for any args.
		optsUnique, err := b.eng.Insert(b.ctx, testArgs{kind: "unique", Name: "via opts"}, jobs.InsertOpts{Unique: true, Queue: "elsewhere"})
		if err != nil || optsUnique.Duplicate {
			t.Fatalf("insert unique by opts: %+v, %v", optsUnique, err)
		}
		again, err := b.eng.Insert(b.ctx, testArgs{kind: "unique", Name: "via opts"}, jobs.InsertOpts{Unique: true, Queue: "elsewhere"})
		if err != nil || !again.Duplicate || again.ID != optsUnique.ID {
			t.Errorf("second unique-by-opts insert = %+v, %v: want duplicate of %d", again, err, optsUnique.ID)
		}

		close(gate)
		b.waitState(t, first.ID, jobs.StateCompleted)
		third, err := b.eng.Insert(b.ctx, uniqueArgs{Key: "a"}, jobs.InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if third.Duplicate || third.ID == first.ID {
			t.Errorf("insert after completion = %+v, want a new job", third)
		}
		b.waitState(t, third.ID, jobs.StateCompleted)
	})
}

func TestInsertManySkipsDuplicates(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		n, err := b.eng.InsertMany(b.ctx, []jobs.InsertParams{
			{Args: uniqueArgs{Key: "x"}},
			{Args: uniqueArgs{Key: "x"}},
			{Args: uniqueArgs{Key: "y"}},
			{Args: testArgs{Name: "plain"}},
			{Args: testArgs{Name: "plain"}},
		})
		if err != nil || n != 4 {
			t.Fatalf("insert many: n=%d err=%v, want 4", n, err)
		}
		n, err = b.eng.InsertMany(b.ctx, []jobs.InsertParams{
			{Args: uniqueArgs{Key: "x"}},
			{Args: uniqueArgs{Key: "z"}},
		})
		if err != nil || n != 1 {
			t.Fatalf("second insert many: n=%d err=%v, want 1", n, err)
		}
		if got := b.count(t, "SELECT count(*) FROM jobs"); got != 5 {
			t.Errorf("%d jobs stored, want 5", got)
		}
		if got := b.count(t, "SELECT count(*) FROM jobs WHERE kind = 'unique' AND args = '{\"key\":\"x\"}'"); got != 1 {
			t.Errorf("%d copies of unique x, want 1", got)
		}
	})
}

func TestInsertValidation(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		tests := []struct {
			name string
			args jobs.Args
			opts jobs.InsertOpts
		}{
			{name: "nil args", args: nil},
			{name: "empty kind", args: emptyKindArgs{}},
			{name: "priority above 9", args: testArgs{}, opts: jobs.InsertOpts{Priority: 10}},
			{name: "negative priority", args: testArgs{}, opts: jobs.InsertOpts{Priority: -1}},
			{name: "negative max attempts", args: testArgs{}, opts: jobs.InsertOpts{MaxAttempts: -1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if res, err := b.eng.Insert(b.ctx, tt.args, tt.opts); err == nil {
					t.Errorf("insert succeeded with %+v, want an error", res)
				}
			})
		}
		if n := b.count(t, "SELECT count(*) FROM jobs"); n != 0 {
			t.Errorf("%d jobs stored by invalid inserts", n)
		}
	})
}

type emptyKindArgs struct{}

func (emptyKindArgs) Kind() string { return "" }

func TestInsertTxFollowsCallersTransaction(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		tests := []struct {
			name   string
			commit bool
		}{
			{name: "rolled back", commit: false},
			{name: "committed", commit: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				// An hour between polls: only Wake starts the job promptly.
				b := setup(t, be, options{poll: time.Hour}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
				if _, err := b.st.Writer.ExecContext(b.ctx, "CREATE TABLE notes ("+idColumn(b.st)+", body TEXT NOT NULL)"); err != nil {
					t.Fatal(err)
				}

				tx, err := b.st.Writer.BeginTxx(b.ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(b.ctx, "INSERT INTO notes (body) VALUES ('the change')"); err != nil {
					tx.Rollback()
					t.Fatal(err)
				}
				res, err := b.eng.InsertTx(b.ctx, tx, testArgs{Name: "with the change"}, jobs.InsertOpts{})
				if err != nil {
					tx.Rollback()
					t.Fatal(err)
				}
				if !tt.commit {
					if err := tx.Rollback(); err != nil {
						t.Fatal(err)
					}
					if _, err := jobs.Get(b.ctx, b.st.Reader, res.ID); !errors.Is(err, jobs.ErrNotFound) {
						t.Errorf("get rolled-back job: err %v, want ErrNotFound", err)
					}
					if n := b.count(t, "SELECT count(*) FROM jobs"); n != 0 {
						t.Errorf("%d jobs after rollback", n)
					}
					if n := b.count(t, "SELECT count(*) FROM notes"); n != 0 {
						t.Errorf("%d notes after rollback", n)
					}
					return
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if _, err := jobs.Get(b.ctx, b.st.Reader, res.ID); err != nil {
					t.Fatalf("get committed job: %v", err)
				}
				if n := b.count(t, "SELECT count(*) FROM notes"); n != 1 {
					t.Errorf("%d notes after commit, want 1", n)
				}
				b.eng.Wake()
				b.waitState(t, res.ID, jobs.StateCompleted)
			})
		}
	})
}

func TestInsertScheduling(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true})
		tests := []struct {
			name      string
			opts      jobs.InsertOpts
			wantState jobs.State
			wantAt    time.Time
		}{
			{name: "now", wantState: jobs.StateAvailable, wantAt: t0},
			{name: "schedule in", opts: jobs.InsertOpts{ScheduleIn: time.Minute}, wantState: jobs.StateScheduled, wantAt: t0.Add(time.Minute)},
			{name: "scheduled at wins", opts: jobs.InsertOpts{ScheduleIn: time.Minute, ScheduledAt: t0.Add(time.Hour)},
				wantState: jobs.StateScheduled, wantAt: t0.Add(time.Hour)},
			{name: "in the past", opts: jobs.InsertOpts{ScheduledAt: t0.Add(-time.Hour)}, wantState: jobs.StateAvailable, wantAt: t0},
			{name: "priority and tags", opts: jobs.InsertOpts{Priority: 9, Tags: []string{"a", "b"}}, wantState: jobs.StateAvailable, wantAt: t0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				j := b.get(t, b.insert(t, testArgs{Name: tt.name}, tt.opts))
				if j.State != tt.wantState || !j.ScheduledAt.Equal(tt.wantAt) {
					t.Errorf("state %s scheduled_at %v, want %s %v", j.State, j.ScheduledAt, tt.wantState, tt.wantAt)
				}
				if j.Priority != tt.opts.Priority || !slices.Equal(j.Tags, append([]string{}, tt.opts.Tags...)) {
					t.Errorf("priority %d tags %q, want %d %q", j.Priority, j.Tags, tt.opts.Priority, tt.opts.Tags)
				}
			})
		}
	})
}

func TestUniquePeriodAndStates(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		type step struct {
			advance time.Duration
			finish  jobs.State // move the previous job to this state first ("" = leave)
			wantDup bool
		}
		tests := []struct {
			name  string
			opts  jobs.InsertOpts
			steps []step
		}{
			{name: "period: duplicate within it, new after it, whatever the state",
				opts: jobs.InsertOpts{Unique: true, UniquePeriod: time.Hour, UniqueStates: jobs.States},
				steps: []step{
					{},
					{advance: 30 * time.Minute, finish: jobs.StateCompleted, wantDup: true},
					{advance: 30*time.Minute + time.Millisecond},
				}},
			{name: "period with default states: a completed job does not count",
				opts: jobs.InsertOpts{Unique: true, UniquePeriod: time.Hour},
				steps: []step{
					{},
					{wantDup: true},
					{finish: jobs.StateCompleted},
				}},
			{name: "states: only completed jobs count",
				opts: jobs.InsertOpts{Unique: true, UniqueStates: []jobs.State{jobs.StateCompleted}},
				steps: []step{
					{},
					{}, // the first is available: not counted
					{finish: jobs.StateCompleted, wantDup: true}, // now it is completed
					{advance: 1000 * time.Hour, wantDup: true},   // no period: forever
				}},
			{name: "states without period: discarded counts, cancelled does not",
				opts: jobs.InsertOpts{Unique: true, UniqueStates: []jobs.State{jobs.StateAvailable, jobs.StateDiscarded}},
				steps: []step{
					{},
					{finish: jobs.StateCancelled},
					{finish: jobs.StateDiscarded, wantDup: true},
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, be, options{noStart: true})
				var last int64
				for i, s := range tt.steps {
					b.clock.Advance(s.advance)
					if s.finish != "" {
						if _, err := b.st.Writer.ExecContext(b.ctx, b.st.Writer.Rebind("UPDATE jobs SET state = ? WHERE id = ?"), s.finish, last); err != nil {
							t.Fatal(err)
						}
					}
					res, err := b.eng.Insert(b.ctx, testArgs{Name: "same"}, tt.opts)
					if err != nil {
						t.Fatal(err)
					}
					if res.Duplicate != s.wantDup {
						t.Fatalf("step %d: duplicate %v, want %v", i, res.Duplicate, s.wantDup)
					}
					if res.Duplicate && res.ID != last {
						t.Errorf("step %d: duplicate of %d, want of %d", i, res.ID, last)
					}
					last = res.ID
				}
			})
		}
		t.Run("bulk insert skips duplicates by period", func(t *testing.T) {
			t.Parallel()
			b := setup(t, be, options{noStart: true})
			opts := jobs.InsertOpts{Unique: true, UniquePeriod: time.Minute}
			n, err := b.eng.InsertMany(b.ctx, []jobs.InsertParams{
				{Args: testArgs{Name: "x"}, Opts: opts}, {Args: testArgs{Name: "x"}, Opts: opts}, {Args: testArgs{Name: "y"}, Opts: opts},
			})
			if err != nil || n != 2 {
				t.Errorf("insert many: n=%d err=%v, want 2", n, err)
			}
		})
		t.Run("bad unique options", func(t *testing.T) {
			t.Parallel()
			b := setup(t, be, options{noStart: true})
			for _, opts := range []jobs.InsertOpts{
				{Unique: true, UniquePeriod: -time.Second},
				{Unique: true, UniqueStates: []jobs.State{"sleeping"}},
			} {
				if _, err := b.eng.Insert(b.ctx, testArgs{}, opts); err == nil {
					t.Errorf("insert with %+v accepted", opts)
				}
			}
		})
	})
}
