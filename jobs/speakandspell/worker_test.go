package speakandspell_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

func setup(t *testing.T, be storetest.Backend, ets int) (*store.Store, *jobs.Engine) {
	st, engine, _ := setupChanges(t, be, ets)
	return st, engine
}

// setupChanges is setup whose engine records what OnChange receives.
func setupChanges(t *testing.T, be storetest.Backend, ets int) (*store.Store, *jobs.Engine, *[]int64) {
	t.Helper()
	ctx := context.Background()
	st := be.Open(t)
	if err := st.GenerateExtraterrestrials(ctx, ets); err != nil {
		t.Fatal(err)
	}
	var changed []int64
	engine, err := jobs.New(st.Writer, jobs.Config{
		Queues:   map[string]int{speakandspell.Queue: speakandspell.QueueLimit},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnChange: func(ids []int64) { changed = append(changed, ids...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, engine, &changed
}

// jobRow is what an insert writes, but the id and times.
type jobRow struct {
	State       string  `db:"state"`
	Queue       string  `db:"queue"`
	Kind        string  `db:"kind"`
	Args        string  `db:"args"`
	Priority    int     `db:"priority"`
	MaxAttempts int     `db:"max_attempts"`
	Tags        string  `db:"tags"`
	UniqueKey   *string `db:"unique_key"`
}

const jobRowColumns = "state, queue, kind, args, priority, max_attempts, tags, unique_key"

// argID is the SQL of a call job's extraterrestrial id, per dialect.
var argID = map[store.Dialect]string{
	store.SQLite:   "json_extract(args, '$.extraterrestrial_id')",
	store.Postgres: "(args ->> 'extraterrestrial_id')::bigint",
}

// compactJSON is s without the spaces PostgreSQL's jsonb adds when it
// prints a value (SQLite keeps the text as written).
func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return b.String()
}

// The bulk insert writes the very rows the job API writes, so the engine
// runs them and the unique-in-flight index treats both alike.
func TestBulkCallsAreTheJobAPIsRows(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st, engine, changes := setupChanges(t, be, 3)
		ctx := context.Background()
		// Row 1's call goes through the job API, rows 2 and 3 in bulk (row 1 is skipped: in flight).
		var api jobs.InsertResult
		err := st.InTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			api, err = engine.InsertTx(ctx, tx, speakandspell.Args{ExtraterrestrialID: 1}, jobs.InsertOpts{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		*changes = nil
		n, err := speakandspell.PhoneHome(ctx, engine)
		if err != nil || n != 2 {
			t.Fatalf("PhoneHome = %d, %v; want 2 (row 1 is in flight)", n, err)
		}
		changed := *changes
		// (The API's insert is reported at the same Wake.)
		if !slices.Contains(changed, api.ID+1) || !slices.Contains(changed, api.ID+2) || len(changed) > 3 {
			t.Errorf("OnChange got %v, want the two new jobs %d and %d", changed, api.ID+1, api.ID+2)
		}
		var rows []jobRow
		if err := st.Reader.Select(&rows, "SELECT "+jobRowColumns+" FROM jobs ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Fatalf("%d jobs, want 3", len(rows))
		}
		want := func(id string) jobRow {
			key := `speak_and_spell:{"extraterrestrial_id":` + id + `}`
			return jobRow{State: "available", Queue: "phone_calls", Kind: "speak_and_spell",
				Args: `{"extraterrestrial_id":` + id + `}`, MaxAttempts: 5, Tags: "[]", UniqueKey: &key}
		}
		for i, id := range []string{"1", "2", "3"} {
			got, w := rows[i], want(id)
			got.Args, got.Tags = compactJSON(t, got.Args), compactJSON(t, got.Tags)
			if got.UniqueKey == nil || *got.UniqueKey != *w.UniqueKey {
				t.Errorf("job for %s: unique key %v, want %s", id, got.UniqueKey, *w.UniqueKey)
			}
			got.UniqueKey, w.UniqueKey = nil, nil
			if got != w {
				t.Errorf("job for %s = %+v, want %+v", id, got, w)
			}
		}
		if api.Duplicate {
			t.Error("the API insert was reported a duplicate")
		}
		// The API sees the bulk jobs as duplicates, and a second Phone Home adds nothing.
		err = st.InTx(ctx, func(tx *sqlx.Tx) error {
			res, err := engine.InsertTx(ctx, tx, speakandspell.Args{ExtraterrestrialID: 2}, jobs.InsertOpts{})
			if err == nil && !res.Duplicate {
				t.Error("the job API inserted a second call for row 2")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := speakandspell.PhoneHome(ctx, engine); err != nil || n != 0 {
			t.Errorf("second PhoneHome = %d, %v; want 0", n, err)
		}
	})
}

// Every extraterrestrial not yet home is called, unless its call is in
// flight: those that never tried, got no answer, or whose call ended
// without one (cancelled, deleted or discarded by an operator while it
// was still phoning home). Once their calls end, they are called again.
func TestPhoneHomeSelectsEligibleRows(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st, engine := setup(t, be, 6)
		ctx := context.Background()
		set := func(id int64, s store.Status) {
			t.Helper()
			err := st.InTx(ctx, func(tx *sqlx.Tx) error {
				_, err := store.RecordCallTx(ctx, tx, id, s, 1, time.Now())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		set(1, store.StatusSpaceTaxi)
		set(2, store.StatusPhoningHome) // its call was cancelled: no job
		set(3, store.StatusNoAnswer)
		if n, err := speakandspell.PhoneHome(ctx, engine); err != nil || n != 5 {
			t.Fatalf("PhoneHome = %d, %v; want 5 (rows 2–6)", n, err)
		}
		// Row 4's call is retrying: in flight, like every other.
		set(4, store.StatusPhoningHome)
		if n, err := speakandspell.PhoneHome(ctx, engine); err != nil || n != 0 {
			t.Fatalf("PhoneHome with every call in flight = %d, %v; want 0", n, err)
		}
		// The calls end: rows 3, 5 and 6 get home, row 2 gets no answer,
		// and row 4's call is discarded while it still says phoning home.
		if _, err := st.Writer.Exec("UPDATE jobs SET state = 'discarded'"); err != nil {
			t.Fatal(err)
		}
		set(2, store.StatusNoAnswer)
		set(3, store.StatusSpaceTaxi)
		set(5, store.StatusSpaceTaxi)
		set(6, store.StatusSpaceTaxi)
		if n, err := speakandspell.PhoneHome(ctx, engine); err != nil || n != 2 {
			t.Fatalf("PhoneHome after the calls = %d, %v; want 2 (rows 2 and 4)", n, err)
		}
		var ids []int64
		if err := st.Reader.Select(&ids, "SELECT "+argID[st.Dialect]+" FROM jobs WHERE state = 'available' ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		if len(ids) != 2 || ids[0] != 2 || ids[1] != 4 {
			t.Errorf("available calls for %v, want [2 4]", ids)
		}
	})
}

// The ids PhoneHome reports are the ids of the rows it inserted, also when
// the newest job was deleted before (its id is not given again, migration
// 0009) and when some extraterrestrials are skipped, their calls in flight.
func TestPhoneHomeReportsTheInsertedIDs(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		st, engine, changes := setupChanges(t, be, 5)
		ctx := context.Background()
		if n, err := speakandspell.PhoneHome(ctx, engine); err != nil || n != 5 {
			t.Fatalf("PhoneHome = %d, %v; want 5", n, err)
		}
		// The newest job is deleted, two calls finish with no answer, and row
		// 1's call is still in flight.
		if _, err := st.Writer.Exec(`DELETE FROM jobs WHERE id = (SELECT max(id) FROM jobs);
		UPDATE jobs SET state = 'discarded' WHERE ` + argID[st.Dialect] + ` IN (2, 4);
		UPDATE extraterrestrials SET communication_status = 'no_answer' WHERE id IN (1, 2, 4)`); err != nil {
			t.Fatal(err)
		}
		*changes = nil
		if n, err := speakandspell.PhoneHome(ctx, engine); err != nil || n != 3 {
			t.Fatalf("PhoneHome = %d, %v; want 3 (rows 2, 4 and the deleted job's 5)", n, err)
		}
		var got []int64
		if err := st.Reader.Select(&got, "SELECT id FROM jobs WHERE id > 5 ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []int64{6, 7, 8}) {
			t.Errorf("new job ids %v, want [6 7 8]: after the deleted 5, none reused, none skipped", got)
		}
		if !slices.Equal(*changes, got) {
			t.Errorf("OnChange got %v, want the inserted %v", *changes, got)
		}
	})
}

// OnCallsTx gets each batch's rows as the calls' own transaction wrote
// them, before the commit; when it refuses a row, the batch's calls are
// recorded again one at a time, that row's attempt fails without its
// write, and its retry writes it.
func TestOnCallsTxRunsInTheCallsTransaction(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, be storetest.Backend) {
		ctx := t.Context()
		st := be.Open(t)
		const n = 20
		if err := st.GenerateExtraterrestrials(ctx, n); err != nil {
			t.Fatal(err)
		}
		engine, err := jobs.New(st.Writer, jobs.Config{
			Queues:  map[string]int{speakandspell.Queue: speakandspell.QueueLimit},
			Backoff: jobs.FixedBackoff(0),
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[int64]int{} // id → batches OnCallsTx accepted it in
		err = engine.Register(speakandspell.NewWorker(speakandspell.Config{
			AnswerRate: 1,
			OnCallsTx: func(ctx context.Context, tx *sqlx.Tx, rows []store.Extraterrestrial) error {
				for _, r := range rows {
					// The transaction's own view: the call is written.
					var status string
					if err := tx.GetContext(ctx, &status, tx.Rebind("SELECT communication_status FROM extraterrestrials WHERE id = ?"), r.ID); err != nil {
						return err
					}
					if status != string(store.StatusSpaceTaxi) || r.CommunicationStatus != store.StatusSpaceTaxi {
						t.Errorf("row %d: %s in the transaction, %s handed over", r.ID, status, r.CommunicationStatus)
					}
					if r.ID == 3 && r.CommunicationAttempt == 1 {
						return errors.New("row 3's first attempt refused")
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for _, r := range rows {
					seen[r.ID]++
				}
				return nil
			},
		}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := speakandspell.PhoneHome(ctx, engine); err != nil {
			t.Fatal(err)
		}
		if err := engine.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = engine.Stop(context.Background()) })
		testwait.Until(t, 10*time.Second, "every call answered", func() bool {
			var left int
			if err := st.Reader.Get(&left, "SELECT count(*) FROM extraterrestrials WHERE communication_status IS NULL OR communication_status <> 'space_taxi_on_the_way'"); err != nil {
				t.Fatal(err)
			}
			return left == 0
		})
		mu.Lock()
		defer mu.Unlock()
		for id := int64(1); id <= n; id++ {
			if seen[id] != 1 {
				t.Errorf("row %d accepted in %d batches, want one", id, seen[id])
			}
		}
		et, err := st.GetExtraterrestrial(ctx, 3)
		if err != nil || et.CommunicationAttempt != 2 {
			t.Errorf("row 3: attempt %d, %v; want 2 (the refused attempt wrote nothing)", et.CommunicationAttempt, err)
		}
		et, err = st.GetExtraterrestrial(ctx, 4)
		if err != nil || et.CommunicationAttempt != 1 {
			t.Errorf("row 4: attempt %d, %v; want 1", et.CommunicationAttempt, err)
		}
	})
}
