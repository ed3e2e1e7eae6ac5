package jobfill_test

import (
	"context"
	"testing"

	"github.com/phonehome/phonehome/internal/jobfill"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// A thousand jobs hold the whole mix once: the states in their shares, the
// queues and kinds dealt in turn, the rare kind once, the tags, and the ids
// given (or not), on both databases.
func TestFillWritesTheMix(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		for _, tc := range []struct {
			name      string
			mix       jobfill.Mix
			executing int
			cancelled int
			tagged    int
		}{
			{name: "dashboard", mix: jobfill.Dashboard, executing: 1, cancelled: 9, tagged: 0},
			{name: "tagged, numbered by the table", mix: jobfill.Mix{
				Queues: []string{"default", "mailers", "reports"}, Kinds: []string{"a", "b", "c", "d"},
				Args: `{object}('n', x)`, TagEvery: 11, Node: "filled/1",
			}, executing: 0, cancelled: 10, tagged: 90},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := st.Writer.ExecContext(ctx, "DELETE FROM jobs"); err != nil {
					t.Fatal(err)
				}
				if err := jobfill.Fill(ctx, st, 1000, tc.mix); err != nil {
					t.Fatal(err)
				}
				count := func(where string) int {
					t.Helper()
					var n int
					if err := st.Reader.GetContext(ctx, &n, "SELECT count(*) FROM jobs WHERE "+where); err != nil {
						t.Fatal(err)
					}
					return n
				}
				for where, want := range map[string]int{
					"true":                               1000,
					"state = 'completed'":                900,
					"state = 'discarded'":                40,
					"state = 'available'":                20,
					"state = 'retryable'":                15,
					"state = 'scheduled'":                15,
					"state = 'cancelled'":                tc.cancelled,
					"state = 'executing'":                tc.executing,
					"queue = '" + tc.mix.Queues[1] + "'": 334,
					"kind = '" + tc.mix.Kinds[1] + "'":   1000 / len(tc.mix.Kinds),
					"kind = 'rare_report'":               map[bool]int{true: 1}[tc.mix.RareKind != ""],
					"tags <> '[]'":                       tc.tagged,
					"attempted_by = 'bench/1' OR attempted_by = 'filled/1'": 980,
				} {
					if got := count(where); got != want {
						t.Errorf("%s: %d jobs, want %d", where, got, want)
					}
				}
				if tc.mix.IDs {
					if got := count("id BETWEEN 1 AND 1000"); got != 1000 {
						t.Errorf("ids 1…1000: %d jobs", got)
					}
				}
			})
		}
	})
}
