-- The job engine's hot path (issue 12). (PostgreSQL twin of ../sqlite/0011.)
--
-- 1. On SQLite the engine now keeps the counts of a state change itself and
--    the row trigger on updates is gone. Here the update trigger stays: it
--    is a statement-level trigger that appends one ledger row per (queue,
--    state) a statement changed (migration 0004), so it costs one small
--    insert per statement, not a sub-program per row, and takes no hot
--    row lock. The engine's port to PostgreSQL must therefore not add its
--    own deltas here (a deliberate difference, listed in schema_test.go).
--
-- 2. The list indexes no longer hold the state: a state change moved the
--    job's entry in both.
DROP INDEX jobs_list_queue;
DROP INDEX jobs_list_kind;
CREATE INDEX jobs_list_queue ON jobs (queue, id);
CREATE INDEX jobs_list_kind ON jobs (kind, id);

-- 3. The pruning index is partial on the finish time itself, not on the
--    state: a claim no longer visits it.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE coalesce(completed_at, cancelled_at, discarded_at) IS NOT NULL;
