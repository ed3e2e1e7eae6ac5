-- Each node's job telemetry, a row per node and minute (package jobs,
-- telemetry_shared.go): the attempts it finished in each second of the
-- minute and the wait and run time histograms of each queue and kind, as
-- JSON. Every node rewrites its current minute's row once a second and
-- reads the other nodes' recent rows, so the jobs dashboard's throughput
-- and time charts count every node's attempts, whichever node draws them.
-- Rows older than the charts' window (30 minutes) are deleted.
-- (PostgreSQL twin of ../sqlite/0016.)
CREATE TABLE job_telemetry (
    node    text   COLLATE "C" NOT NULL,
    minute  bigint NOT NULL, -- unix minutes
    payload text   NOT NULL,
    PRIMARY KEY (node, minute)
);
