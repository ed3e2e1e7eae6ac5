package live

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// ExtraterrestrialView is an extraterrestrial as the pages show it.
func ExtraterrestrialView(et store.Extraterrestrial) views.Extraterrestrial {
	return views.Extraterrestrial{
		ID: et.ID, Name: et.Name, CommunicationStatus: string(et.CommunicationStatus),
		CommunicationAttempt: et.CommunicationAttempt, LastAttemptAt: et.LastAttemptAt,
	}
}

// ExtraterrestrialViews are the rows of a page.
func ExtraterrestrialViews(ets []store.Extraterrestrial) []views.Extraterrestrial {
	out := make([]views.Extraterrestrial, len(ets))
	for i, et := range ets {
		out[i] = ExtraterrestrialView(et)
	}
	return out
}

// StatusCountsView is the campaign's counts as the pages show them.
func StatusCountsView(c store.StatusCounts) views.StatusCounts {
	return views.StatusCounts{Never: c.Never, PhoningHome: c.PhoningHome, SpaceTaxi: c.SpaceTaxi, NoAnswer: c.NoAnswer}
}

// CampaignCounter reads the campaign's counts; *store.Store is one.
type CampaignCounter interface {
	CountByStatus(ctx context.Context) (store.StatusCounts, error)
}

// ExtraterrestrialFeed turns committed status changes into events on the
// extraterrestrials stream: each change is its row, rendered by the page's
// own partial for an out-of-band swap, and the campaign counts follow at a
// bounded rate however fast rows change.
type ExtraterrestrialFeed struct {
	counter CampaignCounter
	views   *views.Views
	hub     Publisher
	log     *slog.Logger
	// countsEvery bounds how often the counts are recounted and sent.
	countsEvery time.Duration

	dirty chan struct{}
	loop  loop.Loop
}

// NewExtraterrestrialFeed makes the feed; Start starts its counts loop.
func NewExtraterrestrialFeed(counter CampaignCounter, v *views.Views, h Publisher, logger *slog.Logger, countsEvery time.Duration) *ExtraterrestrialFeed {
	return &ExtraterrestrialFeed{
		counter: counter, views: v, hub: h, log: logger, countsEvery: countsEvery,
		dirty: make(chan struct{}, 1),
	}
}

// Changed publishes one row's new state, keyed by the row's id: it reaches
// the pages showing that row and every client of the whole stream. It is
// the campaign worker's OnCall: the job engine calls it after the change
// has committed, in commit order, so a row's events arrive in order. The
// counts follow at the bounded rate; they are read from the counts table,
// which costs the same at any table size.
func (f *ExtraterrestrialFeed) Changed(et store.Extraterrestrial) {
	html, ok := f.row(et)
	if !ok {
		return
	}
	if _, err := f.hub.PublishKey(ExtraterrestrialsStream, "", et.ID, html); err != nil {
		f.log.Debug("publish extraterrestrial row", "id", et.ID, "err", err)
	}
	loop.Signal(f.dirty)
}

// TxPublisher publishes events in the transaction of the changes they
// show; *broker.Broker is one.
type TxPublisher interface {
	PublishTx(ctx context.Context, tx *sqlx.Tx, stream, event string, keys []int64, data [][]byte) error
}

// PublishesInTransaction reports whether the feed's publisher can write
// rows' events in their changes' own transaction (the broker, on
// PostgreSQL): the campaign worker should then call RowsChangedTx as its
// OnCallsTx, and CountsChanged as its OnCall, instead of Changed.
func (f *ExtraterrestrialFeed) PublishesInTransaction() bool {
	_, ok := f.hub.(TxPublisher)
	return ok
}

// RowsChangedTx is Changed for the rows of a batch of calls, in the
// calls' own transaction (the worker's OnCallsTx), for several nodes: the
// rows' events commit with them, before another node can take a next
// attempt, so every page sees each row's changes in order. It writes
// their events in one statement. A row that cannot be rendered is logged
// and left out; an error is the database's, and fails the transaction.
func (f *ExtraterrestrialFeed) RowsChangedTx(ctx context.Context, tx *sqlx.Tx, ets []store.Extraterrestrial) error {
	pub, ok := f.hub.(TxPublisher)
	if !ok {
		return errors.New("the extraterrestrials feed's publisher cannot publish in a transaction")
	}
	if len(ets) == 0 {
		return nil
	}
	keys := make([]int64, 0, len(ets))
	data := make([][]byte, 0, len(ets))
	for _, et := range ets {
		if html, ok := f.row(et); ok {
			keys, data = append(keys, et.ID), append(data, html)
		}
	}
	return pub.PublishTx(ctx, tx, ExtraterrestrialsStream, "", keys, data)
}

// row renders a row's event: the page's own partial, for an out-of-band
// swap. A row that cannot be rendered is logged, and false.
func (f *ExtraterrestrialFeed) row(et store.Extraterrestrial) ([]byte, bool) {
	html, err := f.views.Fragment(views.PartialETRow, views.Row{ET: ExtraterrestrialView(et), OOB: true})
	if err != nil {
		f.log.Error("render extraterrestrial row", "id", et.ID, "err", err)
		return nil, false
	}
	return html, true
}

// CountsChanged tells the feed that the campaign counts changed: they
// follow at the bounded rate. (Changed does it itself.)
func (f *ExtraterrestrialFeed) CountsChanged(store.Extraterrestrial) { loop.Signal(f.dirty) }

// Start starts the counts loop.
func (f *ExtraterrestrialFeed) Start(ctx context.Context) error {
	f.loop.Start(func(done <-chan struct{}) {
		for {
			select {
			case <-done:
				return
			case <-f.dirty:
			}
			f.publishCounts()
			// At most one recount per interval; changes meanwhile mark it dirty again.
			select {
			case <-done:
				return
			case <-time.After(f.countsEvery):
			}
		}
	})
	return nil
}

// Stop stops the counts loop and waits for it.
func (f *ExtraterrestrialFeed) Stop(ctx context.Context) error { return f.loop.Stop(ctx) }

// publishCounts reads the counts and publishes them, in order with the
// other nodes' events (see Ordered): several nodes each send counts as
// their own changes commit, and the last one sent must be the latest.
func (f *ExtraterrestrialFeed) publishCounts() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := publishOrdered(ctx, f.hub, func(ctx context.Context, publish PublishFunc) {
		counts, err := f.counter.CountByStatus(ctx)
		if err != nil {
			f.log.Error("count extraterrestrials", "err", err)
			return
		}
		html, err := f.views.Fragment(views.PartialETCounts, views.Counts{C: StatusCountsView(counts), OOB: true})
		if err != nil {
			f.log.Error("render counts", "err", err)
			return
		}
		publish(ExtraterrestrialsStream, CountsEvent, 0, html)
	})
	if err != nil {
		f.log.Debug("publish counts", "err", err)
	}
}
