-- The durable job queue (see jobs/). Times are unix milliseconds (UTC).
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    state        TEXT    NOT NULL DEFAULT 'available'
                         CHECK (state IN ('scheduled', 'available', 'executing', 'retryable', 'completed', 'discarded', 'cancelled')),
    queue        TEXT    NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 100),
    kind         TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    args         TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(args)),
    priority     INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    attempt      INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts INTEGER NOT NULL DEFAULT 20 CHECK (max_attempts > 0),
    rescues      INTEGER NOT NULL DEFAULT 0,
    errors       TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(errors)),
    tags         TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    unique_key   TEXT,
    inserted_at  INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL,
    attempted_at INTEGER,
    attempted_by TEXT,
    completed_at INTEGER,
    cancelled_at INTEGER,
    discarded_at INTEGER
) STRICT;

-- Fetching: due jobs of one queue in priority, scheduled_at, id order.
CREATE INDEX jobs_fetch ON jobs (queue, priority, scheduled_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');

-- A unique job has at most one copy that is not yet finished.
CREATE UNIQUE INDEX jobs_unique_in_flight ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'executing', 'retryable');

-- Listing and counting by state, newest first.
CREATE INDEX jobs_by_state ON jobs (state, id);
