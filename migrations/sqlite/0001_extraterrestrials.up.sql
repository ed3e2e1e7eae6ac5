-- The stranded extraterrestrials of the Phone Home seed.
-- Times are unix milliseconds (UTC); NULL means "never".
CREATE TABLE extraterrestrials (
    id                            INTEGER PRIMARY KEY,
    name                          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    communication_status          TEXT             CHECK (communication_status IN ('phoning_home', 'space_taxi_on_the_way', 'no_answer')),
    communication_attempt         INTEGER NOT NULL DEFAULT 0 CHECK (communication_attempt >= 0),
    last_communication_attempt_at INTEGER
) STRICT;

CREATE INDEX extraterrestrials_by_name ON extraterrestrials (name, id);
CREATE INDEX extraterrestrials_by_status ON extraterrestrials (communication_status, name, id);
