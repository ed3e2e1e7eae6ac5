-- The events of the live streams that every node shares (package broker):
-- a node inserts what its feeds publish, with pg_notify of the highest id
-- in the same transaction, and every node reads the rows in id order and
-- hands them to its own hub with the row's id, so every client on every
-- node sees the same events with the same ids. The table also serves a
-- Last-Event-ID resume on a node whose window no longer holds the id.
-- Trimmed to a window by age and count (live_event_trims says how far).
-- (PostgreSQL twin of ../sqlite/0015.)
CREATE TABLE live_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream     text   COLLATE "C" NOT NULL CHECK (length(stream) BETWEEN 1 AND 200),
    event      text   COLLATE "C" NOT NULL,
    key        bigint NOT NULL,
    data       text   NOT NULL,
    created_at bigint NOT NULL -- unix milliseconds
);

-- A resume reads one stream after an id; the trim counts one stream's rows.
CREATE INDEX live_events_stream ON live_events (stream, id);

-- How far each stream was trimmed: its events with ids up to before may be
-- gone, so a client resuming from before it gets resync, never a silent
-- gap. The row '*' holds for every stream: the ids before the table
-- existed (the hub's time-based ids of an earlier version).
CREATE TABLE live_event_trims (
    stream text   COLLATE "C" PRIMARY KEY CHECK (length(stream) BETWEEN 1 AND 200),
    before bigint NOT NULL
);

-- Ids go on from the current time in microseconds: browsers hold the hub's
-- time-based ids from before, and a resume from one of those must be seen
-- as older than every event of the table.
SELECT setval(pg_get_serial_sequence('live_events', 'id'), (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
INSERT INTO live_event_trims (stream, before)
    SELECT '*', last_value FROM live_events_id_seq;
