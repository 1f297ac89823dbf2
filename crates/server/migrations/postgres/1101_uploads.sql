-- Uploads and files (issue 11, items 1 and 2), owned by `media`. Keep in step with
-- ../sqlite/1101_uploads.sql (the comments there say what each column holds).
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    uid          BIGINT NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    received     BIGINT NOT NULL DEFAULT 0,
    type         TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    completed_at BIGINT
);
CREATE INDEX uploads_uid ON uploads (uid);
CREATE INDEX uploads_expiring ON uploads (expires_at) WHERE completed_at IS NULL;

CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start     BIGINT NOT NULL,
    len       BIGINT NOT NULL,
    PRIMARY KEY (upload_id, start)
);
