package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestRecordCallsTx: many calls in one statement write each row as
// RecordCallTx would, return the rows in the calls' order, keep the
// counts exact, and refuse (writing nothing) a missing row or a row given
// twice.
func TestRecordCallsTx(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if err := st.GenerateExtraterrestrials(ctx, 10); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		calls := []store.Call{
			{ID: 7, Status: store.StatusSpaceTaxi, Attempt: 2, At: at},
			{ID: 3, Status: store.StatusPhoningHome, Attempt: 1, At: at.Add(time.Second)},
			{ID: 9, Status: store.StatusNoAnswer, Attempt: 5, At: at.Add(2 * time.Second)},
		}
		var got []store.Extraterrestrial
		err := st.InTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			got, err = store.RecordCallsTx(ctx, tx, calls)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(calls) {
			t.Fatalf("%d rows back for %d calls", len(got), len(calls))
		}
		for i, c := range calls {
			row, err := st.GetExtraterrestrial(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got[i] != row || row.CommunicationStatus != c.Status || row.CommunicationAttempt != c.Attempt || !row.LastAttemptAt.Equal(c.At) {
				t.Errorf("call %d: returned %+v, stored %+v; want %+v", i, got[i], row, c)
			}
		}
		want := store.StatusCounts{Never: 7, PhoningHome: 1, SpaceTaxi: 1, NoAnswer: 1}
		if c, err := st.CountByStatus(ctx); err != nil || c != want || countByScan(t, st) != want {
			t.Errorf("counts %+v (%v), by scan %+v; want %+v", c, err, countByScan(t, st), want)
		}

		for name, bad := range map[string][]store.Call{
			"a missing row": {{ID: 1, Status: store.StatusSpaceTaxi, Attempt: 1, At: at}, {ID: 999, Status: store.StatusSpaceTaxi, Attempt: 1, At: at}},
			"a row twice":   {{ID: 1, Status: store.StatusSpaceTaxi, Attempt: 1, At: at}, {ID: 1, Status: store.StatusNoAnswer, Attempt: 2, At: at}},
		} {
			err := st.InTx(ctx, func(tx *sqlx.Tx) error {
				_, err := store.RecordCallsTx(ctx, tx, bad)
				return err
			})
			if err == nil {
				t.Errorf("%s: no error", name)
			}
			if name == "a missing row" && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, err)
			}
			if row, err := st.GetExtraterrestrial(ctx, 1); err != nil || row.CommunicationStatus != store.StatusNone {
				t.Errorf("%s: row 1 is %+v (%v), want it untouched", name, row, err)
			}
		}
	})
}
