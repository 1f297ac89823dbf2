//! Zero-copy file bodies on plain-HTTP connections: the bytes of a local file go from the page
//! cache to the socket with `sendfile(2)`, as nginx sends them, instead of being read into a
//! buffer and copied again into the socket (bench/RESULTS.md, "Media": that copy made range
//! reads CPU-bound at a third of nginx's throughput).
//!
//! hyper has no file body, but it hands body chunks to the connection's IO unflattened: when
//! the IO writes vectored, hyper queues each chunk as it is (hyper 1.x `WriteStrategy::Queue`)
//! and writes the queue with `poll_write_vectored`, one `IoSlice` per chunk. So:
//!
//! - a handler marks its response with [`FileRanges`] (which local files, which bytes) beside
//!   its ordinary streamed body, which stays the answer on TLS connections, on anything but
//!   `GET`, and whenever the marker does not describe the body (see [`Served::new`]);
//! - on a plain connection the listener swaps that body for a [`FileBody`], whose chunks
//!   ([`FileChunk`]) stand for file bytes: each one's slice is a window on a static
//!   [`PLACEHOLDER`] that no other code can point into, and the file, offset and length it
//!   stands for wait in the connection's [`Pending`] queue, in the order hyper queues the
//!   chunks;
//! - the connection's IO ([`SendfileIo`]) writes every other slice as usual and, for a slice in
//!   the placeholder, calls `sendfile` for the front file of the queue instead.
//!
//! The placeholder's bytes are never written: a placeholder slice with no file waiting, or with
//! fewer bytes owed than the slice, is an error that ends the connection. A file shorter than
//! promised (truncated under us) ends the connection too (`UnexpectedEof`), so an answer is
//! never padded; a file deleted or replaced while it is sent is still read whole from its open
//! descriptor (an upload's bytes never change, so that is the answer the `ETag` names).
//! Sending is non-blocking on the socket; reading the file happens inside `sendfile`, which
//! waits for the disk when the pages are not cached, so opening a piece also asks the kernel to
//! read it ahead (`POSIX_FADV_WILLNEED`), on the blocking pool.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future as _;
use std::io::IoSlice;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use axum::http;
use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Most bytes one `sendfile` call is asked for (the length of [`PLACEHOLDER`]).
const MAX_SEND: usize = 1024 * 1024;

/// What a [`FileChunk`]'s slice points into. Never read: its bytes stand for file bytes, and
/// only [`SendfileIo`] gets to see them (a zeroed static takes no memory until touched).
static PLACEHOLDER: [u8; MAX_SEND] = [0; MAX_SEND];

fn is_placeholder(s: &[u8]) -> bool {
    let base = PLACEHOLDER.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    !s.is_empty() && at >= base && at < base + MAX_SEND
}

/// A response body that is bytes of local files: each `(path, range)` in order. Put in a
/// response's extensions beside the ordinary body; see the module documentation.
#[derive(Debug, Clone)]
pub struct FileRanges(pub Vec<(PathBuf, Range<u64>)>);

impl FileRanges {
    fn len(&self) -> u64 {
        self.0.iter().map(|(_, r)| r.end - r.start).sum()
    }
}

/// One file chunk waiting in a connection's queue.
struct Segment {
    id: u64,
    file: File,
    offset: u64,
    left: u64,
}

/// The file chunks of one connection that hyper holds and has not written yet, oldest first.
#[derive(Default)]
pub struct Pending {
    queue: Mutex<(u64, VecDeque<Segment>)>,
}

impl Pending {
    /// The queue. Only the connection's own task takes it (hyper polls the body and writes to
    /// the IO from that task), so it is never contended; a poisoned lock is still consistent
    /// (every change is one push, pop or field update).
    fn lock(&self) -> MutexGuard<'_, (u64, VecDeque<Segment>)> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A body chunk standing for `left` bytes of the front file of its connection's queue.
pub struct FileChunk {
    id: u64,
    left: usize,
    pending: Arc<Pending>,
}

impl Buf for FileChunk {
    fn remaining(&self) -> usize {
        self.left
    }

    fn chunk(&self) -> &[u8] {
        &PLACEHOLDER[..self.left.min(MAX_SEND)]
    }

    fn advance(&mut self, n: usize) {
        assert!(n <= self.left, "advanced past the end of a file chunk");
        self.left -= n;
    }
}

impl Drop for FileChunk {
    /// A chunk dropped before it was all written (its connection broke) leaves the queue, so
    /// the queue always lines up with the chunks hyper still holds.
    fn drop(&mut self) {
        let mut q = self.pending.lock();
        q.1.retain(|s| s.id != self.id);
    }
}

/// A chunk of a [`Served`] body.
pub enum Chunk {
    /// Ordinary bytes.
    Bytes(Bytes),
    /// File bytes, sent by [`SendfileIo`].
    File(FileChunk),
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.remaining(),
            Chunk::File(f) => f.remaining(),
        }
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Chunk::Bytes(b) => b.chunk(),
            Chunk::File(f) => f.chunk(),
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Bytes(b) => b.advance(n),
            Chunk::File(f) => f.advance(n),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an answer on a plain connection: axum's, or the files of a [`FileRanges`].
pub enum Served {
    /// axum's body.
    Other(axum::body::Body),
    /// Sent with `sendfile`.
    File(FileBody),
}

impl Served {
    /// `response` as sent on a plain connection: a `GET` answer (200 or 206) carrying
    /// [`FileRanges`] whose length is its `Content-Length` gets a [`FileBody`]; any other keeps
    /// its body.
    pub fn new(
        get: bool,
        pending: &Arc<Pending>,
        mut response: http::Response<axum::body::Body>,
    ) -> http::Response<Served> {
        let files = response.extensions_mut().remove::<FileRanges>();
        let sized = |f: &FileRanges| {
            let len = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
            len.and_then(|l| l.parse::<u64>().ok()) == Some(f.len())
        };
        let ok = matches!(response.status(), http::StatusCode::OK | http::StatusCode::PARTIAL_CONTENT);
        match files {
            Some(f) if get && ok && sized(&f) => {
                let left = f.len();
                let body = FileBody { files: Files::ToOpen(f.0), left, pending: pending.clone() };
                response.map(|_| Served::File(body))
            }
            _ => response.map(Served::Other),
        }
    }
}

impl Body for Served {
    type Data = Chunk;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Chunk>, BoxError>>> {
        match self.get_mut() {
            Served::Other(b) => {
                Pin::new(b).poll_frame(cx).map(|f| f.map(|f| f.map(|f| f.map_data(Chunk::Bytes)).map_err(Into::into)))
            }
            Served::File(b) => b.poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Served::Other(b) => b.is_end_stream(),
            Served::File(b) => b.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Served::Other(b) => b.size_hint(),
            Served::File(b) => SizeHint::with_exact(b.left),
        }
    }
}

/// The files of a [`FileRanges`]: all opened in one trip to the blocking pool before the first
/// chunk (so a file deleted later is still read whole), then one [`FileChunk`] per piece.
pub struct FileBody {
    files: Files,
    /// Bytes not yet handed to hyper.
    left: u64,
    pending: Arc<Pending>,
}

type Opened = VecDeque<(File, Range<u64>)>;

enum Files {
    ToOpen(Vec<(PathBuf, Range<u64>)>),
    Opening(JoinHandle<std::io::Result<Opened>>),
    Open(Opened),
}

/// Opens the pieces and asks the kernel to read their bytes ahead.
fn open(pieces: Vec<(PathBuf, Range<u64>)>) -> std::io::Result<Opened> {
    let mut out = VecDeque::with_capacity(pieces.len());
    for (path, range) in pieces.into_iter().filter(|(_, r)| !r.is_empty()) {
        let f = File::open(&path)?;
        // Only advice: a failure changes nothing but speed.
        let _ = rustix::fs::fadvise(
            &f,
            range.start,
            std::num::NonZeroU64::new(range.end - range.start),
            rustix::fs::Advice::WillNeed,
        );
        out.push_back((f, range));
    }
    Ok(out)
}

impl FileBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Frame<Chunk>>>> {
        loop {
            match &mut self.files {
                Files::ToOpen(pieces) => {
                    let pieces = std::mem::take(pieces);
                    self.files = Files::Opening(tokio::task::spawn_blocking(move || open(pieces)));
                }
                Files::Opening(job) => {
                    let opened = ready!(Pin::new(job).poll(cx)).map_err(std::io::Error::other)??;
                    self.files = Files::Open(opened);
                }
                Files::Open(files) => {
                    let Some((file, range)) = files.pop_front() else { return Poll::Ready(None) };
                    let len = range.end - range.start;
                    let Ok(left) = usize::try_from(len) else {
                        return Poll::Ready(Some(Err(std::io::Error::other("a file piece larger than memory"))));
                    };
                    let id = {
                        let mut q = self.pending.lock();
                        q.0 += 1;
                        let id = q.0;
                        q.1.push_back(Segment { id, file, offset: range.start, left: len });
                        id
                    };
                    self.left -= len;
                    let chunk = FileChunk { id, left, pending: self.pending.clone() };
                    return Poll::Ready(Some(Ok(Frame::data(Chunk::File(chunk)))));
                }
            }
        }
    }
}

/// The IO of a plain connection: `T` (the TCP stream, with what it carries), writing
/// [`FileChunk`]s with `sendfile`.
pub struct SendfileIo<T> {
    inner: T,
    pending: Arc<Pending>,
}

impl<T> SendfileIo<T> {
    /// `inner`, with the queue its answers' [`FileBody`]s fill.
    pub fn new(inner: T, pending: Arc<Pending>) -> SendfileIo<T> {
        SendfileIo { inner, pending }
    }
}

/// What [`SendfileIo`] needs of the stream under it: the socket to `sendfile` to.
pub trait Socket: AsyncRead + AsyncWrite + Unpin {
    /// The TCP stream.
    fn tcp(&self) -> &TcpStream;
}

impl<T: Socket> SendfileIo<T> {
    /// Sends up to `want` bytes of the front file of the queue.
    fn poll_send_file(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        let tcp = self.inner.tcp();
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            let mut q = self.pending.lock();
            let Some(seg) = q.1.front_mut() else {
                return Poll::Ready(Err(std::io::Error::other("a file chunk with no file waiting")));
            };
            if (want as u64) > seg.left {
                return Poll::Ready(Err(std::io::Error::other("a file chunk longer than its file piece")));
            }
            let sent = tcp.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(tcp, &seg.file, Some(&mut seg.offset), want).map_err(std::io::Error::from)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than when the answer started",
                    )))
                }
                Ok(n) => {
                    seg.left -= n as u64;
                    if seg.left == 0 {
                        q.1.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<T: Socket> AsyncRead for SendfileIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Socket> AsyncWrite for SendfileIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match bufs.iter().position(|b| is_placeholder(b)) {
            Some(0) => this.poll_send_file(cx, bufs[0].len()),
            // The bytes before the file chunk first; hyper comes back for the rest.
            Some(i) => Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs[..i]),
            None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // Always: hyper then queues chunks instead of copying them into one buffer, which is
        // what lets a file chunk reach `poll_write_vectored` as itself.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_slices_are_recognised() {
        assert!(is_placeholder(&PLACEHOLDER[..10]));
        assert!(is_placeholder(&PLACEHOLDER[MAX_SEND - 1..]));
        assert!(!is_placeholder(&PLACEHOLDER[..0]));
        let other = vec![0u8; 16];
        assert!(!is_placeholder(&other));
    }
}
