package jobs

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// ListPlan returns SQLite's query plan of List(p), one step a line, for the
// tests that prove the list reads index ranges only.
func ListPlan(ctx context.Context, db sqlx.QueryerContext, p ListParams) []string {
	query, args, _, err := listQuery(sqliteDialect, p)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var steps []struct {
		ID      int    `db:"id"`
		Parent  int    `db:"parent"`
		NotUsed int    `db:"notused"`
		Detail  string `db:"detail"`
	}
	if err := sqlx.SelectContext(ctx, db, &steps, "EXPLAIN QUERY PLAN "+query, args...); err != nil {
		return []string{"error: " + err.Error()}
	}
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Detail
	}
	return out
}
