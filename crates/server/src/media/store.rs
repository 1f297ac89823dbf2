//! The object store behind uploads, and the two things done with it: writing one part from a
//! request body (memory bounded, all or exactly what arrived) and reading a byte range of a
//! file across its parts.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use futures_util::Stream;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use sha2::Digest;

use crate::config::Config;

/// Bytes gathered before one piece of a part goes to the store (S3's smallest multipart piece
/// is 5 MiB). With [`IN_FLIGHT`] pieces on their way, one request holds at most about
/// `CHUNK * (IN_FLIGHT + 1)` bytes.
pub(super) const CHUNK: usize = 5 * 1024 * 1024;
const IN_FLIGHT: usize = 2;

/// Bytes a read from the local disk takes per trip to the blocking pool. object_store's local
/// store reads 8 KiB per trip, which made a 1 MiB range 128 thread hand-offs and range reads
/// 0.22x nginx's throughput (bench/RESULTS.md, "Media").
const LOCAL_READ: u64 = 256 * 1024;

/// Bytes of the start of a file kept to sniff its type.
const SNIFF_BYTES: usize = 8192;

/// The configured object store.
pub(super) struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The directory of a local store: a completed part is synced to disk there before its row
    /// says it is stored (object_store's local store does not sync).
    local_root: Option<std::path::PathBuf>,
}

/// An expected `Upload-Checksum` of one request body.
#[derive(Debug, Clone)]
pub enum Checksum {
    /// SHA-1 digest.
    Sha1(Vec<u8>),
    /// SHA-256 digest.
    Sha256(Vec<u8>),
}

impl Checksum {
    /// Parses `Upload-Checksum: <algorithm> <base64 digest>`; `None` if malformed or the
    /// algorithm is not `sha1` or `sha256`.
    pub fn parse(header: &str) -> Option<Checksum> {
        use base64::Engine as _;
        let (alg, b64) = header.trim().split_once(' ')?;
        let digest = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        match alg {
            "sha1" if digest.len() == 20 => Some(Checksum::Sha1(digest)),
            "sha256" if digest.len() == 32 => Some(Checksum::Sha256(digest)),
            _ => None,
        }
    }
}

enum Hasher {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

impl Hasher {
    fn new(c: Checksum) -> Hasher {
        match c {
            Checksum::Sha1(d) => Hasher::Sha1(sha1::Sha1::new(), d),
            Checksum::Sha256(d) => Hasher::Sha256(sha2::Sha256::new(), d),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha1(h, _) => h.update(b),
            Hasher::Sha256(h, _) => h.update(b),
        }
    }
    fn matches(self) -> bool {
        match self {
            Hasher::Sha1(h, d) => h.finalize().as_slice() == d.as_slice(),
            Hasher::Sha256(h, d) => h.finalize().as_slice() == d.as_slice(),
        }
    }
}

/// How writing a part ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The body ended normally: all of it is stored.
    Done,
    /// The body broke off (connection cut, idle too long): what arrived is stored.
    Interrupted,
    /// The body went past the room left: nothing of it is stored.
    TooLong,
    /// The checksum did not match (or could not be checked: the body broke off): nothing stored.
    ChecksumMismatch,
}

/// A written part.
pub(super) struct Written {
    /// Bytes stored (0: no object was made).
    pub len: u64,
    /// The first bytes, when asked for (to sniff the type).
    pub head: Vec<u8>,
    /// How the body ended.
    pub end: End,
}

/// The object holding bytes from `start` of upload `id`. Zero-padded so that a listing is in
/// file order.
pub(super) fn part_path(id: &str, start: u64) -> Path {
    Path::from(format!("uploads/{id}/{start:020}"))
}

/// The type of a file from its first bytes: a known signature, else UTF-8 text, else bytes.
pub(super) fn sniff(head: &[u8]) -> String {
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_string();
    }
    // A cut in the middle of a character at the end of the sample is not a reason to say "binary".
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() >= SNIFF_BYTES,
    };
    if text && !head.is_empty() && !head.contains(&0) {
        "text/plain; charset=utf-8".into()
    } else {
        "application/octet-stream".into()
    }
}

impl Store {
    /// Local disk under `data/media` (made private), or the S3 bucket of the `s3_*` settings.
    pub(super) fn open(cfg: &Config) -> anyhow::Result<Store> {
        let mut local_root = None;
        let inner: Arc<dyn ObjectStore> = match cfg.media_store.as_str() {
            "s3" => {
                // AWS_* variables (and instance credentials) apply; the settings override them.
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(cfg.s3_bucket.clone().unwrap_or_default())
                    .with_region(&cfg.s3_region)
                    .with_allow_http(cfg.s3_allow_http);
                if let Some(e) = &cfg.s3_endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = &cfg.s3_access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = &cfg.s3_secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                Arc::new(b.build().context("media_store = s3: the s3_* settings do not make a usable bucket")?)
            }
            _ => {
                let dir = cfg.data.join("media");
                crate::private_dir(&dir)?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("media directory {}", dir.display()))?
                    .with_automatic_cleanup(true);
                local_root = Some(dir);
                Arc::new(fs)
            }
        };
        Ok(Store { inner, local_root })
    }

    /// Streams `body` into a new object at `path`, taking at most `room` bytes. The object is
    /// made only when at least one byte is to be kept: with all of the body when it ended
    /// normally, with exactly the bytes that arrived when it broke off (an idle gap of `idle`
    /// counts as broken off); with none when the body is longer than `room` or `checksum`
    /// does not match. Errors are the store's.
    pub(super) async fn write_part<S, E>(
        &self,
        path: &Path,
        mut body: S,
        room: u64,
        checksum: Option<Checksum>,
        sniff: bool,
        idle: Duration,
    ) -> anyhow::Result<Written>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut hasher = checksum.map(Hasher::new);
        let mut head = Vec::new();
        let mut len: u64 = 0;
        let mut writer: Option<WriteMultipart> = None;
        let end = loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => break End::Interrupted,
                Ok(None) => break End::Done,
                Ok(Some(Err(e))) => {
                    tracing::debug!(path = %path, error = %e, "upload body broke off");
                    break End::Interrupted;
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if chunk.is_empty() {
                continue;
            }
            if len + chunk.len() as u64 > room {
                break End::TooLong;
            }
            if let Some(h) = &mut hasher {
                h.update(&chunk);
            }
            if sniff && head.len() < SNIFF_BYTES {
                let take = chunk.len().min(SNIFF_BYTES - head.len());
                head.extend_from_slice(&chunk[..take]);
            }
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(WriteMultipart::new_with_chunk_size(
                    self.inner.put_multipart(path).await.context("starting a part")?,
                    CHUNK,
                )),
            };
            if let Err(e) = w.wait_for_capacity(IN_FLIGHT).await {
                if let Some(w) = writer.take() {
                    let _ = w.abort().await;
                }
                return Err(e).context("writing a part");
            }
            len += chunk.len() as u64;
            w.put(chunk);
        };
        let keep = match end {
            End::Done => hasher.is_none_or(Hasher::matches),
            End::Interrupted => hasher.is_none(),
            End::TooLong | End::ChecksumMismatch => false,
        };
        let end = match end {
            End::Done | End::Interrupted if !keep => End::ChecksumMismatch,
            e => e,
        };
        let Some(w) = writer else { return Ok(Written { len: 0, head, end }) };
        if !keep {
            if let Err(e) = w.abort().await {
                tracing::warn!(path = %path, error = %e, "aborting a part");
            }
            return Ok(Written { len: 0, head, end });
        }
        w.finish().await.context("completing a part")?;
        if let Some(root) = &self.local_root {
            let file = root.join(path.as_ref());
            tokio::task::spawn_blocking(move || sync_file_and_dir(&file))
                .await
                .context("syncing a part")?
                .context("syncing a part")?;
        }
        Ok(Written { len, head, end })
    }

    /// Deletes one part (best effort: logged).
    pub(super) async fn delete_part(&self, path: &Path) {
        if let Err(e) = self.inner.delete(path).await {
            tracing::warn!(path = %path, error = %e, "deleting a part");
        }
    }

    /// Deletes every object of an upload (best effort: logged).
    pub(super) async fn delete_upload(&self, id: &str) {
        let prefix = Path::from(format!("uploads/{id}"));
        let found: Vec<_> = match self.inner.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await {
            Ok(v) => v,
            Err(e) => return tracing::warn!(upload = id, error = %e, "listing an upload's parts"),
        };
        for p in found {
            self.delete_part(&p).await;
        }
    }

    /// The ids of every upload that has objects in the store.
    pub(super) async fn upload_ids(&self) -> anyhow::Result<Vec<String>> {
        let listed = self.inner.list_with_delimiter(Some(&Path::from("uploads"))).await;
        let listed = match listed {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e).context("listing uploads"),
        };
        Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }

    /// Writes a small object whole (a thumbnail).
    pub(super) async fn put_small(&self, path: &Path, bytes: Bytes) -> anyhow::Result<()> {
        self.inner.put(path, bytes.into()).await.with_context(|| format!("writing {path}"))?;
        Ok(())
    }

    /// Reads a small object whole (a thumbnail); `None` if there is none.
    pub(super) async fn get_small(&self, path: &Path) -> anyhow::Result<Option<Bytes>> {
        match self.inner.get(path).await {
            Ok(g) => Ok(Some(g.bytes().await.with_context(|| format!("reading {path}"))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {path}")),
        }
    }

    /// Bytes `range` of a file stored as `parts` (`(start, len)` in order), as one stream of
    /// ranged reads of the parts it overlaps, read one after the other.
    pub(super) fn read(
        &self,
        id: &str,
        parts: &[(u64, u64)],
        range: Range<u64>,
    ) -> BoxStream<'static, std::io::Result<Bytes>> {
        read_parts(self.inner.clone(), self.local_root.clone(), id, parts, range)
    }

    /// On a local store, the files and byte ranges of bytes `range` of a file stored as
    /// `parts`, in order (what [`Store::read`] reads), for a zero-copy answer
    /// ([`crate::http::sendfile`]); `None` on S3.
    pub(super) fn local_pieces(
        &self,
        id: &str,
        parts: &[(u64, u64)],
        range: Range<u64>,
    ) -> Option<Vec<(std::path::PathBuf, Range<u64>)>> {
        let root = self.local_root.as_ref()?;
        Some(pieces(id, parts, range).into_iter().map(|(path, r)| (root.join(path.as_ref()), r)).collect())
    }

    /// A reader of one file, owning what it needs (for a blocking thread).
    pub(super) fn reader(&self, id: &str, parts: Vec<(u64, u64)>) -> Reader {
        Reader { inner: self.inner.clone(), local_root: self.local_root.clone(), id: id.to_string(), parts }
    }
}

/// One stored file's parts, read by range ([`Store::reader`]).
pub(super) struct Reader {
    inner: Arc<dyn ObjectStore>,
    local_root: Option<std::path::PathBuf>,
    id: String,
    parts: Vec<(u64, u64)>,
}

impl Reader {
    /// Bytes `range` of the file, as [`Store::read`].
    pub(super) fn read(&self, range: Range<u64>) -> BoxStream<'static, std::io::Result<Bytes>> {
        read_parts(self.inner.clone(), self.local_root.clone(), &self.id, &self.parts, range)
    }
}

/// Bytes `range` of the file `id` stored as `parts`: from a local store straight from its files
/// ([`local_range`]), from S3 as ranged GETs, one part after the other.
fn read_parts(
    store: Arc<dyn ObjectStore>,
    local_root: Option<std::path::PathBuf>,
    id: &str,
    parts: &[(u64, u64)],
    range: Range<u64>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let pieces = pieces(id, parts, range);
    if let Some(root) = local_root {
        return futures_util::stream::iter(pieces)
            .map(move |(path, r)| Ok::<_, std::io::Error>(local_range(root.join(path.as_ref()), r)))
            .try_flatten()
            .boxed();
    }
    futures_util::stream::iter(pieces)
        .then(move |(path, r)| {
            let store = store.clone();
            async move {
                let opts = GetOptions { range: Some(GetRange::Bounded(r)), ..Default::default() };
                store.get_opts(&path, opts).await.map(|g| g.into_stream())
            }
        })
        .try_flatten()
        .map_err(std::io::Error::other)
        .boxed()
}

/// The parts of file `id` (stored as `parts`) that bytes `range` overlap, each with the range
/// of its own bytes.
fn pieces(id: &str, parts: &[(u64, u64)], range: Range<u64>) -> Vec<(Path, Range<u64>)> {
    parts
        .iter()
        .filter(|(start, len)| *start < range.end && start + len > range.start)
        .map(|&(start, len)| {
            let from = range.start.max(start) - start;
            let to = range.end.min(start + len) - start;
            (part_path(id, start), from..to)
        })
        .collect()
}

/// Bytes `range` of a local file, read [`LOCAL_READ`] at a time with `pread` on the blocking
/// pool: one trip per chunk, straight into the buffer that is sent.
fn local_range(file: std::path::PathBuf, range: Range<u64>) -> impl Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::try_unfold((None, file, range), |(open, file, range)| async move {
        if range.is_empty() {
            return Ok(None);
        }
        let (f, chunk, file) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            use std::os::unix::fs::FileExt;
            let f = match open {
                Some(f) => f,
                None => std::fs::File::open(&file)?,
            };
            let mut chunk = vec![0; (range.end - range.start).min(LOCAL_READ) as usize];
            f.read_exact_at(&mut chunk, range.start)?;
            Ok((f, chunk, file))
        })
        .await
        .map_err(std::io::Error::other)??;
        let rest = range.start + chunk.len() as u64..range.end;
        Ok(Some((Bytes::from(chunk), (Some(f), file, rest))))
    })
}

/// Flushes a file and its directory entry to disk.
fn sync_file_and_dir(file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_header() {
        use base64::Engine as _;
        let d = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"abc"));
        assert!(matches!(Checksum::parse(&format!("sha256 {d}")), Some(Checksum::Sha256(_))));
        assert!(Checksum::parse(&format!("sha1 {d}")).is_none(), "a SHA-256 digest is not a SHA-1 one");
        assert!(Checksum::parse(&format!("md5 {d}")).is_none());
        assert!(Checksum::parse("sha256 !!!").is_none());
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"hello, world\n"), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"\0\x01\x02\x03"), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }
}
