-- The events of the live streams that every node shares (package broker).
-- Several nodes need PostgreSQL, so on SQLite this table stays empty: one
-- process's hub publishes directly. It exists so that both dialects keep
-- the same schema (migrations/schema_test.go checks it) and a database can
-- be copied from one to the other table for table.
CREATE TABLE live_events (
    id         INTEGER PRIMARY KEY,
    stream     TEXT    NOT NULL CHECK (length(stream) BETWEEN 1 AND 200),
    event      TEXT    NOT NULL,
    key        INTEGER NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL -- unix milliseconds
) STRICT;

CREATE INDEX live_events_stream ON live_events (stream, id);

-- How far each stream was trimmed ('*': for every stream); see the
-- PostgreSQL twin.
CREATE TABLE live_event_trims (
    stream TEXT    PRIMARY KEY CHECK (length(stream) BETWEEN 1 AND 200),
    before INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO live_event_trims (stream, before)
    VALUES ('*', CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
