-- Package cluster's tables: what several phonehome processes on one
-- database share besides the jobs (the node registry is job_nodes, which
-- the job engine keeps). Times are unix milliseconds (UTC).

-- One row per lease (e.g. "maintenance"): the node that holds it until
-- expires_at. A node takes the row with one INSERT … ON CONFLICT DO UPDATE
-- whose WHERE lets it in only when the row expired or is already its own;
-- term counts the changes of holder (a fencing number).
CREATE TABLE cluster_leases (
    name        TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    node        TEXT    NOT NULL CHECK (length(node) BETWEEN 1 AND 200),
    term        INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- How many viewers each node has on each topic (a pet's page): summed over
-- the rows refreshed lately, so a node that died stops counting within its
-- presence TTL; the leader deletes such rows.
CREATE TABLE cluster_presence (
    topic      TEXT    NOT NULL CHECK (length(topic) BETWEEN 1 AND 200),
    node       TEXT    NOT NULL CHECK (length(node) BETWEEN 1 AND 200),
    count      INTEGER NOT NULL CHECK (count > 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (topic, node)
) STRICT, WITHOUT ROWID;

-- A node refreshes and removes its own rows.
CREATE INDEX cluster_presence_node ON cluster_presence (node);
