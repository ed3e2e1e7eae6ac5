-- The job engine's own state beside the jobs table (see package jobs;
-- PostgreSQL twin of ../sqlite/0004). Times are unix milliseconds (UTC).

-- Operator settings of a queue: pause and scale survive a restart and reach
-- every node at its next heartbeat. A queue without a row runs with the
-- limit its engine was configured with.
CREATE TABLE job_queues (
    name       text    PRIMARY KEY CHECK (char_length(name) BETWEEN 1 AND 100),
    "limit"    integer CHECK ("limit" IS NULL OR "limit" >= 1),
    paused     boolean NOT NULL DEFAULT false,
    updated_at bigint  NOT NULL
);

-- Running engines. A job left executing is rescued only when the node named
-- in its attempted_by is gone: no row, or a stale heartbeat (and, on the same
-- host, a process id that is no longer alive).
CREATE TABLE job_nodes (
    name         text    PRIMARY KEY CHECK (char_length(name) BETWEEN 1 AND 200),
    host         text    NOT NULL,
    pid          integer NOT NULL,
    started_at   bigint  NOT NULL,
    heartbeat_at bigint  NOT NULL
);

-- The last cron slot each periodic job was inserted for: an insert claims its
-- slot by moving last_slot forward, so a slot is inserted at most once even
-- across restarts and nodes.
CREATE TABLE job_cron (
    key       text   PRIMARY KEY,
    last_slot bigint NOT NULL
);

-- Jobs per queue and state, so the dashboard's counts never scan the jobs
-- table. Unlike SQLite's (one row per queue and state, updated in place),
-- this table is a ledger: the triggers below only ever INSERT a row of
-- changes (n may be negative), so concurrent writers never wait for one
-- another on a hot counter row, and the count of a queue and state is
-- sum(n) over its rows, exact in every snapshot. store.CompactCounts folds
-- the rows back to one per queue and state, in one statement, now and then.
CREATE TABLE job_counts (
    queue text   NOT NULL,
    state text   NOT NULL,
    n     bigint NOT NULL
);

INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

-- Statement-level triggers with transition tables: one ledger row per queue
-- and state that a statement touched, however many jobs it wrote.
CREATE OR REPLACE FUNCTION jobs_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts (queue, state, n)
        SELECT queue, state, count(*) FROM new_jobs GROUP BY queue, state;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION jobs_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts (queue, state, n)
        SELECT d.queue, d.state, sum(d.n)
        FROM old_jobs AS o
        JOIN new_jobs AS w ON w.id = o.id
        CROSS JOIN LATERAL (VALUES (o.queue, o.state, -1), (w.queue, w.state, 1)) AS d (queue, state, n)
        WHERE o.state IS DISTINCT FROM w.state OR o.queue IS DISTINCT FROM w.queue
        GROUP BY d.queue, d.state
        HAVING sum(d.n) <> 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION jobs_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts (queue, state, n)
        SELECT queue, state, -count(*) FROM old_jobs GROUP BY queue, state;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_insert();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_update();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_delete();

-- Uniqueness with a period or other states than "in flight" (the partial
-- unique index of 0002 covers the default): the lookup key of such jobs.
ALTER TABLE jobs ADD COLUMN unique_by text;
CREATE INDEX jobs_unique_by ON jobs (unique_by, inserted_at) WHERE unique_by IS NOT NULL;

-- Pruning: finished jobs by the time they finished.
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');
