-- One whiteboard per group (issue 10, item 5), owned by `boards`. Keep in step with
-- ../sqlite/0207_boards.sql.

-- `objs`: the compact JSON text of the board's objects (a JSON array), at most
-- `max_board_bytes` bytes; `version` +1 per change; `updated_by` the last writer.
CREATE TABLE boards (
    gid        BIGINT PRIMARY KEY REFERENCES groups(gid) ON DELETE CASCADE,
    objs       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_by BIGINT REFERENCES users(uid) ON DELETE SET NULL,
    updated_at BIGINT NOT NULL
);
