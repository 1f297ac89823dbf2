-- Uploads and files (issue 11, items 1 and 2), owned by `media`. Keep in step with
-- ../postgres/1101_uploads.sql.

-- One row per upload (tus or Mesibo's op=upload). `id` is random and unguessable (it is also
-- the file's id once complete). `size` is the declared length (Upload-Length), `received` the
-- bytes stored so far (the tus offset). `type` is sniffed from the first bytes, NULL until
-- they arrive. `expires_at` is when an unfinished upload is swept (NULL once complete);
-- `completed_at` is set when `received` reaches `size`. Deleting a user deletes their rows
-- (the bytes are then orphaned in the object store; see media/sweep.rs).
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    uid          INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    received     INTEGER NOT NULL DEFAULT 0,
    type         TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    completed_at INTEGER
);
CREATE INDEX uploads_uid ON uploads (uid);
CREATE INDEX uploads_expiring ON uploads (expires_at) WHERE completed_at IS NULL;

-- The stored parts of an upload, one object each (`uploads/{id}/{start:020}` in the object
-- store): part `start` holds bytes [start, start + len) of the file. Parts never overlap and
-- cover [0, received) without gaps.
CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start     INTEGER NOT NULL,
    len       INTEGER NOT NULL,
    PRIMARY KEY (upload_id, start)
);
