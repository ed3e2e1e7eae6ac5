-- The job engine's hot path (issue 12): what a claim and an outcome pay
-- for beyond the row itself. Measured on 50-job transactions of a claim
-- and a finish (jobs/schema_test.go's BenchmarkSchema): 22,000 jobs/s with
-- 0010's schema, 54,000 with this one.
--
-- 1. The counts of a state change are kept by the engine, not by a row
--    trigger: each claim, outcome, cancel, retry and rescue adds its
--    per-(queue, state) deltas to job_counts in its own transaction, one
--    statement a batch (jobs/counts.go). A row trigger ran a sub-program
--    per changed row, which cost more than its two small statements. The
--    insert and delete triggers stay: inserts and deletes around the engine
--    (an INSERT … SELECT, a test's raw row) stay counted. An UPDATE of a
--    job's state or queue made around the engine must add its own deltas
--    (or call jobs.Recount).
DROP TRIGGER jobs_count_update;

-- 2. The list indexes no longer hold the state: a state change moved the
--    job's entry in both. The list reads a queue or a kind filter as one
--    backward range of (queue, id) or (kind, id); a state filter as one
--    range of jobs_by_state (state, id) per state.
DROP INDEX jobs_list_queue;
DROP INDEX jobs_list_kind;
CREATE INDEX jobs_list_queue ON jobs (queue, id);
CREATE INDEX jobs_list_kind ON jobs (kind, id);

-- 3. The pruning index is partial on the finish time itself, not on the
--    state: a claim (which changes the state but no finish time) no longer
--    visits it. Every job with a finish time is finished: an outcome sets
--    one only with a finished state, a retry clears all three, a rescue
--    sets discarded_at only when it discards.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE coalesce(completed_at, cancelled_at, discarded_at) IS NOT NULL;

-- The counts were kept exact by the trigger until now; recounting makes
-- them exact whatever they were.
DELETE FROM job_counts;
INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs WHERE true GROUP BY queue, state;
