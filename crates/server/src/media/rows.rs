//! The `uploads` and `upload_parts` tables (migration 1101).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::Db;
use crate::error::ApiResult;

/// One upload; once `completed_at` is set, a file.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Random id (32 hex digits).
    pub id: String,
    /// The uploader.
    pub uid: i64,
    /// Sanitised file name.
    pub name: String,
    /// Declared length, bytes.
    pub size: u64,
    /// Bytes stored (the tus offset).
    pub received: u64,
    /// Type sniffed from the first bytes (none before they arrive).
    pub mime: Option<String>,
    /// Created, ms since the epoch.
    pub created_at: i64,
    /// Last bytes stored, ms.
    pub updated_at: i64,
    /// When an unfinished upload is swept, ms.
    pub expires_at: Option<i64>,
    /// When the last byte was stored, ms.
    pub completed_at: Option<i64>,
}

impl Upload {
    /// Unfinished and past its expiry (the sweep has not deleted it yet).
    pub fn expired(&self, now: i64) -> bool {
        self.completed_at.is_none() && self.expires_at.is_some_and(|e| e <= now)
    }
}

const COLUMNS: &str = "id, uid, name, size, received, type, created_at, updated_at, expires_at, completed_at";

fn from_row(r: &AnyRow) -> Result<Upload, sqlx::Error> {
    Ok(Upload {
        id: r.try_get("id")?,
        uid: r.try_get("uid")?,
        name: r.try_get("name")?,
        size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
        received: u64::try_from(r.try_get::<i64, _>("received")?).unwrap_or(0),
        mime: r.try_get("type")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        expires_at: r.try_get("expires_at")?,
        completed_at: r.try_get("completed_at")?,
    })
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) async fn insert(db: &Db, u: &Upload) -> ApiResult<()> {
    sqlx::query(&format!("INSERT INTO uploads ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
        .bind(&u.id)
        .bind(u.uid)
        .bind(&u.name)
        .bind(i(u.size))
        .bind(i(u.received))
        .bind(&u.mime)
        .bind(u.created_at)
        .bind(u.updated_at)
        .bind(u.expires_at)
        .bind(u.completed_at)
        .execute(&db.write)
        .await?;
    Ok(())
}

pub(super) async fn get(db: &Db, id: &str) -> ApiResult<Option<Upload>> {
    // The write pool: a read right after an append must see it (SQLite's read pool may lag
    // by a WAL snapshot).
    get_from(&db.write, id).await
}

/// One upload from `pool` (the read pool where a slightly old answer does no harm).
pub(super) async fn get_from(pool: &sqlx::AnyPool, id: &str) -> ApiResult<Option<Upload>> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM uploads WHERE id = $1")).bind(id).fetch_optional(pool).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// What a user's uploads hold: declared bytes of all that count, and how many are unfinished.
/// Expired uploads (not yet swept) count for neither.
pub(super) struct Usage {
    pub bytes: u64,
    pub unfinished: u64,
}

pub(super) async fn usage(db: &Db, uid: i64, now: i64) -> ApiResult<Usage> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes,
                CAST(COALESCE(SUM(CASE WHEN completed_at IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS unfinished
         FROM uploads WHERE uid = $1 AND (completed_at IS NOT NULL OR expires_at > $2)",
    )
    .bind(uid)
    .bind(now)
    .fetch_one(&db.write)
    .await?;
    let bytes: i64 = row.try_get("bytes")?;
    let unfinished: i64 = row.try_get("unfinished")?;
    Ok(Usage { bytes: u64::try_from(bytes).unwrap_or(0), unfinished: u64::try_from(unfinished).unwrap_or(0) })
}

/// Records a stored part `[start, start + len)` and advances the offset, in one transaction,
/// only if the upload still exists and its offset is still `start`. Returns the updated row,
/// or `None` when it does not apply (the caller then deletes the part's object).
pub(super) async fn add_part(
    db: &Db,
    id: &str,
    start: u64,
    len: u64,
    mime: Option<&str>,
    now: i64,
    expires_at: i64,
) -> ApiResult<Option<Upload>> {
    let mut tx = db.write.begin().await?;
    let done = sqlx::query(
        "UPDATE uploads SET received = received + $3, updated_at = $4,
             type = COALESCE(type, $5),
             completed_at = CASE WHEN received + $3 = size THEN $4 ELSE NULL END,
             expires_at = CASE WHEN received + $3 = size THEN NULL ELSE $6 END
         WHERE id = $1 AND received = $2 AND received + $3 <= size",
    )
    .bind(id)
    .bind(i(start))
    .bind(i(len))
    .bind(now)
    .bind(mime)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    sqlx::query("INSERT INTO upload_parts (upload_id, start, len) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(i(start))
        .bind(i(len))
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM uploads WHERE id = $1")).bind(id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(from_row(&row)?))
}

/// Completes an upload whose length was an upper bound (Mesibo's one-request upload) at the
/// `received` bytes it holds. False if it changed meanwhile.
pub(super) async fn finish_at(db: &Db, id: &str, received: u64, now: i64) -> ApiResult<bool> {
    let done = sqlx::query(
        "UPDATE uploads SET size = $2, completed_at = $3, expires_at = NULL, updated_at = $3
         WHERE id = $1 AND received = $2",
    )
    .bind(id)
    .bind(i(received))
    .bind(now)
    .execute(&db.write)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The parts of an upload, `(start, len)` in order.
pub(super) async fn parts(db: &Db, id: &str) -> ApiResult<Vec<(u64, u64)>> {
    parts_from(&db.read, id).await
}

/// An upload's parts from `pool` (see [`parts`]).
pub(super) async fn parts_from(pool: &sqlx::AnyPool, id: &str) -> ApiResult<Vec<(u64, u64)>> {
    let rows = sqlx::query("SELECT start, len FROM upload_parts WHERE upload_id = $1 ORDER BY start")
        .bind(id)
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (s, l): (i64, i64) = (r.try_get("start")?, r.try_get("len")?);
        out.push((u64::try_from(s).unwrap_or(0), u64::try_from(l).unwrap_or(0)));
    }
    Ok(out)
}

/// Deletes an upload's row (its parts' rows cascade).
pub(super) async fn delete(db: &Db, id: &str) -> ApiResult<()> {
    sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&db.write).await?;
    Ok(())
}

/// Up to `limit` unfinished uploads past their expiry.
pub(super) async fn expired(db: &Db, now: i64, limit: i64) -> ApiResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT id FROM uploads WHERE completed_at IS NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&db.write)
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>().map_err(Into::into)
}

/// Which of `ids` have a row (read from the write pool: a row just made must be seen).
pub(super) async fn existing(db: &Db, ids: &[String]) -> ApiResult<std::collections::HashSet<String>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!("SELECT id FROM uploads WHERE id IN ({})", marks.join(", "));
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id);
    }
    let rows = q.fetch_all(&db.write).await?;
    rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>().map_err(Into::into)
}

/// The address of a user (for a file's `uploader`), if the user still exists.
pub(super) async fn address(db: &Db, uid: i64) -> ApiResult<Option<String>> {
    Ok(sqlx::query_scalar("SELECT address FROM users WHERE uid = $1").bind(uid).fetch_optional(&db.read).await?)
}
