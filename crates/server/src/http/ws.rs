//! `GET /v1/ws`: one WebSocket per client session.
//!
//! The session task owns the socket. It reads client frames and answers them
//! in order (so a user's sends keep their order), and writes what the bus
//! queues for it. It keeps, per session: the sync point (live frames at or
//! below it were in the backlog and are skipped), the messages written but
//! not yet acknowledged (so an `ack` can advance delivery watermarks), and a
//! typing throttle. docs/protocol.md is the reference for the frames.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
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
use chorus_proto::ws::{ClientFrame, ServerFrame, SessionUser};
use chorus_proto::ErrorCode;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::AppState;
use crate::bus::{token_fingerprint, MsgMeta, Outbound};
use crate::error::ApiError;
use crate::messaging::{Content, Target};

/// How long a client has to send `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval; a session silent for three intervals is closed.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Typing-on is forwarded at most this often per conversation.
const TYPING_THROTTLE: Duration = Duration::from_secs(2);
/// WebSocket read and write buffer size; frames larger than this still work.
const SOCKET_BUFFER: usize = 1024;
/// Conversations whose typing state one session tracks before old entries are pruned.
const MAX_TYPING_CONVERSATIONS: usize = 256;
/// Close code telling the client to reconnect and resume (it fell behind).
const CLOSE_RESYNC: u16 = 4000;

#[derive(serde::Deserialize)]
pub(super) struct WsQuery {
    token: Option<String>,
}

/// `GET /v1/ws?token=…` (or `Authorization: Bearer …`): upgrades after the token checks out.
pub(super) async fn upgrade(
    State(s): State<AppState>,
    super::ClientIp(_ip): super::ClientIp,
    parts: Parts,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|r| ApiError::bad_request(format!("not a WebSocket upgrade request: {}", r.body_text())))?;
    let query: WsQuery = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let token = query.token.or_else(|| super::bearer(&parts).map(str::to_string)).ok_or_else(ApiError::unauthorized)?;
    let user = s.accounts.authenticate(&token).await?;
    let max = s.cfg.max_frame_bytes;
    // Small buffers: most sessions are idle most of the time, and tungstenite's
    // defaults (128 KiB each way) dominate the memory of an idle session.
    let ws = ws.read_buffer_size(SOCKET_BUFFER).write_buffer_size(SOCKET_BUFFER);
    Ok(ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| run(socket, s, user, token)))
}

fn text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(serde_json::to_string(frame).expect("server frames serialise").into())
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
    /// Messages written to the client, waiting for its `ack`.
    unacked: VecDeque<MsgMeta>,
    typing_sent: HashMap<Target, Instant>,
    /// The call this session is in, if any.
    call: Option<crate::call::CallSession>,
}

/// The next frame the session's call sends; pending while it is in no call.
async fn next_call_frame(call: &mut Option<crate::call::CallSession>) -> Option<Arc<str>> {
    match call {
        Some(c) => c.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One session. Most sessions are idle most of the time, and an idle session's memory is
/// mostly the size of this future (the largest state it can be in), so every await that
/// only runs now and then (the handshake, a request's handling) is boxed: it takes heap
/// only while it runs, and the idle state stays small.
async fn run(socket: WebSocket, s: AppState, user: SessionUser, token: String) {
    let (mut sink, mut stream) = socket.split();
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
            Ok(_) => return close_with(&mut sink, ApiError::bad_request("the first frame must be hello")).await,
            Err(e) => return close_with(&mut sink, ApiError::bad_request(format!("bad frame: {e}"))).await,
        },
        Ok(Some(Ok(WsMessage::Binary(_)))) => {
            return close_with(&mut sink, ApiError::bad_request("binary frames are not supported; send JSON text"))
                .await
        }
        Ok(_) => return, // closed or broken before hello
        Err(_) => return close_with(&mut sink, ApiError::bad_request("no hello within 10 seconds")).await,
    };
    let id = s.next_session.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, mut rx) = mpsc::channel::<Arc<Outbound>>(s.cfg.session_queue);
    // 2. attach before reading the backlog, so nothing falls in between.
    let first = s.messaging.bus().attach(user.uid, id, token_fingerprint(&token), tx);
    // The token was checked at the upgrade; a revocation since then could not
    // reach this session before it was attached. Check again now that it is.
    if Box::pin(s.accounts.authenticate(&token)).await.is_err() {
        s.messaging.bus().detach(user.uid, id);
        let _ = sink.send(text(&error_frame(None, None, &ApiError::unauthorized()))).await;
        let _ = sink
            .send(WsMessage::Close(Some(CloseFrame {
                code: crate::accounts::CLOSE_UNAUTHORIZED,
                reason: Utf8Bytes::from_static("session ended"),
            })))
            .await;
        return;
    }
    let mut sess = Session {
        s: s.clone(),
        user: user.clone(),
        id,
        synced_to: 0,
        unacked: VecDeque::new(),
        typing_sent: HashMap::new(),
        call: None,
    };
    let result = Box::pin(sess.start(&mut sink, resume)).await;
    if result.is_ok() {
        if first {
            Box::pin(s.presence.came_online(&user)).await;
        }
        Box::pin(sess.online_contacts(&mut sink)).await.ok();
        sess.main_loop(&mut sink, &mut stream, &mut rx).await;
    }
    if s.messaging.bus().detach(user.uid, id) {
        s.presence.went_away(user);
    }
}

async fn close_with<S>(sink: &mut S, e: ApiError)
where
    S: SinkExt<WsMessage> + Unpin,
{
    let _ = sink.send(text(&error_frame(None, None, &e))).await;
    let _ = sink
        .send(WsMessage::Close(Some(CloseFrame { code: 1008, reason: Utf8Bytes::from_static("protocol error") })))
        .await;
}

type Sink = futures_util::stream::SplitSink<WebSocket, WsMessage>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

impl Session {
    /// Sends `welcome`, the backlog and `synced`.
    async fn start(&mut self, sink: &mut Sink, resume: Option<chorus_proto::ws::Cursor>) -> Result<(), axum::Error> {
        let epoch = self.s.messaging_epoch();
        let (resume_pos, mut reason) = match &resume {
            None => (None, None),
            Some(c) if c.epoch != epoch => (None, Some("epoch_mismatch")),
            Some(c) => (Some(c.pos), None),
        };
        let backlog = match resume_pos {
            Some(pos) => match self.s.messaging.head().await {
                Ok(head) if pos > head || pos < 0 => {
                    reason = Some("cursor_ahead");
                    None
                }
                Ok(_) => match self.s.messaging.backlog(&self.user, Some(pos)).await {
                    Ok(b) if !b.complete => {
                        reason = Some("gap_too_large");
                        None
                    }
                    Ok(b) => Some(b),
                    Err(e) => {
                        sink.send(text(&error_frame(None, None, &e))).await?;
                        return Err(axum::Error::new("backlog failed"));
                    }
                },
                Err(e) => {
                    sink.send(text(&error_frame(None, None, &e))).await?;
                    return Err(axum::Error::new("head failed"));
                }
            },
            None => None,
        };
        let resumed = backlog.is_some();
        let welcome = ServerFrame::Welcome {
            session: self.id.to_string(),
            user: self.user.clone(),
            epoch,
            resumed,
            reason: reason.map(str::to_string),
        };
        sink.send(text(&welcome)).await?;
        // Not resuming (fresh start, or a cursor we cannot honour): deliver what
        // was never delivered; after a failed resume the client also reloads history.
        let backlog = match backlog {
            Some(b) => b,
            None => match self.s.messaging.backlog(&self.user, None).await {
                Ok(b) => b,
                Err(e) => {
                    sink.send(text(&error_frame(None, None, &e))).await?;
                    return Err(axum::Error::new("backlog failed"));
                }
            },
        };
        let count = backlog.messages.len() as u64;
        for (m, meta) in backlog.messages {
            if meta.sender != self.user.uid {
                self.unacked.push_back(meta);
            }
            sink.feed(text(&ServerFrame::Message(m))).await?;
        }
        self.synced_to = backlog.covered_to;
        sink.send(text(&ServerFrame::Synced { pos: backlog.covered_to, count, complete: backlog.complete })).await?;
        Ok(())
    }

    /// Tells the new session which of its contacts are online.
    async fn online_contacts(&self, sink: &mut Sink) -> Result<(), axum::Error> {
        let Ok(contacts) = self.s.messaging.contacts(self.user.uid).await else { return Ok(()) };
        for uid in contacts {
            if self.s.messaging.bus().online(uid) && self.s.presence.is_announced(uid) {
                if let Ok(Some(addr)) = self.s.messaging_address(uid).await {
                    sink.feed(text(&ServerFrame::Presence {
                        from: addr,
                        peer: None,
                        gid: None,
                        presence: presence::ONLINE,
                    }))
                    .await?;
                }
            }
        }
        sink.flush().await
    }

    async fn main_loop(&mut self, sink: &mut Sink, stream: &mut Stream, rx: &mut mpsc::Receiver<Arc<Outbound>>) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut last_heard = Instant::now();
        // Answers in the order the frames came, each written once it is ready.
        let mut answers: FuturesOrdered<Reply> = FuturesOrdered::new();
        loop {
            tokio::select! {
                incoming = stream.next(), if answers.len() < MAX_IN_FLIGHT => {
                    last_heard = Instant::now();
                    let reply = match incoming {
                        Some(Ok(WsMessage::Text(t))) => Box::pin(self.dispatch(&t)).await,
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
                            let _ = sink.send(text(&error_frame(None, None, &err))).await;
                            let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: 1009, reason: Utf8Bytes::from_static("bad frame") }))).await;
                            return;
                        }
                    };
                    if let Some(answer) = reply {
                        answers.push_back(answer);
                    }
                }
                Some(answer) = answers.next(), if !answers.is_empty() => {
                    if sink.send(text(&answer)).await.is_err() {
                        return;
                    }
                }
                out = rx.recv() => {
                    let Some(out) = out else {
                        // The bus dropped us (queue overflow): make the client resume.
                        let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: CLOSE_RESYNC, reason: Utf8Bytes::from_static("fell behind; reconnect and resume") }))).await;
                        return;
                    };
                    if !self.wanted(&out) {
                        continue;
                    }
                    if sink.feed(WsMessage::Text(Utf8Bytes::from(&*out.json))).await.is_err() {
                        return;
                    }
                    if let Some(code) = out.close {
                        let _ = sink.send(WsMessage::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static("session ended") }))).await;
                        return;
                    }
                    // Coalesce whatever else is queued into one flush.
                    while let Ok(more) = rx.try_recv() {
                        if self.wanted(&more) && sink.feed(WsMessage::Text(Utf8Bytes::from(&*more.json))).await.is_err() {
                            return;
                        }
                        if let Some(code) = more.close {
                            let _ = sink.send(WsMessage::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static("session ended") }))).await;
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                frame = next_call_frame(&mut self.call) => match frame {
                    Some(json) => {
                        if sink.send(WsMessage::Text(Utf8Bytes::from(&*json))).await.is_err() {
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
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Whether a queued frame goes out, recording messages that await an ack.
    fn wanted(&mut self, out: &Outbound) -> bool {
        if let Some(meta) = out.msg {
            if meta.pos <= self.synced_to || out.origin == self.id {
                return false;
            }
            if meta.sender != self.user.uid {
                if self.unacked.len() >= 10_000 {
                    self.unacked.pop_front();
                }
                self.unacked.push_back(meta);
            }
        }
        true
    }

    /// Answers one client frame. Returns the reply to send, if any.
    /// Parses one client frame and answers it: sends are queued and answered
    /// when they commit, everything else is answered before returning.
    async fn dispatch(&mut self, raw: &str) -> Option<Reply> {
        let frame: ClientFrame = match serde_json::from_str(raw) {
            Ok(f) => f,
            Err(e) => return Some(now(error_frame(None, None, &ApiError::bad_request(format!("bad frame: {e}"))))),
        };
        match frame {
            ClientFrame::Send { rid, id, peer, gid, text, data, file, mtype } => {
                Some(self.start_send(rid, id, Target::from_parts(peer, gid), Content { text, data, file }, mtype).await)
            }
            ClientFrame::CallJoin { rid, gid } => {
                // One call per session: joining another leaves the current one.
                self.call = None;
                match self.s.calls.join(&self.user, self.id, gid, rid.clone()).await {
                    Ok((call, joined)) => {
                        self.call = Some(call);
                        Some(now(joined))
                    }
                    Err(e) => Some(now(error_frame(rid, None, &e))),
                }
            }
            call if call.is_call_request() => Some(self.call_request(call)),
            other => self.handle(other).await.map(now),
        }
    }

    /// Passes a call frame to the session's room; its answer is written in request order.
    fn call_request(&mut self, frame: ClientFrame) -> Reply {
        let leaving = matches!(frame, ClientFrame::CallLeave { .. });
        let rid = frame.rid().map(str::to_string);
        let Some(call) = &self.call else {
            return now(error_frame(rid, None, &ApiError::not_found("not in a call: send call_join first")));
        };
        let answer = call.request(frame);
        if leaving {
            self.call = None;
        }
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
                    mid: i.mid,
                    seq: i.seq,
                    pos: i.pos,
                    ts: i.ts,
                    status: status::SENT,
                    duplicate: i.duplicate,
                },
                Err(e) => error_frame(rid, Some(id), &e),
            }
        })
    }

    /// Answers one client frame other than `send`. Returns the reply to send, if any.
    async fn handle(&mut self, frame: ClientFrame) -> Option<ServerFrame> {
        let m = &self.s.messaging;
        match frame {
            ClientFrame::Hello { .. } => {
                Some(error_frame(None, None, &ApiError::bad_request("hello was already received")))
            }
            ClientFrame::Ping { rid } => Some(ServerFrame::Pong { rid }),
            ClientFrame::Send { .. } => unreachable!("sends are dispatched to start_send"),
            ClientFrame::CallJoin { .. }
            | ClientFrame::CallPublish(_)
            | ClientFrame::CallUnpublish { .. }
            | ClientFrame::CallSubscribe { .. }
            | ClientFrame::CallUnsubscribe { .. }
            | ClientFrame::CallAnswer { .. }
            | ClientFrame::CallMute { .. }
            | ClientFrame::CallAdmin { .. }
            | ClientFrame::CallLeave { .. } => unreachable!("call frames are dispatched to the call"),
            ClientFrame::Edit { rid, mid, text, data } => {
                let r = m.change(&self.user, mid, Some(Content { text, data, file: None }), self.id).await;
                Some(ok_or_error(rid, r))
            }
            ClientFrame::Delete { rid, mid } => {
                let r = m.change(&self.user, mid, None, self.id).await;
                Some(ok_or_error(rid, r))
            }
            ClientFrame::Ack { pos } => {
                let mut highest: HashMap<i64, i64> = HashMap::new();
                while self.unacked.front().is_some_and(|f| f.pos <= pos) {
                    let f = self.unacked.pop_front().expect("front checked");
                    let e = highest.entry(f.conv_id).or_insert(f.seq);
                    *e = (*e).max(f.seq);
                }
                for (conv, seq) in highest {
                    if let Err(e) = m.watermark(&self.user, conv, seq, false).await {
                        return Some(error_frame(None, None, &e));
                    }
                }
                None
            }
            ClientFrame::Read { rid, peer, gid, seq } => {
                let res = async {
                    let t = Target::from_parts(peer, gid)?;
                    let conv = m
                        .conversation(&self.user, &t)
                        .await?
                        .ok_or_else(|| ApiError::not_found("no messages in this conversation"))?;
                    m.watermark(&self.user, conv, seq, true).await
                }
                .await;
                Some(ok_or_error(rid, res))
            }
            ClientFrame::Typing { peer, gid, on } => {
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
                match m.typing_audience(&self.user, &t).await {
                    Ok((uids, peer, gid)) => {
                        if on {
                            if self.typing_sent.len() >= MAX_TYPING_CONVERSATIONS {
                                self.typing_sent.retain(|_, at| now.duration_since(*at) < TYPING_THROTTLE);
                            }
                            self.typing_sent.insert(t, now);
                        } else {
                            self.typing_sent.remove(&t);
                        }
                        let value = if on { presence::TYPING } else { presence::TYPING_CLEARED };
                        let frame =
                            ServerFrame::Presence { from: self.user.address.clone(), peer, gid, presence: value };
                        m.bus().deliver(&mut uids.into_iter(), crate::messaging::outbound(&frame, None, self.id));
                        None
                    }
                    Err(e) => Some(error_frame(None, None, &e)),
                }
            }
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
