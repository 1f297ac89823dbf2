-- Live mode (issue 12, item 1), owned by `groups`. Keep in step with ../postgres/1201_live_mode.sql.
--
-- A group whose calls are live streams: members who may publish are on stage, the others are
-- the audience (see chorus_sfu::room, "Live mode"). 0 or 1.
ALTER TABLE groups ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
