package jobs_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestActOnSelectionSaysWhatBecameOfEachID: an action on a selection
// tells the ids it changed from those refused because of their state and
// those of no job (the bulk form's message names them).
func TestActOnSelectionSaysWhatBecameOfEachID(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		b := setup(t, be, options{poll: time.Hour}, w)
		later := b.insert(t, testArgs{Name: "later"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		running := b.insert(t, testArgs{Name: "running"}, jobs.InsertOpts{})
		<-w.started
		defer close(w.release)
		const unknown = 999999

		r, err := b.eng.ActOnSelection(b.ctx, jobs.FilterDelete, []int64{unknown, running, later})
		if err != nil {
			t.Fatal(err)
		}
		want := jobs.Selection{Changed: []int64{later}, Refused: []jobs.RefusedJob{{ID: running, State: jobs.StateExecuting}},
			NotFound: []int64{unknown}}
		if fmt.Sprint(r) != fmt.Sprint(want) {
			t.Errorf("delete: %+v, want %+v", r, want)
		}

		r, err = b.eng.ActOnSelection(b.ctx, jobs.FilterRetry, []int64{later, running})
		if err != nil {
			t.Fatal(err)
		}
		want = jobs.Selection{Refused: []jobs.RefusedJob{{ID: running, State: jobs.StateExecuting}}, NotFound: []int64{later}}
		if fmt.Sprint(r) != fmt.Sprint(want) {
			t.Errorf("retry: %+v, want %+v", r, want)
		}

		// Everything changed: nothing more is read.
		r, err = b.eng.ActOnSelection(b.ctx, jobs.FilterCancel, []int64{running})
		if err != nil || !slices.Equal(r.Changed, []int64{running}) || r.Refused != nil || r.NotFound != nil {
			t.Errorf("cancel: %+v, %v; want only %d changed", r, err, running)
		}
		if _, err := b.eng.ActOnSelection(b.ctx, "explode", []int64{running}); !errors.Is(err, jobs.ErrListParams) {
			t.Errorf("unknown action: %v, want ErrListParams", err)
		}
	})
}

// TestActionRefusalsReadOnce: a refused action's message is one plain
// sentence (not "cancel job 1: it is …: job state conflict", nor "job 1:
// job not found" from Get), and errors.Is still tells a conflict from a
// missing job.
func TestActionRefusalsReadOnce(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		w := newGateWorker()
		b := setup(t, be, options{poll: time.Hour}, w)
		running := b.insert(t, testArgs{Name: "running"}, jobs.InsertOpts{})
		<-w.started
		defer close(w.release)
		waiting := b.insert(t, testArgs{Name: "waiting"}, jobs.InsertOpts{ScheduleIn: time.Hour})
		if _, err := b.eng.CancelJob(b.ctx, waiting); err != nil {
			t.Fatal(err)
		}

		_, cancelErr := b.eng.CancelJob(b.ctx, waiting)
		_, retryErr := b.eng.RetryJob(b.ctx, running)
		_, unknownErr := b.eng.RetryJob(b.ctx, 999999)
		_, cancelUnknownErr := b.eng.CancelJob(b.ctx, 999999)
		_, getErr := jobs.Get(b.ctx, b.st.Reader, 999999)
		for _, tc := range []struct {
			name string
			err  error
			is   error
			want string
		}{
			{"cancel a cancelled job", cancelErr, jobs.ErrStateConflict, fmt.Sprintf(
				"job %d is cancelled: only jobs that are scheduled, available, executing or retryable can be cancelled", waiting)},
			{"retry an executing job", retryErr, jobs.ErrStateConflict, fmt.Sprintf(
				"job %d is executing: only jobs that are scheduled, retryable, completed, discarded or cancelled can be retried", running)},
			{"delete an executing job", b.eng.DeleteJob(b.ctx, running), jobs.ErrStateConflict, fmt.Sprintf(
				"job %d is executing: only jobs that are not executing can be deleted", running)},
			{"retry an unknown job", unknownErr, jobs.ErrNotFound, "job 999999 not found"},
			{"delete an unknown job", b.eng.DeleteJob(b.ctx, 999999), jobs.ErrNotFound, "job 999999 not found"},
			{"cancel an unknown job", cancelUnknownErr, jobs.ErrNotFound, "job 999999 not found"},
			{"get an unknown job", getErr, jobs.ErrNotFound, "job 999999 not found"},
			{"get an unknown job, wrapped", fmt.Errorf("show it: %w", getErr), jobs.ErrNotFound, "show it: job 999999 not found"},
		} {
			if !errors.Is(tc.err, tc.is) || tc.err.Error() != tc.want {
				t.Errorf("%s: %v; want %q (errors.Is %v)", tc.name, tc.err, tc.want, tc.is)
			}
		}
	})
}
