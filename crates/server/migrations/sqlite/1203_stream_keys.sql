-- WHIP stream keys (issue 12, item 3), owned by `live::keys`. Keep in step with
-- ../postgres/1203_stream_keys.sql.

-- A stream key lets a broadcaster (OBS Studio) publish to a group's call over WHIP with no
-- account: the key is the Bearer token. Only its SHA-256 is stored; the key is shown once.
-- Deleting the row revokes it (and ends a stream it carries).
CREATE TABLE stream_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    gid        INTEGER NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    key_hash   TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created_by INTEGER REFERENCES users(uid) ON DELETE SET NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX stream_keys_gid ON stream_keys (gid);
