//! TURN over TCP and over TLS (RFC 8656 §3.1): how clients whose networks let only TCP — often
//! only port 443 — reach the relay. The relayed side stays UDP, as with TURN over UDP.
//!
//! The `turn` crate reads and writes through a datagram-shaped [`Conn`]. [`StreamConn`] is one,
//! fed by every connection its listener accepts: each connection's bytes are cut into STUN
//! messages and ChannelData frames ([`frame_len`]), which reach the crate as datagrams from the
//! connection's remote address; what the crate sends to that address goes down that connection.
//! A connection that sends something else, falls silent for [`IDLE`], or stops reading what it is
//! sent is closed; the listener holds at most `turn_max_connections` connections and
//! [`PER_IP`] per client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use webrtc_util::Conn;

/// A connection that sends nothing for this long is closed. Longer than an allocation's
/// lifetime (600 s), which a live client refreshes well before it ends.
pub const IDLE: Duration = Duration::from_secs(660);
/// Longest TLS handshake, and longest wait for one write to a client to complete.
pub const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections kept per client IP address.
pub const PER_IP: usize = 32;
/// Frames queued for one connection; past it, more are dropped (as a congested UDP path would).
const QUEUE: usize = 512;
/// Largest frame handed to the crate: its read buffer (`INBOUND_MTU`, 1500 bytes). A client
/// sending larger frames is not a TURN client of ours.
const MAX_FRAME: usize = 1500;

/// The length of the frame that starts with `head`, padding included, or `None` when `head`
/// starts neither a STUN message (first two bits 00, a 20-byte header + attributes) nor a
/// ChannelData frame (01, a 4-byte header + data padded to 4 bytes on streams).
pub fn frame_len(head: [u8; 4]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match head[0] >> 6 {
        0b00 => Some(20 + len),
        0b01 => Some(4 + len.next_multiple_of(4)),
        _ => None,
    }
}

type Inbound = (Vec<u8>, SocketAddr);

/// The datagram face of a TCP or TLS listener, for the `turn` crate (see the module docs).
pub struct StreamConn {
    local: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<Inbound>>,
    outbound: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
}

/// Starts accepting on `listener` (TLS first when `tls` is given) and returns the connection
/// the TURN server reads from.
pub fn listen(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
) -> std::io::Result<Arc<StreamConn>> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let conn = Arc::new(StreamConn { local, inbound: tokio::sync::Mutex::new(rx), outbound: Default::default() });
    let accept = Accept {
        outbound: conn.outbound.clone(),
        inbound: tx,
        places: Arc::new(Semaphore::new(max_connections)),
        per_ip: Default::default(),
        tls,
    };
    tokio::spawn(accept.run(listener));
    Ok(conn)
}

struct Accept {
    outbound: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
    inbound: mpsc::Sender<Inbound>,
    places: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Counts a connection against its client address until dropped.
struct IpPlace {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpPlace {
    fn drop(&mut self) {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Accept {
    async fn run(self, listener: TcpListener) {
        loop {
            let (tcp, from) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "TURN: accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(place) = self.places.clone().try_acquire_owned() else {
                tracing::debug!(%from, "TURN: connection cap reached, closed");
                continue;
            };
            let ip_place = {
                let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
                let n = m.entry(from.ip()).or_insert(0);
                if *n >= PER_IP {
                    tracing::debug!(%from, "TURN: per-address connection cap reached, closed");
                    continue;
                }
                *n += 1;
                IpPlace { ip: from.ip(), per_ip: self.per_ip.clone() }
            };
            let _ = tcp.set_nodelay(true);
            let (outbound, inbound, tls) = (self.outbound.clone(), self.inbound.clone(), self.tls.clone());
            tokio::spawn(async move {
                let _places = (place, ip_place);
                match tls {
                    None => serve(tcp, from, outbound, inbound).await,
                    Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve(stream, from, outbound, inbound).await,
                        Ok(Err(e)) => tracing::debug!(%from, error = %e, "TURN: TLS handshake failed"),
                        Err(_) => tracing::debug!(%from, "TURN: TLS handshake timed out"),
                    },
                }
            });
        }
    }
}

/// Runs one client connection until it ends, then forgets its address.
async fn serve<S>(
    stream: S,
    from: SocketAddr,
    outbound: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    outbound.lock().unwrap_or_else(|e| e.into_inner()).insert(from, tx.clone());
    let (r, w) = tokio::io::split(stream);
    tokio::select! {
        why = read_frames(r, from, &inbound) => tracing::debug!(%from, why, "TURN: connection closed"),
        why = write_frames(w, rx) => tracing::debug!(%from, why, "TURN: connection closed"),
    }
    let mut m = outbound.lock().unwrap_or_else(|e| e.into_inner());
    // A new connection from the same address may have taken the entry meanwhile: keep that one.
    if m.get(&from).is_some_and(|t| t.same_channel(&tx)) {
        m.remove(&from);
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    from: SocketAddr,
    inbound: &mpsc::Sender<Inbound>,
) -> &'static str {
    loop {
        let mut head = [0u8; 4];
        match tokio::time::timeout(IDLE, r.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return "by the client",
            Err(_) => return "idle",
        }
        let Some(len) = frame_len(head) else { return "not STUN or ChannelData" };
        if len > MAX_FRAME {
            return "frame too large";
        }
        let mut frame = vec![0u8; len];
        frame[..4].copy_from_slice(&head);
        match tokio::time::timeout(IDLE, r.read_exact(&mut frame[4..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return "by the client, mid-frame",
            Err(_) => return "idle mid-frame",
        }
        // Waits while the TURN server is behind: the client's TCP window fills, as it should.
        if inbound.send((frame, from)).await.is_err() {
            return "TURN server stopped";
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(w: W, mut rx: mpsc::Receiver<Vec<u8>>) -> &'static str {
    let mut w = BufWriter::with_capacity(16 * 1024, w);
    while let Some(frame) = rx.recv().await {
        let batch = async {
            w.write_all(&frame).await?;
            // Whatever else is queued goes out in the same flush.
            while let Ok(more) = rx.try_recv() {
                w.write_all(&more).await?;
            }
            w.flush().await
        };
        match tokio::time::timeout(HANDSHAKE, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return "write failed",
            Err(_) => return "client stopped reading",
        }
    }
    "TURN server stopped"
}

#[async_trait]
impl Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported).into())
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let Some((frame, from)) = self.inbound.lock().await.recv().await else {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
        };
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok((n, from))
    }
    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(std::io::Error::from(std::io::ErrorKind::NotConnected).into())
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let Some(tx) = self.outbound.lock().unwrap_or_else(|e| e.into_inner()).get(&target).cloned() else {
            return Ok(buf.len()); // that client has gone: dropped, as a datagram would be
        };
        let mut frame = buf.to_vec();
        // ChannelData is padded to 4 bytes on streams (the crate pads already; this makes sure).
        if let Some(want) = buf.first_chunk::<4>().and_then(|h| frame_len(*h)) {
            if want > frame.len() && buf[0] >> 6 == 0b01 {
                frame.resize(want, 0);
            }
        }
        let _ = tx.try_send(frame); // full: dropped, the client is not keeping up
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    #[test]
    fn frames_are_cut_by_their_headers() {
        // A STUN Binding request with 8 bytes of attributes: 20 + 8.
        assert_eq!(frame_len([0x00, 0x01, 0x00, 0x08]), Some(28));
        // ChannelData on channel 0x4000 with 5 bytes: padded to 8 on a stream.
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(frame_len([0x7f, 0xff, 0x00, 0x04]), Some(8));
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x00]), Some(4));
        // Other protocols: a TLS record looks like STUN and an HTTP request like ChannelData, by
        // their first bits (the crate then refuses the one, MAX_FRAME the other); RTP is neither.
        assert_eq!(frame_len([0x16, 0x03, 0x01, 0x00]), Some(276));
        assert_eq!(frame_len(*b"GET "), Some(4 + 0x5420));
        assert_eq!(frame_len([0x80, 0x60, 0, 1]), None);
    }

    #[tokio::test]
    async fn a_stream_is_cut_into_frames_and_answers_go_back_down_it() {
        let listener = crate::listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = listen(listener, None, 4).unwrap();
        let mut c = TcpStream::connect(conn.local_addr().unwrap()).await.unwrap();
        let me = c.local_addr().unwrap();
        // Two frames in one write and a third split across two.
        let stun: Vec<u8> =
            [&[0x00, 0x01, 0x00, 0x04][..], &[0x21, 0x12, 0xa4, 0x42], &[7; 12], &[1, 2, 3, 4]].concat();
        let chan: Vec<u8> = vec![0x40, 0x01, 0x00, 0x03, 9, 9, 9, 0];
        c.write_all(&[stun.clone(), chan.clone(), chan[..3].to_vec()].concat()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.write_all(&chan[3..]).await.unwrap();
        let mut buf = [0u8; 1500];
        for want in [&stun, &chan, &chan] {
            let (n, from) = conn.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&want[..], me));
        }
        // An unpadded ChannelData answer leaves padded; STUN as it is.
        conn.send_to(&[0x40, 0x01, 0x00, 0x01, 5], me).await.unwrap();
        conn.send_to(&stun, me).await.unwrap();
        let mut got = vec![0u8; 8 + stun.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..8], &[0x40, 0x01, 0x00, 0x01, 5, 0, 0, 0]);
        assert_eq!(&got[8..], &stun[..]);
        // Not TURN: closed.
        c.write_all(&[0x80, 0x60, 0, 1]).await.unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed() {
        let listener = crate::listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = listen(listener, None, 2).unwrap();
        let addr = conn.local_addr().unwrap();
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "the third connection stays open: {n:?}");
    }
}
