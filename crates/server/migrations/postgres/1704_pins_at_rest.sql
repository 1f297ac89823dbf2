-- Pins at rest (issue 17, item 4), owned by `groups`. Keep in step with
-- ../sqlite/1704_pins_at_rest.sql.
--
-- A pin is no longer stored as text: `pin_hash` is HMAC-SHA256 over the gid and the pin
-- (what joins and revokes look it up by), `pin_enc` the pin sealed with AES-256-GCM (what
-- owners are shown), both under the server's pin key (see crates/server/src/pin_key.rs).
-- SQL cannot compute them without the key: the plain text of existing pins moves to
-- `legacy_pin`, and the server converts and clears it at startup (Groups::prepare_pins)
-- before it serves. A row is either legacy (legacy_pin only) or converted (hash and seal).
ALTER TABLE pins DROP CONSTRAINT pins_pkey;
ALTER TABLE pins RENAME COLUMN pin TO legacy_pin;
ALTER TABLE pins ALTER COLUMN legacy_pin DROP NOT NULL;
ALTER TABLE pins ADD COLUMN pin_hash TEXT UNIQUE;
ALTER TABLE pins ADD COLUMN pin_enc TEXT;
ALTER TABLE pins ADD CONSTRAINT pins_stored_once
    CHECK ((legacy_pin IS NULL) <> (pin_hash IS NULL) AND (pin_hash IS NULL) = (pin_enc IS NULL));
