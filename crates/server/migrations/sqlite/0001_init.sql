-- Chorus schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
-- Never edit an applied migration: add a new one.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The stream position counter: one row, bumped by the message writer.
CREATE TABLE stream (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL
);
INSERT INTO stream (id, pos) VALUES (1, 0);

CREATE TABLE users (
    uid        INTEGER PRIMARY KEY AUTOINCREMENT,
    address    TEXT NOT NULL UNIQUE,
    email      TEXT UNIQUE,
    phone      TEXT UNIQUE,
    name       TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);

CREATE TABLE login_codes (
    identity   TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    uid        INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    appid      TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX tokens_uid ON tokens(uid);

CREATE TABLE groups (
    gid              INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    owner_uid        INTEGER REFERENCES users(uid) ON DELETE SET NULL,
    flags            INTEGER NOT NULL,
    call_flags       INTEGER NOT NULL,
    video_resolution INTEGER NOT NULL,
    call_duration    INTEGER NOT NULL,
    kind             INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);

CREATE TABLE members (
    gid         INTEGER NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    uid         INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    flags       INTEGER NOT NULL,
    admin_flags INTEGER NOT NULL,
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (gid, uid)
);
CREATE INDEX members_uid ON members(uid);

CREATE TABLE pins (
    pin         TEXT PRIMARY KEY,
    gid         INTEGER NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    flags       INTEGER NOT NULL,
    admin_flags INTEGER NOT NULL,
    label       TEXT NOT NULL,
    expires_at  INTEGER,
    uses_left   INTEGER,
    created_by  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX pins_gid ON pins(gid);

-- A conversation is a group (gid set) or a pair of users (user_lo < user_hi).
CREATE TABLE conversations (
    conv_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    gid      INTEGER UNIQUE REFERENCES groups(gid) ON DELETE CASCADE,
    user_lo  INTEGER,
    user_hi  INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_lo, user_hi)
);

-- Who is in a conversation and how far each has had it delivered and read.
CREATE TABLE conv_members (
    conv_id       INTEGER NOT NULL REFERENCES conversations(conv_id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    delivered_seq INTEGER NOT NULL,
    read_seq      INTEGER NOT NULL,
    -- Messages up to here predate the member: never part of their sync backlog.
    joined_seq    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, uid)
);
CREATE INDEX conv_members_uid ON conv_members(uid);

CREATE TABLE messages (
    mid         INTEGER PRIMARY KEY AUTOINCREMENT,
    conv_id     INTEGER NOT NULL REFERENCES conversations(conv_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    pos         INTEGER NOT NULL UNIQUE,
    sender_uid  INTEGER NOT NULL,
    sender_addr TEXT NOT NULL,
    peer_addr   TEXT,
    gid         INTEGER,
    client_id   TEXT NOT NULL,
    mtype       INTEGER NOT NULL,
    body        TEXT,
    created_at  INTEGER NOT NULL,
    edited      INTEGER NOT NULL DEFAULT 0,
    deleted     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conv_id, seq),
    UNIQUE (sender_uid, client_id)
);
