-- Back to 0010: the list indexes with the state, the pruning index partial
-- on the state. (PostgreSQL twin of ../sqlite/0011.)
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');

DROP INDEX jobs_list_queue;
DROP INDEX jobs_list_kind;
CREATE INDEX jobs_list_queue ON jobs (queue, state, id);
CREATE INDEX jobs_list_kind ON jobs (kind, state, id);
