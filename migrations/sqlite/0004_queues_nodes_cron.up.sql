-- The job engine's own state beside the jobs table (see package jobs).
-- Times are unix milliseconds (UTC).

-- Operator settings of a queue: pause and scale survive a restart and reach
-- every node at its next heartbeat. A queue without a row runs with the
-- limit its engine was configured with.
CREATE TABLE job_queues (
    name       TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    "limit"    INTEGER CHECK ("limit" IS NULL OR "limit" >= 1),
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Running engines. A job left executing is rescued only when the node named
-- in its attempted_by is gone: no row, or a stale heartbeat (and, on the same
-- host, a process id that is no longer alive).
CREATE TABLE job_nodes (
    name         TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The last cron slot each periodic job was inserted for: an insert claims its
-- slot by moving last_slot forward, so a slot is inserted at most once even
-- across restarts and nodes.
CREATE TABLE job_cron (
    key       TEXT    PRIMARY KEY,
    last_slot INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Jobs per queue and state, kept by the triggers below, so the dashboard's
-- counts never scan the jobs table.
CREATE TABLE job_counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) STRICT, WITHOUT ROWID;

INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF state, queue ON jobs
    WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO job_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;

-- Uniqueness with a period or other states than "in flight" (the partial
-- unique index of 0002 covers the default): the lookup key of such jobs.
ALTER TABLE jobs ADD COLUMN unique_by TEXT;
CREATE INDEX jobs_unique_by ON jobs (unique_by, inserted_at) WHERE unique_by IS NOT NULL;

-- Pruning: finished jobs by the time they finished.
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');
