package jobs

// batch.go: writes that the outcomes of many jobs share. A worker whose
// every attempt writes one row (the campaign's extraterrestrial) would
// cost a statement a job with RecordTx; with RecordBatchTx the engine
// gathers the items of every job of one outcome transaction and writes
// them with one call, as it records the outcomes themselves.

import (
	"context"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// TxBatch is a write that the outcomes of many jobs share (see
// Job.RecordBatchTx). Make one per kind of write, once, and give the same
// *TxBatch with every item.
type TxBatch struct {
	// Write writes items (those of every job of one outcome transaction
	// that gave one, in the order of the jobs) inside tx. It must write
	// all of them or fail: an error fails the transaction.
	Write func(ctx context.Context, tx *sqlx.Tx, items []any) error
}

// batchItem is one job's item for one batch.
type batchItem struct {
	batch *TxBatch
	item  any
}

// RecordBatchTx is RecordTx for a write that the outcomes of many jobs
// can make in one statement: item joins the items given with b by the
// other jobs whose outcomes are recorded in the same transaction, and
// b.Write writes them all at once, after every RecordTx of the
// transaction. The write commits with the job's new state, or neither
// does. If Write fails, the jobs are recorded one at a time, so that the
// failure is blamed on one job: its attempt then fails without its writes,
// as with RecordTx.
func (j *Job) RecordBatchTx(b *TxBatch, item any) {
	j.recordBatch = append(j.recordBatch, batchItem{batch: b, item: item})
}

// batchError is the error of a TxBatch's Write with the items of several
// jobs: which one is to blame is not known until each is recorded alone.
type batchError struct{ err error }

func (b *batchError) Error() string { return "a shared write of several jobs: " + b.err.Error() }
func (b *batchError) Unwrap() error { return b.err }

// writeBatches runs each TxBatch that the written attempts of batch gave
// items to, once, with their items in the attempts' order. A failure is
// the callbackError of the attempt when it alone gave items to that
// batch, and a batchError otherwise.
func writeBatches(ctx context.Context, tx *sqlx.Tx, batch []*attempt, written []bool) error {
	var order []*TxBatch
	items := map[*TxBatch][]any{}
	owners := map[*TxBatch]map[*attempt]bool{}
	for i, a := range batch {
		if !written[i] {
			continue
		}
		for _, bi := range a.job.recordBatch {
			if _, seen := items[bi.batch]; !seen {
				order = append(order, bi.batch)
				owners[bi.batch] = map[*attempt]bool{}
			}
			items[bi.batch] = append(items[bi.batch], bi.item)
			owners[bi.batch][a] = true
		}
	}
	for _, b := range order {
		if err := runBatchWrite(ctx, b, tx, items[b]); err != nil {
			if len(owners[b]) == 1 {
				for a := range owners[b] {
					return &callbackError{attempt: a, err: err}
				}
			}
			return &batchError{err: err}
		}
	}
	return nil
}

// runBatchWrite runs b.Write, a panic turned into an error as RecordTx's
// (runRecordTx).
func runBatchWrite(ctx context.Context, b *TxBatch, tx *sqlx.Tx, items []any) error {
	if b.Write == nil {
		return errors.New("a TxBatch without Write")
	}
	err := runRecordTx(ctx, func(ctx context.Context, tx *sqlx.Tx) error { return b.Write(ctx, tx, items) }, tx)
	if err != nil {
		return fmt.Errorf("write %d items: %w", len(items), err)
	}
	return nil
}
