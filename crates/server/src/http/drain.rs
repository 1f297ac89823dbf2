//! Answers that reach a client that is still sending its body.
//!
//! An upload route may refuse a request before it has read the whole body (an unknown token, a
//! file over the limit, a wrong tus offset). hyper then closes the connection with the rest of
//! the body unread, and the kernel answers bytes that arrive on a closed socket with a TCP
//! reset — which can overtake the answer, so the client sees "connection reset" instead of the
//! error (curl did, one run in a few, on a loaded machine). nginx solves this with a *lingering
//! close*; [`read_to_end`] does the same for the routes it wraps: once the handler has answered,
//! what is left of the body is read and thrown away, at most [`DRAIN_BYTES`] and
//! [`DRAIN_TIME`], and only then does the answer go out. A client that sent
//! `Expect: 100-continue` and whose body the handler never read has sent nothing: its answer
//! goes at once (hyper never sent it the `100 Continue`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, EXPECT};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt};

/// At most this much of a refused body is read to let its answer through; past it the
/// connection is closed and the client may see a reset instead of the answer.
pub const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// At most this long is spent reading a refused body.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The request body, shared between the handler (through [`Reader`]) and [`read_to_end`].
struct Shared {
    stream: Mutex<BodyDataStream>,
    /// The handler asked for body bytes at least once.
    polled: AtomicBool,
    /// Bytes the handler read.
    read: AtomicU64,
}

/// The body as the handler sees it. The lock is never contended: only the handler polls it
/// while it runs, and [`read_to_end`] takes the stream back only once the handler is done.
struct Reader(Arc<Shared>);

impl Stream for Reader {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &self.0;
        shared.polled.store(true, Ordering::Relaxed);
        let mut stream = shared.stream.lock().unwrap_or_else(PoisonError::into_inner);
        let next = stream.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            shared.read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        next
    }
}

/// Middleware (`axum::middleware::from_fn`): runs the handler, then reads the rest of the
/// request body (bounded) before its answer is sent. See the module docs.
pub async fn read_to_end(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let expects_continue = headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = req.into_parts();
    let shared = Arc::new(Shared {
        stream: Mutex::new(body.into_data_stream()),
        polled: AtomicBool::new(false),
        read: AtomicU64::new(0),
    });
    let response = next.run(Request::from_parts(parts, Body::from_stream(Reader(shared.clone())))).await;
    if expects_continue && !shared.polled.load(Ordering::Relaxed) {
        return response;
    }
    if length.is_some_and(|n| n.saturating_sub(shared.read.load(Ordering::Relaxed)) > DRAIN_BYTES) {
        return response;
    }
    // A task the handler started may still hold the body (it then reads it itself).
    let Ok(shared) = Arc::try_unwrap(shared) else { return response };
    let mut stream = shared.stream.into_inner().unwrap_or_else(PoisonError::into_inner);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(chunk)) = stream.next().await {
            let Some(l) = left.checked_sub(chunk.len() as u64) else { break };
            left = l;
        }
    })
    .await;
    response
}
