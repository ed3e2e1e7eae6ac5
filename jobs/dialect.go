package jobs

import (
	"regexp"
	"strings"

	"github.com/jmoiron/sqlx"
)

// dialect is every statement of the engine that is not the same text on
// SQLite and on PostgreSQL, and the few differences of behaviour that go
// with them. New picks one from the writer's driver; the engine's code then
// runs e.d's statements and never asks which database it is on. The SQLite
// statements are those the engine was tuned on (their comments beside the
// constants say why each is written as it is); the PostgreSQL ones are in
// dialect_postgres.go.
type dialect struct {
	// postgres is true on PostgreSQL (for the listener, the count
	// compaction and the error codes).
	postgres bool
	// bind is sqlx's placeholder style, for statements written with "?".
	bind int

	// ownCounts: the engine writes the count deltas of its state changes
	// itself (SQLite, migration 0011). On PostgreSQL the statement-level
	// trigger of migration 0004 counts every change into the ledger, so
	// adding deltas there would count each change twice.
	ownCounts bool
	// counts adds a batch's deltas (countDeltasSQL; empty when !ownCounts).
	counts string

	// The claim: claimCounts (empty when !ownCounts) then claim.
	claimCounts, claim string
	// The outcomes: complete (plain completions at one time) and outcome
	// (the rest), with outcomeArgs encoding a batch's rows for outcome
	// and ids encoding an id list for complete and the actions.
	// On SQLite (outcomeBySize) outcome is empty: the engine builds one
	// statement a batch size (outcome_sqlite.go).
	complete, outcome string
	outcomeArgs       func(rows []outcomeRow, node string) ([]any, error)
	outcomeBySize     bool
	// Operator actions over an id list ($1/?1) at a time ($2/?2).
	cancel, retry, delete string

	heartbeat, nodes, rescue, forgetNodes, deleteNode string

	prune string

	queueCounts, stateCounts, loadQueues string
	pauseQueue, resumeQueue, scaleQueue  string

	cronPaused, cronClaim, cronRun, cronTrim, cronSetPaused string

	// insert is one job; findUniqueBy looks up a job of the same unique_by
	// key, after lockUniqueBy (PostgreSQL: a transaction-scoped advisory
	// lock on the key, because two transactions of a pool may look up and
	// insert at once; empty on SQLite, whose single writer serialises
	// them); findUnique finds the in-flight job that made an insert skip.
	insert, lockUniqueBy, findUniqueBy, findUnique string
	// insertSelect builds InsertSelect's statement (see insert_select.go).
	insertSelect func(selectSQL string, n int) string
	// insertValues and uniformValues build InsertMany's statements.
	insertValues  func(n int, returning bool) string
	uniformValues func(n int, unique, returning bool) string

	// getSQL and getManySQL read one job by id and jobs by an id list.
	getSQL, getManySQL string

	// notify, on PostgreSQL, tells every listening engine that queue $1
	// has new jobs (delivered at commit); empty on SQLite.
	notify string

	// ids, strs and states encode lists bound as one parameter: a JSON
	// array read with json_each on SQLite, an array on PostgreSQL.
	ids    func([]int64) any
	strs   func([]string) any
	states func([]State) any
}

// notifyChannel is the LISTEN/NOTIFY channel of new jobs; the payload is
// the queue's name (at most 100 bytes, far below NOTIFY's 8,000).
const notifyChannel = "phonehome_jobs"

// settingsChannel is the LISTEN/NOTIFY channel of queue settings: a pause,
// resume or scale stored by any engine sends the queue's name on it in the
// same statement, and every listening engine reloads the stored settings,
// so the change reaches every node at its commit instead of at their next
// heartbeat.
const settingsChannel = "phonehome_job_queues"

// driverPostgres is the database/sql driver name of a PostgreSQL store
// (pgx's stdlib, as package store opens it).
const driverPostgres = "pgx"

// dialectFor returns the dialect of a database/sql driver name.
func dialectFor(driver string) *dialect {
	if driver == driverPostgres || driver == "pgx/v5" || driver == "postgres" {
		return postgresDialect
	}
	return sqliteDialect
}

// dialectOf returns the dialect of db, a *sqlx.DB or *sqlx.Tx (both tell
// their driver); SQLite for anything else.
func dialectOf(db any) *dialect {
	if d, ok := db.(interface{ DriverName() string }); ok && d != nil && !isNilDB(db) {
		return dialectFor(d.DriverName())
	}
	return sqliteDialect
}

// isNilDB reports a nil *sqlx.DB or *sqlx.Tx (an engine made only to
// check its Config, as the cron fuzz test does).
func isNilDB(db any) bool {
	switch v := db.(type) {
	case *sqlx.DB:
		return v == nil
	case *sqlx.Tx:
		return v == nil
	}
	return false
}

// rebind rewrites a statement written with "?" placeholders for d.
func (d *dialect) rebind(q string) string { return sqlx.Rebind(d.bind, q) }

// jsonList encodes a list as the JSON text json_each reads.
func jsonList[T any](v []T) any {
	if v == nil {
		v = []T{}
	}
	return mustJSON(v)
}

// sqliteDialect: the statements the engine was built and tuned on.
var sqliteDialect = &dialect{
	bind:        sqlx.QUESTION,
	ownCounts:   true,
	counts:      countDeltasSQL,
	claimCounts: claimCountsSQL,
	claim:       claimSQL,
	complete:    completeSQL,
	// outcome and outcomeArgs: one statement a batch size (see
	// outcome_sqlite.go).
	outcomeBySize: true,

	cancel: cancelSQL,
	retry:  retrySQL,
	delete: deleteSQL,

	heartbeat: heartbeatSQL,
	nodes:     nodesSQL,
	rescue: `UPDATE jobs SET
			state        = CASE WHEN rescues + 1 >= ?1 THEN 'discarded' ELSE 'retryable' END,
			discarded_at = CASE WHEN rescues + 1 >= ?1 THEN ?2 END,
			attempt      = CASE WHEN rescues + 1 >= ?1 THEN attempt ELSE max(attempt - 1, 0) END,
			rescues      = rescues + 1,
			scheduled_at = ?2,
			errors       = json_insert(errors, '$[#]', json_object(
				'attempt', attempt, 'at', ?3,
				'error', 'interrupted: the process running this attempt (' || coalesce(attempted_by, '?') || ') stopped before it finished',
				'node', attempted_by))
			WHERE state = 'executing' AND (?5 OR attempted_by IS NOT ?6) AND (
				attempted_by IS NULL
				OR attempted_by IN (SELECT value FROM json_each(?4))
				OR attempted_by NOT IN (SELECT name FROM job_nodes))
			RETURNING id, queue, state`,
	forgetNodes: `DELETE FROM job_nodes WHERE name IN (SELECT value FROM json_each(?1)) AND name != ?2`,
	deleteNode:  deleteNodeSQL,

	// INDEXED BY: see prune.go.
	prune: `DELETE FROM jobs WHERE id IN (
			SELECT id FROM jobs INDEXED BY jobs_finished
			WHERE coalesce(completed_at, cancelled_at, discarded_at) IS NOT NULL
			  AND coalesce(completed_at, cancelled_at, discarded_at) < ?1
			  AND state IN ('completed', 'cancelled', 'discarded')
			ORDER BY coalesce(completed_at, cancelled_at, discarded_at)
			LIMIT ?2)
			RETURNING id`,

	// SQLite's job_counts holds one row per queue and state.
	queueCounts: "SELECT queue, state, n FROM job_counts WHERE n > 0",
	stateCounts: "SELECT state, sum(n) AS n FROM job_counts GROUP BY state",
	loadQueues:  loadQueuesSQL,
	pauseQueue:  pauseQueueSQL,
	resumeQueue: resumeQueueSQL,
	scaleQueue:  scaleQueueSQL,

	cronPaused:    cronPausedSQL,
	cronClaim:     cronClaimSQL,
	cronRun:       cronRunSQL,
	cronTrim:      cronTrimSQL,
	cronSetPaused: cronSetPausedSQL,

	getSQL:     "SELECT " + jobColumns + " FROM jobs WHERE id = ?",
	getManySQL: "SELECT " + jobColumns + " FROM jobs WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",

	insert:        insertSQL,
	findUniqueBy:  findUniqueBySQL,
	findUnique:    findUniqueSQL,
	insertSelect:  sqliteInsertSelect,
	insertValues:  insertValuesSQL,
	uniformValues: uniformValuesSQL,

	ids:    jsonList[int64],
	strs:   jsonList[string],
	states: jsonList[State],
}

// numbered matches the numbered placeholders ?1, ?2… of SQLite's texts.
var numbered = regexp.MustCompile(`\?(\d+)`)

// dollars rewrites a statement that both dialects share into PostgreSQL's
// placeholders: ?N becomes $N (sqlx.Rebind leaves numbered ones alone and
// would number the bare ones from 1), bare ? become $1, $2… in order. A
// statement uses one style or the other, never both.
func dollars(q string) string {
	if numbered.MatchString(q) {
		if strings.Contains(numbered.ReplaceAllString(q, ""), "?") {
			panic("jobs: a statement mixes ?N and ? placeholders: " + q)
		}
		return numbered.ReplaceAllString(q, "$$$1")
	}
	return sqlx.Rebind(sqlx.DOLLAR, q)
}
