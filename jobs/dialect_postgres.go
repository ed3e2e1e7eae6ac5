package jobs

import (
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// How the engine differs on PostgreSQL, statement by statement (the
// SQLite texts are the constants named in sqliteDialect):
//
//   - Many engines (nodes) share the database, and even one engine writes
//     through a pool, not a single connection: nothing may read and then
//     write without a lock. A claim locks the rows it takes with FOR UPDATE
//     SKIP LOCKED inside a CTE (so the planner cannot update more rows
//     than the LIMIT, and two claims never wait on, or take, one job);
//     every other change is a conditional UPDATE that PostgreSQL re-checks
//     on the locked row; a unique_by lookup takes an advisory lock on its
//     key; the cron slot is an upsert whose WHERE is re-checked.
//   - Counts: the statement-level trigger of migration 0004 appends every
//     change to the job_counts ledger, so the engine adds no deltas, and
//     reads sum(n).
//   - Lists are arrays (= ANY($1::bigint[]), unnest), not JSON arrays read
//     with json_each; errors is jsonb, appended with ||.
//   - An insert (and a retry) sends pg_notify(notifyChannel, queue) in its
//     transaction, so every listening engine wakes that queue's producer at
//     commit.
//   - No INDEXED BY: PostgreSQL's planner takes the partial indexes itself.

// pgClaimColumns are claimColumns qualified by the table, for the claim,
// whose UPDATE … FROM joins a CTE that also has an id.
var pgClaimColumns = func() string {
	cols := strings.Split(claimColumns, ",")
	for i, c := range cols {
		cols[i] = "jobs." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}()

// postgresDialect: the engine's statements on PostgreSQL.
var postgresDialect = &dialect{
	postgres:  true,
	bind:      sqlx.DOLLAR,
	ownCounts: false,

	claim: `WITH c AS (
			SELECT id FROM jobs
			WHERE state IN ('available', 'scheduled', 'retryable') AND queue = $1 AND scheduled_at <= $2
			ORDER BY priority, scheduled_at, id
			LIMIT $3
			FOR UPDATE SKIP LOCKED)
		UPDATE jobs SET state = 'executing', attempt = jobs.attempt + 1, attempted_at = $2, attempted_by = $4
		FROM c WHERE jobs.id = c.id
		RETURNING ` + pgClaimColumns,

	complete: `UPDATE jobs SET state = 'completed', completed_at = $2
		WHERE id = ANY($1::bigint[]) AND state = 'executing' AND attempted_by = $3
		RETURNING id`,
	outcome: `UPDATE jobs SET
			state        = ($2::text[])[` + pgOutcomeIndex + `],
			attempt      = jobs.attempt - ($5::integer[])[` + pgOutcomeIndex + `],
			scheduled_at = coalesce(($4::bigint[])[` + pgOutcomeIndex + `], jobs.scheduled_at),
			completed_at = CASE WHEN ($2::text[])[` + pgOutcomeIndex + `] = 'completed' THEN ($3::bigint[])[` + pgOutcomeIndex + `] ELSE jobs.completed_at END,
			cancelled_at = CASE WHEN ($2::text[])[` + pgOutcomeIndex + `] = 'cancelled' THEN ($3::bigint[])[` + pgOutcomeIndex + `] ELSE jobs.cancelled_at END,
			discarded_at = CASE WHEN ($2::text[])[` + pgOutcomeIndex + `] = 'discarded' THEN ($3::bigint[])[` + pgOutcomeIndex + `] ELSE jobs.discarded_at END,
			errors       = CASE WHEN ($6::text[])[` + pgOutcomeIndex + `] IS NULL THEN jobs.errors
			               ELSE jobs.errors || jsonb_build_array((($6::text[])[` + pgOutcomeIndex + `])::jsonb) END
		WHERE jobs.id = ANY($1::bigint[]) AND jobs.state = 'executing' AND jobs.attempted_by = $7
		RETURNING jobs.id`,
	outcomeArgs: pgOutcomeArgs,

	cancel: `UPDATE jobs SET state = 'cancelled', cancelled_at = $2
		WHERE id = ANY($1::bigint[]) AND state IN ` + cancellable + ` RETURNING id`,
	// As retrySQL; a retried job is due now, so its queue is notified, as
	// for an insert.
	retry: `WITH chosen AS (
			SELECT id, state, unique_key FROM jobs
			WHERE id = ANY($1::bigint[]) AND state IN ` + retriable + `),
		` + retryPicked + `,
		retried AS (
			UPDATE jobs SET state = 'available', scheduled_at = $2,
			max_attempts = greatest(max_attempts, attempt + 1),
			completed_at = NULL, cancelled_at = NULL, discarded_at = NULL
			WHERE id IN (SELECT id FROM picked) AND state IN ` + retriable + `
			RETURNING id, queue)
		SELECT retried.id FROM retried, pg_notify('` + notifyChannel + `', retried.queue)`,
	delete: `DELETE FROM jobs WHERE id = ANY($1::bigint[]) AND state IN ` + deletable + ` RETURNING id`,

	heartbeat: dollars(heartbeatSQL),
	nodes:     nodesSQL,
	rescue: `UPDATE jobs SET
			state        = CASE WHEN rescues + 1 >= $1 THEN 'discarded' ELSE 'retryable' END,
			discarded_at = CASE WHEN rescues + 1 >= $1 THEN $2::bigint END,
			attempt      = CASE WHEN rescues + 1 >= $1 THEN attempt ELSE greatest(attempt - 1, 0) END,
			rescues      = rescues + 1,
			scheduled_at = $2,
			errors       = errors || jsonb_build_array(jsonb_build_object(
				'attempt', attempt, 'at', $3::text,
				'error', 'interrupted: the process running this attempt (' || coalesce(attempted_by, '?') || ') stopped before it finished',
				'node', attempted_by))
			WHERE state = 'executing' AND ($5::boolean OR attempted_by IS DISTINCT FROM $6::text) AND (
				attempted_by IS NULL
				OR attempted_by = ANY($4::text[])
				OR attempted_by NOT IN (SELECT name FROM job_nodes))
			RETURNING id, queue, state`,
	forgetNodes: `DELETE FROM job_nodes WHERE name = ANY($1::text[]) AND name <> $2`,
	deleteNode:  dollars(deleteNodeSQL),

	// SKIP LOCKED: two nodes pruning at once take different jobs.
	prune: `DELETE FROM jobs WHERE id IN (
			SELECT id FROM jobs
			WHERE coalesce(completed_at, cancelled_at, discarded_at) IS NOT NULL
			  AND coalesce(completed_at, cancelled_at, discarded_at) < $1
			  AND state IN ('completed', 'cancelled', 'discarded')
			ORDER BY coalesce(completed_at, cancelled_at, discarded_at)
			LIMIT $2
			FOR UPDATE SKIP LOCKED)
			RETURNING id`,

	// The ledger: a count is the sum of its rows (sum of bigint is
	// numeric, hence the cast).
	queueCounts: "SELECT queue, state, sum(n)::bigint AS n FROM job_counts GROUP BY queue, state HAVING sum(n) > 0",
	stateCounts: "SELECT state, sum(n)::bigint AS n FROM job_counts GROUP BY state",
	loadQueues:  loadQueuesSQL,
	pauseQueue:  notifySettings(pauseQueueSQL),
	resumeQueue: notifySettings(resumeQueueSQL),
	scaleQueue:  notifySettings(scaleQueueSQL),

	cronPaused:    dollars(cronPausedSQL),
	cronClaim:     dollars(cronClaimSQL),
	cronRun:       dollars(cronRunSQL),
	cronTrim:      dollars(cronTrimSQL),
	cronSetPaused: dollars(cronSetPausedSQL),

	// The insert notifies in the same statement (one round trip): the
	// function in FROM runs once per inserted row, none for a skipped one.
	insert: `WITH ins AS (` + dollars(strings.Replace(insertSQL, "RETURNING id", "RETURNING id, queue", 1)) + `)
		SELECT ins.id FROM ins, pg_notify('` + notifyChannel + `', ins.queue)`,
	lockUniqueBy: `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
	findUniqueBy: `SELECT id FROM jobs
		WHERE unique_by = $1 AND inserted_at >= $2 AND state = ANY($3::text[])
		ORDER BY id DESC LIMIT 1`,
	findUnique:    dollars(findUniqueSQL),
	insertSelect:  pgInsertSelect,
	insertValues:  func(n int, returning bool) string { return dollars(insertValuesSQL(n, returning)) },
	uniformValues: pgUniformValues,

	getSQL:     "SELECT " + jobColumns + " FROM jobs WHERE id = $1",
	getManySQL: "SELECT " + jobColumns + " FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id",

	notify: `SELECT pg_notify('` + notifyChannel + `', $1)`,

	ids:    func(v []int64) any { return nonNil(v) },
	strs:   func(v []string) any { return nonNil(v) },
	states: func(v []State) any { return nonNil(statesText(v)) },
}

// nonNil binds an empty array, not NULL, for a nil list (= ANY(NULL) is
// NULL, but NOT IN and the like would read it otherwise).
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func statesText(v []State) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = string(s)
	}
	return out
}

// pgOutcomeIndex is a job's place in the outcome statement's arrays. The
// statement reads its arrays by position instead of joining unnest() to
// jobs: the planner, which believes few jobs are executing, then made the
// updated rows the outer side of a nested loop that rescanned the whole
// unnest for each of them, half the statement's time at 50 jobs.
const pgOutcomeIndex = `array_position($1::bigint[], jobs.id)`

// notifySettings is a queue setting's upsert that also notifies
// settingsChannel with the queue's name, in the same statement and so the
// same transaction: the other engines hear of it exactly when it commits.
func notifySettings(upsert string) string {
	return `WITH s AS (` + dollars(upsert) + ` RETURNING name)
		SELECT pg_notify('` + settingsChannel + `', s.name) FROM s`
}

// pgOutcomeArgs are the outcome statement's arrays, one element a job.
func pgOutcomeArgs(rows []outcomeRow, node string) ([]any, error) {
	ids := make([]int64, len(rows))
	states := make([]string, len(rows))
	at := make([]int64, len(rows))
	sched := make([]*int64, len(rows))
	snooze := make([]int32, len(rows))
	errs := make([]*string, len(rows))
	for i, r := range rows {
		ids[i], states[i], at[i], sched[i], snooze[i] = r.ID, string(r.State), r.At, r.Sched, int32(r.Snooze)
		if r.Err != nil {
			s := mustJSON(r.Err)
			errs[i] = &s
		}
	}
	return []any{ids, states, at, sched, snooze, errs, node}, nil
}

// pgInsertSelect is InsertSelect's statement (see insert_select.go): the
// caller's query, its ? rebound to $1…$n, then the engine's $n+1….
// PostgreSQL types each parameter from its first use, so each is cast.
func pgInsertSelect(selectSQL string, n int) string {
	q := func(i int) string { return "$" + strconv.Itoa(n+i) }
	return `WITH selected(id) AS (` + sqlx.Rebind(sqlx.DOLLAR, selectSQL) + `)
	INSERT INTO jobs (state, queue, kind, args, priority, max_attempts, tags, unique_key, inserted_at, scheduled_at)
	SELECT ` + q(1) + `::text, ` + q(2) + `::text, ` + q(3) + `::text, (` + q(4) + `::text || id || ` + q(5) + `::text)::jsonb,
	       ` + q(6) + `::smallint, ` + q(7) + `::integer, ` + q(8) + `::jsonb,
	       ` + q(9) + `::text || id || ` + q(5) + `::text, ` + q(10) + `::bigint, ` + q(11) + `::bigint
	FROM selected WHERE ` + q(9) + `::text IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS j
		WHERE j.unique_key = ` + q(9) + `::text || selected.id || ` + q(5) + `::text
		  AND j.unique_key IS NOT NULL AND j.state IN ('scheduled', 'available', 'executing', 'retryable'))
	ON CONFLICT DO NOTHING RETURNING id`
}

// pgUniformValues is uniformValuesSQL with its parameters typed (a CTE's
// bare parameter would be text).
func pgUniformValues(n int, unique, returning bool) string {
	key := "NULL"
	if unique {
		key = "s.kind || ':' || v.a"
	}
	var b strings.Builder
	b.WriteString(`WITH s (state, queue, kind, priority, max_attempts, tags, inserted_at, scheduled_at) AS (
		SELECT $1::text, $2::text, $3::text, $4::smallint, $5::integer, $6::jsonb, $7::bigint, $8::bigint)
	INSERT INTO jobs (` + insertColumns + `)
	SELECT s.state, s.queue, s.kind, v.a::jsonb, s.priority, s.max_attempts, s.tags, ` + key + `, NULL, s.inserted_at, s.scheduled_at
	FROM s, (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("($" + strconv.Itoa(9+i) + "::text)")
	}
	b.WriteString(`) AS v (a) WHERE true ON CONFLICT DO NOTHING`)
	if returning {
		b.WriteString(" RETURNING id")
	}
	return b.String()
}
