package live

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/views"
)

// StatsSource is what the stats feed needs of the collector; *stats.Collector
// is one.
type StatsSource interface {
	Subscribe(watched func() bool, fn func(stats.Snapshot)) (unsubscribe func())
	History() []stats.Point
	Keep() time.Duration
}

var _ StatsSource = (*stats.Collector)(nil)

// StatsFeed publishes the runtime dashboard's live panel on the stats
// streams: while any of them has clients, the collector's samples are full
// and each is rendered once and sent to the streams whose interval it
// completes.
type StatsFeed struct {
	source StatsSource
	views  *views.Views
	hub    Publisher
	log    *slog.Logger

	mu          sync.Mutex
	unsubscribe func()
}

// NewStatsFeed makes the feed; Start subscribes it to the collector.
func NewStatsFeed(source StatsSource, v *views.Views, h Publisher, logger *slog.Logger) *StatsFeed {
	return &StatsFeed{source: source, views: v, hub: h, log: logger}
}

// Start subscribes the feed to the collector's samples.
func (f *StatsFeed) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unsubscribe == nil {
		f.unsubscribe = f.source.Subscribe(f.Watched, f.Publish)
	}
	return nil
}

// Stop unsubscribes the feed.
func (f *StatsFeed) Stop(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unsubscribe != nil {
		f.unsubscribe()
	}
	return nil
}

// Watched reports whether any stats stream has clients.
func (f *StatsFeed) Watched() bool {
	clients := f.hub.Clients()
	for _, s := range StatsRefresh() {
		if clients[StatsStreamFor(s)] > 0 {
			return true
		}
	}
	return false
}

// Publish renders a sample's live panel once and publishes it on each stats
// stream that has clients and whose interval the sample completes (sample
// numbers are counted in seconds: stats-5s gets samples 5, 10, 15…).
func (f *StatsFeed) Publish(s stats.Snapshot) {
	clients := f.hub.Clients()
	var due []string
	for _, every := range StatsRefresh() {
		name := StatsStreamFor(every)
		if clients[name] > 0 && s.Seq%int64(every) == 0 {
			due = append(due, name)
		}
	}
	if len(due) == 0 {
		return
	}
	html, err := f.views.Fragment(views.PartialDashLive, views.NewDashboardLive(s, f.source.History(), f.source.Keep()))
	if err != nil {
		f.log.Error("render dashboard", "err", err)
		return
	}
	// Every stream gets the same bytes: their resume windows share them.
	for _, name := range due {
		if _, err := f.hub.Publish(name, "", html); err != nil {
			f.log.Debug("publish stats", "stream", name, "err", err)
		}
	}
}
