-- Public viewing (issue 12, item 4), owned by `groups`. Keep in step with ../sqlite/1204_public_viewing.sql.
--
-- Anyone with the group's WHEP URL may watch its call without an account (0 or 1).
ALTER TABLE groups ADD COLUMN public_viewing BIGINT NOT NULL DEFAULT 0;
