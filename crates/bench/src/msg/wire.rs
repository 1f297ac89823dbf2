//! The load generator's side of the messaging WebSocket, leaner than
//! `chorus_client::Connection`: a connection bound to a chosen loopback source address, small
//! buffers, server frames decoded only as far as a benchmark needs ([`Lite`]), and a
//! pipelining sender ([`Sender`]) that keeps up to `in_flight` sends waiting for their `sent`.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::hist::Hist;

/// A WebSocket over a plain TCP stream.
pub type Ws = WebSocketStream<TcpStream>;

/// Microseconds since the first call in this process: the one clock senders stamp into
/// messages and receivers compare against (all in this process).
pub fn now_us() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A server frame, decoded only as far as the benchmark needs (unknown fields are skipped).
#[derive(Debug, Deserialize)]
pub struct Lite<'a> {
    /// Frame type.
    #[serde(rename = "type", borrow)]
    pub t: Cow<'a, str>,
    /// `message`, `sent`, `synced`: stream position.
    #[serde(default)]
    pub pos: i64,
    /// `message`, `sent`: conversation sequence.
    #[serde(default)]
    pub seq: i64,
    /// `message`: text.
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    /// Echoed request id.
    #[serde(default, borrow)]
    pub rid: Option<Cow<'a, str>>,
    /// `welcome`: store epoch.
    #[serde(default, borrow)]
    pub epoch: Option<Cow<'a, str>>,
    /// `welcome`: whether the cursor was honoured.
    #[serde(default)]
    pub resumed: bool,
    /// `welcome`: why not.
    #[serde(default, borrow)]
    pub reason: Option<Cow<'a, str>>,
}

impl<'a> Lite<'a> {
    /// Decodes a text frame.
    pub fn parse(text: &'a str) -> anyhow::Result<Lite<'a>> {
        serde_json::from_str(text).with_context(|| format!("undecodable server frame {text}"))
    }
}

/// A backlog message.
#[derive(Debug, Clone)]
pub struct Backlogged {
    /// Conversation sequence.
    pub seq: i64,
    /// Text.
    pub text: String,
}

/// An open, authenticated session (after `synced`).
pub struct Session {
    /// The WebSocket.
    pub ws: Ws,
    /// Store epoch from `welcome`.
    pub epoch: String,
    /// Whether the resume cursor was honoured.
    pub resumed: bool,
    /// Why not.
    pub reason: Option<String>,
    /// `synced.pos`.
    pub synced_pos: i64,
    /// Backlog messages in order.
    pub backlog: Vec<Backlogged>,
}

/// Buffer sizes of the benchmark's WebSockets: small reads for idle connections, larger for
/// busy receivers.
pub fn config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(read_buffer).write_buffer_size(0)
}

/// Opens `GET /v1/ws?token=…` on `server` from `bind` (any port), sends `hello` (with
/// `resume` if given) and reads `welcome`, the backlog and `synced`.
pub async fn connect(
    server: SocketAddr,
    token: &str,
    bind: Option<IpAddr>,
    resume: Option<(&str, i64)>,
    read_buffer: usize,
) -> anyhow::Result<Session> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = bind {
        sock.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding to {ip}"))?;
    }
    let tcp = sock.connect(server).await.with_context(|| format!("connecting to {server}"))?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{server}/v1/ws?token={token}");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config(read_buffer)))
        .await
        .context("websocket upgrade")?;
    let hello = match resume {
        Some((epoch, pos)) => format!(r#"{{"type":"hello","resume":{{"epoch":"{epoch}","pos":{pos}}}}}"#),
        None => r#"{"type":"hello"}"#.to_string(),
    };
    ws.send(WsMessage::Text(hello.into())).await?;
    let mut welcome = None;
    let mut backlog = Vec::new();
    loop {
        let t = next_text(&mut ws, Duration::from_secs(30)).await?;
        let f = Lite::parse(&t)?;
        match (&*f.t, &welcome) {
            ("welcome", None) => {
                welcome = Some((
                    f.epoch.as_deref().unwrap_or_default().to_string(),
                    f.resumed,
                    f.reason.as_deref().map(str::to_string),
                ))
            }
            ("message", Some(_)) => {
                backlog.push(Backlogged { seq: f.seq, text: f.text.as_deref().unwrap_or_default().to_string() })
            }
            ("synced", Some(_)) => {
                let (epoch, resumed, reason) = welcome.take().expect("matched Some");
                return Ok(Session { ws, epoch, resumed, reason, synced_pos: f.pos, backlog });
            }
            ("presence" | "receipt" | "group", Some(_)) => {}
            _ => bail!("unexpected frame during the handshake: {t}"),
        }
    }
}

/// The next text frame (pings are answered by tungstenite while reading).
pub async fn next_text(ws: &mut Ws, timeout: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m =
            tokio::time::timeout_at(deadline, ws.next()).await.map_err(|_| anyhow!("no frame within {timeout:?}"))?;
        match m {
            Some(Ok(WsMessage::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(WsMessage::Close(c))) => bail!("closed by the server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("websocket error: {e}"),
            None => bail!("connection closed"),
        }
    }
}

/// The message text the benchmark sends: `"<tag> <n> <send µs> "` padded with `x` to
/// `payload` bytes (at least the header).
pub fn payload(tag: u8, n: u64, us: u64, payload: usize) -> String {
    let mut s = format!("{tag} {n} {us} ");
    while s.len() < payload {
        s.push('x');
    }
    s
}

/// Reads back what [`payload`] wrote: `(tag, n, send µs)`.
pub fn parse_payload(text: &[u8]) -> Option<(u8, u64, u64)> {
    let mut it = text.split(|&b| b == b' ');
    let mut num = || -> Option<u64> { std::str::from_utf8(it.next()?).ok()?.parse().ok() };
    let tag = num()?;
    let n = num()?;
    let us = num()?;
    Some((u8::try_from(tag).ok()?, n, us))
}

/// Where a [`Sender`] sends.
#[derive(Debug, Clone)]
pub enum Target {
    /// A user (1:1).
    Peer(String),
    /// A group.
    Group(i64),
}

/// One run of a [`Sender`].
#[derive(Debug, Clone)]
pub struct Phase {
    /// Tag written into every message (the receivers sort by it).
    pub tag: u8,
    /// Messages per second, or as fast as the window allows.
    pub rate: Option<f64>,
    /// When to stop sending.
    pub until: Instant,
    /// Answers arriving in `[window.0, window.1)` are counted and their latency recorded.
    pub window: (Instant, Instant),
    /// Message size.
    pub payload: usize,
    /// Sends waiting for `sent` at most.
    pub in_flight: usize,
}

/// What a [`Phase`] did.
#[derive(Debug, Default)]
pub struct PhaseOut {
    /// Sends written.
    pub sent: u64,
    /// `sent` answers.
    pub answered: u64,
    /// `error` answers.
    pub errors: u64,
    /// The first error frame, verbatim.
    pub first_error: Option<String>,
    /// `sent` answers inside the window.
    pub answered_in_window: u64,
    /// send → `sent` latency of the answers inside the window.
    pub ack_latency: Hist,
}

/// A sending session: pipelines sends, answers arrive in order.
pub struct Sender {
    sink: SplitSink<Ws, WsMessage>,
    stream: SplitStream<Ws>,
    target: Target,
    /// Messages sent so far over every phase (the next one is number `next + 1`).
    pub next: u64,
    /// Answers so far over every phase (for flow control and progress).
    pub answered: std::sync::Arc<AtomicU64>,
}

impl Sender {
    /// A sender on an open session.
    pub fn new(session: Session, target: Target) -> Sender {
        let (sink, stream) = session.ws.split();
        Sender { sink, stream, target, next: 0, answered: Default::default() }
    }

    /// Sends until `phase.until`, then waits for every answer. Messages are numbered on from
    /// the previous phase. `hold_back()` is asked before each send: while it says true the
    /// sender waits (flow control towards slow receivers).
    pub async fn run(&mut self, phase: &Phase, hold_back: impl Fn() -> bool + Send + Sync) -> anyhow::Result<PhaseOut> {
        let out = std::sync::Mutex::new(PhaseOut::default());
        let window = tokio::sync::Semaphore::new(phase.in_flight.max(1));
        // The number of sends once the writer is done (u64::MAX until then).
        let total = AtomicU64::new(u64::MAX);
        let done = tokio::sync::Notify::new();
        let target = match &self.target {
            Target::Peer(p) => format!(r#""peer":"{p}""#),
            Target::Group(g) => format!(r#""gid":{g}"#),
        };
        let first = self.next;
        let start = Instant::now();
        let answered = self.answered.clone();
        let sink = &mut self.sink;
        let stream = &mut self.stream;
        let writer = async {
            let mut n = first;
            loop {
                let now = Instant::now();
                if now >= phase.until {
                    break;
                }
                if let Some(rate) = phase.rate {
                    let due = start + Duration::from_secs_f64((n - first) as f64 / rate);
                    if due >= phase.until {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                while hold_back() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                window.acquire().await.expect("semaphore open").forget();
                n += 1;
                let us = now_us();
                let text = payload(phase.tag, n, us, phase.payload);
                let frame =
                    format!(r#"{{"type":"send","rid":"{n}:{us}","id":"b{}-{n}",{target},"text":"{text}"}}"#, phase.tag);
                sink.feed(WsMessage::Text(frame.into())).await?;
                if phase.rate.is_some() || window.available_permits() == 0 {
                    sink.flush().await?;
                }
            }
            sink.flush().await?;
            total.store(n - first, Ordering::Release);
            done.notify_one();
            anyhow::Ok(n)
        };
        let reader = async {
            let mut got = 0u64;
            loop {
                if got >= total.load(Ordering::Acquire) {
                    return anyhow::Ok(());
                }
                let m = tokio::select! {
                    m = tokio::time::timeout(Duration::from_secs(30), stream.next()) => m,
                    _ = done.notified() => continue,
                };
                let text = match m {
                    Err(_) => bail!("no answer from the server for 30 s ({got} answers so far)"),
                    Ok(Some(Ok(WsMessage::Text(t)))) => t,
                    Ok(Some(Ok(WsMessage::Close(c)))) => bail!("sender closed by the server: {c:?}"),
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => bail!("sender websocket error: {e}"),
                    Ok(None) => bail!("sender connection closed"),
                };
                let f = Lite::parse(&text)?;
                let is_sent = &*f.t == "sent";
                if !is_sent && &*f.t != "error" {
                    continue; // receipts, presence
                }
                if !is_sent && f.rid.is_none() {
                    bail!("session error: {text}");
                }
                got += 1;
                window.add_permits(1);
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                if is_sent {
                    o.answered += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if now >= phase.window.0 && now < phase.window.1 {
                        o.answered_in_window += 1;
                        let sent_us =
                            f.rid.as_deref().and_then(|r| r.split_once(':')).and_then(|(_, us)| us.parse().ok());
                        if let Some(us) = sent_us {
                            o.ack_latency.record(now_us().saturating_sub(us));
                        }
                    }
                } else {
                    o.errors += 1;
                    if o.first_error.is_none() {
                        o.first_error = Some(text.as_str().to_string());
                    }
                }
            }
        };
        let (n, ()) = tokio::try_join!(writer, reader)?;
        self.next = n;
        let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
        out.sent = n - first;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = payload(2, 17, 123_456, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(parse_payload(p.as_bytes()), Some((2, 17, 123_456)));
        // Shorter than the header: the header is kept whole.
        let p = payload(1, 5, 9, 3);
        assert_eq!(p, "1 5 9 ");
        assert_eq!(parse_payload(p.as_bytes()), Some((1, 5, 9)));
        assert_eq!(parse_payload(b"hello"), None);
    }

    #[test]
    fn lite_frames() {
        let f = Lite::parse(r#"{"type":"message","mid":1,"id":"x","from":"a","gid":3,"seq":4,"pos":9,"ts":1,"mtype":0,"text":"1 2 3 ","edited":false,"deleted":false}"#).unwrap();
        assert_eq!((&*f.t, f.seq, f.pos, f.text.as_deref()), ("message", 4, 9, Some("1 2 3 ")));
        let f = Lite::parse(r#"{"type":"welcome","session":"1","user":{"uid":1,"address":"a","name":"A"},"epoch":"E","resumed":false,"reason":"cursor_ahead"}"#).unwrap();
        assert_eq!((f.epoch.as_deref(), f.resumed, f.reason.as_deref()), (Some("E"), false, Some("cursor_ahead")));
    }
}
