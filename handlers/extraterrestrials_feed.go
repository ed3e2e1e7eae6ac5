package handlers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// ExtraterrestrialFeed turns committed status changes into events on the
// extraterrestrials stream: each change is its row, rendered by the page's
// own partial for an out-of-band swap, and the campaign counts follow at a
// bounded rate however fast rows change.
type ExtraterrestrialFeed struct {
	store *store.Store
	views *views.Views
	hub   hub
	log   *slog.Logger
	// CountsEvery bounds how often the counts are recounted and sent.
	countsEvery time.Duration

	dirty chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

// CountsEvent names the event that carries the campaign counts.
const CountsEvent = "counts"

// NewExtraterrestrialFeed starts the feed; Close stops it.
func NewExtraterrestrialFeed(st *store.Store, v *views.Views, h hub, logger *slog.Logger, countsEvery time.Duration) *ExtraterrestrialFeed {
	f := &ExtraterrestrialFeed{
		store: st, views: v, hub: h, log: logger, countsEvery: countsEvery,
		dirty: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	f.wg.Add(1)
	go f.countsLoop()
	return f
}

// Changed publishes one row's new state, keyed by the row's id: it reaches
// the pages showing that row and every client of the whole stream. The job
// engine calls it after the change has committed, in commit order, so a
// row's events arrive in order. The counts follow at the bounded rate; they
// are read from the counts table, which costs the same at any table size.
func (f *ExtraterrestrialFeed) Changed(et store.Extraterrestrial) {
	html, err := f.views.ExtraterrestrialRow(et)
	if err != nil {
		f.log.Error("render extraterrestrial row", "id", et.ID, "err", err)
		return
	}
	if _, err = f.hub.PublishKey(ExtraterrestrialsStream, "", et.ID, html); err != nil {
		f.log.Debug("publish extraterrestrial row", "id", et.ID, "err", err)
	}
	select {
	case f.dirty <- struct{}{}:
	default:
	}
}

func (f *ExtraterrestrialFeed) countsLoop() {
	defer f.wg.Done()
	for {
		select {
		case <-f.done:
			return
		case <-f.dirty:
		}
		f.publishCounts()
		// At most one recount per interval; changes meanwhile mark it dirty again.
		select {
		case <-f.done:
			return
		case <-time.After(f.countsEvery):
		}
	}
}

func (f *ExtraterrestrialFeed) publishCounts() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := f.store.CountByStatus(ctx)
	if err != nil {
		f.log.Error("count extraterrestrials", "err", err)
		return
	}
	html, err := f.views.CampaignCounts(counts)
	if err != nil {
		f.log.Error("render counts", "err", err)
		return
	}
	if _, err := f.hub.Publish(ExtraterrestrialsStream, CountsEvent, html); err != nil {
		f.log.Debug("publish counts", "err", err)
	}
}

// Close stops the counts loop.
func (f *ExtraterrestrialFeed) Close() {
	close(f.done)
	f.wg.Wait()
}
