-- Job ids are never given twice. Without AUTOINCREMENT SQLite gives a new
-- row the largest id in the table plus one, so deleting the newest job (or
-- pruning it) handed its id to the next insert: a stale /jobs/{id} page
-- could then cancel someone else's job. With AUTOINCREMENT the largest id
-- ever given is kept in sqlite_sequence and never reused.
--
-- SQLite cannot add AUTOINCREMENT to a table, so the table is rebuilt: a
-- new one with the same columns (unique_by last, where 0004 added it), the
-- rows copied with their ids (which seeds sqlite_sequence with the largest),
-- the old one dropped with its indexes and triggers, the new one renamed
-- (which renames its sqlite_sequence row too), and every index and trigger
-- created again. Ids deleted before this migration cannot be known; from
-- here on none is reused.
CREATE TABLE jobs_autoincrement (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
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
    discarded_at INTEGER,
    unique_by    TEXT
) STRICT;

INSERT INTO jobs_autoincrement (id, state, queue, kind, args, priority, attempt, max_attempts, rescues, errors, tags, unique_key,
    inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, cancelled_at, discarded_at, unique_by)
SELECT id, state, queue, kind, args, priority, attempt, max_attempts, rescues, errors, tags, unique_key,
    inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, cancelled_at, discarded_at, unique_by
FROM jobs ORDER BY id;

DROP TABLE jobs;
ALTER TABLE jobs_autoincrement RENAME TO jobs;

-- Everything that lived on the old table, exactly as 0002, 0004 and 0006
-- made it.
CREATE INDEX jobs_fetch ON jobs (queue, priority, scheduled_at, id)
    WHERE state IN ('available', 'scheduled', 'retryable');
CREATE UNIQUE INDEX jobs_unique_in_flight ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'executing', 'retryable');
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_unique_by ON jobs (unique_by, inserted_at) WHERE unique_by IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');
CREATE INDEX jobs_list_queue ON jobs (queue, state, id);
CREATE INDEX jobs_list_kind ON jobs (kind, state, id);

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

-- The copy fired no count trigger and the drop none either, so the counts
-- are unchanged; recounting makes them exact whatever they were.
DELETE FROM job_counts;
INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs WHERE true GROUP BY queue, state;
