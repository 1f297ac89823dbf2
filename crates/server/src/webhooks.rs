//! Webhooks: signed POSTs to the operator's URLs when something happens (a room starts or
//! finishes, a participant joins or leaves, a message is stored for a user with no live session).
//!
//! The format is [Standard Webhooks](https://www.standardwebhooks.com/): a JSON body
//! `{"type", "timestamp", "data"}` and the headers `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the secret
//! `whsec_<base64 key>`, so the verifiers that exist for it (PyPI/npm `standardwebhooks`, Svix)
//! work unchanged. docs/deployment.md (Webhooks) lists the events.
//!
//! Owns `webhook_deliveries`. The flow, and why:
//! - [`Webhooks::emit`] never waits: events go through a bounded queue to one task that stores
//!   them, one row per event and URL, in a transaction per batch. A full queue drops the event
//!   (logged and counted): a call or a send is never slowed by webhooks.
//! - The delivery task posts each URL's rows in id order, one at a time (a receiver sees events in
//!   the order they happened), and marks a row delivered on a 2xx answer. Anything else is retried
//!   with exponential backoff up to `webhook_retry_max_secs`; the rows behind it wait. A row still
//!   undelivered `webhook_give_up_secs` after it was made is marked failed and the next goes.
//! - Rows are stored before the first attempt, so a restart (even kill -9 after the store)
//!   loses none; an event can be posted twice only if the process dies between a receiver's 2xx
//!   and the row's update (receivers dedupe by `webhook-id`, as the standard says).
//! - Each attempt first claims its row: it moves the row's `next_at` a lease ahead
//!   ([`LEASE`]), on the condition that nobody moved it since it was read. In a cluster every
//!   node runs this task over the one table, and only the node whose claim won posts; the
//!   others find the head row not due and wait, so a URL still gets its rows one at a time, in
//!   order. A node that dies during an attempt leaves the row due again when the lease ends.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Row;
use tokio::sync::{mpsc, Notify};

use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// How long a claimed attempt keeps other nodes off its row: longer than a POST may take.
const LEASE: Duration = Duration::from_secs(15);
/// Events waiting to be stored; past this, new ones are dropped.
const QUEUE: usize = 10_000;
/// Rows stored per transaction.
const STORE_BATCH: usize = 256;
/// Longest a receiver may take to answer.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Delivered rows are kept this long for the admin's view, then deleted.
const KEEP_DELIVERED_MS: i64 = 7 * 24 * 3600 * 1000;

/// One event as emitted: its type (`room.started`…) and data.
#[derive(Debug)]
struct Event {
    kind: &'static str,
    at_ms: i64,
    data: Value,
}

/// The webhooks service. Without URLs configured every method is a no-op.
pub struct Webhooks {
    tx: Option<mpsc::Sender<Event>>,
    db: Db,
}

/// A delivery as the admin sees it (`GET /admin/webhooks`).
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// Row id; the `webhook-id` header is `msg_<id>`.
    pub id: i64,
    /// Target URL.
    pub url: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: &'static str,
    /// Attempts made.
    pub attempts: i64,
    /// When the event was made, ms since the epoch.
    pub created_at: i64,
    /// When the next attempt may go (pending rows), ms.
    pub next_at: Option<i64>,
    /// When a receiver answered 2xx, ms.
    pub delivered_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    /// Starts the store and delivery tasks when `webhook_urls` is set; `key` signs.
    pub fn start(db: Db, cfg: Arc<Config>, key: Option<Vec<u8>>) -> Arc<Webhooks> {
        let (Some(key), false) = (key, cfg.webhook_urls.is_empty()) else {
            return Arc::new(Webhooks { tx: None, db });
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let stored = Arc::new(Notify::new());
        tokio::spawn(store_loop(db.clone(), cfg.clone(), rx, stored.clone()));
        tokio::spawn(deliver_loop(db.clone(), cfg, key, stored));
        Arc::new(Webhooks { tx: Some(tx), db })
    }

    /// Whether any URL receives webhooks (callers may skip building events otherwise).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an event for every URL. Never waits; see the module docs.
    pub fn emit(&self, kind: &'static str, data: Value) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(Event { kind, at_ms: now_ms(), data }).is_err() {
            crate::metrics::metrics().webhooks_dropped.inc();
            tracing::warn!(kind, "webhook queue full: event dropped");
        }
    }

    /// The newest deliveries, `status` one of `pending`, `delivered`, `failed` or all.
    pub async fn deliveries(&self, status: Option<&str>, limit: i64) -> ApiResult<Vec<Delivery>> {
        let filter = match status {
            None => "",
            Some("pending") => "WHERE delivered_at IS NULL AND failed_at IS NULL",
            Some("delivered") => "WHERE delivered_at IS NOT NULL",
            Some("failed") => "WHERE failed_at IS NOT NULL",
            Some(other) => {
                return Err(ApiError::bad_request(format!("status {other:?}: expected pending, delivered or failed")))
            }
        };
        let rows = sqlx::query(&format!(
            "SELECT id, url, kind, attempts, created_at, next_at, delivered_at, failed_at, last_error \
             FROM webhook_deliveries {filter} ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.db.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let delivered_at: Option<i64> = r.try_get("delivered_at")?;
            let failed_at: Option<i64> = r.try_get("failed_at")?;
            let status = match (delivered_at, failed_at) {
                (Some(_), _) => "delivered",
                (None, Some(_)) => "failed",
                (None, None) => "pending",
            };
            out.push(Delivery {
                id: r.try_get("id")?,
                url: r.try_get("url")?,
                kind: r.try_get("kind")?,
                status,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
                next_at: (status == "pending").then(|| r.try_get("next_at")).transpose()?,
                delivered_at,
                last_error: r.try_get("last_error")?,
            });
        }
        Ok(out)
    }
}

/// Stores queued events, a batch per transaction, and wakes the delivery task.
async fn store_loop(db: Db, cfg: Arc<Config>, mut rx: mpsc::Receiver<Event>, stored: Arc<Notify>) {
    let mut batch = Vec::with_capacity(STORE_BATCH);
    loop {
        if rx.recv_many(&mut batch, STORE_BATCH).await == 0 {
            return;
        }
        loop {
            match store(&db, &cfg, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "storing webhook events failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        batch.clear();
        stored.notify_one();
    }
}

async fn store(db: &Db, cfg: &Config, batch: &[Event]) -> Result<(), sqlx::Error> {
    let mut tx = db.write.begin().await?;
    for e in batch {
        let mut data = e.data.clone();
        // Users are `user_id` in the event; members know each other by address.
        if let Some(uid) = data.get("uid").and_then(Value::as_i64) {
            let address: Option<String> = sqlx::query_scalar("SELECT address FROM users WHERE uid = $1")
                .bind(uid)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(address) = address else { continue }; // deleted meanwhile
            if let Some(obj) = data.as_object_mut() {
                obj.remove("uid");
                obj.insert("address".into(), Value::String(address));
            }
        }
        let timestamp = rfc3339(e.at_ms);
        let body = json!({ "type": e.kind, "timestamp": timestamp, "data": data }).to_string();
        for url in &cfg.webhook_urls {
            sqlx::query(
                "INSERT INTO webhook_deliveries (url, kind, body, created_at, attempts, next_at) \
                 VALUES ($1, $2, $3, $4, 0, $4)",
            )
            .bind(url)
            .bind(e.kind)
            .bind(&body)
            .bind(e.at_ms)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}

/// RFC 3339 UTC time of `ms` since the epoch, to the millisecond.
fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Posts due rows, each URL's in id order; sleeps until the next is due or new rows are stored.
async fn deliver_loop(db: Db, cfg: Arc<Config>, key: Vec<u8>, stored: Arc<Notify>) {
    let http = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for webhooks");
            return;
        }
    };
    let mut last_purge = 0;
    loop {
        let mut wait = Duration::from_secs(1);
        for url in &cfg.webhook_urls {
            match deliver_url(&db, &cfg, &http, &key, url).await {
                Ok(Some(next)) => wait = wait.min(next),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, url, "webhook delivery bookkeeping failed"),
            }
        }
        if now_ms() - last_purge > 3_600_000 {
            last_purge = now_ms();
            let old = now_ms() - KEEP_DELIVERED_MS;
            let purged = sqlx::query("DELETE FROM webhook_deliveries WHERE delivered_at < $1 OR failed_at < $1")
                .bind(old)
                .execute(&db.write)
                .await;
            if let Err(e) = purged {
                tracing::warn!(error = %e, "purging old webhook deliveries failed");
            }
        }
        tokio::select! {
            _ = stored.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Delivers `url`'s due rows in order until one fails or none is due. Returns how long until
/// its first pending row is due, if there is one.
async fn deliver_url(
    db: &Db,
    cfg: &Config,
    http: &reqwest::Client,
    key: &[u8],
    url: &str,
) -> Result<Option<Duration>, sqlx::Error> {
    loop {
        let row = sqlx::query(
            "SELECT id, body, created_at, attempts, next_at FROM webhook_deliveries \
             WHERE url = $1 AND delivered_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT 1",
        )
        .bind(url)
        .fetch_optional(&db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (id, body): (i64, String) = (row.try_get("id")?, row.try_get("body")?);
        let (created_at, attempts, next_at): (i64, i64, i64) =
            (row.try_get("created_at")?, row.try_get("attempts")?, row.try_get("next_at")?);
        let now = now_ms();
        if next_at > now {
            return Ok(Some(Duration::from_millis((next_at - now) as u64)));
        }
        // Claimed by this node, or by another one first (which then delivers it).
        let claimed = sqlx::query(
            "UPDATE webhook_deliveries SET next_at = $1 \
             WHERE id = $2 AND next_at = $3 AND delivered_at IS NULL AND failed_at IS NULL",
        )
        .bind(now + LEASE.as_millis() as i64)
        .bind(id)
        .bind(next_at)
        .execute(&db.write)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(Some(LEASE));
        }
        let msg_id = format!("msg_{id}");
        let timestamp = now / 1000;
        let answer = http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(key, &msg_id, timestamp, &body))
            .body(body)
            .send()
            .await;
        let error = match answer {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Some(if e.is_timeout() { "timed out".to_string() } else { "could not connect".to_string() }),
        };
        let m = crate::metrics::metrics();
        match error {
            None => {
                m.webhooks_delivered.inc();
                sqlx::query("UPDATE webhook_deliveries SET delivered_at = $1, attempts = $2 WHERE id = $3")
                    .bind(now_ms())
                    .bind(attempts + 1)
                    .bind(id)
                    .execute(&db.write)
                    .await?;
            }
            Some(error) => {
                m.webhooks_failed_attempts.inc();
                let give_up = now - created_at >= (cfg.webhook_give_up_secs as i64).saturating_mul(1000);
                let backoff = backoff_ms(attempts + 1, cfg.webhook_retry_max_secs);
                sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = $1, next_at = $2, last_error = $3, failed_at = $4 \
                     WHERE id = $5",
                )
                .bind(attempts + 1)
                .bind(now + backoff)
                .bind(&error)
                .bind(give_up.then_some(now))
                .bind(id)
                .execute(&db.write)
                .await?;
                if give_up {
                    tracing::warn!(url, id, error, "webhook given up");
                    continue;
                }
                return Ok(Some(Duration::from_millis(backoff as u64)));
            }
        }
    }
}

/// Wait before attempt `attempt + 1`: 1 s doubling, at most `max_secs`.
fn backoff_ms(attempt: i64, max_secs: u64) -> i64 {
    let doubled = 1000i64.saturating_mul(1i64 << attempt.clamp(1, 30).saturating_sub(1));
    doubled.min((max_secs as i64).saturating_mul(1000)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let key = crate::config::webhook_secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<i64> = (1..=6).map(|a| backoff_ms(a, 10)).collect();
        assert_eq!(waits, vec![1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff_ms(1000, 300), 300_000);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
    }
}
