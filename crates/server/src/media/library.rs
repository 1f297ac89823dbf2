//! A group's media library: finished uploads a group shares (`/v1/groups/{gid}/media`).
//!
//! **Rights** (the group's member flags, [`GroupPolicy`]): a member who may *send* adds one of
//! their own finished uploads; members who may *receive* list the library, read its files
//! (`Media::may_read` looks here) and fetch thumbnails; the member who added an entry, or a
//! group admin, deletes it. Someone who is not a member gets 404 for everything (the group's
//! existence does not leak), a member without the right 403.
//!
//! **Metadata.** When an entry is added, `chorus-probe` reads the stored file's container on a
//! blocking thread ([`ProbeReader`] turns ranged reads of the object store into `Read + Seek`):
//! type, duration, dimensions, codecs. A file it cannot read (not media, corrupt, truncated)
//! is kept as a plain file with the sniffed type and no duration. Images up to
//! [`THUMB_SOURCE_MAX`] bytes get a JPEG thumbnail of at most [`THUMB_SIDE`] pixels, stored
//! beside the file (`uploads/{id}/thumbnail`, deleted with it).
//!
//! **Quota.** The files of one library may hold `group_media_quota_bytes` in all; adding runs
//! one at a time so two racing adds cannot both pass it.
//!
//! **Live.** Each change is sent as a `group_media` frame to the members who may receive.
//! Deleting an entry removes it from the library only: the file stays its uploader's upload
//! (`DELETE /v1/uploads/{id}` deletes the bytes, and every entry of it).

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chorus_proto::flags::member;
use chorus_proto::ws::{MediaAction, MediaEntry, ServerFrame};
use chorus_proto::{ErrorCode, GroupId};
use futures_util::TryStreamExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{rows, store, Media, Upload};
use crate::bus::outbound;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::groups::GroupPolicy;
use crate::http::{AppJson, AppPath, AppQuery, AppState, AuthUser};

/// Largest side of a thumbnail, pixels.
const THUMB_SIDE: u32 = 320;
/// Images larger than this get no thumbnail (it is decoded in memory).
const THUMB_SOURCE_MAX: u64 = 32 << 20;
/// Bytes fetched per read of the store while probing (the probe makes a handful of small reads).
const READ_AHEAD: u64 = 256 << 10;
/// Entries per page, at most.
const PAGE_MAX: u32 = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/groups/{gid}/media", get(list).post(add))
        .route("/v1/groups/{gid}/media/{id}", get(one).delete(remove))
        .route("/v1/groups/{gid}/media/{id}/thumbnail", get(thumbnail))
}

fn thumb_path(id: &str) -> Path {
    Path::from(format!("uploads/{id}/thumbnail"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMedia {
    /// A finished upload of the caller's.
    upload: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    before: Option<String>,
    limit: Option<u32>,
}

/// One page of a library, newest first.
#[derive(Serialize)]
struct MediaPage {
    media: Vec<MediaEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<String>,
}

/// `POST /v1/groups/{gid}/media`: adds a finished upload of the caller's (members who may send).
async fn add(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<AddMedia>,
) -> ApiResult<(StatusCode, AppJson<MediaEntry>)> {
    Ok((StatusCode::CREATED, AppJson(s.media.library_add(u.uid.get(), gid, &req.upload).await?)))
}

/// `GET /v1/groups/{gid}/media?before=CURSOR&limit=N`: the library, newest first (members who
/// may receive).
async fn list(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<AppJson<MediaPage>> {
    let uid = u.uid.get();
    s.media.reader_policy(uid, gid).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, PAGE_MAX);
    let (created, id) = match crate::groups::cursor(q.before.as_deref())? {
        Some((c, id)) => (c, id.to_string()),
        None => (i64::MAX, String::new()),
    };
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE m.gid = $1 AND (m.created_at < $2 OR (m.created_at = $2 AND m.upload_id < $3)) \
         ORDER BY m.created_at DESC, m.upload_id DESC LIMIT $4"
    ))
    .bind(gid)
    .bind(created)
    .bind(if id.is_empty() { "\u{10FFFF}".to_string() } else { id })
    .bind(i64::from(limit) + 1)
    .fetch_all(&s.media.db.read)
    .await?;
    let mut media = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
    let before = if media.len() > limit as usize {
        media.truncate(limit as usize);
        media.last().map(|e| format!("{}.{}", e.created_ms, e.id))
    } else {
        None
    };
    Ok(AppJson(MediaPage { media, before }))
}

/// `GET /v1/groups/{gid}/media/{id}`: one entry (members who may receive).
async fn one(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, id)): AppPath<(i64, String)>,
) -> ApiResult<AppJson<MediaEntry>> {
    s.media.reader_policy(u.uid.get(), gid).await?;
    Ok(AppJson(s.media.entry(gid, &id).await?.ok_or_else(|| ApiError::not_found("no such entry"))?))
}

/// `DELETE /v1/groups/{gid}/media/{id}`: removes an entry (who added it, or a group admin).
async fn remove(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, id)): AppPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    s.media.library_delete(u.uid.get(), gid, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/groups/{gid}/media/{id}/thumbnail`: the entry's JPEG thumbnail (members who may
/// receive); 404 when it has none.
async fn thumbnail(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, id)): AppPath<(i64, String)>,
) -> ApiResult<Response> {
    s.media.reader_policy(u.uid.get(), gid).await?;
    let entry = s.media.entry(gid, &id).await?.ok_or_else(|| ApiError::not_found("no such entry"))?;
    if entry.thumbnail.is_none() {
        return Err(ApiError::not_found("this entry has no thumbnail"));
    }
    let bytes = s
        .media
        .store
        .get_small(&thumb_path(&entry.id))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("this entry has no thumbnail"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}

const SELECT: &str = "SELECT m.gid, m.upload_id, m.type, m.duration_ms, m.width, m.height, m.video_codec, \
                      m.audio_codec, m.thumbnail, m.created_at, u.name, u.size, a.address \
                      FROM group_media m JOIN uploads u ON u.id = m.upload_id LEFT JOIN users a ON a.uid = m.uid";

fn entry_from_row(r: &AnyRow) -> Result<MediaEntry, sqlx::Error> {
    let id: String = r.try_get("upload_id")?;
    let gid: i64 = r.try_get("gid")?;
    let opt_u32 = |c: &str| -> Result<Option<u32>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(c)?.and_then(|v| u32::try_from(v).ok()))
    };
    let thumb = r.try_get::<i64, _>("thumbnail")? != 0;
    Ok(MediaEntry {
        thumbnail: thumb.then(|| format!("/v1/groups/{gid}/media/{id}/thumbnail")),
        gid: GroupId(gid),
        name: r.try_get("name")?,
        size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
        mime: r.try_get("type")?,
        duration_ms: r.try_get::<Option<i64>, _>("duration_ms")?.and_then(|v| u64::try_from(v).ok()),
        width: opt_u32("width")?,
        height: opt_u32("height")?,
        video_codec: r.try_get("video_codec")?,
        audio_codec: r.try_get("audio_codec")?,
        uploader: r.try_get("address")?,
        created_ms: r.try_get("created_at")?,
        id,
    })
}

/// What the probe found, as stored.
struct Probed {
    mime: String,
    duration_ms: Option<u64>,
    width: Option<u32>,
    height: Option<u32>,
    video_codec: Option<String>,
    audio_codec: Option<String>,
    thumbnail: Option<Vec<u8>>,
}

impl Media {
    /// The group's policy if `uid` is a member; 404 otherwise (the group's existence does not
    /// leak).
    async fn member_policy(&self, uid: i64, gid: i64) -> ApiResult<Arc<GroupPolicy>> {
        match self.groups.policy(gid).await? {
            Some(p) if p.members.contains_key(&uid) => Ok(p),
            _ => Err(ApiError::not_found("no such group")),
        }
    }

    /// The policy of a group `uid` may read the library of (a member who may receive).
    async fn reader_policy(&self, uid: i64, gid: i64) -> ApiResult<Arc<GroupPolicy>> {
        let p = self.member_policy(uid, gid).await?;
        if !p.can_receive(uid) {
            return Err(ApiError::forbidden("only members who may receive see the group's media"));
        }
        Ok(p)
    }

    /// One entry, whoever asks.
    async fn entry(&self, gid: i64, id: &str) -> ApiResult<Option<MediaEntry>> {
        let row = sqlx::query(&format!("{SELECT} WHERE m.gid = $1 AND m.upload_id = $2"))
            .bind(gid)
            .bind(id)
            .fetch_optional(&self.db.write)
            .await?;
        Ok(row.as_ref().map(entry_from_row).transpose()?)
    }

    /// Adds `uid`'s finished upload `upload` to group `gid`'s library.
    pub async fn library_add(&self, uid: i64, gid: i64, upload: &str) -> ApiResult<MediaEntry> {
        let policy = self.member_policy(uid, gid).await?;
        if !policy.can_send(uid) {
            return Err(ApiError::forbidden("only members who may send add to the group's media"));
        }
        let up = self.finished_upload(uid, upload).await?;
        if self.entry(gid, &up.id).await?.is_some() {
            return Err(ApiError::new(ErrorCode::Conflict, "this file is already in the group's media"));
        }
        let probed = self.probe(&up).await?;
        let _one_at_a_time = self.library.lock().await;
        let used: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(u.size), 0) AS BIGINT) FROM group_media m JOIN uploads u ON u.id = m.upload_id \
             WHERE m.gid = $1",
        )
        .bind(gid)
        .fetch_one(&self.db.write)
        .await?;
        let used = u64::try_from(used).unwrap_or(0);
        let quota = self.cfg.group_media_quota_bytes;
        if used.saturating_add(up.size) > quota {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this file ({} bytes) would pass the group's media quota of {quota} bytes ({used} bytes used)",
                    up.size
                ),
            ));
        }
        let has_thumb = match &probed.thumbnail {
            Some(jpeg) => match self.store.put_small(&thumb_path(&up.id), Bytes::from(jpeg.clone())).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(upload = %up.id, error = %format!("{e:#}"), "thumbnail not stored");
                    false
                }
            },
            None => false,
        };
        let big = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
        let inserted = sqlx::query(
            "INSERT INTO group_media (gid, upload_id, uid, type, duration_ms, width, height, video_codec, audio_codec, \
             thumbnail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(gid)
        .bind(&up.id)
        .bind(uid)
        .bind(&probed.mime)
        .bind(big(probed.duration_ms))
        .bind(probed.width.map(i64::from))
        .bind(probed.height.map(i64::from))
        .bind(&probed.video_codec)
        .bind(&probed.audio_codec)
        .bind(i64::from(has_thumb))
        .bind(now_ms())
        .execute(&self.db.write)
        .await;
        if let Err(e) = inserted {
            // A racing add of the same file, or the upload deleted meanwhile.
            return Err(match self.entry(gid, &up.id).await? {
                Some(_) => ApiError::new(ErrorCode::Conflict, "this file is already in the group's media"),
                None => e.into(),
            });
        }
        let entry = self.entry(gid, &up.id).await?.ok_or_else(|| ApiError::not_found("no such upload"))?;
        self.announce(gid, MediaAction::Added, &entry.id, Some(entry.clone())).await;
        Ok(entry)
    }

    /// Removes entry `id` from group `gid`'s library: who added it, or a group admin.
    pub async fn library_delete(&self, uid: i64, gid: i64, id: &str) -> ApiResult<()> {
        let policy = self.member_policy(uid, gid).await?;
        let adder: Option<i64> = sqlx::query_scalar("SELECT uid FROM group_media WHERE gid = $1 AND upload_id = $2")
            .bind(gid)
            .bind(id)
            .fetch_optional(&self.db.write)
            .await?;
        let Some(adder) = adder else { return Err(ApiError::not_found("no such entry")) };
        let admin = policy.members.get(&uid).is_some_and(|f| f & member::ADMIN != 0);
        if adder != uid && !admin {
            return Err(ApiError::forbidden("only who added a file, or a group admin, deletes it"));
        }
        sqlx::query("DELETE FROM group_media WHERE gid = $1 AND upload_id = $2")
            .bind(gid)
            .bind(id)
            .execute(&self.db.write)
            .await?;
        self.announce(gid, MediaAction::Deleted, id, None).await;
        Ok(())
    }

    /// Sends a `group_media` frame to the members who may receive (best effort).
    async fn announce(&self, gid: i64, action: MediaAction, id: &str, entry: Option<MediaEntry>) {
        let frame = ServerFrame::GroupMedia { gid: GroupId(gid), action, id: id.to_string(), entry };
        match self.groups.policy(gid).await {
            Ok(Some(p)) => self.bus.deliver(&mut p.receivers(), outbound(&frame, None, 0)),
            Ok(None) => {}
            Err(e) => tracing::warn!(gid, error = %e.message, "group media event not sent"),
        }
    }

    /// The caller's own finished upload; 404 for anyone else's or an unknown id, 409 while
    /// unfinished.
    pub async fn finished_upload(&self, uid: i64, id: &str) -> ApiResult<Upload> {
        let up = self.upload(uid, id).await?;
        if up.completed_at.is_none() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the upload is not finished ({} of {} bytes); finish it first", up.received, up.size),
            ));
        }
        Ok(up)
    }

    /// Reads the file's container on a blocking thread. Never fails for the file's content: a
    /// file the probe cannot read is a plain file with its sniffed type.
    async fn probe(&self, up: &Upload) -> ApiResult<Probed> {
        let parts = rows::parts(&self.db, &up.id).await?;
        let reader = ProbeReader::new(&self.store, &up.id, parts, up.size);
        let sniffed = up.mime.clone().unwrap_or_else(|| "application/octet-stream".into());
        let size = up.size;
        let id = up.id.clone();
        let plain = Probed {
            mime: sniffed.clone(),
            duration_ms: None,
            width: None,
            height: None,
            video_codec: None,
            audio_codec: None,
            thumbnail: None,
        };
        let job = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let info = match chorus_probe::probe(&mut reader, size) {
                Ok(info) => info,
                Err(e) => {
                    tracing::info!(upload = %id, error = %e, "not probed: a plain file");
                    return plain;
                }
            };
            let thumbnail = (info.kind == chorus_probe::Kind::Image && size <= THUMB_SOURCE_MAX)
                .then(|| {
                    let mut all = Vec::with_capacity(size as usize);
                    reader.seek(SeekFrom::Start(0)).ok()?;
                    reader.read_to_end(&mut all).ok()?;
                    match chorus_probe::thumbnail(&all, THUMB_SIDE) {
                        Ok((jpeg, _)) => Some(jpeg),
                        Err(e) => {
                            tracing::info!(upload = %id, error = %e, "no thumbnail");
                            None
                        }
                    }
                })
                .flatten();
            Probed {
                mime: info.mime.to_string(),
                duration_ms: info.duration_ms,
                width: info.width,
                height: info.height,
                video_codec: info.video_codec,
                audio_codec: info.audio_codec,
                thumbnail,
            }
        });
        Ok(job.await.unwrap_or_else(|e| {
            tracing::warn!(upload = %up.id, error = %e, "probe failed: a plain file");
            Probed {
                mime: sniffed,
                duration_ms: None,
                width: None,
                height: None,
                video_codec: None,
                audio_codec: None,
                thumbnail: None,
            }
        }))
    }

    /// Whether `uid` may read file `id` through a group library (a member who may receive of a
    /// group whose library holds it).
    pub(super) async fn readable_in_library(&self, uid: i64, id: &str) -> ApiResult<bool> {
        // The read pool first (playback's many range requests must not queue behind SQLite's
        // one writer), then the write pool: an entry added a moment ago must count, and the
        // read pool may lag by a WAL snapshot.
        for pool in [&self.db.read, &self.db.write] {
            let gids: Vec<i64> =
                sqlx::query_scalar("SELECT gid FROM group_media WHERE upload_id = $1").bind(id).fetch_all(pool).await?;
            for gid in gids {
                if self.groups.policy(gid).await?.is_some_and(|p| p.can_receive(uid)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// `Read + Seek` over a stored file, for the probe on a blocking thread: each read that misses
/// its buffer fetches [`READ_AHEAD`] bytes by a ranged read of the store (run on the runtime
/// with `block_on`: this thread is a blocking one).
struct ProbeReader {
    store: store::Reader,
    size: u64,
    pos: u64,
    buf: Bytes,
    buf_start: u64,
    rt: tokio::runtime::Handle,
}

impl ProbeReader {
    fn new(s: &store::Store, id: &str, parts: Vec<(u64, u64)>, size: u64) -> ProbeReader {
        ProbeReader {
            store: s.reader(id, parts),
            size,
            pos: 0,
            buf: Bytes::new(),
            buf_start: 0,
            rt: tokio::runtime::Handle::current(),
        }
    }
}

impl Read for ProbeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let want = (out.len() as u64).max(READ_AHEAD);
            let range = self.pos..self.size.min(self.pos + want);
            let stream = self.store.read(range);
            let chunks: Vec<Bytes> = self.rt.block_on(stream.try_collect())?;
            self.buf = Bytes::from(chunks.concat());
            self.buf_start = self.pos;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ProbeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let next = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = next.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
