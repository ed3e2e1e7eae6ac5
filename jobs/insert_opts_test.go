package jobs_test

import (
	"slices"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

func TestInsertScheduling(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
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
