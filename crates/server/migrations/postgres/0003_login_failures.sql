-- Wrong login codes per identity across codes (issue 18, finding 5), and an index for the
-- purge of expired tokens. Keep in step with ../sqlite/0003_login_failures.sql.

-- Wrong guesses of this identity since `failures_since` (ms), whatever code they were for:
-- a new code resets `attempts`, never these.
ALTER TABLE login_codes ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_codes ADD COLUMN failures_since BIGINT NOT NULL DEFAULT 0;

CREATE INDEX tokens_expires_at ON tokens(expires_at);
