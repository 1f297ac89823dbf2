-- Webhook deliveries (issue 16, item 4), owned by `webhooks`. Keep in step with
-- ../postgres/0209_webhooks.sql.

-- One row per event and target URL, stored before any attempt, so a restart loses none.
-- `body` is the exact JSON posted (and signed). A row is pending until `delivered_at`
-- (a 2xx answer) or `failed_at` (given up after `webhook_give_up_secs`); `next_at` is when the
-- next attempt may go. Ids increase in the order events were made: a URL gets its events in
-- id order, one at a time.
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    url          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    delivered_at INTEGER,
    failed_at    INTEGER,
    last_error   TEXT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (url, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
