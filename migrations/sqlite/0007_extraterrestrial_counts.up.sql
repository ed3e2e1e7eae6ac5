-- How many extraterrestrials are in each communication status, kept exact by
-- triggers in the same transaction as every change, so the campaign header
-- reads four rows instead of counting a million on every update.
-- '' stands for "never tried" (communication_status IS NULL).
CREATE TABLE extraterrestrial_counts (
    status TEXT    PRIMARY KEY CHECK (status IN ('', 'phoning_home', 'space_taxi_on_the_way', 'no_answer')),
    n      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO extraterrestrial_counts (status, n)
VALUES ('', 0), ('phoning_home', 0), ('space_taxi_on_the_way', 0), ('no_answer', 0);

INSERT INTO extraterrestrial_counts (status, n)
SELECT coalesce(communication_status, ''), count(*) FROM extraterrestrials WHERE true GROUP BY communication_status
ON CONFLICT (status) DO UPDATE SET n = excluded.n;

CREATE TRIGGER extraterrestrials_counts_insert AFTER INSERT ON extraterrestrials
BEGIN
    UPDATE extraterrestrial_counts SET n = n + 1 WHERE status = coalesce(NEW.communication_status, '');
END;

CREATE TRIGGER extraterrestrials_counts_delete AFTER DELETE ON extraterrestrials
BEGIN
    UPDATE extraterrestrial_counts SET n = n - 1 WHERE status = coalesce(OLD.communication_status, '');
END;

CREATE TRIGGER extraterrestrials_counts_update AFTER UPDATE OF communication_status ON extraterrestrials
WHEN OLD.communication_status IS NOT NEW.communication_status
BEGIN
    UPDATE extraterrestrial_counts SET n = n - 1 WHERE status = coalesce(OLD.communication_status, '');
    UPDATE extraterrestrial_counts SET n = n + 1 WHERE status = coalesce(NEW.communication_status, '');
END;
