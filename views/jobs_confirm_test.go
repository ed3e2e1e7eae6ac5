package views

import "testing"

// TestDeleteConfirmWording: the question names the selected jobs in
// order (at most maxListedIDs, then how many more) and counts them in the
// button, in the singular for one.
func TestDeleteConfirmWording(t *testing.T) {
	many := make([]int64, 12)
	for i := range many {
		many[i] = int64(12 - i)
	}
	for _, tt := range []struct {
		name             string
		ids              []int64
		question, button string
	}{
		{"one", []int64{7}, "Delete 1 selected job (job 7)? This cannot be undone.", "Delete 1 job"},
		{"two, newest first on the page", []int64{4, 3}, "Delete 2 selected jobs (jobs 3 and 4)? This cannot be undone.", "Delete 2 jobs"},
		{"more than are named", many,
			"Delete 12 selected jobs (jobs 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more)? This cannot be undone.", "Delete 12 jobs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := DeleteConfirm{IDs: tt.ids, Back: "/jobs"}
			if q := d.Question(); q != tt.question {
				t.Errorf("question %q, want %q", q, tt.question)
			}
			if b := d.Button(); b != tt.button {
				t.Errorf("button %q, want %q", b, tt.button)
			}
			if d.Count() != len(tt.ids) {
				t.Errorf("count %d, want %d", d.Count(), len(tt.ids))
			}
		})
	}
	if many[0] != 12 {
		t.Error("Question sorted the page's ids in place")
	}
}
