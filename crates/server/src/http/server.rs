//! The HTTP listener. axum's `serve` sets no timeouts and no connection limit, so this
//! accept loop does it with hyper directly: at most `max_connections` connections open at
//! once (a connection over the cap is closed as soon as it is accepted), `TCP_NODELAY` on
//! each (answers written back to back are not held for the client's delayed ACK), and
//! HTTP/1.1 connections closed when a request's headers take longer than
//! `http_idle_timeout_secs`, which, in hyper, also counts from the end of the previous
//! answer: an idle keep-alive connection is closed after that long. A WebSocket keeps its
//! connection's place until it closes; its own timeouts are the session's.
//!
//! With `tls_cert` and `tls_key` set it speaks HTTPS only ([`tls_acceptor`]: rustls, TLS 1.2
//! and 1.3, ALPN `http/1.1`): the handshake runs in the connection's task, within the same
//! `http_idle_timeout_secs`, after the connection took its place under the cap, so slow or
//! broken handshakes cost one place each for a bounded time and never hold up `accept`. With
//! `acme_domains` instead, the certificate comes from an ACME CA ([`super::acme`]), and a
//! handshake that negotiates `acme-tls/1` (the CA's challenge) ends the connection.

use std::future::Future;
use std::path::Path;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use futures_util::TryFutureExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::sendfile;

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers (from the connection's start or the end of the
    /// previous answer).
    pub idle: Duration,
    /// Whether plain-HTTP connections send file bodies with `sendfile` ([`sendfile`]).
    pub sendfile: bool,
}

/// The TLS side of a listener, from PEM files: the certificate chain (leaf first) and its
/// private key; `alpn` the application protocols offered (none: whatever the client asks).
pub fn tls_acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls_cert {}: not a readable PEM certificate file", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("tls_cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls_key {}: not a readable PEM private key file", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("tls_cert and tls_key do not make a usable certificate (does the key match?)")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// An accepted connection holding its place under the cap until it is dropped (for a
/// WebSocket, when the session ends).
struct Counted {
    tcp: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl super::sendfile::Socket for Counted {
    fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// Serves HTTP/1.1 (with upgrades, for WebSockets) on one connection until it ends or the
/// server stops.
async fn serve<I, S>(io: I, service: S, limits: Limits, stop: &mut watch::Receiver<()>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.idle).keep_alive(true);
    let mut conn = pin!(http.serve_connection(io, service).with_upgrades());
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// Errors of `accept` that concern one connection only (the next accept may succeed at once).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in
/// progress finish.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a clone; `recv` returns `None` once all have finished.
    let (running_tx, mut running_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    let mut warned: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be released.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(max = limits.max_connections, "max_connections reached: closing new connections");
                warned = Some(Instant::now());
            }
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let counted = Counted { tcp, _place: place };
        let tls = tls.clone();
        let router = router.clone();
        let to_router = move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        };
        let mut stop = stop_rx.clone();
        let running = running_tx.clone();
        tokio::spawn(async move {
            match tls {
                None if !limits.sendfile => {
                    serve(TokioIo::new(counted), hyper::service::service_fn(to_router), limits, &mut stop).await
                }
                None => {
                    // Plain HTTP: local files go out with `sendfile` (see [`sendfile`]).
                    let pending = Arc::new(sendfile::Pending::default());
                    let io = TokioIo::new(sendfile::SendfileIo::new(counted, pending.clone()));
                    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let get = req.method() == hyper::Method::GET;
                        let pending = pending.clone();
                        to_router(req).map_ok(move |res| sendfile::Served::new(get, &pending, res))
                    });
                    serve(io, service, limits, &mut stop).await
                }
                Some(acceptor) => match tokio::time::timeout(limits.idle, acceptor.accept(counted)).await {
                    // An ACME CA checking its TLS-ALPN-01 challenge: the handshake was all it wanted.
                    Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(super::acme::ACME_TLS_ALPN) => {
                        tracing::info!(%peer, "ACME challenge answered");
                    }
                    Ok(Ok(stream)) => {
                        let service = hyper::service::service_fn(to_router);
                        serve(TokioIo::new(stream), service, limits, &mut stop).await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
            drop(running);
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    drop(running_tx);
    let _ = running_rx.recv().await;
    Ok(())
}
