package live

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/internal/loop"
	"github.com/phonehome/phonehome/internal/setting"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/views"
)

// JobSource is what the feed needs of the job engine; *jobs.Engine is one.
type JobSource interface {
	// Subscribe hears of the ids of jobs whose rows changed.
	Subscribe(fn func(ids []int64)) (unsubscribe func())
	Queues(ctx context.Context) ([]jobs.QueueInfo, error)
	Counts(ctx context.Context) (map[jobs.State]int, error)
	Throughput() []jobs.ThroughputPoint
	CronSource
}

var _ JobSource = (*jobs.Engine)(nil)

// JobsFeedConfig tunes a JobsFeed. Zero fields take the defaults.
type JobsFeedConfig struct {
	// Every is how often changed rows are sent, coalesced (250 ms): a job
	// that changed five times meanwhile is sent once, as it is now.
	Every time.Duration
	// MaxRows caps the rows of one flush (200); beyond it one refresh
	// event is sent instead, at most once per RefreshEvery.
	MaxRows int
	// RefreshEvery bounds how often refresh events are sent (1 s).
	RefreshEvery time.Duration
	// StatsEvery bounds how often the counts and the queue table are
	// sent while jobs change (500 ms).
	StatsEvery time.Duration
	// ThroughputEvery bounds how often the chart is sent while jobs
	// change (2 s); it is sent once more when they stop.
	ThroughputEvery time.Duration
}

// JobsFeed turns the job engine's committed changes (Engine.Subscribe)
// into events on the jobs stream. However fast jobs change, a client gets
// at most one batch of rows per Every, each row keyed by its job id so a
// page receives only the rows it shows, and counts, queues and chart at
// their own bounded rates.
type JobsFeed struct {
	reader sqlx.QueryerContext
	engine JobSource
	views  *views.Views
	hub    Publisher
	log    *slog.Logger
	cfg    JobsFeedConfig

	mu       sync.Mutex
	pending  map[int64]struct{}
	overflow bool // more than MaxRows changed since the last flush
	queues   bool // queue settings changed

	// Owned by the loop goroutine.
	lastRefresh, lastStats, lastChart time.Time
	statsDirty, chartDirty            bool
	refreshDue                        bool
	// The fragments last sent: one that has not changed is not sent again,
	// so pages do not swap (and forms are not replaced) for nothing. Not on
	// a shared stream (shared: the hub is the broker), where another node
	// may have sent something else since (but the chart, which stays on
	// its node).
	sentCounts, sentQueues, sentChart, sentCron []byte
	shared                                      bool
	// out, while set, is where the feed publishes: the ordered read's
	// publish (see flush).
	out PublishFunc

	wake        chan struct{}
	loop        loop.Loop
	unsubscribe func()
}

// NewJobsFeed makes the feed; Start subscribes it to the engine. reader is
// the read-only pool the changed rows are loaded from.
func NewJobsFeed(engine JobSource, reader sqlx.QueryerContext, v *views.Views, h Publisher, logger *slog.Logger, cfg JobsFeedConfig) *JobsFeed {
	setting.Default(&cfg.Every, 250*time.Millisecond)
	setting.Default(&cfg.MaxRows, 200)
	setting.Default(&cfg.RefreshEvery, time.Second)
	setting.Default(&cfg.StatsEvery, 500*time.Millisecond)
	setting.Default(&cfg.ThroughputEvery, 2*time.Second)
	_, shared := h.(Ordered)
	return &JobsFeed{
		reader: reader, engine: engine, views: v, hub: h, log: logger, cfg: cfg, shared: shared,
		pending: map[int64]struct{}{},
		wake:    make(chan struct{}, 1),
	}
}

// Start subscribes the feed to the engine's changes and starts its loop.
// Start it before the engine, so that it hears of every change.
func (f *JobsFeed) Start(ctx context.Context) error {
	f.mu.Lock()
	if f.unsubscribe == nil {
		f.unsubscribe = f.engine.Subscribe(f.changed)
	}
	f.mu.Unlock()
	f.loop.Start(f.run)
	return nil
}

// Stop unsubscribes the feed and stops its loop; changes afterwards are
// dropped.
func (f *JobsFeed) Stop(ctx context.Context) error {
	f.mu.Lock()
	if f.unsubscribe != nil {
		f.unsubscribe()
	}
	f.mu.Unlock()
	return f.loop.Stop(ctx)
}

// changed notes that the jobs of ids changed (or were deleted); it never
// blocks: the engine calls it.
func (f *JobsFeed) changed(ids []int64) {
	if len(ids) == 0 {
		return
	}
	f.mu.Lock()
	if !f.overflow {
		// Stop at the cap: a million-job insert must not cost a million
		// map entries only to be thrown away.
		for _, id := range ids {
			f.pending[id] = struct{}{}
			if len(f.pending) > f.cfg.MaxRows {
				f.overflow = true
				clear(f.pending)
				break
			}
		}
	}
	f.mu.Unlock()
	loop.Signal(f.wake)
}

// CronChanged notes that a periodic job was paused or resumed, so the
// cron table is sent again (its runs are job changes: heard of anyway).
func (f *JobsFeed) CronChanged() { f.QueuesChanged() }

// QueuesChanged notes that a queue was paused, resumed or scaled, so the
// queue table is sent again.
func (f *JobsFeed) QueuesChanged() {
	f.mu.Lock()
	f.queues = true
	f.mu.Unlock()
	loop.Signal(f.wake)
}

func (f *JobsFeed) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-f.wake:
		}
		if f.flush(time.Now()) {
			loop.Signal(f.wake) // something was held back by its rate: come back
		}
		// Whatever changes meanwhile waits for the next flush.
		select {
		case <-done:
			return
		case <-time.After(f.cfg.Every):
		}
	}
}

// flush sends what changed since the last flush, within the rates, and
// reports whether something is still held back.
func (f *JobsFeed) flush(now time.Time) bool {
	f.mu.Lock()
	ids := make([]int64, 0, len(f.pending))
	for id := range f.pending {
		ids = append(ids, id)
	}
	clear(f.pending)
	overflow, queuesChanged := f.overflow, f.queues
	f.overflow, f.queues = false, false
	f.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if overflow {
		f.refreshDue = true
	}
	if len(ids) > 0 || overflow {
		f.statsDirty, f.chartDirty = true, true
	}
	if queuesChanged {
		f.statsDirty = true
	}
	if f.refreshDue && now.Sub(f.lastRefresh) >= f.cfg.RefreshEvery {
		// The refreshed pages read every row anew: no need for these.
		f.publish(RefreshEvent, 0, []byte(RefreshEvent))
		f.refreshDue, f.lastRefresh, ids = false, now, nil
	}
	statsDue := f.statsDirty && now.Sub(f.lastStats) >= f.cfg.StatsEvery
	if len(ids) > 0 || statsDue {
		// Rows and counts are read from the database: read in order with
		// the other nodes' events (see Ordered), so the last word on each
		// row and on the counts is the latest, whichever node sent it.
		err := publishOrdered(ctx, f.hub, func(ctx context.Context, publish PublishFunc) {
			f.out = publish
			defer func() { f.out = nil }()
			if len(ids) > 0 {
				f.publishRows(ctx, ids)
			}
			if statsDue {
				f.publishStats(ctx)
			}
		})
		if err != nil {
			f.log.Debug("publish job events", "err", err)
		}
	}
	if statsDue {
		f.statsDirty, f.lastStats = false, now
	}
	if f.chartDirty && now.Sub(f.lastChart) >= f.cfg.ThroughputEvery {
		f.publishChart(now)
		f.lastChart = now
		// Once more after the last change, so the chart shows the end.
		f.chartDirty = len(ids) > 0 || overflow
	}
	return f.refreshDue || f.statsDirty || f.chartDirty
}

func (f *JobsFeed) publish(event string, key int64, data []byte) {
	if f.out != nil {
		f.out(JobsStream, event, key, data)
		return
	}
	if _, err := f.hub.PublishKey(JobsStream, event, key, data); err != nil {
		f.log.Debug("publish job event", "event", event, "key", key, "err", err)
	}
}

// publishRows sends each job's row as one event keyed by its id, in id
// order; a deleted job's event removes its row.
func (f *JobsFeed) publishRows(ctx context.Context, ids []int64) {
	slices.Sort(ids)
	js, err := jobs.GetMany(ctx, f.reader, ids)
	if err != nil {
		f.log.Error("load changed jobs", "jobs", len(ids), "err", err)
		return
	}
	now := time.Now()
	i := 0
	for _, id := range ids {
		var html []byte
		if i < len(js) && js[i].ID == id {
			html, err = f.views.Fragment(views.PartialJobRow, views.JobRow{Job: views.JobView{Job: js[i], Now: now}, OOB: true})
			i++
		} else {
			html, err = f.views.Fragment(views.PartialJobRowDeleted, views.DeletedRow{ID: id})
		}
		if err != nil {
			f.log.Error("render job row", "job_id", id, "err", err)
			continue
		}
		f.publish("", id, html)
	}
}

func (f *JobsFeed) publishStats(ctx context.Context) {
	counts, err := f.engine.Counts(ctx)
	if err != nil {
		f.log.Error("count jobs", "err", err)
		return
	}
	f.publishChanged(CountsEvent, views.PartialJobCounts, views.JobCounts{Tabs: views.StateTabs(counts), OOB: true}, "job counts", &f.sentCounts)
	qs, err := f.engine.Queues(ctx)
	if err != nil {
		f.log.Error("list queues", "err", err)
		return
	}
	f.publishChanged(QueuesEvent, views.PartialJobQueues, views.NewQueuesView(qs, true), "queues", &f.sentQueues)
	f.publishCron(ctx)
}

// publishCron sends the cron table when it changed: an entry ran, was
// paused or resumed, or one of its jobs changed state. At the stats' rate,
// and nothing at all for an engine without periodic jobs.
func (f *JobsFeed) publishCron(ctx context.Context) {
	table, err := CronTable(ctx, f.engine, f.reader, time.Now())
	if err != nil {
		f.log.Error("read cron entries", "err", err)
		return
	}
	if len(table.Entries) == 0 {
		return
	}
	table.OOB = true
	f.publishChanged(CronEvent, views.PartialCronTable, table, "cron table", &f.sentCron)
}

// publishChanged renders partial with data and publishes it as event
// unless it is what was last sent as *sent. A render error is logged (what
// names the fragment) and nothing is sent.
func (f *JobsFeed) publishChanged(event string, partial views.Partial, data any, what string, sent *[]byte) {
	html, err := f.views.Fragment(partial, data)
	if err != nil {
		f.log.Error("render "+what, "err", err)
		return
	}
	if bytes.Equal(html, *sent) && (!f.shared || NodeLocal(JobsStream, event)) {
		return
	}
	*sent = html
	f.publish(event, 0, html)
}

func (f *JobsFeed) publishChart(now time.Time) {
	ch := views.NewThroughputChart(f.engine.Throughput(), now)
	ch.OOB = true
	f.publishChanged(ThroughputEvent, views.PartialJobThroughput, ch, "throughput", &f.sentChart)
}
