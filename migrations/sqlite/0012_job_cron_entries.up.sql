-- Periodic jobs as operators see them (the cron page). Keyed by the entry's
-- name, not by job_cron's key (a hash of spec, args and queue), so that a
-- pause survives a change of schedule in the code.

-- Operator settings of an entry: a paused entry's slots are skipped (not
-- made up for when it is resumed). An entry without a row runs.
CREATE TABLE job_cron_entries (
    name       TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The jobs each entry inserted, on its schedule or by "Run now" (manual = 1),
-- the last 50 per entry: the cron page's last run and recent jobs.
CREATE TABLE job_cron_runs (
    name   TEXT    NOT NULL,
    job_id INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    manual INTEGER NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    PRIMARY KEY (name, job_id)
) STRICT, WITHOUT ROWID;
