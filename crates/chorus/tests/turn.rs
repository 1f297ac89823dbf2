//! The embedded TURN relay against the real `chorus serve`, driven by the `turn` crate's own
//! client (webrtc-rs) over UDP, TCP and TLS: credentials from `call_joined` allocate; a wrong
//! password and an expired username get 401; the relay refuses (403) any peer but the server's
//! media address and relays nothing there; a relayed STUN binding to the call's publish leg gets
//! the SFU's answer back. Over TCP and TLS the client's datagrams are framed as RFC 8656 §3.1 says
//! by the [`StreamClient`] below (written here from the RFC, not taken from the server).
//!
//! The relay does not touch the store: SQLite only.

mod common;

use chorus_proto::GroupId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_client::Connection;
use chorus_proto::ws::{ClientFrame, IceServer, ServerFrame};
use common::calls::{audio_publish, room};
use common::{Backend, Server};
use stun::attributes::{ATTR_DATA, ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, MessageType, Setter, BINDING_REQUEST, BINDING_SUCCESS, CLASS_INDICATION};
use tokio::net::{TcpStream, UdpSocket};
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

const SECRET: &str = "turn-test-secret-0123456789";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A TURN client over `t` to `server` (TLS trusting `ca`), listening; returns it and the
/// connection it sends on.
async fn client(
    t: Transport,
    server: SocketAddr,
    username: &str,
    password: &str,
    ca: Option<&rcgen::Certificate>,
) -> (Client, Arc<dyn Conn + Send + Sync>) {
    let conn: Arc<dyn Conn + Send + Sync> = match t {
        Transport::Udp => Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        Transport::Tcp => Arc::new(StreamClient::new(TcpStream::connect(server).await.unwrap(), server)),
        Transport::Tls => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.expect("a CA for TLS").der().clone()).unwrap();
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let tcp = TcpStream::connect(server).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls =
                tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
            Arc::new(StreamClient::new(tls, server))
        }
    };
    let c = Client::new(ClientConfig {
        stun_serv_addr: String::new(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn: conn.clone(),
        vnet: None,
    })
    .await
    .expect("TURN client");
    c.listen().await.expect("listen");
    (c, conn)
}

/// A client's TURN-over-TCP (or TLS) connection as the datagram `Conn` the `turn` crate's client
/// takes: STUN messages as they are (their header gives their length), ChannelData padded to a
/// multiple of 4 (RFC 8656 §3.1, §12.5).
struct StreamClient<S> {
    r: tokio::sync::Mutex<tokio::io::ReadHalf<S>>,
    w: tokio::sync::Mutex<tokio::io::WriteHalf<S>>,
    server: SocketAddr,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static> StreamClient<S> {
    fn new(s: S, server: SocketAddr) -> Self {
        let (r, w) = tokio::io::split(s);
        StreamClient { r: r.into(), w: w.into(), server }
    }
}

#[async_trait::async_trait]
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + 'static> Conn for StreamClient<S> {
    async fn connect(&self, _: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        use tokio::io::AsyncReadExt;
        let mut r = self.r.lock().await;
        let mut head = [0u8; 4];
        r.read_exact(&mut head).await?;
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let total = if head[0] & 0xc0 == 0 { 20 + len } else { 4 + len.div_ceil(4) * 4 };
        buf[..4].copy_from_slice(&head);
        r.read_exact(&mut buf[4..total]).await?;
        Ok((total, self.server))
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.send_to(buf, self.server).await
    }
    async fn send_to(&self, buf: &[u8], _: SocketAddr) -> webrtc_util::Result<usize> {
        use tokio::io::AsyncWriteExt;
        let mut frame = buf.to_vec();
        if buf[0] & 0xc0 == 0x40 {
            frame.resize(buf.len().div_ceil(4) * 4, 0);
        }
        self.w.lock().await.write_all(&frame).await?;
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok("127.0.0.1:0".parse().unwrap())
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.server)
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// `base64(HMAC-SHA1(secret, username))`, computed here with ring (not the server's code).
fn rest_password(secret: &str, username: &str) -> String {
    use base64::Engine;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, username.as_bytes()).as_ref())
}

/// The relay's address for `t` among the server's URLs (`turn:…?transport=udp|tcp`, `turns:…`).
fn turn_addr(ice: &IceServer, t: Transport) -> SocketAddr {
    let (scheme, query) = match t {
        Transport::Udp => ("turn:", "transport=udp"),
        Transport::Tcp => ("turn:", "transport=tcp"),
        Transport::Tls => ("turns:", "transport=tcp"),
    };
    let url = ice
        .urls
        .iter()
        .find(|u| u.starts_with(scheme) && u.ends_with(query))
        .unwrap_or_else(|| panic!("no {t:?} URL in {:?}", ice.urls));
    let (hostport, _) = url[scheme.len()..].split_once('?').unwrap();
    use std::net::ToSocketAddrs;
    hostport.to_socket_addrs().expect("host:port").find(|a| a.is_ipv4()).expect("an IPv4 address")
}

/// ICE-lite binding request of the client (`Clnt`) to the server leg `ufrag`/`pwd`.
fn binding_request(ufrag: &str, pwd: &str) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.new_transaction_id().unwrap();
    m.write_header();
    m.add(ATTR_USERNAME, format!("{ufrag}:Clnt").as_bytes());
    m.add(ATTR_PRIORITY, &1_853_824_767u32.to_be_bytes());
    m.add(ATTR_ICE_CONTROLLING, &42u64.to_be_bytes());
    MessageIntegrity::new_short_term_integrity(pwd.into()).add_to(&mut m).unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    m.raw
}

/// A Send indication to `peer` (no permission needed to send one; the relay must drop it).
fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(MessageType::new(stun::message::METHOD_SEND, CLASS_INDICATION));
    m.new_transaction_id().unwrap();
    m.write_header();
    let SocketAddr::V4(p) = peer else { panic!("IPv4 peer") };
    let mut v = vec![0, 1];
    v.extend_from_slice(&(p.port() ^ 0x2112).to_be_bytes());
    let cookie = 0x2112_A442u32.to_be_bytes();
    v.extend(p.ip().octets().iter().zip(cookie).map(|(a, b)| a ^ b));
    m.add(ATTR_XOR_PEER_ADDRESS, &v);
    m.add(ATTR_DATA, data);
    m.raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_relays_to_the_media_address_only() {
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_TURN_UDP_PORT", "0"), ("CHORUS_TURN_SECRET", SECRET)]).await;
    relays_to_the_media_address_only(&s, Transport::Udp, None, 1).await;
}

/// Relays are bounded (issue 17, item 3): with `turn_max_allocations` = 2, a third Allocate is
/// refused with 508 (Insufficient Capacity) and works once one of the two relays is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_allocations_are_capped() {
    let s = Server::start_with(
        Backend::Sqlite,
        &[("CHORUS_TURN_UDP_PORT", "0"), ("CHORUS_TURN_SECRET", SECRET), ("CHORUS_TURN_MAX_ALLOCATIONS", "2")],
    )
    .await;
    let r = room(&s).await;
    let (mut ws, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = ws.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let ServerFrame::CallJoined { ice_servers, .. } = joined else { panic!("{joined:?}") };
    let ice = &ice_servers[0];
    let server = turn_addr(ice, Transport::Udp);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (c, _) = client(Transport::Udp, server, &ice.username, &ice.credential, None).await;
        let relay = c.allocate().await.expect("allocate within the cap");
        held.push((c, relay));
    }
    let (third, _) = client(Transport::Udp, server, &ice.username, &ice.credential, None).await;
    let e = third.allocate().await.err().expect("a third relay is refused").to_string();
    assert!(e.contains("508"), "{e}");
    let (c, relay) = held.pop().unwrap();
    relay.close().await.unwrap(); // a Refresh with lifetime 0: the allocation ends
    c.close().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (again, _) = client(Transport::Udp, server, &ice.username, &ice.credential, None).await;
        match again.allocate().await {
            Ok(relay) => {
                relay.close().await.unwrap();
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("508"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the released place was not given back: {e}"),
        }
    }
}

/// TURN over TCP and over TLS (what networks that allow only TCP 443 leave): the same checks,
/// with the relay listening on all three transports at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_over_tcp_and_tls_relays_to_the_media_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            ("CHORUS_TURN_UDP_PORT", "0"),
            ("CHORUS_TURN_TCP_PORT", "0"),
            ("CHORUS_TURN_TLS_PORT", "0"),
            ("CHORUS_TURN_TLS_CERT", cert.to_str().unwrap()),
            ("CHORUS_TURN_TLS_KEY", key.to_str().unwrap()),
            ("CHORUS_TURN_HOST", "localhost"),
            ("CHORUS_TURN_SECRET", SECRET),
        ],
    )
    .await;
    relays_to_the_media_address_only(&s, Transport::Tcp, Some(&ck.cert), 3).await;
    relays_to_the_media_address_only(&s, Transport::Tls, Some(&ck.cert), 3).await;

    // Not TURN on the TLS port (plain TCP bytes): the connection is closed, nothing answered.
    let r = room(&s).await;
    let (mut ws, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = ws.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let ServerFrame::CallJoined { ice_servers, .. } = joined else { panic!("{joined:?}") };
    let mut plain = TcpStream::connect(turn_addr(&ice_servers[0], Transport::Tls)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain.write_all(&binding_request("x", "y")).await.unwrap();
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut got)).await;
    assert!(end.is_ok(), "a client speaking no TLS was kept open");
    assert!(!(got.len() >= 20 && got[4..8] == [0x21, 0x12, 0xa4, 0x42]), "answered in plain STUN: {got:?}");
}

/// Joins a call, checks the handed-out credentials and, over `t`: 401 for a wrong password and
/// an expired username, an allocation with the right ones, 403 and nothing relayed to a stranger,
/// and the SFU's answer to a STUN binding relayed to the call's publish leg.
async fn relays_to_the_media_address_only(s: &Server, t: Transport, ca: Option<&rcgen::Certificate>, urls: usize) {
    let r = room(s).await;
    let (mut ws, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = ws.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let ServerFrame::CallJoined { ice_servers, .. } = joined else { panic!("{joined:?}") };
    assert_eq!(ice_servers.len(), 1, "{ice_servers:?}");
    let ice = &ice_servers[0];
    assert_eq!(ice.urls.len(), urls, "{:?}", ice.urls);
    let server = turn_addr(ice, t);
    // The credentials are the TURN REST API's: `<expiry>:<uid>`, HMAC-SHA1 of it under the secret.
    let (expiry, _uid) = ice.username.split_once(':').expect("expiry:uid");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > now + 3500 && expiry <= now + 3601, "default TTL 3600 s: {expiry} vs {now}");
    assert_eq!(ice.credential, rest_password(SECRET, &ice.username));

    // A wrong password and an expired username: 401.
    let (bad, _) = client(t, server, &ice.username, "not-the-password", ca).await;
    let e = bad.allocate().await.err().expect("wrong password refused").to_string();
    assert!(e.contains("401"), "{e}");
    bad.close().await.unwrap();
    let old = format!("{}:1", now - 10);
    let (expired, _) = client(t, server, &old, &rest_password(SECRET, &old), ca).await;
    let e = expired.allocate().await.err().expect("expired username refused").to_string();
    assert!(e.contains("401"), "{e}");
    expired.close().await.unwrap();

    // The handed-out credentials allocate a relay (a UDP one whatever the client's transport).
    let (c, conn) = client(t, server, &ice.username, &ice.credential, ca).await;
    let relay = c.allocate().await.expect("allocate");
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip(), server.ip());

    // A peer that is not the server's media address: CreatePermission refused, nothing relayed.
    let decoy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let decoy_addr = decoy.local_addr().unwrap();
    let e = relay.send_to(b"hello", decoy_addr).await.expect_err("permission refused").to_string();
    assert!(e.contains("403"), "{e}");
    conn.send_to(&send_indication(decoy_addr, b"sneaky"), server).await.unwrap();
    let mut buf = [0u8; 1500];
    let got = tokio::time::timeout(Duration::from_millis(600), decoy.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the relay delivered to a stranger: {got:?}");

    // Through the relay to the SFU: a STUN binding to the publish leg is answered.
    let published = ws.request(audio_publish).await.unwrap();
    let ServerFrame::CallPublished { sdp, .. } = published else { panic!("publish refused: {published:?}") };
    let attr = |name: &str| {
        sdp.lines().find_map(|l| l.strip_prefix(name)).expect("the answer has ICE credentials").trim().to_string()
    };
    let (ufrag, pwd) = (attr("a=ice-ufrag:"), attr("a=ice-pwd:"));
    relay.send_to(&binding_request(&ufrag, &pwd), s.media_udp).await.expect("relay to the media address");
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut buf))
        .await
        .expect("the SFU answers through the relay")
        .unwrap();
    assert_eq!(from, s.media_udp);
    let mut answer = Message::new();
    answer.raw = buf[..n].to_vec();
    answer.decode().unwrap();
    assert_eq!(answer.typ, BINDING_SUCCESS, "{answer}");
    MessageIntegrity::new_short_term_integrity(pwd).check(&mut answer).expect("signed by the leg");

    relay.close().await.unwrap();
    c.close().await.unwrap();
}

/// Without `turn_udp_port` there is no relay and `call_joined` carries no ICE servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_turn_by_default() {
    let s = Server::start(Backend::Sqlite).await;
    let r = room(&s).await;
    let (mut ws, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = ws.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let ServerFrame::CallJoined { ice_servers, .. } = joined else { panic!("{joined:?}") };
    assert!(ice_servers.is_empty());
    assert!(!s.data.path().join("turn-secret").exists());
}

/// Without `turn_secret` the secret is generated into `DATA/turn-secret` (0600) and the handed-out
/// credentials are made with it; a bad setting stops the server with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_secret_and_bad_settings() {
    use std::os::unix::fs::PermissionsExt;
    let store = common::Store::new(Backend::Sqlite).await;
    let err = store.start_fails(&[("CHORUS_TURN_UDP_PORT", "0"), ("CHORUS_TURN_SECRET", "short")]);
    assert!(err.contains("turn_secret must be at least 16 characters"), "{err}");
    let err = store.start_fails(&[("CHORUS_TURN_UDP_PORT", "0"), ("CHORUS_TURN_CREDENTIAL_TTL_SECS", "5")]);
    assert!(err.contains("turn_credential_ttl_secs"), "{err}");
    let err = store.start_fails(&[("CHORUS_TURN_TLS_PORT", "0")]);
    assert!(err.contains("turn_tls_port needs a certificate"), "{err}");
    let err = store.start_fails(&[("CHORUS_TURN_TCP_PORT", "0"), ("CHORUS_TURN_HOST", "turn.example.com/x")]);
    assert!(err.contains("turn_host must be a host name"), "{err}");

    let s = Server::start_on(store, &[("CHORUS_TURN_UDP_PORT", "0")]).await;
    let path = s.data.path().join("turn-secret");
    let secret = std::fs::read_to_string(&path).expect("secret generated");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let r = room(&s).await;
    let (mut ws, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = ws.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let ServerFrame::CallJoined { ice_servers, .. } = joined else { panic!("{joined:?}") };
    assert_eq!(ice_servers[0].credential, rest_password(secret.trim(), &ice_servers[0].username));
    let ice = &ice_servers[0];
    let (c, _) = client(Transport::Udp, turn_addr(ice, Transport::Udp), &ice.username, &ice.credential, None).await;
    let relay = c.allocate().await.expect("allocate with the generated secret");
    relay.close().await.unwrap();
    c.close().await.unwrap();
}
