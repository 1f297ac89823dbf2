//! A finished recording file into the group's media library: stored like an upload by the
//! admin who started the recording (so the upload limits and the library quota apply), probed
//! for duration and dimensions by the library, announced to the group (`group_media`).

use std::path::Path;

use bytes::Bytes;
use chorus_proto::ws::MediaEntry;
use futures_util::stream;
use tokio::io::AsyncReadExt;

use super::writer::FileDone;
use crate::error::{ApiError, ApiResult};
use crate::media::{AppendError, Media};

/// Bytes read from the file per piece of the upload body.
const PIECE: usize = 1 << 20;

/// Publishes one file as `uid`'s into group `gid`'s media library; the local file is removed
/// once stored (and kept, with a warning, when that fails).
pub async fn publish(media: &Media, uid: i64, gid: i64, f: &FileDone) -> ApiResult<MediaEntry> {
    let r = store(media, uid, gid, &f.path, &f.name).await;
    match &r {
        Ok(e) => {
            tracing::info!(gid, file = %f.name, id = %e.id, duration_ms = f.summary.duration_ms, "recording published");
            let _ = tokio::fs::remove_file(&f.path).await;
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
