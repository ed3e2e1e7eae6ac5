-- A trigram index of the extraterrestrials' names, so that a search by any
-- part of a name (LIKE '%q%') finds its rows without reading every name.
-- It holds no copy of the names (content= the table); triggers keep it
-- current. Status changes do not touch it.
CREATE VIRTUAL TABLE extraterrestrial_names USING fts5(
    name, content = 'extraterrestrials', content_rowid = 'id', tokenize = 'trigram case_sensitive 0');

INSERT INTO extraterrestrial_names (extraterrestrial_names) VALUES ('rebuild');

CREATE TRIGGER extraterrestrial_names_insert AFTER INSERT ON extraterrestrials BEGIN
    INSERT INTO extraterrestrial_names (rowid, name) VALUES (new.id, new.name);
END;

CREATE TRIGGER extraterrestrial_names_delete AFTER DELETE ON extraterrestrials BEGIN
    INSERT INTO extraterrestrial_names (extraterrestrial_names, rowid, name) VALUES ('delete', old.id, old.name);
END;

CREATE TRIGGER extraterrestrial_names_rename AFTER UPDATE OF name ON extraterrestrials BEGIN
    INSERT INTO extraterrestrial_names (extraterrestrial_names, rowid, name) VALUES ('delete', old.id, old.name);
    INSERT INTO extraterrestrial_names (rowid, name) VALUES (new.id, new.name);
END;
