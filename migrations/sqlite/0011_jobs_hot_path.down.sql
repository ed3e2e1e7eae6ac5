-- Back to 0010: the count trigger on updates, the list indexes with the
-- state, the pruning index partial on the state.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');

DROP INDEX jobs_list_queue;
DROP INDEX jobs_list_kind;
CREATE INDEX jobs_list_queue ON jobs (queue, state, id);
CREATE INDEX jobs_list_kind ON jobs (kind, state, id);

CREATE TRIGGER jobs_count_update AFTER UPDATE OF state, queue ON jobs
    WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

DELETE FROM job_counts;
INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs WHERE true GROUP BY queue, state;
