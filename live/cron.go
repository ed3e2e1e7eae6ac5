package live

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/views"
)

// CronEvent carries the cron page's table on the jobs stream.
const CronEvent = "cron"

// CronSource is what the cron table needs of the job engine; *jobs.Engine
// is one.
type CronSource interface {
	CronEntries(ctx context.Context) ([]jobs.CronEntry, error)
}

// CronTable reads the periodic jobs and the jobs they last inserted (from
// reader), as the cron page and the cron events draw them.
func CronTable(ctx context.Context, src CronSource, reader sqlx.QueryerContext, now time.Time) (views.CronTable, error) {
	entries, err := src.CronEntries(ctx)
	if err != nil {
		return views.CronTable{}, err
	}
	var ids []int64
	for _, e := range entries {
		ids = append(ids, e.Recent...)
	}
	found := map[int64]*jobs.Job{}
	if len(ids) > 0 {
		js, err := jobs.GetMany(ctx, reader, ids)
		if err != nil {
			return views.CronTable{}, err
		}
		for _, j := range js {
			found[j.ID] = j
		}
	}
	return views.NewCronTable(entries, found, now), nil
}
