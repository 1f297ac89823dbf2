//! Rust client for Chorus.
//!
//! - [`Http`]: the REST API (`/v1/…`), with the access token attached.
//! - [`Connection`]: the messaging WebSocket. It keeps the resume [`Cursor`]
//!   up to date from every `message` frame, and buffers frames
//!   that arrive while you wait for a specific one, so nothing is lost.
//! - [`call::Call`]: a group-call participant on top of a [`Connection`]
//!   (WebRTC with str0m, synthetic media, receive statistics).
//! - [`direct`]: 1:1 calls (dial, answer, decline, hang up; the media through [`call::Call`]).
//!
//! Tests, bots and the load generator are built on it; it speaks exactly the
//! types of `chorus-proto`.

#![deny(missing_docs)]

pub mod call;
pub mod direct;

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chorus_proto::rest::{CodeRequest, LoginSession, VerifyRequest};
use chorus_proto::ws::{ClientFrame, Cursor, Message, ServerFrame, SessionUser};
use chorus_proto::ErrorBody;
use chorus_proto::{GroupId, Pos};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A REST failure: the HTTP status and the error body (if it had our shape).
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The parsed error, if the body was `{"error":{…}}`.
    pub error: Option<ErrorBody>,
    /// The raw body.
    pub body: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// The error code string, e.g. `"forbidden"`.
    pub fn code(&self) -> Option<&'static str> {
        self.error.as_ref().map(|e| e.error.code.as_str())
    }
}

/// REST client.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Http {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Self {
        Http { base: base.into().trim_end_matches('/').to_string(), client: reqwest::Client::new(), token: None }
    }

    /// The same client carrying `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Http { token: Some(token.into()), ..self.clone() }
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and decodes the JSON answer (`()`-like types accept empty bodies).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiFailure> {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ApiFailure { status: 0, error: None, body: e.to_string() })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(ApiFailure { status, error: serde_json::from_str(&text).ok(), body: text });
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| ApiFailure {
            status,
            error: None,
            body: format!("undecodable answer ({e}): {text}"),
        })
    }

    /// `GET`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    /// `POST` with a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ApiFailure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PATCH` with a JSON body.
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ApiFailure> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// `DELETE`.
    pub async fn delete(&self, path: &str) -> Result<(), ApiFailure> {
        self.call::<serde_json::Value>(reqwest::Method::DELETE, path, None::<&()>).await.map(|_| ())
    }

    /// Asks for a login code by email.
    pub async fn request_code(&self, email: &str) -> Result<(), ApiFailure> {
        let req = CodeRequest { email: Some(email.into()), phone: None };
        self.post::<serde_json::Value>("/v1/auth/code", &req).await.map(|_| ())
    }

    /// Exchanges a code for a session.
    pub async fn verify(&self, email: &str, code: &str, name: Option<&str>) -> Result<LoginSession, ApiFailure> {
        let req =
            VerifyRequest { email: Some(email.into()), phone: None, code: code.into(), name: name.map(str::to_string) };
        self.post("/v1/auth/verify", &req).await
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server said when the connection was set up.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Who we are.
    pub user: SessionUser,
    /// Store epoch.
    pub epoch: String,
    /// Whether the resume cursor was honoured.
    pub resumed: bool,
    /// Why not, if not.
    pub reason: Option<String>,
    /// Backlog messages, in order.
    pub backlog: Vec<Message>,
    /// Whether the backlog was complete.
    pub complete: bool,
}

/// A messaging WebSocket connection.
pub struct Connection {
    ws: Ws,
    buffered: VecDeque<ServerFrame>,
    cursor: Cursor,
    next_rid: u64,
}

impl Connection {
    /// Connects, sends `hello` (resuming from `resume` if given) and reads
    /// through `synced`.
    pub async fn connect(http: &Http, resume: Option<Cursor>) -> anyhow::Result<(Connection, Handshake)> {
        let token = http.token().context("connect needs a token")?;
        let url = format!("{}/v1/ws?token={}", http.base().replacen("http", "ws", 1), token);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.context("websocket connect")?;
        let mut c = Connection {
            ws,
            buffered: VecDeque::new(),
            cursor: Cursor { epoch: String::new(), pos: Pos(0) },
            next_rid: 0,
        };
        c.send(&ClientFrame::Hello { resume: resume.clone() }).await?;
        let (user, epoch, resumed, reason) = match c.read(Duration::from_secs(10)).await? {
            ServerFrame::Welcome { user, epoch, resumed, reason, .. } => (user, epoch, resumed, reason),
            other => bail!("expected welcome, got {other:?}"),
        };
        c.cursor = Cursor { epoch: epoch.clone(), pos: resume.filter(|_| resumed).map(|r| r.pos).unwrap_or(Pos(0)) };
        let mut backlog = Vec::new();
        let complete = loop {
            match c.read(Duration::from_secs(10)).await? {
                ServerFrame::Message(m) => backlog.push(m),
                ServerFrame::Synced { pos, complete, .. } => {
                    c.cursor.pos = c.cursor.pos.max(pos);
                    break complete;
                }
                other => bail!("unexpected frame during sync: {other:?}"),
            }
        };
        Ok((c, Handshake { user, epoch, resumed, reason, backlog, complete }))
    }

    /// Where to resume from after a disconnect.
    pub fn cursor(&self) -> Cursor {
        self.cursor.clone()
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> anyhow::Result<()> {
        let text = serde_json::to_string(frame)?;
        self.ws.send(WsMessage::Text(text.into())).await?;
        Ok(())
    }

    /// Sends raw text (for testing bad input).
    pub async fn send_raw(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(WsMessage::Text(text.to_string().into())).await?;
        Ok(())
    }

    /// Reads the next frame from the socket (not the buffer), updating the cursor.
    async fn read(&mut self, timeout: Duration) -> anyhow::Result<ServerFrame> {
        tokio::time::timeout(timeout, self.read_frame()).await.map_err(|_| anyhow!("timed out waiting for a frame"))?
    }

    /// The next frame (buffered first), however long it takes. Cancel-safe: dropping the
    /// future before it completes loses no frame, so it can sit in a `select!`.
    pub async fn recv(&mut self) -> anyhow::Result<ServerFrame> {
        if let Some(f) = self.buffered.pop_front() {
            return Ok(f);
        }
        self.read_frame().await
    }

    async fn read_frame(&mut self) -> anyhow::Result<ServerFrame> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let f: ServerFrame = serde_json::from_str(&t).with_context(|| format!("undecodable frame {t}"))?;
                    // Only `message` frames move the cursor: a `sent` answer can
                    // overtake messages with lower positions still queued for us.
                    if let ServerFrame::Message(m) = &f {
                        self.cursor.pos = self.cursor.pos.max(m.pos);
                    }
                    return Ok(f);
                }
                Some(Ok(WsMessage::Close(c))) => bail!("connection closed: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("websocket error: {e}"),
                None => bail!("connection closed"),
            }
        }
    }

    /// The next frame (buffered first).
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<ServerFrame> {
        if let Some(f) = self.buffered.pop_front() {
            return Ok(f);
        }
        self.read(timeout).await
    }

    /// Waits for the first frame matching `pred`; other frames stay buffered in order.
    pub async fn expect(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ServerFrame) -> bool,
    ) -> anyhow::Result<ServerFrame> {
        if let Some(i) = self.buffered.iter().position(&mut pred) {
            return Ok(self.buffered.remove(i).expect("index from position"));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.read(left).await?;
            if pred(&f) {
                return Ok(f);
            }
            self.buffered.push_back(f);
        }
    }

    /// Takes every buffered frame and every frame arriving within `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<ServerFrame> {
        let mut out: Vec<ServerFrame> = self.buffered.drain(..).collect();
        while let Ok(f) = self.read(quiet).await {
            out.push(f);
        }
        out
    }

    /// A fresh request id.
    pub fn rid(&mut self) -> String {
        self.next_rid += 1;
        self.next_rid.to_string()
    }

    /// Sends a text message and waits for `sent` (or the `error`) for it.
    pub async fn send_text(
        &mut self,
        peer: Option<&str>,
        gid: Option<i64>,
        id: &str,
        text: &str,
    ) -> anyhow::Result<ServerFrame> {
        let rid = self.rid();
        let frame = ClientFrame::Send {
            rid: Some(rid.clone()),
            id: id.into(),
            peer: peer.map(str::to_string),
            gid: gid.map(GroupId),
            text: Some(text.into()),
            data: None,
            file: None,
            mtype: None,
        };
        self.send(&frame).await?;
        self.reply(&rid).await
    }

    /// Waits for the reply (any frame carrying `rid`).
    pub async fn reply(&mut self, rid: &str) -> anyhow::Result<ServerFrame> {
        let rid = rid.to_string();
        self.expect(Duration::from_secs(10), move |f| match f {
            ServerFrame::Sent { rid: r, .. }
            | ServerFrame::Ok { rid: r }
            | ServerFrame::Pong { rid: r }
            | ServerFrame::CallJoined { rid: r, .. }
            | ServerFrame::CallPublished { rid: r, .. }
            | ServerFrame::CallSdp { rid: r, .. }
            | ServerFrame::CallDialing { rid: r, .. }
            | ServerFrame::Error { rid: r, .. } => r.as_deref() == Some(rid.as_str()),
            _ => false,
        })
        .await
    }

    /// Sends a request frame with a fresh `rid` set by `make` and waits for its reply.
    pub async fn request(&mut self, make: impl FnOnce(Option<String>) -> ClientFrame) -> anyhow::Result<ServerFrame> {
        let rid = self.rid();
        self.send(&make(Some(rid.clone()))).await?;
        self.reply(&rid).await
    }

    /// Acknowledges everything up to the cursor (marks delivered).
    pub async fn ack(&mut self) -> anyhow::Result<()> {
        let pos = self.cursor.pos;
        self.send(&ClientFrame::Ack { pos }).await
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the connection without a close handshake (simulates a network loss).
    pub fn abort(self) {
        drop(self);
    }
}
