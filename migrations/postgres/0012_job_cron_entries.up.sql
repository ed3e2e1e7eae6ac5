-- Periodic jobs as operators see them (the cron page). Keyed by the entry's
-- name, not by job_cron's key (a hash of spec, args and queue), so that a
-- pause survives a change of schedule in the code.
-- (PostgreSQL twin of ../sqlite/0012.)

-- Operator settings of an entry: a paused entry's slots are skipped (not
-- made up for when it is resumed). An entry without a row runs.
CREATE TABLE job_cron_entries (
    name       text    COLLATE "C" PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    paused     integer NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    updated_at bigint  NOT NULL
);

-- The jobs each entry inserted, on its schedule or by "Run now" (manual = 1),
-- the last 50 per entry: the cron page's last run and recent jobs.
CREATE TABLE job_cron_runs (
    name   text    COLLATE "C" NOT NULL,
    job_id bigint  NOT NULL,
    at     bigint  NOT NULL,
    manual integer NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    PRIMARY KEY (name, job_id)
);
