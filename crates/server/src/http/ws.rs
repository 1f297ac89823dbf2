//! `GET /v1/ws`: one WebSocket per client session.
//!
//! The session task owns the socket. It reads client frames and answers them
//! in order (so a user's sends keep their order), and writes what the bus
//! queues for it. It keeps, per session: the sync point (live frames at or
//! below it were in the backlog and are skipped), the messages written but
//! not yet acknowledged (so an `ack` can advance delivery watermarks), and a
//! typing throttle. docs/protocol.md is the reference for the frames.
//!
//! A client that stops reading must not make the server hold memory for it: every write
//! must complete within `session_write_timeout_secs` or the session ends ([`Writer`]); the
//! bus counts the bytes queued for a session and those taken out but not yet flushed against
//! `session_queue_bytes` and drops the session past it (close 4000); the backlog is read and
//! written a page at a time; and a user has at most `max_sessions_per_user` sessions.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use chorus_proto::flags::{presence, status};
use chorus_proto::ws::{ClientFrame, Cursor, ServerFrame, SessionUser};
use chorus_proto::ErrorCode;
use chorus_proto::{GroupId, MessageId, Pos, Seq};
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};

use super::AppState;
use crate::bus::{
    frame_text, outbound, session_queue, token_fingerprint, MsgMeta, Outbound, SessionRx, TooManySessions,
};
use crate::error::ApiError;
use crate::messaging::unacked::Unacked;
use crate::messaging::{BacklogPage, Content, SyncEnd, Target};
use crate::quota::Quota;

/// How long a client has to send `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval; a session silent for three intervals is closed.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Typing-on is forwarded at most this often per conversation.
const TYPING_THROTTLE: Duration = Duration::from_secs(2);
/// WebSocket read and write buffer size; frames larger than this still work.
const SOCKET_BUFFER: usize = 1024;
/// Conversations one session may announce typing in per [`TYPING_THROTTLE`]; more are
/// refused (`rate_limited`), so the typing state stays bounded.
const MAX_TYPING_CONVERSATIONS: usize = 256;
/// Close code telling the client to reconnect and resume (it fell behind, or in a cluster the
/// node's link to the others was interrupted).
const CLOSE_RESYNC: u16 = crate::bus::CLOSE_RESYNC;
/// Close code of a session refused because its user has `max_sessions_per_user` already
/// (1013, "try again later").
const CLOSE_TRY_LATER: u16 = 1013;
/// Bytes of queued frames written before one flush, so that a steady stream of frames
/// cannot keep the session from its other work (reading, the silence check).
const BATCH_BYTES: usize = 64 * 1024;

#[derive(serde::Deserialize)]
pub(super) struct WsQuery {
    token: Option<String>,
    ticket: Option<String>,
}

fn too_many_sessions(max: usize) -> ApiError {
    ApiError::new(ErrorCode::LimitExceeded, format!("too many sessions: a user may have at most {max} open at once"))
}

/// The access token a ticket stands for, redeemed here or (cluster mode) on the node that issued
/// it, while that node is alive.
async fn redeem(s: &AppState, ticket: &str, ip: std::net::IpAddr) -> Result<String, ApiError> {
    if let (Some(fwd), Some(cluster)) = (&s.forward, &s.cluster) {
        let node = super::ticket::Tickets::node_of(ticket).filter(|n| *n != fwd.node_id() && cluster.alive(n));
        if let Some(node) = node {
            let uri = axum::http::Uri::from_static("/internal/ws-ticket");
            let body = axum::body::Bytes::copy_from_slice(ticket.as_bytes());
            let headers = axum::http::HeaderMap::new();
            let r = fwd.forward(node, &axum::http::Method::POST, &uri, &headers, ip, body).await;
            let r =
                r.map_err(|_| ApiError::rate_limited("the node that issued the ticket did not answer; try again"))?;
            if !r.status().is_success() {
                return Err(ApiError::unauthorized());
            }
            let token = axum::body::to_bytes(r.into_body(), 4096).await.map_err(|_| ApiError::unauthorized())?;
            return String::from_utf8(token.to_vec()).map_err(|_| ApiError::unauthorized());
        }
    }
    s.tickets.redeem(ticket, Instant::now()).ok_or_else(ApiError::unauthorized)
}

/// `POST /internal/ws-ticket` (cluster mode, and only as forwarded by another node): redeems a
/// ticket this node issued for a WebSocket opened on that node; answers the access token.
pub(super) async fn redeem_forwarded(
    State(s): State<AppState>,
    forwarded: Option<axum::Extension<crate::cluster::forward::Forwarded>>,
    ticket: String,
) -> Result<String, ApiError> {
    if forwarded.is_none() {
        return Err(ApiError::not_found("no such endpoint"));
    }
    s.tickets.redeem(&ticket, Instant::now()).ok_or_else(ApiError::unauthorized)
}

/// `GET /v1/ws?ticket=…` (from `POST /v1/ws/ticket`), `Authorization: Bearer …` or
/// `?token=…`: upgrades after the credential checks out.
pub(super) async fn upgrade(
    State(s): State<AppState>,
    super::ClientIp(ip): super::ClientIp,
    parts: Parts,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|r| ApiError::bad_request(format!("not a WebSocket upgrade request: {}", r.body_text())))?;
    let query: WsQuery = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let token = match query.ticket {
        Some(ticket) => redeem(&s, &ticket, ip).await?,
        None => query.token.or_else(|| super::bearer(&parts).map(str::to_string)).ok_or_else(ApiError::unauthorized)?,
    };
    let user = s.accounts.authenticate(&token).await?;
    // Checked again (race-free) when the session registers after `hello`; refusing here
    // spares the upgrade and gives non-browser clients the code in the HTTP answer.
    let most = s.cfg.max_sessions_per_user;
    if s.messaging.bus().sessions(user.uid.get()) >= most {
        return Err(too_many_sessions(most));
    }
    let max = s.cfg.max_frame_bytes;
    // Small buffers: most sessions are idle most of the time, and tungstenite's
    // defaults (128 KiB each way) dominate the memory of an idle session.
    let ws = ws.read_buffer_size(SOCKET_BUFFER).write_buffer_size(SOCKET_BUFFER);
    Ok(ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| run(socket, s, user, token)))
}

fn text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(frame_text(frame))
}

fn error_frame(rid: Option<String>, id: Option<String>, e: &ApiError) -> ServerFrame {
    let st = id.as_ref().map(|_| match e.code {
        ErrorCode::NotFound => status::INVALID_DEST,
        ErrorCode::Forbidden => status::NOT_MEMBER,
        ErrorCode::RateLimited | ErrorCode::TooLarge => status::RETRY_LATER,
        _ => status::FAIL,
    });
    ServerFrame::Error { rid, id, code: e.code, message: e.message.clone(), status: st }
}

/// A refused 1:1 call request: the error, with Mesibo's call status in `status`.
fn direct_error(rid: Option<String>, r: crate::call::direct::Refused) -> ServerFrame {
    ServerFrame::Error { rid, id: None, code: r.error.code, message: r.error.message, status: r.status }
}

fn direct_answer(rid: Option<String>, r: Result<(), crate::call::direct::Refused>) -> ServerFrame {
    match r {
        Ok(()) => ServerFrame::Ok { rid },
        Err(e) => direct_error(rid, e),
    }
}

fn ok_or_error(rid: Option<String>, r: Result<(), ApiError>) -> ServerFrame {
    match r {
        Ok(()) => ServerFrame::Ok { rid },
        Err(e) => error_frame(rid, None, &e),
    }
}

/// An answer to a client frame: ready now, or after the writer commits.
type Reply = Pin<Box<dyn Future<Output = ServerFrame> + Send>>;

fn now(frame: ServerFrame) -> Reply {
    Box::pin(std::future::ready(frame))
}

/// Most sends one session may have waiting for their commit; reading pauses beyond it.
const MAX_IN_FLIGHT: usize = 64;

struct Session {
    s: AppState,
    user: SessionUser,
    id: u64,
    /// Live message frames with `pos` at or below this were in the backlog.
    synced_to: i64,
    /// Messages written to the client, waiting for its `ack` (bounded: see [`Unacked`]).
    unacked: Unacked,
    typing_sent: HashMap<Target, Instant>,
    /// The call this session is in, if any.
    call: Option<crate::call::CallSession>,
    /// The budget of call frames (`session_call_frames_per_second`), made at the first one.
    call_budget: Option<Box<Budget>>,
    /// A call frame was read past the call budget: its cell is taken before the next read.
    call_owed: bool,
}

type Budget = governor::DefaultDirectRateLimiter;

/// Whether a frame is handled by a call's room (or starts, rings or ends a call).
fn is_call(f: &ClientFrame) -> bool {
    use ClientFrame as F;
    match f {
        F::CallJoin { .. }
        | F::CallLeave { .. }
        | F::CallPublish(_)
        | F::CallUnpublish { .. }
        | F::CallRestart { .. }
        | F::CallSubscribe { .. }
        | F::CallUnsubscribe { .. }
        | F::CallAnswer { .. }
        | F::CallMute { .. }
        | F::CallAdmin { .. }
        | F::CallRecord { .. }
        | F::CallHand { .. }
        | F::CallAudience { .. }
        | F::CallDial { .. }
        | F::CallAccept { .. }
        | F::CallDecline { .. }
        | F::CallHangup { .. } => true,
        F::Hello { .. }
        | F::Ping { .. }
        | F::Send { .. }
        | F::Edit { .. }
        | F::Delete { .. }
        | F::Ack { .. }
        | F::Read { .. }
        | F::Typing { .. } => false,
    }
}

/// A budget of `per_second` events, `burst` at once.
fn budget(per_second: u32, burst: u32) -> Budget {
    let n = |v: u32| NonZeroU32::new(v.max(1)).expect("at least 1");
    governor::RateLimiter::direct(governor::Quota::per_second(n(per_second)).allow_burst(n(burst)))
}

/// Takes one event from `b` if `owed`, clearing it; else how long until `b` allows one.
fn pay(b: &Budget, owed: &mut bool) -> Duration {
    if !*owed {
        return Duration::ZERO;
    }
    match b.check() {
        Ok(()) => {
            *owed = false;
            Duration::ZERO
        }
        Err(later) => later.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default())),
    }
}

/// The next frame the session's call sends; pending while it is in no call.
async fn next_call_frame(call: &mut Option<crate::call::CallSession>) -> Option<Utf8Bytes> {
    match call {
        Some(c) => c.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The session is over (the connection broke, a write timed out, or it was closed).
#[derive(Debug)]
struct Ended;

type Sink = futures_util::stream::SplitSink<WebSocket, WsMessage>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

/// The write half of a session's socket. Every write must complete within `timeout`, so a
/// client that stops reading cannot keep a write pending, nor what waits behind it; after a
/// write has timed out the connection is only dropped (a close frame could not get out).
struct Writer {
    sink: Sink,
    timeout: Duration,
    /// One timer for every write, reset each time.
    deadline: Pin<Box<tokio::time::Sleep>>,
    stuck: bool,
}

impl Writer {
    fn new(sink: Sink, timeout: Duration) -> Writer {
        Writer { sink, timeout, deadline: Box::pin(tokio::time::sleep(timeout)), stuck: false }
    }

    async fn timed(&mut self, flush: bool, frame: Option<WsMessage>) -> Result<(), Ended> {
        if self.stuck {
            return Err(Ended);
        }
        self.deadline.as_mut().reset(tokio::time::Instant::now() + self.timeout);
        let sink = &mut self.sink;
        let done = tokio::select! {
            biased;
            r = async {
                if let Some(f) = frame {
                    sink.feed(f).await?;
                }
                if flush {
                    sink.flush().await?;
                }
                Ok::<(), axum::Error>(())
            } => Some(r),
            _ = &mut self.deadline => None,
        };
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(Ended),
            None => {
                tracing::debug!("session write timed out: the client is not reading");
                self.stuck = true;
                Err(Ended)
            }
        }
    }

    /// Queues a frame (written out as the buffer fills; see [`Writer::flush`]).
    async fn feed(&mut self, frame: WsMessage) -> Result<(), Ended> {
        self.timed(false, Some(frame)).await
    }

    async fn flush(&mut self) -> Result<(), Ended> {
        self.timed(true, None).await
    }

    async fn send(&mut self, frame: WsMessage) -> Result<(), Ended> {
        self.timed(true, Some(frame)).await
    }

    async fn frame(&mut self, frame: &ServerFrame) -> Result<(), Ended> {
        self.send(text(frame)).await
    }

    /// Closes with `code`, unless the socket is stuck (then it is only dropped).
    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self.send(WsMessage::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await;
    }
}

/// One session. Most sessions are idle most of the time, and an idle session's memory is
/// mostly the size of this future (the largest state it can be in), so every await that
/// only runs now and then (the handshake, a request's handling) is boxed: it takes heap
/// only while it runs, and the idle state stays small.
async fn run(socket: WebSocket, s: AppState, user: SessionUser, token: String) {
    let (sink, mut stream) = socket.split();
    let mut out = Writer::new(sink, Duration::from_secs(s.cfg.session_write_timeout_secs));
    // 1. hello
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let hello = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            // WebSocket pings and pongs may come before hello; the library answers pings.
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
            other => break other,
        }
    };
    let resume = match hello {
        Ok(Some(Ok(WsMessage::Text(t)))) => match serde_json::from_str::<ClientFrame>(&t) {
            Ok(ClientFrame::Hello { resume }) => resume,
            Ok(_) => return close_with(&mut out, ApiError::bad_request("the first frame must be hello")).await,
            Err(e) => return close_with(&mut out, ApiError::bad_request(format!("bad frame: {e}"))).await,
        },
        Ok(Some(Ok(WsMessage::Binary(_)))) => {
            return close_with(&mut out, ApiError::bad_request("binary frames are not supported; send JSON text")).await
        }
        Ok(_) => return, // closed or broken before hello
        Err(_) => return close_with(&mut out, ApiError::bad_request("no hello within 10 seconds")).await,
    };
    let id = s.next_session.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, mut rx) = session_queue(s.cfg.session_queue, s.cfg.session_queue_bytes);
    // 2. attach before reading the backlog, so nothing falls in between.
    let most = s.cfg.max_sessions_per_user;
    let first = match s.messaging.bus().attach(user.uid.get(), id, token_fingerprint(&token), tx, most) {
        Ok(first) => first,
        Err(TooManySessions) => {
            if out.frame(&error_frame(None, None, &too_many_sessions(most))).await.is_ok() {
                out.close(CLOSE_TRY_LATER, "too many sessions").await;
            }
            return;
        }
    };
    let _open = crate::metrics::Live::new(&crate::metrics::metrics().sessions);
    crate::metrics::metrics().sessions_opened.inc();
    // The token was checked at the upgrade; a revocation since then could not
    // reach this session before it was attached. Check again now that it is.
    if Box::pin(s.accounts.authenticate(&token)).await.is_err() {
        s.messaging.bus().detach(user.uid.get(), id);
        if out.frame(&error_frame(None, None, &ApiError::unauthorized())).await.is_ok() {
            out.close(crate::accounts::CLOSE_UNAUTHORIZED, "session ended").await;
        }
        return;
    }
    let mut sess = Session {
        s: s.clone(),
        user: user.clone(),
        id,
        synced_to: 0,
        unacked: Unacked::default(),
        typing_sent: HashMap::new(),
        call: None,
        call_budget: None,
        call_owed: false,
    };
    let result = Box::pin(sess.start(&mut out, &rx, resume)).await;
    if result.is_ok() {
        if first {
            Box::pin(s.presence.came_online(&user)).await;
        }
        if Box::pin(sess.online_contacts(&mut out)).await.is_ok() {
            sess.main_loop(&mut out, &mut stream, &mut rx).await;
        }
    }
    // The 1:1 call this session placed or answered ends with it.
    s.direct.session_gone(&user, id);
    if s.messaging.bus().detach(user.uid.get(), id) {
        s.presence.went_away(user);
    }
}

/// Reports a failure to the client and ends the session.
async fn fail(out: &mut Writer, e: &ApiError) -> Result<(), Ended> {
    let _ = out.frame(&error_frame(None, None, e)).await;
    Err(Ended)
}

async fn close_with(out: &mut Writer, e: ApiError) {
    if out.frame(&error_frame(None, None, &e)).await.is_ok() {
        out.close(1008, "protocol error").await;
    }
}

impl Session {
    /// Pays what the frames read past their budgets owe; how long to wait before reading on
    /// (zero: read on).
    fn settle(&mut self, frames: &Budget, frame_owed: &mut bool) -> Duration {
        let wait = pay(frames, frame_owed);
        if !wait.is_zero() {
            return wait;
        }
        match &self.call_budget {
            Some(b) => pay(b, &mut self.call_owed),
            None => Duration::ZERO,
        }
    }

    /// Remembers a message written to the client until its `ack`.
    fn remember(&mut self, meta: MsgMeta) {
        self.unacked.remember(meta);
    }

    /// Backlog messages per page: about `session_queue_bytes` of messages `size` bytes long
    /// (at first the largest allowed; then the average of the page before), 16 to 256.
    fn page_rows(&self, size: usize) -> usize {
        let cfg = &self.s.cfg;
        (cfg.session_queue_bytes / size.max(1)).clamp(16, 256).min(cfg.sync_limit)
    }

    /// The backlog's first page, and where the sync ends (looked up only when the first page
    /// does not hold everything).
    async fn first_page(
        &self,
        resume_pos: Option<i64>,
        head: i64,
        rows: usize,
    ) -> Result<(BacklogPage, SyncEnd), ApiError> {
        let m = &self.s.messaging;
        let page = m.backlog_page(&self.user, resume_pos.is_some(), resume_pos.unwrap_or(-1), head, rows).await?;
        let end = if page.more {
            m.sync_end(&self.user, resume_pos, head).await?
        } else {
            SyncEnd { covered_to: head, complete: true }
        };
        Ok((page, end))
    }

    /// Sends `welcome`, the backlog (a page at a time) and `synced`.
    async fn start(&mut self, out: &mut Writer, rx: &SessionRx, resume: Option<Cursor>) -> Result<(), Ended> {
        let epoch = self.s.messaging_epoch();
        let head = match self.s.messaging.head().await {
            Ok(h) => h,
            Err(e) => return fail(out, &e).await,
        };
        let (mut resume_pos, mut reason) = match &resume {
            None => (None, None),
            Some(c) if c.epoch != epoch => (None, Some("epoch_mismatch")),
            Some(c) if c.pos > Pos(head) || c.pos < Pos(0) => (None, Some("cursor_ahead")),
            Some(c) => (Some(c.pos), None),
        };
        let mut rows = self.page_rows(self.s.cfg.max_message_bytes);
        let (mut page, mut end) = match self.first_page(resume_pos.map(Pos::get), head, rows).await {
            Ok(x) => x,
            Err(e) => return fail(out, &e).await,
        };
        if resume_pos.is_some() && !end.complete {
            // A cursor we cannot honour: deliver what was never delivered instead; the
            // client also reloads history.
            reason = Some("gap_too_large");
            resume_pos = None;
            (page, end) = match self.first_page(None, head, rows).await {
                Ok(x) => x,
                Err(e) => return fail(out, &e).await,
            };
        }
        let welcome = ServerFrame::Welcome {
            session: self.id.to_string(),
            user: self.user.clone(),
            epoch,
            resumed: resume_pos.is_some(),
            reason: reason.map(str::to_string),
        };
        out.frame(&welcome).await?;
        let mut count = 0u64;
        loop {
            let (more, last, n) = (page.more, page.last, page.messages.len());
            let mut bytes = 0;
            for (m, meta) in page.messages {
                if meta.sender != self.user.uid.get() {
                    self.remember(meta);
                }
                let json = frame_text(&ServerFrame::Message(m));
                bytes += json.len();
                out.feed(WsMessage::Text(json)).await?;
                count += 1;
            }
            out.flush().await?;
            if let Some(size) = bytes.checked_div(n) {
                rows = self.page_rows(size);
            }
            if rx.fell_behind() {
                out.close(CLOSE_RESYNC, "fell behind; reconnect and resume").await;
                return Err(Ended);
            }
            let (true, Some(after)) = (more, last) else { break };
            page = match self
                .s
                .messaging
                .backlog_page(&self.user, resume_pos.is_some(), after, end.covered_to, rows)
                .await
            {
                Ok(p) => p,
                Err(e) => return fail(out, &e).await,
            };
        }
        self.synced_to = end.covered_to;
        out.frame(&ServerFrame::Synced { pos: Pos(end.covered_to), count, complete: end.complete }).await
    }

    /// Tells the new session which of its contacts are online.
    async fn online_contacts(&self, out: &mut Writer) -> Result<(), Ended> {
        let Ok(contacts) = self.s.messaging.contacts(self.user.uid.get()).await else { return Ok(()) };
        for uid in contacts {
            let bus = self.s.messaging.bus();
            // Announced here, or online on another node (which announced them).
            if (bus.online(uid) && self.s.presence.is_announced(uid)) || bus.elsewhere(uid) {
                if let Ok(Some(addr)) = self.s.messaging_address(uid).await {
                    out.feed(text(&ServerFrame::Presence {
                        from: addr,
                        peer: None,
                        gid: None,
                        presence: presence::ONLINE,
                    }))
                    .await?;
                }
            }
        }
        out.flush().await
    }

    async fn main_loop(&mut self, out: &mut Writer, stream: &mut Stream, rx: &mut SessionRx) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut last_heard = Instant::now();
        // Every frame costs the server some work, an unparsable one too, and a call frame its
        // room's: past either budget a session is not read (its client is slowed down by TCP,
        // nothing is refused) until the budget allows the next frame, while what is queued for
        // it still goes out.
        let cfg = &self.s.cfg;
        // Never below what the send limit lets a session send (plus acks and reads).
        let frames = budget(
            cfg.session_frames_per_second.max(cfg.sends_per_second.saturating_add(50)),
            cfg.session_frame_burst.max(cfg.send_burst.saturating_add(200)),
        );
        let mut paused = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        let mut is_paused = false;
        // A frame read past the budget is owed: paid (its cell taken) before the next read.
        let mut frame_owed = false;
        // Answers in the order the frames came, each written once it is ready.
        let mut answers: FuturesOrdered<Reply> = FuturesOrdered::new();
        // Every arm's writes are bounded by the write timeout, so the loop comes back here
        // (to read, and to the silence check) however the client behaves.
        loop {
            tokio::select! {
                () = &mut paused, if is_paused => {
                    let wait = self.settle(&frames, &mut frame_owed);
                    if wait.is_zero() {
                        is_paused = false;
                    } else {
                        paused.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                }
                incoming = stream.next(), if answers.len() < MAX_IN_FLIGHT && !is_paused => {
                    last_heard = Instant::now();
                    frame_owed = frames.check().is_err();
                    let reply = match incoming {
                        Some(Ok(WsMessage::Text(t))) => Box::pin(self.dispatch(out, &t)).await,
                        Some(Ok(WsMessage::Binary(_))) => Some(now(error_frame(None, None, &ApiError::bad_request("binary frames are not supported; send JSON text")))),
                        Some(Ok(WsMessage::Close(_))) | None => return,
                        Some(Ok(_)) => None, // ping/pong handled by the library
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "websocket read error");
                            let text_of = e.to_string();
                            let err = if text_of.contains("too long") || text_of.contains("too big") {
                                ApiError::new(ErrorCode::TooLarge, "frame larger than max_frame_bytes")
                            } else {
                                ApiError::bad_request("malformed websocket data")
                            };
                            if out.frame(&error_frame(None, None, &err)).await.is_ok() {
                                out.close(1009, "bad frame").await;
                            }
                            return;
                        }
                    };
                    if let Some(answer) = reply {
                        answers.push_back(answer);
                    }
                    let wait = self.settle(&frames, &mut frame_owed);
                    if !wait.is_zero() {
                        paused.as_mut().reset(tokio::time::Instant::now() + wait);
                        is_paused = true;
                    }
                }
                Some(answer) = answers.next(), if !answers.is_empty() => {
                    if out.frame(&answer).await.is_err() {
                        return;
                    }
                }
                queued = rx.recv() => {
                    let Some(queued) = queued else {
                        // The bus dropped us (queue overflow): make the client resume.
                        out.close(CLOSE_RESYNC, "fell behind; reconnect and resume").await;
                        return;
                    };
                    if self.write_queued(out, rx, queued).await.is_err() {
                        return;
                    }
                }
                frame = next_call_frame(&mut self.call) => match frame {
                    Some(json) => {
                        if out.send(WsMessage::Text(json)).await.is_err() {
                            return;
                        }
                    }
                    // The room let us go (left, removed, timed out, call over).
                    None => self.call = None,
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > PING_EVERY * 3 {
                        tracing::debug!(session = self.id, "closing silent session");
                        return;
                    }
                    if out.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to [`BATCH_BYTES`]) with one flush;
    /// their bytes count against the session's budget until that flush is done.
    async fn write_queued(&mut self, out: &mut Writer, rx: &mut SessionRx, first: Arc<Outbound>) -> Result<(), Ended> {
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(o) = next.take() {
            if rx.fell_behind() {
                // The bus let the session go: the client resumes from its cursor, so what is
                // still queued is dropped rather than written first.
                out.close(CLOSE_RESYNC, "fell behind; reconnect and resume").await;
                return Err(Ended);
            }
            taken += o.json.len();
            // An empty frame is a close without a frame before it (`bus::close_only`).
            if self.wanted(&o) && !o.json.is_empty() {
                // A clone of the shared buffer: every recipient writes the same bytes.
                out.feed(WsMessage::Text(o.json.clone())).await?;
            }
            if let Some(code) = o.close {
                out.close(code, if code == CLOSE_RESYNC { "reconnect and resume" } else { "session ended" }).await;
                return Err(Ended);
            }
            if taken < BATCH_BYTES {
                next = rx.try_recv();
            }
        }
        out.flush().await?;
        rx.release(taken);
        Ok(())
    }

    /// Whether a queued frame goes out, recording messages that await an ack.
    fn wanted(&mut self, out: &Outbound) -> bool {
        if let Some(meta) = out.msg {
            if meta.pos <= self.synced_to || out.origin == self.id {
                return false;
            }
            if meta.sender != self.user.uid.get() {
                self.remember(meta);
            }
        }
        true
    }

    /// Parses one client frame and answers it. Returns the reply to send, if any: sends are
    /// queued and answered when they commit, call requests when the room answers, everything
    /// else is answered before returning. One exhaustive match: a frame added to the protocol
    /// does not compile until it is routed here, so client input can never reach a panic.
    async fn dispatch(&mut self, out: &mut Writer, raw: &str) -> Option<Reply> {
        let frame: ClientFrame = match serde_json::from_str(raw) {
            Ok(f) => f,
            Err(e) => return Some(now(error_frame(None, None, &ApiError::bad_request(format!("bad frame: {e}"))))),
        };
        if is_call(&frame) {
            let cfg = &self.s.cfg;
            let b = self.call_budget.get_or_insert_with(|| {
                Box::new(budget(cfg.session_call_frames_per_second, cfg.session_call_frame_burst))
            });
            self.call_owed = b.check().is_err();
        }
        match frame {
            ClientFrame::Hello { .. } => {
                Some(now(error_frame(None, None, &ApiError::bad_request("hello was already received"))))
            }
            ClientFrame::Ping { rid } => Some(now(ServerFrame::Pong { rid })),
            ClientFrame::Send { rid, id, peer, gid, text, data, file, mtype } => Some(
                self.start_send(
                    rid,
                    id,
                    Target::from_parts(peer, gid.map(GroupId::get)),
                    Content { text, data, file: file.map(|f| *f) },
                    mtype,
                )
                .await,
            ),
            ClientFrame::Edit { rid, mid, text, data } => {
                Some(now(self.change(rid, mid.get(), Some(Content { text, data, file: None })).await))
            }
            ClientFrame::Delete { rid, mid } => Some(now(self.change(rid, mid.get(), None).await)),
            ClientFrame::Ack { pos } => self.ack(pos.get()).await.map(now),
            ClientFrame::Read { rid, peer, gid, seq } => {
                Some(now(self.read(rid, peer, gid.map(GroupId::get), seq.get()).await))
            }
            ClientFrame::Typing { peer, gid, on } => self.typing(peer, gid.map(GroupId::get), on).await.map(now),
            ClientFrame::CallJoin { rid, gid } => Some(self.call_join(rid, gid.get()).await),
            ClientFrame::CallLeave { rid } => Some(self.call_leave(out, rid).await),
            // The other call frames are answered by the session's room.
            call @ (ClientFrame::CallPublish(_)
            | ClientFrame::CallUnpublish { .. }
            | ClientFrame::CallRestart { .. }
            | ClientFrame::CallSubscribe { .. }
            | ClientFrame::CallUnsubscribe { .. }
            | ClientFrame::CallAnswer { .. }
            | ClientFrame::CallMute { .. }
            | ClientFrame::CallAdmin { .. }
            | ClientFrame::CallRecord { .. }
            | ClientFrame::CallHand { .. }
            | ClientFrame::CallAudience { .. }) => Some(self.call_request(call)),
            ClientFrame::CallDial { rid, peer, video } => {
                let uid = self.user.uid.get();
                let share = match self.s.groups.quotas().take(Quota::CallsStarted, uid, 1) {
                    Ok(share) => share,
                    Err(e) => return Some(now(error_frame(rid, None, &e))),
                };
                let r = self.s.direct.dial(&self.user, self.id, &peer, video, rid.clone()).await;
                if r.is_ok() {
                    share.keep();
                }
                Some(now(r.unwrap_or_else(|e| direct_error(rid, e))))
            }
            ClientFrame::CallAccept { rid, call } => {
                Some(now(direct_answer(rid, self.s.direct.accept(&self.user, self.id, call).await)))
            }
            ClientFrame::CallDecline { rid, call } => {
                Some(now(direct_answer(rid, self.s.direct.decline(&self.user, call).await)))
            }
            ClientFrame::CallHangup { rid, call } => {
                Some(now(direct_answer(rid, self.s.direct.hangup(&self.user, call).await)))
            }
        }
    }

    /// Joins a call. One call per session. Joining another call leaves the current one
    /// (`left`, as a `call_leave` would). Joining the same call again replaces the session's
    /// place: the old place is kept until the room has the new join, so the room sees the same
    /// user joining again (`replaced` for the others), not a session that vanished.
    async fn call_join(&mut self, rid: Option<String>, gid: i64) -> Reply {
        // The first to join a group's call starts it (a 1:1 call's room is started by its dial).
        let starts = gid > 0
            && match &self.s.call_router {
                // In a cluster the call may be held by another node.
                Some(router) => !router.in_progress(gid).await,
                None => !self.s.calls.live().iter().any(|c| c.gid == gid),
            };
        let share = match self.s.groups.quotas().take(Quota::CallsStarted, self.user.uid.get(), u32::from(starts)) {
            Ok(share) => share,
            Err(e) => return now(error_frame(rid, None, &e)),
        };
        let old = self.call.take();
        if let Some(old) = old.as_ref().filter(|c| c.gid != gid) {
            drop(old.request(ClientFrame::CallLeave { rid: None }));
        }
        // A negative gid is the media room of a 1:1 call (docs/protocol.md §17).
        let joined = if gid < 0 {
            self.s.direct.join(&self.user, self.id, gid, rid.clone()).await
        } else if let Some(router) = &self.s.call_router {
            router.join(&self.user, self.id, gid, rid.clone()).await
        } else {
            self.s.calls.join(&self.user, self.id, gid, rid.clone()).await
        };
        if joined.is_ok() {
            share.keep();
        }
        drop(old);
        match joined {
            Ok((call, joined)) => {
                self.call = Some(call);
                now(joined)
            }
            Err(e) => now(error_frame(rid, None, &e)),
        }
    }

    /// Leaves the session's call. The room answers, takes the session out and queues its `left`
    /// as the last frame of the call; everything the call still had for the session, that `left`
    /// included, is written before the answer.
    async fn call_leave(&mut self, out: &mut Writer, rid: Option<String>) -> Reply {
        let Some(mut call) = self.call.take() else {
            return now(error_frame(rid, None, &ApiError::not_found("not in a call: send call_join first")));
        };
        let answer = call.request(ClientFrame::CallLeave { rid: rid.clone() }).await;
        let answer = answer.unwrap_or_else(|_| error_frame(rid, None, &ApiError::not_found("the call has ended")));
        if matches!(answer, ServerFrame::Error { code: ErrorCode::RateLimited, .. }) {
            self.call = Some(call); // not taken out: still in the call
            return now(answer);
        }
        // The room let go of the session's queue when it took it out: it ends at once.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(json)) = tokio::time::timeout_at(until, call.rx.recv()).await {
            if out.feed(WsMessage::Text(json)).await.is_err() {
                break;
            }
        }
        let _ = out.flush().await;
        now(answer)
    }

    /// Passes a call frame to the session's room; its answer is written in request order.
    fn call_request(&mut self, frame: ClientFrame) -> Reply {
        let rid = frame.rid().map(str::to_string);
        let Some(call) = &self.call else {
            return now(error_frame(rid, None, &ApiError::not_found("not in a call: send call_join first")));
        };
        let answer = call.request(frame);
        Box::pin(async move {
            answer.await.unwrap_or_else(|_| error_frame(rid, None, &ApiError::not_found("the call has ended")))
        })
    }

    /// Checks and queues a send; its `sent` (or `error`) comes after the commit.
    async fn start_send(
        &mut self,
        rid: Option<String>,
        id: String,
        target: Result<Target, ApiError>,
        content: Content,
        mtype: Option<u32>,
    ) -> Reply {
        let m = &self.s.messaging;
        let ticket = match target {
            Ok(t) => m.enqueue_send(&self.user, &t, &id, mtype.unwrap_or(0), &content, self.id).await,
            Err(e) => Err(e),
        };
        let ticket = match ticket {
            Ok(t) => t,
            Err(e) => return now(error_frame(rid, Some(id), &e)),
        };
        // The commit is awaited beside the read loop, so the client can pipeline sends.
        Box::pin(async move {
            match ticket.wait().await {
                Ok(i) => ServerFrame::Sent {
                    rid,
                    id,
                    mid: MessageId(i.mid),
                    seq: Seq(i.seq),
                    pos: Pos(i.pos),
                    ts: i.ts,
                    status: status::SENT,
                    duplicate: i.duplicate,
                },
                Err(e) => error_frame(rid, Some(id), &e),
            }
        })
    }

    /// Edits (`Some`) or deletes (`None`) one of the user's messages.
    async fn change(&self, rid: Option<String>, mid: i64, content: Option<Content>) -> ServerFrame {
        ok_or_error(rid, self.s.messaging.change(&self.user, mid, content, self.id).await)
    }

    /// Advances the delivery watermarks of the messages acknowledged up to `pos`.
    async fn ack(&mut self, pos: i64) -> Option<ServerFrame> {
        let m = &self.s.messaging;
        for (conv, seq) in self.unacked.ack(pos) {
            if let Err(e) = m.watermark(&self.user, conv, seq, false).await {
                return Some(error_frame(None, None, &e));
            }
        }
        None
    }

    /// Marks a conversation read up to `seq`.
    async fn read(&self, rid: Option<String>, peer: Option<String>, gid: Option<i64>, seq: i64) -> ServerFrame {
        let m = &self.s.messaging;
        let res = async {
            let t = Target::from_parts(peer, gid)?;
            let conv = m
                .conversation(&self.user, &t)
                .await?
                .ok_or_else(|| ApiError::not_found("no messages in this conversation"))?;
            m.watermark(&self.user, conv, seq, true).await
        }
        .await;
        ok_or_error(rid, res)
    }

    /// Forwards typing on or off to the conversation (throttled).
    async fn typing(&mut self, peer: Option<String>, gid: Option<i64>, on: bool) -> Option<ServerFrame> {
        let m = &self.s.messaging;
        let t = match Target::from_parts(peer, gid) {
            Ok(t) => t,
            Err(e) => return Some(error_frame(None, None, &e)),
        };
        let now = Instant::now();
        if on && self.typing_sent.get(&t).is_some_and(|at| now.duration_since(*at) < TYPING_THROTTLE) {
            return None;
        }
        if !on && !self.typing_sent.contains_key(&t) {
            return None; // never announced typing here
        }
        if on && self.typing_sent.len() >= MAX_TYPING_CONVERSATIONS {
            self.typing_sent.retain(|_, at| now.duration_since(*at) < TYPING_THROTTLE);
            if self.typing_sent.len() >= MAX_TYPING_CONVERSATIONS {
                // Refused before the audience lookup: a flood over many conversations costs
                // neither a query nor a fan-out each.
                let e = ApiError::rate_limited("typing in too many conversations at once");
                return Some(error_frame(None, None, &e));
            }
        }
        match m.typing_audience(&self.user, &t).await {
            Ok((uids, peer, gid)) => {
                if on {
                    self.typing_sent.insert(t, now);
                } else {
                    self.typing_sent.remove(&t);
                }
                let value = if on { presence::TYPING } else { presence::TYPING_CLEARED };
                let frame = ServerFrame::Presence {
                    from: self.user.address.clone(),
                    peer,
                    gid: gid.map(GroupId),
                    presence: value,
                };
                m.bus().deliver(&mut uids.into_iter(), outbound(&frame, None, self.id));
                None
            }
            Err(e) => Some(error_frame(None, None, &e)),
        }
    }
}

impl AppState {
    fn messaging_epoch(&self) -> String {
        self.epoch.to_string()
    }

    async fn messaging_address(&self, uid: i64) -> Result<Option<String>, ApiError> {
        self.accounts.address_of(uid).await
    }
}
