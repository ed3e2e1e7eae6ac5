package jobs_test

import (
	"context"
	"io/fs"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/migrations"
)

// BenchmarkSchema prices the schema's write cost per job, apart from the
// engine: the claim and the finish of every job by id, 50 jobs per
// transaction (the engine's batch at a queue limit of 50), on the schema as
// migrated, on the schema before migration 0011 (its down file), and on the
// schema without jobs_by_state:
//
//	go test -run '^$' -bench Schema -benchtime 50000x ./jobs/
func BenchmarkSchema(b *testing.B) {
	for _, v := range []struct{ name, down, sql string }{
		{"0011", "", ""},
		{"0010", "0011_jobs_hot_path.down.sql", ""},
		// What jobs_by_state (the dashboard's state filters, the rescue)
		// costs the hot path: the largest saving left in the schema.
		{"0011-without-jobs_by_state", "", "DROP INDEX jobs_by_state"},
	} {
		b.Run(v.name, func(b *testing.B) {
			st := openStore(b)
			db := st.Writer
			if v.down != "" {
				sqlText, err := fs.ReadFile(migrations.FS, v.down)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := db.Exec(string(sqlText)); err != nil {
					b.Fatal(err)
				}
			}
			if v.sql != "" {
				if _, err := db.Exec(v.sql); err != nil {
					b.Fatal(err)
				}
			}
			n := b.N
			if _, err := db.Exec(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
				INSERT INTO jobs (queue, kind, args, inserted_at, scheduled_at)
				SELECT 'default', 'bench', json_object('n', i), 1, 1 FROM c`, n); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for lo := 1; lo <= n; lo += 50 {
				ids := make([]string, 0, 50)
				for i := lo; i < lo+50 && i <= n; i++ {
					ids = append(ids, strconv.Itoa(i))
				}
				arg := "[" + strings.Join(ids, ",") + "]"
				tx, err := db.BeginTxx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(tx.Rebind(`UPDATE jobs SET state = 'executing', attempt = attempt + 1, attempted_at = 2, attempted_by = 'n'
					WHERE id IN (SELECT value FROM json_each(?))`), arg); err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(tx.Rebind(`UPDATE jobs SET state = 'completed', completed_at = 3
					WHERE id IN (SELECT value FROM json_each(?))`), arg); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}
