//! The media sockets: one UDP socket for every peer of every call, and an ICE-TCP listener as the
//! fallback for networks that block UDP.
//!
//! Received datagrams are routed to the room task that owns the peer connection they belong to.
//! A peer is first recognised by the ICE username of its STUN binding request (`ours:theirs`,
//! where `ours` is the ufrag the room registered for that peer connection); from then on by its
//! source address, in a map the UDP task owns alone, so the per-packet path takes no lock. A
//! receive batch is handed to each room as one message, and a room that falls behind loses
//! packets instead of stalling the socket for everyone else.
//!
//! UDP uses `quinn-udp` to receive (`recvmmsg` batches and GRO); a room sends each flush's datagrams
//! in one `sendmmsg`, with GSO for runs to one destination ([`SendBatch`]).
//!
//! **ICE-TCP limits.** A TCP connection must send, within [`TCP_HANDSHAKE`], a STUN binding
//! request naming a live peer connection; until then it is *pending*, and one client IP may have
//! at most [`TCP_PENDING_PER_IP`] pending. Once routed, it belongs to that peer connection: at most
//! [`TCP_PER_LEG`] are kept per peer connection (another closes the oldest), and all of them close
//! when the peer connection ends. `rtc_tcp_max_connections` caps them all together.
//!
//! **Supervision.** The UDP receive loop and the TCP accept loop are each run by a supervisor
//! that logs a panic and starts the loop again (state lost with it — the source-address map — is
//! learnt again from the next STUN request of each peer), so media never stays silently dead.

use std::collections::HashMap;
use std::future::Future;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
#[cfg(not(target_os = "linux"))]
use quinn_udp::Transmit;
use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};
use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

pub(crate) use super::batch::SendBatch;
use crate::config::Config;

/// A new ICE-TCP connection has this long to send its first STUN binding request.
pub(crate) const TCP_HANDSHAKE: Duration = Duration::from_secs(5);
/// Pending (not yet routed) ICE-TCP connections one client IP may have at once.
pub(crate) const TCP_PENDING_PER_IP: usize = 8;
/// ICE-TCP connections kept per peer connection; a newer one closes the oldest.
pub(crate) const TCP_PER_LEG: usize = 4;
/// Largest first frame of an ICE-TCP connection (a STUN binding request is a few hundred bytes).
const TCP_FIRST_FRAME: usize = 1500;

pub(crate) use super::engine::PeerKey;

/// A received datagram on its way to a room.
pub(crate) struct Datagram {
    pub peer: PeerKey,
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub at: Instant,
    pub data: Bytes,
    /// For ICE-TCP: where to write the answers.
    pub tcp: Option<mpsc::Sender<Vec<u8>>>,
}

/// Where the datagrams of one peer connection go.
#[derive(Clone)]
pub(crate) struct Route {
    pub room: u64,
    pub to: mpsc::Sender<Vec<Datagram>>,
    pub peer: PeerKey,
}

/// Media sockets and the routing table rooms register their peer connections in.
pub(crate) struct MediaNet {
    udp: Arc<UdpSocket>,
    udp_state: UdpSocketState,
    /// The UDP candidate address clients are told.
    pub udp_advertised: SocketAddr,
    /// The UDP socket's own address (destination of what we receive).
    udp_local: SocketAddr,
    /// The TCP candidate address clients are told, when ICE-TCP is on.
    pub tcp_advertised: Option<SocketAddr>,
    routes: RwLock<HashMap<String, LegRoute>>,
    /// Datagrams dropped because a room's queue was full, or the socket's.
    pub dropped_in: AtomicU64,
    pub dropped_out: AtomicU64,
    /// ICE-TCP connections open now, and the most allowed.
    tcp_open: AtomicUsize,
    tcp_max: usize,
    /// Pending ICE-TCP connections per client IP.
    tcp_pending: Mutex<HashMap<IpAddr, usize>>,
    next_tcp: AtomicU64,
    /// Times a media loop panicked and was started again.
    pub restarts: AtomicU64,
    /// `sendmmsg` calls made (each carries a room flush's datagrams).
    pub send_calls: AtomicU64,
    /// Datagrams one GSO message may carry (1: none); drops to 1 if a GSO send fails.
    gso_segments: AtomicUsize,
}

/// A registered peer connection: where its datagrams go, and its ICE-TCP connections.
struct LegRoute {
    route: Route,
    /// ICE-TCP connections routed here, oldest first. Dropping a sender closes its connection.
    tcp: Vec<(u64, oneshot::Sender<()>)>,
}

/// Rooms' queues hold this many receive batches before packets are dropped (each room has one
/// for its publish legs and one for its subscribe legs, so a crowd's feedback cannot crowd out
/// the media it watches).
pub(crate) const ROOM_QUEUE: usize = 256;

impl MediaNet {
    /// Binds the sockets and starts the receive tasks.
    pub async fn start(cfg: &Config) -> anyhow::Result<Arc<MediaNet>> {
        let bind_ip = cfg.rtc_bind_ip.unwrap_or(cfg.listen.ip());
        let advertise_ip = match cfg.public_ip {
            Some(ip) => ip,
            None if bind_ip.is_unspecified() => {
                tracing::warn!("rtc_bind_ip is unspecified and public_ip is unset: advertising 127.0.0.1 (set public_ip for clients on other machines)");
                IpAddr::from([127, 0, 0, 1])
            }
            None => bind_ip,
        };
        let std_udp = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, cfg.rtc_udp_port))
            .map_err(|e| anyhow::anyhow!("binding UDP {bind_ip}:{} for media: {e}", cfg.rtc_udp_port))?;
        std_udp.set_nonblocking(true)?;
        let sock = socket2::SockRef::from(&std_udp);
        // Large kernel buffers absorb bursts (a keyframe to many subscribers) without loss.
        let _ = sock.set_recv_buffer_size(8 << 20);
        let _ = sock.set_send_buffer_size(8 << 20);
        let udp_state = UdpSocketState::new((&std_udp).into())?;
        let udp = Arc::new(UdpSocket::from_std(std_udp)?);
        let udp_local = udp.local_addr()?;
        let tcp = if cfg.rtc_tcp {
            let l = TcpListener::bind(SocketAddr::new(bind_ip, cfg.rtc_tcp_port))
                .await
                .map_err(|e| anyhow::anyhow!("binding TCP {bind_ip}:{} for ICE-TCP: {e}", cfg.rtc_tcp_port))?;
            Some(l)
        } else {
            None
        };
        let tcp_advertised = match &tcp {
            Some(l) => Some(SocketAddr::new(advertise_ip, l.local_addr()?.port())),
            None => None,
        };
        let net = Arc::new(MediaNet {
            udp,
            udp_advertised: SocketAddr::new(advertise_ip, udp_local.port()),
            udp_local,
            tcp_advertised,
            routes: RwLock::new(HashMap::new()),
            dropped_in: AtomicU64::new(0),
            dropped_out: AtomicU64::new(0),
            tcp_open: AtomicUsize::new(0),
            tcp_max: cfg.rtc_tcp_max_connections,
            tcp_pending: Mutex::new(HashMap::new()),
            next_tcp: AtomicU64::new(1),
            restarts: AtomicU64::new(0),
            send_calls: AtomicU64::new(0),
            gso_segments: AtomicUsize::new(udp_state.max_gso_segments()),
            udp_state,
        });
        let n = net.clone();
        supervise("media UDP receive loop", net.clone(), move || udp_loop(n.clone()));
        if let Some(l) = tcp {
            let (n, l) = (net.clone(), Arc::new(l));
            supervise("ICE-TCP accept loop", net.clone(), move || tcp_accept_loop(n.clone(), l.clone()));
        }
        Ok(net)
    }

    /// Routes datagrams for ICE username `ufrag` to `route` (called when a room creates a peer
    /// connection, before its SDP goes out).
    pub fn register(&self, ufrag: String, route: Route) {
        self.routes.write().expect("routes lock").insert(ufrag, LegRoute { route, tcp: Vec::new() });
    }

    /// A peer connection restarted ICE: its route and ICE-TCP connections answer to its new
    /// username fragment. (UDP senders already known keep their route; the receive loop
    /// follows a known address whose STUN names another fragment.)
    pub fn rekey(&self, old: &str, new: String) {
        let mut routes = self.routes.write().expect("routes lock");
        if let Some(leg) = routes.remove(old) {
            routes.insert(new, leg);
        }
    }

    /// Stops routing to a peer connection and closes its ICE-TCP connections.
    pub fn unregister(&self, ufrag: &str) {
        let gone = self.routes.write().expect("routes lock").remove(ufrag);
        drop(gone); // outside the lock: closes the connections
    }

    fn lookup(&self, ufrag: &str) -> Option<Route> {
        self.routes.read().expect("routes lock").get(ufrag).map(|r| r.route.clone())
    }

    /// Routes ICE-TCP connection `id` to the peer connection of `ufrag`. The returned receiver
    /// completes when the connection must close (the peer connection ended, or newer
    /// connections pushed this one out).
    fn attach_tcp(&self, ufrag: &str, id: u64) -> Option<(Route, oneshot::Receiver<()>)> {
        let (tx, rx) = oneshot::channel();
        let mut routes = self.routes.write().expect("routes lock");
        let leg = routes.get_mut(ufrag)?;
        leg.tcp.push((id, tx));
        let excess = leg.tcp.len().saturating_sub(TCP_PER_LEG);
        let closed: Vec<_> = leg.tcp.drain(..excess).collect();
        let route = leg.route.clone();
        drop(routes);
        drop(closed);
        Some((route, rx))
    }

    /// Forgets ICE-TCP connection `id` of the peer connection of `ufrag` (it closed).
    fn detach_tcp(&self, ufrag: &str, id: u64) {
        if let Some(leg) = self.routes.write().expect("routes lock").get_mut(ufrag) {
            leg.tcp.retain(|(i, _)| *i != id);
        }
    }

    /// Sends what `batch` gathered and empties it, in one `sendmmsg` (see [`SendBatch`]). A full
    /// socket buffer drops the datagrams (media is loss-tolerant and a room task must never wait
    /// on the socket).
    pub fn send_batch(&self, batch: &mut SendBatch) {
        #[cfg(target_os = "linux")]
        let sent = {
            use std::os::fd::AsRawFd;
            let fd = self.udp.as_raw_fd();
            batch.send(self.udp_local.is_ipv6(), |hdrs| {
                self.udp.try_io(Interest::WRITABLE, || super::batch::sendmmsg(fd, hdrs))
            })
        };
        #[cfg(not(target_os = "linux"))]
        let sent = batch.send_each(|destination, contents, segment_size| {
            let t = Transmit { destination, ecn: None, contents, segment_size, src_ip: None };
            self.udp.try_io(Interest::WRITABLE, || self.udp_state.send((&*self.udp).into(), &t))
        });
        if sent.gso_failed && self.gso_segments.swap(1, Ordering::Relaxed) > 1 {
            tracing::info!("UDP GSO send failed: sending without segmentation offload from now on");
        }
        self.send_calls.fetch_add(sent.calls, Ordering::Relaxed);
        self.dropped_out.fetch_add(sent.dropped, Ordering::Relaxed);
        let m = crate::metrics::metrics();
        m.media_send_calls.inc_by(sent.calls);
        m.media_datagrams_sent.inc_by(sent.datagrams);
        m.media_datagrams_dropped_out.inc_by(sent.dropped);
    }

    /// Counts `n` received datagrams a room's full queue could not take: here (per socket set,
    /// for tests) and in the process's metrics.
    fn count_dropped_in(&self, n: u64) {
        self.dropped_in.fetch_add(n, Ordering::Relaxed);
        crate::metrics::metrics().media_datagrams_dropped_in.inc_by(n);
    }

    /// How many datagrams one GSO send may carry here (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.gso_segments.load(Ordering::Relaxed)
    }

    /// The UDP socket's local address.
    pub fn udp_local(&self) -> SocketAddr {
        self.udp_local
    }
}

/// The ICE username's local part of a STUN binding request, if `data` is one.
pub(crate) fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let attrs = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let kind = u16::from_be_bytes([attrs[at], attrs[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[at + 2], attrs[at + 3]]));
        let value = attrs.get(at + 4..at + 4 + alen)?;
        if kind == 0x0006 {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next();
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// Gathers one receive batch per room, then hands each room its share in one message.
struct Batches {
    rooms: Vec<(u64, mpsc::Sender<Vec<Datagram>>, Vec<Datagram>)>,
}

impl Batches {
    fn push(&mut self, route: &Route, d: Datagram) {
        // A room has two queues (its publish legs' and its subscribe legs'): one batch each.
        match self.rooms.iter_mut().find(|(id, to, _)| *id == route.room && to.same_channel(&route.to)) {
            Some((_, _, v)) => v.push(d),
            None => self.rooms.push((route.room, route.to.clone(), vec![d])),
        }
    }

    fn flush(&mut self, net: &MediaNet) {
        for (_, to, batch) in self.rooms.drain(..) {
            let n = batch.len() as u64;
            if to.try_send(batch).is_err() {
                net.count_dropped_in(n);
            }
        }
    }
}

/// Copies received segments into a shared arena, so each datagram is a cheap `Bytes` view and
/// allocation happens once per chunk, not per packet.
struct Arena {
    buf: BytesMut,
    chunk: usize,
}

impl Arena {
    /// The UDP socket's chunk.
    const UDP: usize = 1 << 20;
    /// An ICE-TCP connection's chunk (one peer connection's traffic).
    const TCP: usize = 64 * 1024;

    fn new(chunk: usize) -> Arena {
        Arena { buf: BytesMut::new(), chunk }
    }

    fn take(&mut self, data: &[u8]) -> Bytes {
        if self.buf.capacity() < data.len() {
            self.buf = BytesMut::with_capacity(self.chunk.max(data.len()));
        }
        self.buf.extend_from_slice(data);
        self.buf.split().freeze()
    }
}

/// Runs the task `make` builds and, whenever it panics, logs it and builds it again (after a
/// short pause, so a panic on every packet cannot spin a core).
fn supervise<F, Fut>(name: &'static str, net: Arc<MediaNet>, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(make()).await {
                Err(e) if e.is_panic() => {
                    net.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(task = name, "panicked; starting it again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Ended or cancelled: the runtime is shutting down.
                _ => return,
            }
        }
    });
}

/// Test builds panic on this datagram, to show the supervisor at work.
#[cfg(test)]
const TEST_PANIC: &[u8] = b"chorus-test: panic in the UDP receive loop";

async fn udp_loop(net: Arc<MediaNet>) {
    let mut bufs: Vec<Vec<u8>> = (0..BATCH_SIZE).map(|_| vec![0u8; 65_536]).collect();
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    // Source address → route, owned by this task alone.
    let mut known: HashMap<SocketAddr, (String, Route)> = HashMap::new();
    let mut batches = Batches { rooms: Vec::new() };
    let mut arena = Arena::new(Arena::UDP);
    let mut last_prune = Instant::now();
    loop {
        let n = {
            let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match net
                .udp
                .async_io(Interest::READABLE, || net.udp_state.recv((&*net.udp).into(), &mut slices, &mut meta))
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors from vanished peers surface here; they concern one peer only.
                    tracing::trace!(error = %e, "udp receive");
                    continue;
                }
            }
        };
        let at = Instant::now();
        for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
            let stride = m.stride.max(1);
            for seg in buf[..m.len].chunks(stride) {
                #[cfg(test)]
                if seg == TEST_PANIC {
                    panic!("test: panic in the UDP receive loop");
                }
                // A known address keeps its route, unless its STUN names another username
                // fragment (an ICE restart, or a new peer on a reused address): looked up anew.
                let stun = stun_local_ufrag(seg);
                let route = match (known.get(&m.addr), stun) {
                    (Some((_, r)), None) => r.clone(),
                    (Some((u, r)), Some(f)) if u == f => r.clone(),
                    (_, Some(ufrag)) => {
                        let Some(r) = net.lookup(ufrag) else { continue };
                        known.insert(m.addr, (ufrag.to_string(), r.clone()));
                        r
                    }
                    (None, None) => continue,
                };
                let d = Datagram {
                    peer: route.peer,
                    proto: Protocol::Udp,
                    source: m.addr,
                    destination: net.udp_local,
                    at,
                    data: arena.take(seg),
                    tcp: None,
                };
                batches.push(&route, d);
            }
        }
        batches.flush(&net);
        if at.duration_since(last_prune) > Duration::from_secs(5) {
            last_prune = at;
            let routes = net.routes.read().expect("routes lock");
            known.retain(|_, (ufrag, _)| routes.contains_key(ufrag));
        }
    }
}

async fn tcp_accept_loop(net: Arc<MediaNet>, listener: Arc<TcpListener>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Dropping the stream closes it: over the cap, or too many handshakes from here.
                let Some(open) = TcpOpen::take(&net) else {
                    tracing::debug!(%peer, "ICE-TCP connection refused: rtc_tcp_max_connections reached");
                    continue;
                };
                let Some(pending) = TcpPending::take(&net, peer.ip()) else {
                    tracing::debug!(%peer, "ICE-TCP connection refused: too many handshakes from this address");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(tcp_conn(net.clone(), stream, peer, open, pending));
            }
            Err(e) => {
                tracing::debug!(error = %e, "ICE-TCP accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One open ICE-TCP connection, counted against `rtc_tcp_max_connections` until dropped.
struct TcpOpen(Arc<MediaNet>);

impl TcpOpen {
    fn take(net: &Arc<MediaNet>) -> Option<TcpOpen> {
        net.tcp_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < net.tcp_max).then_some(n + 1))
            .ok()
            .map(|_| TcpOpen(net.clone()))
    }
}

impl Drop for TcpOpen {
    fn drop(&mut self) {
        self.0.tcp_open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One ICE-TCP connection of a client IP that has not sent its STUN binding request yet.
struct TcpPending(Arc<MediaNet>, IpAddr);

impl TcpPending {
    fn take(net: &Arc<MediaNet>, ip: IpAddr) -> Option<TcpPending> {
        let mut pending = net.tcp_pending.lock().expect("pending lock");
        let n = pending.entry(ip).or_default();
        if *n >= TCP_PENDING_PER_IP {
            return None;
        }
        *n += 1;
        Some(TcpPending(net.clone(), ip))
    }
}

impl Drop for TcpPending {
    fn drop(&mut self) {
        let mut pending = self.0.tcp_pending.lock().expect("pending lock");
        if let Some(n) = pending.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.1);
            }
        }
    }
}

/// Reads one RFC 4571 frame (a 2-byte length, then the packet) into `buf`, refusing one longer
/// than `max`; returns its length.
async fn read_frame(rd: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    let mut len = [0u8; 2];
    rd.read_exact(&mut len).await?;
    let n = usize::from(u16::from_be_bytes(len));
    if n > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame too long"));
    }
    if buf.len() < n {
        buf.resize(n, 0);
    }
    rd.read_exact(&mut buf[..n]).await?;
    Ok(n)
}

/// One ICE-TCP connection: RFC 4571 framing (a 2-byte length before each packet).
async fn tcp_conn(net: Arc<MediaNet>, stream: TcpStream, peer: SocketAddr, open: TcpOpen, pending: TcpPending) {
    let _open = open;
    let Ok(local) = stream.local_addr() else { return };
    let (mut rd, wr) = stream.into_split();
    let mut buf = Vec::new();
    // The handshake: a STUN binding request naming a live peer connection, soon.
    let first = tokio::time::timeout(TCP_HANDSHAKE, read_frame(&mut rd, &mut buf, TCP_FIRST_FRAME)).await;
    let Ok(Ok(n)) = first else { return };
    let Some(ufrag) = stun_local_ufrag(&buf[..n]).map(str::to_string) else { return };
    let id = net.next_tcp.fetch_add(1, Ordering::Relaxed);
    let Some((route, mut closed)) = net.attach_tcp(&ufrag, id) else { return };
    drop(pending);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer = tokio::spawn(tcp_writer(wr, rx));
    let mut arena = Arena::new(Arena::TCP);
    let mut n = n;
    loop {
        let d = Datagram {
            peer: route.peer,
            proto: Protocol::Tcp,
            source: peer,
            destination: local,
            at: Instant::now(),
            data: arena.take(&buf[..n]),
            tcp: Some(tx.clone()),
        };
        if route.to.try_send(vec![d]).is_err() {
            net.count_dropped_in(1);
        }
        n = tokio::select! {
            r = read_frame(&mut rd, &mut buf, usize::from(u16::MAX)) => match r {
                Ok(n) => n,
                Err(_) => break,
            },
            // The peer connection ended, or newer connections pushed this one out.
            _ = &mut closed => break,
        };
    }
    net.detach_tcp(&ufrag, id);
    writer.abort();
}

/// Writes what the room sends on an ICE-TCP connection, framed, coalescing what is queued.
async fn tcp_writer(mut wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut out = Vec::with_capacity(4096);
    while let Some(p) = rx.recv().await {
        out.clear();
        for p in std::iter::once(p).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            let Ok(len) = u16::try_from(p.len()) else { continue };
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&p);
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::engine::Leg;

    /// Media sockets on a free loopback UDP port, without ICE-TCP.
    async fn loopback_net() -> Arc<MediaNet> {
        let cfg =
            Config { listen: "127.0.0.1:0".parse().unwrap(), rtc_udp_port: 0, rtc_tcp: false, ..Config::default() };
        MediaNet::start(&cfg).await.unwrap()
    }

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&attrs);
        p
    }

    /// A panic inside the UDP receive loop's body (here: on a test-only datagram) restarts the
    /// loop: datagrams are routed again afterwards.
    #[tokio::test]
    async fn a_panic_in_the_udp_loop_restarts_it() {
        let net = loopback_net().await;
        let (to, mut rx) = mpsc::channel(8);
        net.register("srvufrag".into(), Route { room: 1, to, peer: PeerKey { uid: 7, leg: Leg::Publish } });
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = net.udp_local();
        let request = binding_request("srvufrag:cli");
        client.send_to(&request, server).await.unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(batch[0].peer, PeerKey { uid: 7, leg: Leg::Publish });

        client.send_to(TEST_PANIC, server).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while net.restarts.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the loop was not started again after its panic");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Routed again once the loop is back (it learns the source anew from a STUN request).
        let routed = async {
            loop {
                client.send_to(&request, server).await.unwrap();
                if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                    return batch;
                }
            }
        };
        let batch = tokio::time::timeout(Duration::from_secs(5), routed).await.expect("the loop runs again");
        assert_eq!(batch[0].source, client.local_addr().unwrap());
        assert_eq!(net.restarts.load(Ordering::Relaxed), 1);
    }

    /// A room whose subscribe legs' queue is full still gets its publish legs' datagrams (they
    /// have a queue of their own); what the full queue could not take is counted as dropped.
    #[tokio::test]
    async fn a_full_subscriber_queue_drops_no_publisher_datagram() {
        let net = loopback_net().await;
        let (sub_to, mut sub_rx) = mpsc::channel(1);
        let (pub_to, mut pub_rx) = mpsc::channel(1);
        // The subscribe leg registers first, as a viewer who joined before the host published.
        net.register("subufrag".into(), Route { room: 1, to: sub_to, peer: PeerKey { uid: 2, leg: Leg::Subscribe } });
        net.register("pubufrag".into(), Route { room: 1, to: pub_to, peer: PeerKey { uid: 1, leg: Leg::Publish } });
        let (viewer, host) =
            (UdpSocket::bind("127.0.0.1:0").await.unwrap(), UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let server = net.udp_local();
        // The subscribe queue fills (one batch) and stays full: nobody reads it.
        viewer.send_to(&binding_request("subufrag:cli"), server).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sub_rx.is_empty() {
            assert!(Instant::now() < deadline, "the viewer's request was not routed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Viewers' and the host's datagrams arrive together: the test's runtime has one thread
        // and these sends do not yield, so the receive loop reads them in one batch.
        for _ in 0..3 {
            viewer.send_to(&binding_request("subufrag:cli"), server).await.unwrap();
        }
        host.send_to(&binding_request("pubufrag:cli"), server).await.unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), pub_rx.recv()).await.unwrap().unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].peer, PeerKey { uid: 1, leg: Leg::Publish });
        assert_eq!(net.dropped_in.load(Ordering::Relaxed), 3);
        assert_eq!(sub_rx.recv().await.unwrap()[0].peer, PeerKey { uid: 2, leg: Leg::Subscribe });
    }

    /// A flush's datagrams to several subscribers leave in one system call, each arriving whole
    /// and in order; a GSO run arrives as its separate datagrams.
    #[tokio::test]
    async fn one_send_call_reaches_every_destination() {
        let net = loopback_net().await;
        let mut subs = Vec::new();
        for _ in 0..3 {
            subs.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let mut batch = SendBatch::default();
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        for round in 0..3u8 {
            for (i, s) in subs.iter().enumerate() {
                // Three same-size packets to the first (one GSO run), one each to the others.
                let n = if i == 0 { 3 } else { 1 };
                for k in 0..n {
                    let d = vec![round * 10 + k; 1000 + i];
                    batch.push(s.local_addr().unwrap(), &d, net.max_segments());
                    expected[i].push(d);
                }
            }
        }
        // A new socket is writable once the runtime has seen it so (the room tasks' sends come
        // long after that).
        net.udp.writable().await.unwrap();
        let calls = net.send_calls.load(Ordering::Relaxed);
        net.send_batch(&mut batch);
        assert_eq!(net.send_calls.load(Ordering::Relaxed) - calls, 1, "one sendmmsg for the flush");
        assert!(batch.is_empty());
        for (s, want) in subs.iter().zip(expected) {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65_536];
            while got.len() < want.len() {
                let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await.unwrap().unwrap();
                got.push(buf[..n].to_vec());
            }
            assert_eq!(got, want);
        }
        assert_eq!(net.dropped_out.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stun_username_names_the_local_ufrag() {
        assert_eq!(stun_local_ufrag(&binding_request("srvufrag:cli")), Some("srvufrag"));
    }

    #[test]
    fn non_stun_and_truncated_input_is_not_a_username() {
        assert_eq!(stun_local_ufrag(&[0x80, 0x60, 0, 1]), None, "RTP");
        let p = binding_request("abc:def");
        for cut in 0..p.len() {
            assert_eq!(stun_local_ufrag(&p[..cut]), None, "cut at {cut}");
        }
    }
}
