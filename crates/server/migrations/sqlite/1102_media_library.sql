-- Group media libraries and files in chat (issue 11, items 3 and 5), owned by `media`. Keep in
-- step with ../postgres/1102_media_library.sql.

-- One row per file in a group's library. The entry's id is the file's (upload) id: a file is in
-- a library at most once. `uid` is who added it (the uploader: only one's own finished upload
-- can be added). The metadata comes from chorus-probe when the entry is added; a file it cannot
-- read (not media, corrupt, cut short) has NULL duration, dimensions and codecs. `thumbnail` is
-- 1 when a JPEG thumbnail is stored beside the file (`uploads/{id}/thumbnail`). Deleting the
-- upload, the group or the user deletes the entry.
CREATE TABLE group_media (
    gid         INTEGER NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    upload_id   TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    uid         INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    duration_ms INTEGER,
    width       INTEGER,
    height      INTEGER,
    video_codec TEXT,
    audio_codec TEXT,
    thumbnail   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (gid, upload_id)
);
CREATE INDEX group_media_newest ON group_media (gid, created_at);
CREATE INDEX group_media_upload ON group_media (upload_id);

-- Files sent in a conversation (file messages): the conversation's members may read them.
CREATE TABLE conv_files (
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    conv_id   INTEGER NOT NULL REFERENCES conversations(conv_id) ON DELETE CASCADE,
    PRIMARY KEY (upload_id, conv_id)
);
