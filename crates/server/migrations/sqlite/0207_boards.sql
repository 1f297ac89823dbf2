-- One whiteboard per group (issue 10, item 5), owned by `boards`. Keep in step with
-- ../postgres/0207_boards.sql.

-- `objs`: the compact JSON text of the board's objects (a JSON array), at most
-- `max_board_bytes` bytes; `version` +1 per change; `updated_by` the last writer.
CREATE TABLE boards (
    gid        INTEGER PRIMARY KEY REFERENCES groups(gid) ON DELETE CASCADE,
    objs       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_by INTEGER REFERENCES users(uid) ON DELETE SET NULL,
    updated_at INTEGER NOT NULL
);
