//! A finished recording file into the group's media library: stored like an upload by the
//! admin who started the recording (so the upload limits and the library quota apply), probed
//! for duration and dimensions by the library, announced to the group (`group_media`).
//!
//! Each recording's directory holds a manifest (group, who started it) until all its files are
//! stored, so files a killed server left behind are published when it starts again ([`recover`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chorus_proto::ws::MediaEntry;
use futures_util::stream;
use tokio::io::AsyncReadExt;

use super::writer::FileDone;
use crate::error::{ApiError, ApiResult};
use crate::media::{AppendError, Media};

/// Bytes read from the file per piece of the upload body.
const PIECE: usize = 1 << 20;

/// The manifest file of a recording's directory.
pub const MANIFEST: &str = "recording.json";

/// Whose recording a directory holds.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub gid: i64,
    /// Who started it: the files become this user's uploads.
    pub uid: i64,
}

impl Manifest {
    /// Writes the manifest into `dir` (made if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Publishes `files` of the recording in `dir`; once every one is stored the directory goes.
pub async fn publish_dir(media: &Media, m: Manifest, dir: &Path, files: &[FileDone]) {
    let mut kept = false;
    for f in files {
        kept |= publish(media, m.uid, m.gid, f).await.is_err();
    }
    if !kept {
        let _ = tokio::fs::remove_file(dir.join(MANIFEST)).await;
        let _ = tokio::fs::remove_dir(dir).await; // only if nothing else is left
    }
}

/// Publishes the recordings a killed server left under `root` (their manifest is still there).
/// Runs once at start, before any call can record.
pub async fn recover(media: Arc<Media>, root: PathBuf) {
    let Ok(mut dirs) = tokio::fs::read_dir(&root).await else { return };
    while let Ok(Some(d)) = dirs.next_entry().await {
        let dir = d.path();
        let Ok(text) = tokio::fs::read(dir.join(MANIFEST)).await else { continue };
        let Ok(m) = serde_json::from_slice::<Manifest>(&text) else { continue };
        let mut files = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".webm") || name.ends_with(".mp4") {
                    files.push(FileDone { path: e.path(), name, summary: Default::default() });
                }
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        tracing::info!(gid = m.gid, files = files.len(), dir = %dir.display(), "publishing a recording left by a stop");
        publish_dir(&media, m, &dir, &files).await;
    }
}

/// Publishes one file as `uid`'s into group `gid`'s media library; the local file is removed
/// once stored (and kept, with a warning, when that fails).
pub async fn publish(media: &Media, uid: i64, gid: i64, f: &FileDone) -> ApiResult<MediaEntry> {
    let r = store(media, uid, gid, &f.path, &f.name).await;
    match &r {
        Ok(e) => {
            tracing::info!(gid, file = %f.name, id = %e.id, duration_ms = f.summary.duration_ms, "recording published");
            let _ = tokio::fs::remove_file(&f.path).await;
            media.emit_hook(
                "recording.ready",
                serde_json::json!({
                    "gid": gid, "id": e.id, "name": e.name, "size": e.size, "type": e.mime,
                    "duration_ms": e.duration_ms, "width": e.width, "height": e.height,
                }),
            );
        }
        Err(e) => {
            tracing::warn!(gid, path = %f.path.display(), error = %e.message, "recording not published; the file is kept");
        }
    }
    r
}

async fn store(media: &Media, uid: i64, gid: i64, path: &Path, name: &str) -> ApiResult<MediaEntry> {
    let file = tokio::fs::File::open(path).await.map_err(|e| ApiError::internal(format_args!("{e}")))?;
    let size = file.metadata().await.map_err(|e| ApiError::internal(format_args!("{e}")))?.len();
    let up = media.create(uid, size, name).await?;
    let body = Box::pin(stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; PIECE];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    }));
    let up = media.append(uid, &up.id, 0, Some(size), None, body).await.map_err(|e| match e {
        AppendError::Api(e) => e,
        AppendError::ChecksumMismatch => ApiError::internal("checksum mismatch without a checksum"),
    })?;
    if up.received != size {
        return Err(ApiError::internal(format_args!("stored {} of {size} bytes", up.received)));
    }
    media.library_add(uid, gid, &up.id).await
}
