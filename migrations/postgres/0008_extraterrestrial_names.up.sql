-- A trigram index of the extraterrestrials' names, so that a search by any
-- part of a name (lower(name) LIKE '%q%') finds its rows without reading
-- every name (PostgreSQL twin of ../sqlite/0008, where it is an FTS5 table
-- of the same name kept by triggers; here an index, kept by PostgreSQL).
-- pg_trgm is a trusted extension: a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX extraterrestrial_names ON extraterrestrials USING gin (lower(name) gin_trgm_ops);
