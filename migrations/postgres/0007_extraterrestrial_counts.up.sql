-- How many extraterrestrials are in each communication status, exact in
-- every snapshot, so the campaign header reads a few rows instead of
-- counting a million on every update (PostgreSQL twin of ../sqlite/0007).
-- '' stands for "never tried" (communication_status IS NULL).
--
-- As job_counts (0004), a ledger rather than four counters: the triggers
-- only INSERT rows of changes, so phone calls recorded concurrently never
-- queue on a counter row; the count of a status is sum(n) over its rows,
-- and store.CompactCounts folds them back to one row a status.
CREATE TABLE extraterrestrial_counts (
    status text   NOT NULL CHECK (status IN ('', 'phoning_home', 'space_taxi_on_the_way', 'no_answer')),
    n      bigint NOT NULL
);

INSERT INTO extraterrestrial_counts (status, n)
VALUES ('', 0), ('phoning_home', 0), ('space_taxi_on_the_way', 0), ('no_answer', 0);

INSERT INTO extraterrestrial_counts (status, n)
SELECT coalesce(communication_status, ''), count(*) FROM extraterrestrials GROUP BY communication_status;

CREATE OR REPLACE FUNCTION extraterrestrials_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO extraterrestrial_counts (status, n)
        SELECT coalesce(communication_status, ''), count(*) FROM new_ets GROUP BY 1;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION extraterrestrials_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO extraterrestrial_counts (status, n)
        SELECT coalesce(communication_status, ''), -count(*) FROM old_ets GROUP BY 1;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION extraterrestrials_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO extraterrestrial_counts (status, n)
        SELECT d.status, sum(d.n)
        FROM old_ets AS o
        JOIN new_ets AS w ON w.id = o.id
        CROSS JOIN LATERAL (VALUES (coalesce(o.communication_status, ''), -1),
                                   (coalesce(w.communication_status, ''), 1)) AS d (status, n)
        WHERE o.communication_status IS DISTINCT FROM w.communication_status
        GROUP BY d.status
        HAVING sum(d.n) <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER extraterrestrials_counts_insert AFTER INSERT ON extraterrestrials
    REFERENCING NEW TABLE AS new_ets FOR EACH STATEMENT EXECUTE FUNCTION extraterrestrials_counts_insert();
CREATE TRIGGER extraterrestrials_counts_delete AFTER DELETE ON extraterrestrials
    REFERENCING OLD TABLE AS old_ets FOR EACH STATEMENT EXECUTE FUNCTION extraterrestrials_counts_delete();
CREATE TRIGGER extraterrestrials_counts_update AFTER UPDATE ON extraterrestrials
    REFERENCING OLD TABLE AS old_ets NEW TABLE AS new_ets FOR EACH STATEMENT EXECUTE FUNCTION extraterrestrials_counts_update();
