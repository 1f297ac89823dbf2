-- Pins at rest (issue 17, item 4), owned by `groups`. Keep in step with
-- ../postgres/1704_pins_at_rest.sql.
--
-- A pin is no longer stored as text: `pin_hash` is HMAC-SHA256 over the gid and the pin
-- (what joins and revokes look it up by), `pin_enc` the pin sealed with AES-256-GCM (what
-- owners are shown), both under the server's pin key (see crates/server/src/pin_key.rs).
-- SQL cannot compute them without the key: the plain text of existing pins moves to
-- `legacy_pin`, and the server converts and clears it at startup (Groups::prepare_pins)
-- before it serves. A row is either legacy (legacy_pin only) or converted (hash and seal).
CREATE TABLE pins_at_rest (
    pin_hash    TEXT UNIQUE,
    pin_enc     TEXT,
    legacy_pin  TEXT,
    gid         INTEGER NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    flags       INTEGER NOT NULL,
    admin_flags INTEGER NOT NULL,
    label       TEXT NOT NULL,
    expires_at  INTEGER,
    uses_left   INTEGER,
    created_by  INTEGER,
    created_at  INTEGER NOT NULL,
    CHECK ((legacy_pin IS NULL) <> (pin_hash IS NULL) AND (pin_hash IS NULL) = (pin_enc IS NULL))
);
INSERT INTO pins_at_rest (legacy_pin, gid, flags, admin_flags, label, expires_at, uses_left, created_by, created_at)
    SELECT pin, gid, flags, admin_flags, label, expires_at, uses_left, created_by, created_at FROM pins;
DROP TABLE pins;
ALTER TABLE pins_at_rest RENAME TO pins;
CREATE INDEX pins_gid ON pins(gid);
