//! Stream keys: per-group secrets that let a broadcaster (OBS Studio) publish over WHIP without
//! an account. Owns the `stream_keys` table. A key is shown once, at creation; only its SHA-256
//! is stored. Creating, listing and revoking need the group's CALL_CONTROL admin right.

use serde::Serialize;
use sqlx::Row;

use crate::auth_token::{hash, random_token};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::groups::{Actor, Groups};
use chorus_proto::flags::admin;
use chorus_proto::ErrorCode;

/// A stream key as listed (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct StreamKey {
    pub id: i64,
    pub gid: i64,
    pub label: String,
    pub created_at: i64,
    /// The key, only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The `stream_keys` table.
pub struct StreamKeys {
    db: Db,
    max_per_group: usize,
}

fn key_hash(key: &str) -> String {
    hash(&["stream-key", key])
}

impl StreamKeys {
    pub fn new(db: Db, max_per_group: usize) -> Self {
        StreamKeys { db, max_per_group }
    }

    /// Creates a key for `gid` (CALL_CONTROL). The answer is the only place the key appears.
    pub async fn create(&self, gid: i64, actor: Actor, label: &str) -> ApiResult<StreamKey> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 64 {
            return Err(ApiError::bad_request("label must be 1 to 64 characters"));
        }
        let mut tx = self.db.write.begin().await?;
        Groups::require_right(&mut tx, gid, actor, admin::CALL_CONTROL).await?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM stream_keys WHERE gid = $1").bind(gid).fetch_one(&mut *tx).await?;
        if count as usize >= self.max_per_group {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("a group has at most {} stream keys", self.max_per_group),
            ));
        }
        let key = format!("sk_{}", random_token(24));
        let now = crate::clock::now_ms();
        let by = if let Actor::User(u) = actor { Some(u) } else { None };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO stream_keys (gid, key_hash, label, created_by, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(gid)
        .bind(key_hash(&key))
        .bind(label)
        .bind(by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StreamKey { id, gid, label: label.to_string(), created_at: now, key: Some(key) })
    }

    /// The keys of `gid`, oldest first (CALL_CONTROL).
    pub async fn list(&self, gid: i64, actor: Actor) -> ApiResult<Vec<StreamKey>> {
        let mut tx = self.db.read.begin().await?;
        Groups::require_right(&mut tx, gid, actor, admin::CALL_CONTROL).await?;
        let rows = sqlx::query("SELECT id, label, created_at FROM stream_keys WHERE gid = $1 ORDER BY id")
            .bind(gid)
            .fetch_all(&mut *tx)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StreamKey {
                    id: r.try_get("id")?,
                    gid,
                    label: r.try_get("label")?,
                    created_at: r.try_get("created_at")?,
                    key: None,
                })
            })
            .collect()
    }

    /// Revokes key `id` of `gid` (CALL_CONTROL).
    pub async fn revoke(&self, gid: i64, actor: Actor, id: i64) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        Groups::require_right(&mut tx, gid, actor, admin::CALL_CONTROL).await?;
        let r = sqlx::query("DELETE FROM stream_keys WHERE gid = $1 AND id = $2")
            .bind(gid)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(ApiError::not_found("no such stream key in this group"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The key `key` names: its id, group and label, if it exists.
    pub async fn find(&self, key: &str) -> ApiResult<Option<(i64, i64, String)>> {
        let row = sqlx::query("SELECT id, gid, label FROM stream_keys WHERE key_hash = $1")
            .bind(key_hash(key))
            .fetch_optional(&self.db.read)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("id")?, r.try_get("gid")?, r.try_get("label")?)),
            None => None,
        })
    }
}
