//! Embedded TURN relay (RFC 8656) for clients whose networks block UDP to the media port but
//! let TURN through: over UDP, TCP, and TLS (e.g. on 443, [`stream`]). The protocol is the `turn` crate's (webrtc-rs); this module adds what a
//! Chorus deployment needs around it:
//!
//! - **Credentials** in the TURN REST API scheme (coturn's `use-auth-secret`): username
//!   `<expiry unix seconds>:<uid>`, password `base64(HMAC-SHA1(turn_secret, username))`. The
//!   server hands fresh ones out in `call_joined` ([`TurnIce::ice_server`]); an external coturn
//!   with the same secret accepts them too.
//! - **Never an open relay**: every CreatePermission, ChannelBind and Send naming a peer other
//!   than Chorus's own media address is refused (403) before the crate sees it
//!   ([`GuardedListener`]), and each relay socket drops datagrams to any other address
//!   ([`GuardedRelay`]) as a second line.
//! - Expired usernames and wrong passwords get 401 (the crate alone answers 400).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ::turn::auth::{generate_auth_key, AuthHandler};
use ::turn::relay::relay_static::RelayAddressGeneratorStatic;
use ::turn::relay::RelayAddressGenerator;
use ::turn::server::config::{ConnConfig, ServerConfig};
use ::turn::server::Server;
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS};
use stun::error_code::{ErrorCode, ErrorCodeAttribute, CODE_FORBIDDEN, CODE_UNAUTHORIZED};
use stun::integrity::MessageIntegrity;
use stun::message::{Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST};
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use webrtc_util::vnet::net::Net;
use webrtc_util::Conn;

pub mod stream;

use crate::config::Config;

/// The realm the embedded server announces.
pub const REALM: &str = "chorus";

/// What `call_joined` needs to hand out TURN credentials.
#[derive(Clone)]
pub struct TurnIce {
    secret: Vec<u8>,
    ttl_secs: u64,
    urls: Vec<String>,
}

impl TurnIce {
    /// An ICE server entry with credentials for user `uid`, valid `turn_credential_ttl_secs`.
    pub fn ice_server(&self, uid: i64) -> chorus_proto::ws::IceServer {
        let expiry = now_secs() + self.ttl_secs;
        let username = format!("{expiry}:{uid}");
        let credential = password(&self.secret, &username);
        chorus_proto::ws::IceServer { urls: self.urls.clone(), username, credential }
    }
}

/// The running relay (kept by [`crate::call::Calls`] for the life of the process).
pub struct Turn {
    pub ice: TurnIce,
    /// Where the TURN server listens.
    pub listening: Listening,
    _server: Server,
}

/// The addresses the relay listens on, per transport.
#[derive(Debug, Default, Clone, Copy)]
pub struct Listening {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `base64(HMAC-SHA1(secret, username))`: the TURN REST API password.
pub fn password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The shared secret: `turn_secret`, else `DATA/turn-secret`, else a new one generated there
/// (see [`crate::secrets`]). A file must hold at least 16 characters.
pub fn secret(cfg: &Config) -> anyhow::Result<String> {
    let (s, source) =
        crate::secrets::load(&cfg.data, cfg.turn_secret.as_deref(), "turn-secret", "a TURN secret", || {
            crate::auth_token::random_token(32)
        })?;
    if let crate::secrets::Source::File(p) = source {
        if s.len() < 16 {
            anyhow::bail!("{} must hold at least 16 characters", p.display());
        }
    }
    Ok(s)
}

/// Checks a username of the REST API scheme: `<expiry>` or `<expiry>:<anything>`, not expired.
fn username_live(username: &str) -> bool {
    let ts = username.split(':').next().unwrap_or("");
    ts.parse::<u64>().is_ok_and(|t| t >= now_secs())
}

struct RestAuth {
    secret: Vec<u8>,
}

impl AuthHandler for RestAuth {
    fn auth_handle(&self, username: &str, realm: &str, _src: SocketAddr) -> Result<Vec<u8>, ::turn::Error> {
        if !username_live(username) {
            return Err(::turn::Error::Other("expired or malformed TURN username".into()));
        }
        Ok(generate_auth_key(username, realm, &password(&self.secret, username)))
    }
}

/// Starts the TURN server when any of `turn_udp_port`, `turn_tcp_port`, `turn_tls_port` is set.
/// `media` are the addresses the relay may reach (Chorus's own media sockets); nothing else.
pub async fn start(cfg: &Config, media: Vec<SocketAddr>) -> anyhow::Result<Option<Turn>> {
    if cfg.turn_udp_port.is_none() && cfg.turn_tcp_port.is_none() && cfg.turn_tls_port.is_none() {
        return Ok(None);
    }
    let secret = secret(cfg)?.into_bytes();
    let bind_ip = cfg.rtc_bind_ip.unwrap_or(cfg.listen.ip());
    let public = match cfg.turn_public_ip.or(cfg.public_ip) {
        Some(ip) => ip,
        None if bind_ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        None => bind_ip,
    };
    let host = match (&cfg.turn_host, public) {
        (Some(h), _) => h.clone(),
        (None, IpAddr::V6(ip)) => format!("[{ip}]"),
        (None, IpAddr::V4(ip)) => ip.to_string(),
    };
    let allowed: Arc<[SocketAddr]> = media.into();
    // One budget of relays for every transport: each is a UDP socket (a descriptor).
    let places = Arc::new(Semaphore::new(cfg.turn_max_allocations));
    let guarded = |inner: Arc<dyn Conn + Send + Sync>| ConnConfig {
        conn: Arc::new(GuardedListener { inner, allowed: allowed.clone(), secret: secret.clone() }),
        relay_addr_generator: Box::new(GuardedRelays {
            inner: RelayAddressGeneratorStatic {
                relay_address: public,
                address: bind_ip.to_string(),
                net: Arc::new(Net::new(None)),
            },
            allowed: allowed.clone(),
            places: places.clone(),
        }),
    };
    let mut conn_configs = Vec::new();
    let mut urls = Vec::new();
    let mut listening = Listening::default();
    if let Some(port) = cfg.turn_udp_port {
        let sock = UdpSocket::bind(SocketAddr::new(bind_ip, port))
            .await
            .map_err(|e| anyhow::anyhow!("binding UDP {bind_ip}:{port} for TURN: {e}"))?;
        let local = sock.local_addr()?;
        urls.push(format!("turn:{host}:{}?transport=udp", local.port()));
        listening.udp = Some(local);
        conn_configs.push(guarded(Arc::new(sock)));
    }
    if let Some(port) = cfg.turn_tcp_port {
        let listener = crate::listen_on(SocketAddr::new(bind_ip, port))
            .map_err(|e| anyhow::anyhow!("binding TCP {bind_ip}:{port} for TURN: {e}"))?;
        let conn = stream::listen(listener, None, cfg.turn_max_connections)?;
        let local = conn.local_addr()?;
        urls.push(format!("turn:{host}:{}?transport=tcp", local.port()));
        listening.tcp = Some(local);
        conn_configs.push(guarded(conn));
    }
    if let Some(port) = cfg.turn_tls_port {
        let (cert, key) = match (&cfg.turn_tls_cert, &cfg.turn_tls_key, &cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k), _, _) | (None, None, Some(c), Some(k)) => (c, k),
            _ => anyhow::bail!("turn_tls_port needs turn_tls_cert and turn_tls_key (or tls_cert and tls_key)"),
        };
        // No ALPN of our own: a TURN client may offer "stun.turn" or nothing.
        let tls = crate::http::server::tls_acceptor(cert, key, &[])?;
        let listener = crate::listen_on(SocketAddr::new(bind_ip, port))
            .map_err(|e| anyhow::anyhow!("binding TCP {bind_ip}:{port} for TURN over TLS: {e}"))?;
        let conn = stream::listen(listener, Some(tls), cfg.turn_max_connections)?;
        let local = conn.local_addr()?;
        urls.push(format!("turns:{host}:{}?transport=tcp", local.port()));
        listening.tls = Some(local);
        conn_configs.push(guarded(conn));
    }
    let server = Server::new(ServerConfig {
        conn_configs,
        realm: REALM.into(),
        auth_handler: Arc::new(RestAuth { secret: secret.clone() }),
        channel_bind_timeout: std::time::Duration::from_secs(0),
        alloc_close_notify: None,
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting the TURN server: {e}"))?;
    tracing::info!(?listening, relay_ip = %public, "TURN relay listening");
    Ok(Some(Turn { ice: TurnIce { secret, ttl_secs: cfg.turn_credential_ttl_secs, urls }, listening, _server: server }))
}

/// Decodes every XOR-PEER-ADDRESS of `m` (RFC 5766 §14.3); `None` if one is malformed.
fn peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for a in m.attributes.0.iter().filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS) {
        let v = &a.value;
        if v.len() < 4 {
            return None;
        }
        let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
        let cookie = 0x2112_A442u32.to_be_bytes();
        let ip = match (v[1], v.len()) {
            (1, 8) => {
                let b: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ cookie[i]);
                IpAddr::from(b)
            }
            (2, 20) => {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&cookie);
                key[4..].copy_from_slice(&m.transaction_id.0);
                let b: [u8; 16] = std::array::from_fn(|i| v[4 + i] ^ key[i]);
                IpAddr::from(b)
            }
            _ => return None,
        };
        out.push(SocketAddr::new(ip, port));
    }
    Some(out)
}

/// What the guard does with one datagram arriving at the TURN port.
enum Verdict {
    Pass,
    Drop,
    Refuse(ErrorCode, &'static str),
}

fn judge(buf: &[u8], allowed: &[SocketAddr], secret: &[u8]) -> (Verdict, Option<Message>) {
    if !stun::message::is_message(buf) {
        return (Verdict::Pass, None); // ChannelData: only to channels bound to allowed peers
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    if m.decode().is_err() {
        return (Verdict::Pass, None); // the crate answers malformed messages itself
    }
    let request = m.typ.class == CLASS_REQUEST;
    if m.contains(ATTR_XOR_PEER_ADDRESS) {
        let ok = peer_addresses(&m).is_some_and(|ps| ps.iter().all(|p| allowed.contains(p)));
        if !ok {
            let v = if request {
                Verdict::Refuse(CODE_FORBIDDEN, "peer is not this server's media address")
            } else {
                Verdict::Drop
            };
            return (v, Some(m));
        }
    }
    if request && m.contains(ATTR_MESSAGE_INTEGRITY) {
        let username = TextAttribute::get_from_as(&m, ATTR_USERNAME).map(|t| t.text).unwrap_or_default();
        let realm = TextAttribute::get_from_as(&m, ATTR_REALM).map(|t| t.text).unwrap_or_default();
        if !username_live(&username) {
            return (Verdict::Refuse(CODE_UNAUTHORIZED, "expired or malformed username"), Some(m));
        }
        let key = generate_auth_key(&username, &realm, &password(secret, &username));
        if MessageIntegrity(key).check(&mut m.clone()).is_err() {
            return (Verdict::Refuse(CODE_UNAUTHORIZED, "wrong credentials"), Some(m));
        }
    }
    (Verdict::Pass, Some(m))
}

fn error_response(m: &Message, code: ErrorCode, reason: &str) -> Option<Vec<u8>> {
    let mut r = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(Message { transaction_id: m.transaction_id, ..Default::default() }),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute { code, reason: reason.as_bytes().to_vec() }),
    ];
    r.build(&setters).ok()?;
    Some(r.raw)
}

/// A TURN listening socket (UDP, or the TCP/TLS [`stream::StreamConn`]), with the open-relay
/// and credential checks in front of the crate.
struct GuardedListener {
    inner: Arc<dyn Conn + Send + Sync>,
    allowed: Arc<[SocketAddr]>,
    secret: Vec<u8>,
}

#[async_trait]
impl Conn for GuardedListener {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        self.inner.connect(addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.inner.recv_from(buf).await?;
            match judge(&buf[..n], &self.allowed, &self.secret) {
                (Verdict::Pass, _) => return Ok((n, from)),
                (Verdict::Drop, _) => {
                    tracing::debug!(%from, "TURN: dropped an indication to a peer that is not ours");
                }
                (Verdict::Refuse(code, reason), Some(m)) => {
                    tracing::debug!(%from, code = code.0, reason, "TURN: refused");
                    if let Some(r) = error_response(&m, code, reason) {
                        let _ = self.inner.send_to(&r, from).await;
                    }
                }
                (Verdict::Refuse(..), None) => {}
            }
        }
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        self.inner.send_to(buf, target).await
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
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

/// Relay sockets that reach only the allowed peers (a second line behind [`GuardedListener`]),
/// at most `turn_max_allocations` at once (past it the crate answers the Allocate 508,
/// Insufficient Capacity).
struct GuardedRelays {
    inner: RelayAddressGeneratorStatic,
    allowed: Arc<[SocketAddr]>,
    places: Arc<Semaphore>,
}

#[async_trait]
impl RelayAddressGenerator for GuardedRelays {
    fn validate(&self) -> Result<(), ::turn::Error> {
        self.inner.validate()
    }
    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), ::turn::Error> {
        let place = self.places.clone().try_acquire_owned().map_err(|_| {
            tracing::debug!("TURN: turn_max_allocations relays are open; an Allocate was refused");
            ::turn::Error::Other("too many relays".into())
        })?;
        let (conn, addr) = self.inner.allocate_conn(use_ipv4, requested_port).await?;
        Ok((Arc::new(GuardedRelay { inner: conn, allowed: self.allowed.clone(), _place: place }), addr))
    }
}

struct GuardedRelay {
    inner: Arc<dyn Conn + Send + Sync>,
    allowed: Arc<[SocketAddr]>,
    /// Given back when the allocation lets go of its relay.
    _place: OwnedSemaphorePermit,
}

#[async_trait]
impl Conn for GuardedRelay {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        self.inner.connect(addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.inner.recv_from(buf).await?;
            if self.allowed.contains(&from) {
                return Ok((n, from));
            }
        }
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if !self.allowed.contains(&target) {
            return Ok(buf.len()); // dropped, as a relay without permission drops
        }
        self.inner.send_to(buf, target).await
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        self.inner.close().await
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_api_password_matches_coturn_scheme() {
        // RFC 2202 test case 2 for HMAC-SHA1: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            password(b"Jefe", "what do ya want for nothing?"),
            base64::engine::general_purpose::STANDARD
                .encode(hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap())
        );
    }

    #[test]
    fn usernames_expire() {
        assert!(username_live(&format!("{}:7", now_secs() + 60)));
        assert!(!username_live(&format!("{}:7", now_secs() - 1)));
        assert!(!username_live("alice"));
    }
}
