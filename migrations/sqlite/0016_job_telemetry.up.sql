-- Each node's job telemetry, a row per node and minute (package jobs,
-- telemetry_shared.go). Several nodes need PostgreSQL, so on SQLite the
-- table stays empty: the one process's charts come from its memory. It
-- exists so that both dialects keep the same schema (migrations/schema_test.go
-- checks it).
CREATE TABLE job_telemetry (
    node    TEXT    NOT NULL,
    minute  INTEGER NOT NULL, -- unix minutes
    payload TEXT    NOT NULL,
    PRIMARY KEY (node, minute)
) WITHOUT ROWID;
