-- LivePet: anonymous keepers and their pets. Times are unix milliseconds (UTC).
--
-- A pet's age and hunger are not stored: they are derived from its birth and
-- its last meal with the tick length T (see package pets), so nothing has to be
-- written while pets merely grow older and hungrier. A row changes only when a
-- keeper feeds or treats it, and once when it dies.

-- An anonymous keeper, known by the random id in its cookie. Rows are created
-- lazily: at the first adoption or treat.
CREATE TABLE keepers (
    id                 TEXT    PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    treats_left        INTEGER NOT NULL CHECK (treats_left >= 0),
    -- when the current treat window began; treats_left is refilled once it is over
    treats_window_start INTEGER NOT NULL,
    created_at         INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE pets (
    id          INTEGER PRIMARY KEY,
    keeper_id   TEXT    NOT NULL REFERENCES keepers (id),
    -- NOCASE so that the name index serves case-insensitive prefix search.
    name        TEXT    NOT NULL COLLATE NOCASE CHECK (length(name) BETWEEN 3 AND 100),
    species     TEXT    NOT NULL CHECK (species IN ('cat', 'dog', 'fish', 'fox', 'rabbit', 'turtle', 'crab', 'owl', 'phoenix')),
    born_at     INTEGER NOT NULL,
    -- hunger at hunger_at (birth, or the last feed or treat); it grows by 5 a tick from there, capped at 500
    hunger_base INTEGER NOT NULL CHECK (hunger_base BETWEEN 0 AND 500),
    hunger_at   INTEGER NOT NULL CHECK (hunger_at >= born_at),
    -- the instant of death (born_at + 10,001 ticks), not when it was noticed; NULL while alive
    died_at     INTEGER CHECK (died_at IS NULL OR died_at >= born_at),
    updated_at  INTEGER NOT NULL
) STRICT;

-- A keeper's pets, newest first.
CREATE INDEX pets_by_keeper ON pets (keeper_id, id);
-- All pets by id (newest first), alive or dead.
CREATE INDEX pets_alive_by_id ON pets (id) WHERE died_at IS NULL;
CREATE INDEX pets_dead_by_id ON pets (id) WHERE died_at IS NOT NULL;
-- Name search: case-insensitive prefix match (LIKE 'q%'), in name order.
CREATE INDEX pets_by_name ON pets (name, id);
-- The death sweep: living pets, oldest first.
CREATE INDEX pets_alive_by_born ON pets (born_at) WHERE died_at IS NULL;
