//! Uploads and files: resumable uploads (tus 1.0), their storage, and playback with byte ranges.
//!
//! # The life of a file
//!
//! 1. **Create.** A client announces a file with its length (`POST /v1/uploads`, tus
//!    *creation*; or Mesibo's `op=upload`, one multipart request). [`Media::create`] checks the
//!    limits *before* a byte is stored: the size against `max_upload_bytes` (413 `too_large`),
//!    the user's declared bytes against `upload_quota_bytes` and their unfinished uploads
//!    against `max_unfinished_uploads` (403 `forbidden`). Creations run one at a time (one lock:
//!    one server process owns the store), so two racing requests cannot both pass a quota.
//!    The row (`uploads`, see `rows`) gets a random 128-bit id: knowing an id is not a right
//!    to anything, but guessing one is hopeless too.
//! 2. **Append.** Each `PATCH` streams its body into the store ([`Media::append`]). Bytes are
//!    never gathered in memory: the body is copied part by part into an object-store multipart
//!    upload, so a request holds at most a few chunks of [`store::CHUNK`] bytes.
//! 3. **Complete.** When the stored bytes reach the declared length the row is completed and
//!    the upload becomes a *file*: `GET /v1/files/{id}` and its `content` (see `serve`).
//! 4. **Expire.** An unfinished upload untouched for `upload_expiry_secs` is deleted, rows and
//!    bytes, by the sweep (`sweep`); until then a stale one already answers 404. The same sweep
//!    deletes bytes whose row is gone (a deleted user's uploads: the database cascades, the
//!    store is cleaned here).
//!
//! # Why parts: exact resume on an immutable store
//!
//! `object_store` objects are immutable: nothing can be appended to one. So an upload is kept
//! as **parts**, one object per append request, `uploads/{id}/{start:020}` holding bytes
//! `[start, start + len)`, listed in `upload_parts`. Each part is written through the store's
//! multipart upload (on disk: a staging file renamed at the end; on S3: a multipart upload of
//! 5 MiB pieces), which is only *completed* after the request body ended, so a part is either
//! wholly there or not there at all. When a connection is cut in the middle of a `PATCH`, the
//! part is completed with exactly the bytes that arrived and the offset advances by that many:
//! the client's `HEAD` then reports the true offset and the upload resumes there, with nothing
//! lost and nothing counted twice. A part is recorded in `upload_parts` (and the offset
//! advanced) only after it is complete in the store (on local disk, synced), so the offset
//! never runs ahead of the bytes. (A part whose `Upload-Checksum` does not match, or that
//! would pass the declared length, is aborted: none of that request is kept.)
//!
//! Parts are not joined when the upload completes: that would copy every byte once more. A
//! read (`serve`) maps the requested range onto the parts it overlaps and streams ranged reads
//! of each in turn, so a file in 60 parts plays exactly like a file in one. On local disk the
//! ranges are read straight from the part files with `pread`, 256 KiB per trip to the blocking
//! pool (object_store's local reads take 8 KiB per trip, which cost 4x in throughput).
//!
//! One request at a time writes to an upload (a lock per upload, `Locks`): a client that
//! retries while its old connection is still being wound up waits for it (a few seconds at
//! most) and then sees the offset that connection left, or gets 409.
//!
//! # Who may read
//!
//! [`Media::may_read`] is the one check: the uploader; the members who may receive of a group
//! whose media library holds the file (`library`); the members of a conversation the file was
//! sent in (`chat`). Everyone else gets 404, the same answer as for an id that does not exist,
//! so a file's existence does not leak. A
//! `<video src>` cannot send a header, so a reader may ask for a **signed URL** (`sign`): the
//! content path with an expiry and an HMAC-SHA256 over the id and the expiry, under a key kept
//! in `DATA/media-key`; it works without a token until it expires.
//!
//! # Files
//!
//! - `store`: the object store (local disk under `DATA/media`, or S3) and the part writer.
//! - `rows`: the `uploads` and `upload_parts` tables.
//! - `tus`: the tus 1.0 HTTP endpoints (`/v1/uploads`).
//! - `serve`: file metadata, content with ranges, signed URLs (`/v1/files`).
//! - `form`: Mesibo's `op=upload` (one multipart request, streamed like a tus upload).
//! - `sign`: the URL key, signing and checking.
//! - `name`: file name sanitising.
//! - `sweep`: deletes expired unfinished uploads, and bytes left without a row.
//! - `library`: group media libraries (`/v1/groups/{gid}/media`), probed metadata, thumbnails.
//! - `chat`: files sent in messages, readable by the conversation's members.

mod chat;
pub mod form;
mod library;
mod name;
mod rows;
mod serve;
mod sign;
mod store;
mod sweep;
mod tus;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use futures_util::Stream;

pub use form::mesibo_upload;
pub use rows::Upload;
pub use store::Checksum;

use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;

/// How long a request waits for another request writing to the same upload to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The routes of uploads and files (all under `/v1`).
pub fn routes() -> Router<AppState> {
    tus::routes().merge(serve::routes()).merge(library::routes())
}

/// The media service: uploads, their bytes and reading them back.
pub struct Media {
    db: Db,
    cfg: Arc<Config>,
    store: store::Store,
    key: sign::UrlKey,
    locks: Locks,
    creating: tokio::sync::Mutex<()>,
    /// Group policies: who may read a file in a library or a group conversation.
    groups: Arc<crate::groups::Groups>,
    /// Live `group_media` frames.
    bus: Arc<dyn crate::bus::FanOut>,
    /// Library adds run one at a time (the group quota).
    library: tokio::sync::Mutex<()>,
    /// `upload.ready` events.
    hooks: Arc<crate::webhooks::Webhooks>,
    /// Finished files' rows and parts (see [`Media::file`]).
    files: std::sync::Mutex<hashlink::LruCache<String, Arc<File>>>,
}

/// A finished upload with where its bytes are: what serving it needs.
#[derive(Debug)]
pub struct File {
    pub upload: Upload,
    /// `(start, len)` of each stored part, in order; they cover the whole file.
    pub parts: Vec<(u64, u64)>,
    /// When it was read from the database.
    read_at: std::time::Instant,
}

/// How many finished files [`Media::file`] keeps in memory.
const FILE_CACHE: usize = 4096;
/// How long a kept file is trusted before it is read again. Deletions through this server take
/// it out at once; this bounds how long one made elsewhere (another node on the same database,
/// an account removed with its uploads) can go unnoticed.
const FILE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Why an append stored nothing (besides the errors every request may get).
#[derive(Debug)]
pub enum AppendError {
    /// A documented refusal (404, 409, 413, …).
    Api(ApiError),
    /// The body's `Upload-Checksum` did not match: nothing of it was kept (tus answers 460).
    ChecksumMismatch,
}

impl From<ApiError> for AppendError {
    fn from(e: ApiError) -> Self {
        AppendError::Api(e)
    }
}

impl Media {
    /// Opens the store and the URL key and starts the sweep of expired uploads.
    pub fn start(
        db: Db,
        cfg: Arc<Config>,
        groups: Arc<crate::groups::Groups>,
        bus: Arc<dyn crate::bus::FanOut>,
        hooks: Arc<crate::webhooks::Webhooks>,
    ) -> anyhow::Result<Arc<Media>> {
        let store = store::Store::open(&cfg)?;
        let key = sign::UrlKey::load(&cfg.data)?;
        let media = Arc::new(Media {
            db,
            cfg,
            store,
            key,
            locks: Locks::default(),
            creating: tokio::sync::Mutex::new(()),
            groups,
            bus,
            library: tokio::sync::Mutex::new(()),
            hooks,
            files: std::sync::Mutex::new(hashlink::LruCache::new(FILE_CACHE)),
        });
        tokio::spawn(sweep::run(Arc::downgrade(&media)));
        Ok(media)
    }

    /// Creates an upload of `size` bytes for `uid`, or refuses it (limits) before anything is
    /// stored.
    pub async fn create(&self, uid: i64, size: u64, name: &str) -> ApiResult<Upload> {
        let cfg = &self.cfg;
        if size > cfg.max_upload_bytes {
            return Err(ApiError::new(
                chorus_proto::ErrorCode::TooLarge,
                format!("the file is {size} bytes; this server takes files of at most {} bytes", cfg.max_upload_bytes),
            ));
        }
        let _one_at_a_time = self.creating.lock().await;
        let now = now_ms();
        let usage = rows::usage(&self.db, uid, now).await?;
        if usage.unfinished >= cfg.max_unfinished_uploads {
            return Err(ApiError::forbidden(format!(
                "you have {} unfinished uploads, the most allowed; finish or delete one first",
                usage.unfinished
            )));
        }
        if usage.bytes.saturating_add(size) > cfg.upload_quota_bytes {
            return Err(ApiError::forbidden(format!(
                "this upload would pass your storage quota of {} bytes ({} bytes used)",
                cfg.upload_quota_bytes, usage.bytes
            )));
        }
        let up = Upload {
            id: crate::auth_token::random_hex(16),
            uid,
            name: name::sanitise(name),
            size,
            received: 0,
            mime: None,
            created_at: now,
            updated_at: now,
            // An empty file is complete as soon as it is announced.
            expires_at: (size > 0).then(|| now + self.expiry_ms()),
            completed_at: (size == 0).then_some(now),
        };
        rows::insert(&self.db, &up).await?;
        if up.completed_at.is_some() {
            self.completed(&up).await;
        }
        Ok(up)
    }

    /// Sends a webhook event (see `crate::webhooks`); nothing when none is configured.
    pub fn emit_hook(&self, kind: &'static str, data: serde_json::Value) {
        if self.hooks.enabled() {
            self.hooks.emit(kind, data);
        }
    }

    /// An upload just became a file: counted, and announced to webhooks (`upload.ready`).
    pub(super) async fn completed(&self, up: &Upload) {
        crate::metrics::metrics().uploads_completed.inc();
        if !self.hooks.enabled() {
            return;
        }
        let address = match rows::address(&self.db, up.uid).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(id = %up.id, "upload.ready not sent: {e}");
                return;
            }
        };
        let data = serde_json::json!({
            "id": up.id,
            "address": address,
            "name": up.name,
            "size": up.size,
            "type": up.mime.as_deref().unwrap_or("application/octet-stream"),
        });
        self.hooks.emit("upload.ready", data);
    }

    fn expiry_ms(&self) -> i64 {
        i64::try_from(self.cfg.upload_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    /// The caller's own upload, finished or not; 404 for anyone else's, an unknown id or an
    /// expired one.
    pub async fn upload(&self, uid: i64, id: &str) -> ApiResult<Upload> {
        match rows::get(&self.db, id).await? {
            Some(up) if up.uid == uid && !up.expired(now_ms()) => Ok(up),
            _ => Err(ApiError::not_found("no such upload")),
        }
    }

    /// Appends `body` at `offset` to the caller's upload `id`: streams it into a new part and
    /// advances the offset by the bytes stored (all of them, or, when the body ends early, those
    /// that arrived). `content_length`, when the client declared it, is checked against the
    /// upload's length before a byte is read.
    pub async fn append<S, E>(
        &self,
        uid: i64,
        id: &str,
        offset: u64,
        content_length: Option<u64>,
        checksum: Option<Checksum>,
        body: S,
    ) -> Result<Upload, AppendError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let lock = self.locks.get(id);
        let _writing = tokio::time::timeout(LOCK_WAIT, lock.lock_owned()).await.map_err(|_| {
            ApiError::new(chorus_proto::ErrorCode::Conflict, "another request is writing to this upload; try again")
        })?;
        let up = self.upload(uid, id).await?;
        if offset != up.received {
            return Err(ApiError::new(
                chorus_proto::ErrorCode::Conflict,
                format!("Upload-Offset is {offset} but the upload holds {} bytes; resume from there", up.received),
            )
            .into());
        }
        let room = up.size - up.received;
        if content_length.is_some_and(|n| n > room) {
            return Err(ApiError::new(
                chorus_proto::ErrorCode::TooLarge,
                format!("the body would pass the upload's length of {} bytes", up.size),
            )
            .into());
        }
        let path = store::part_path(&up.id, offset);
        let idle = Duration::from_secs(self.cfg.upload_idle_secs);
        let written = self
            .store
            .write_part(&path, body, room, checksum, offset == 0, idle)
            .await
            .map_err(|e| ApiError::internal(format_args!("storing upload {}: {e:#}", up.id)))?;
        let mut up = up;
        crate::metrics::metrics().upload_bytes.inc_by(written.len);
        if written.len > 0 {
            let mime = (offset == 0).then(|| store::sniff(&written.head));
            let now = now_ms();
            match rows::add_part(&self.db, &up.id, offset, written.len, mime.as_deref(), now, now + self.expiry_ms())
                .await
            {
                Ok(Some(updated)) => up = updated,
                other => {
                    // The row went away meanwhile (deleted, swept) or the database failed: the
                    // part must not outlive it.
                    self.store.delete_part(&path).await;
                    other?;
                    return Err(ApiError::not_found("no such upload").into());
                }
            }
        }
        match written.end {
            store::End::Done => {
                if up.completed_at.is_some() {
                    self.completed(&up).await;
                }
                Ok(up)
            }
            store::End::Interrupted => Err(ApiError::bad_request(format!(
                "the request body ended early; the upload holds {} bytes: resume from there",
                up.received
            ))
            .into()),
            store::End::TooLong => Err(ApiError::new(
                chorus_proto::ErrorCode::TooLarge,
                format!("the body would pass the upload's length of {} bytes; nothing of it was kept", up.size),
            )
            .into()),
            store::End::ChecksumMismatch => Err(AppendError::ChecksumMismatch),
        }
    }

    /// Deletes the caller's upload (finished or not) with its bytes.
    pub async fn delete(&self, uid: i64, id: &str) -> ApiResult<()> {
        let up = self.upload(uid, id).await?;
        let lock = self.locks.get(id);
        let _writing = tokio::time::timeout(LOCK_WAIT, lock.lock_owned())
            .await
            .map_err(|_| ApiError::new(chorus_proto::ErrorCode::Conflict, "the upload is being written; try again"))?;
        self.remove(&up.id).await
    }

    /// Deletes an upload's row, then its bytes (a crash between the two leaves bytes no row
    /// points at, never a row without its bytes).
    async fn remove(&self, id: &str) -> ApiResult<()> {
        rows::delete(&self.db, id).await?;
        self.forget_file(id);
        self.bus.invalidate(crate::bus::Invalidation::File(id.to_string()));
        self.store.delete_upload(id).await;
        Ok(())
    }

    /// A finished upload `uid` may read; 404 otherwise (existence does not leak).
    pub async fn file_for(&self, uid: i64, id: &str) -> ApiResult<Arc<File>> {
        let f = self.file(id).await?;
        if !self.may_read(uid, &f.upload).await? {
            return Err(ApiError::not_found("no such file"));
        }
        Ok(f)
    }

    /// A finished upload and its parts, whoever asks (for signed URLs, already checked when
    /// signed). A finished upload never changes, so it is kept in memory (up to [`FILE_CACHE`]
    /// files, each for [`FILE_CACHE_TTL`]): playback's many range requests read no database.
    /// Read from the read pool, so they never queue behind SQLite's one writer.
    pub async fn file(&self, id: &str) -> ApiResult<Arc<File>> {
        let cached = self.files.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        if let Some(f) = cached.filter(|f| f.read_at.elapsed() < FILE_CACHE_TTL) {
            return Ok(f);
        }
        let found = match rows::get_from(&self.db.read, id).await? {
            Some(f) if f.completed_at.is_some() => Some(f),
            // Just completed, and not yet in the read pool's snapshot (or truly not a file).
            _ => rows::get(&self.db, id).await?,
        };
        let Some(upload) = found.filter(|up| up.completed_at.is_some()) else {
            return Err(ApiError::not_found("no such file"));
        };
        let covers = |parts: &[(u64, u64)]| parts.iter().map(|(_, len)| len).sum::<u64>() == upload.size;
        let mut parts = rows::parts_from(&self.db.read, &upload.id).await?;
        if !covers(&parts) {
            // The read pool is behind the writer that finished the upload.
            parts = rows::parts_from(&self.db.write, &upload.id).await?;
            if !covers(&parts) {
                return Err(ApiError::internal(format_args!(
                    "upload {id}: its parts do not cover its {} bytes",
                    upload.size
                )));
            }
        }
        let f = Arc::new(File { upload, parts, read_at: std::time::Instant::now() });
        self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), f.clone());
        Ok(f)
    }

    /// Drops every kept file (see [`Media::file`]): after a deletion that bypassed
    /// [`Media::delete`], such as an account's uploads removed with the account.
    pub fn forget_files(&self) {
        self.forget_kept_files();
        self.bus.invalidate(crate::bus::Invalidation::AllFiles);
    }

    /// Drops every kept file here (another node asked, in cluster mode).
    pub fn forget_kept_files(&self) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Drops the kept file `id` here (deleted, here or on another node).
    pub fn forget_file(&self, id: &str) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Whether `uid` may read `file`. The one place this is decided: the uploader; members who
    /// may receive of a group whose library holds it (`library`); the members of a conversation
    /// it was sent in (`chat`: both people of a 1:1, members who may receive of a group).
    pub async fn may_read(&self, uid: i64, file: &Upload) -> ApiResult<bool> {
        Ok(file.uid == uid
            || self.readable_in_library(uid, &file.id).await?
            || self.readable_in_chat(uid, &file.id).await?)
    }
}

/// One async lock per upload id, dropped when nobody holds or waits for it.
#[derive(Default)]
struct Locks(std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl Locks {
    fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(id.to_string(), Arc::downgrade(&lock));
        lock
    }
}
