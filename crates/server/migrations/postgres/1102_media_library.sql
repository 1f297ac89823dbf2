-- Group media libraries and files in chat (issue 11, items 3 and 5), owned by `media`. Keep in
-- step with ../sqlite/1102_media_library.sql (the comments there say what each column holds).
CREATE TABLE group_media (
    gid         BIGINT NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    upload_id   TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    uid         BIGINT NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    duration_ms BIGINT,
    width       BIGINT,
    height      BIGINT,
    video_codec TEXT,
    audio_codec TEXT,
    thumbnail   BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (gid, upload_id)
);
CREATE INDEX group_media_newest ON group_media (gid, created_at);
CREATE INDEX group_media_upload ON group_media (upload_id);

CREATE TABLE conv_files (
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    conv_id   BIGINT NOT NULL REFERENCES conversations(conv_id) ON DELETE CASCADE,
    PRIMARY KEY (upload_id, conv_id)
);
