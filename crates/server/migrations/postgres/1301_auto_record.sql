-- Automatic recording (issue 13, item 1), owned by `groups`. Keep in step with ../sqlite/1301_auto_record.sql.
--
-- A group whose calls are recorded from their start, by and for its owner (0 or 1).
ALTER TABLE groups ADD COLUMN auto_record BIGINT NOT NULL DEFAULT 0;
