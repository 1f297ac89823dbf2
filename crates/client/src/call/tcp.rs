//! ICE-TCP for a peer connection ([`Transport::Tcp`](super::Transport::Tcp)): one TCP
//! connection per leg to the server's passive TCP candidate, RFC 4571 framing (each packet
//! preceded by its length as a 2-byte big-endian number).
//!
//! The connection is opened once the leg's remote SDP (the publish answer, the subscribe offer)
//! named the server's TCP candidate. Only then is its local address known, and it becomes the
//! leg's one local candidate (`tcptype active`, the real local port); str0m pairs it with the
//! remote TCP candidate from the SDP and runs its checks over the connection. A `Link` task
//! owns the stream: frames read are handed to the call task as `LinkEvent::Packet`; packets
//! given to `Link::send` are framed and written.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::net::{Protocol, TcpType};
use str0m::Candidate;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Leg;

/// Packets waiting to be written per connection; beyond that they are dropped, as a full UDP
/// socket buffer would.
const OUT_QUEUE: usize = 2048;

/// What a [`Link`] task reports to the call task.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Connected; `local` is this end of the connection.
    Up { leg: Leg, local: SocketAddr },
    /// One framed packet arrived.
    Packet { leg: Leg, data: Vec<u8> },
    /// The connection failed or closed.
    Down { leg: Leg, why: String },
}

/// One leg's TCP connection, driven by its own task (aborted on drop).
pub(crate) struct Link {
    /// The server's TCP candidate address (the connection's far end).
    pub remote: SocketAddr,
    out: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Link {
    /// Connects to `remote` in the background; progress arrives on `events`.
    pub fn open(leg: Leg, remote: SocketAddr, events: mpsc::Sender<LinkEvent>, connect_timeout: Duration) -> Link {
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let task = tokio::spawn(run(leg, remote, events, rx, connect_timeout));
        Link { remote, out, task }
    }

    /// Queues a packet to be written (dropped if the queue is full or the connection is gone).
    pub fn send(&self, packet: &[u8]) {
        let _ = self.out.try_send(packet.to_vec());
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    leg: Leg,
    remote: SocketAddr,
    events: mpsc::Sender<LinkEvent>,
    mut out: mpsc::Receiver<Vec<u8>>,
    connect_timeout: Duration,
) {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(remote)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let _ = events.send(LinkEvent::Down { leg, why: format!("connecting to {remote}: {e}") }).await;
            return;
        }
        Err(_) => {
            let why = format!("connecting to {remote}: timed out after {connect_timeout:?}");
            let _ = events.send(LinkEvent::Down { leg, why }).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let _ = events.send(LinkEvent::Down { leg, why: format!("local address: {e}") }).await;
            return;
        }
    };
    if events.send(LinkEvent::Up { leg, local }).await.is_err() {
        return;
    }
    let (rd, mut wr) = stream.into_split();
    let writer = async move {
        let mut buf = Vec::with_capacity(16 * 1024);
        while let Some(p) = out.recv().await {
            buf.clear();
            // Whatever else is queued goes out in the same write.
            for p in std::iter::once(p).chain(std::iter::from_fn(|| out.try_recv().ok())) {
                frame_into(&mut buf, &p);
            }
            wr.write_all(&buf).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let events2 = events.clone();
    let reader = async move {
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        loop {
            let mut len = [0u8; 2];
            rd.read_exact(&mut len).await?;
            let mut data = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut data).await?;
            if events2.send(LinkEvent::Packet { leg, data }).await.is_err() {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let why = tokio::select! {
        r = writer => match r {
            Ok(()) => return, // The call task dropped the link.
            Err(e) => format!("writing to {remote}: {e}"),
        },
        r = reader => match r {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => format!("{remote} closed the connection"),
            Err(e) => format!("reading from {remote}: {e}"),
        },
    };
    let _ = events.send(LinkEvent::Down { leg, why }).await;
}

/// Appends `packet` with its RFC 4571 length prefix (packets over 65535 bytes are skipped).
pub(crate) fn frame_into(buf: &mut Vec<u8>, packet: &[u8]) {
    let Ok(len) = u16::try_from(packet.len()) else { return };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(packet);
}

/// The TCP candidate to connect to from a remote SDP: the first passive TCP host candidate
/// (or one without a `tcptype`, which a passive end may leave out).
pub(crate) fn remote_tcp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .filter_map(|l| Candidate::from_sdp_string(l).ok())
        .find(|c| c.proto() == Protocol::Tcp && matches!(c.tcptype(), None | Some(TcpType::Passive)))
        .map(|c| c.addr())
}

/// The local candidate of a leg's connection: an active TCP host candidate at its real address.
pub(crate) fn local_candidate(local: SocketAddr) -> anyhow::Result<Candidate> {
    Candidate::builder()
        .tcp()
        .host(local)
        .tcptype(TcpType::Active)
        .build()
        .map_err(|e| anyhow::anyhow!("TCP candidate {local}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_passive_tcp_candidate() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706175 127.0.0.1 7881 typ host\r\n\
            a=candidate:2 1 tcp 1671430143 127.0.0.1 9 typ host tcptype active\r\n\
            a=candidate:3 1 tcp 1671430143 127.0.0.1 7882 typ host tcptype passive\r\n";
        assert_eq!(remote_tcp_candidate(sdp), Some("127.0.0.1:7882".parse().unwrap()));
        assert_eq!(remote_tcp_candidate("v=0\r\na=candidate:1 1 udp 1 127.0.0.1 7881 typ host\r\n"), None);
    }

    #[test]
    fn local_candidate_is_active_tcp() {
        let c = local_candidate("127.0.0.1:50000".parse().unwrap()).unwrap();
        let s = c.to_sdp_string();
        assert!(s.contains(" tcp ") && s.contains("127.0.0.1 50000 typ host tcptype active"), "{s}");
    }

    #[test]
    fn frames_have_a_big_endian_length() {
        let mut buf = Vec::new();
        frame_into(&mut buf, &[1, 2, 3]);
        frame_into(&mut buf, &vec![0; 300]);
        assert_eq!(&buf[..5], &[0, 3, 1, 2, 3]);
        assert_eq!(&buf[5..7], &[1, 44]);
        assert_eq!(buf.len(), 5 + 2 + 300);
    }
}
