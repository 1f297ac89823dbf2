//! Messaging: sending, editing, deleting, receipts, history and sync.
//!
//! Owns the tables `conversations` (1:1 rows; group rows belong to
//! [`crate::groups`]), `conv_members` watermarks, `messages` and `stream`.
//!
//! # The write path
//! Every change to messages or watermarks goes through one writer task. It
//! takes whatever requests are queued (up to [`BATCH`]), applies them in one
//! transaction, commits, and only then answers the senders and fans frames out.
//! That gives:
//! - *group commit*: one fsync for many messages;
//! - *a total order*: stream positions (`pos`) are handed out by the writer,
//!   so commit order = `pos` order, which makes "resume after `pos`" exact;
//! - *nothing half-written*: a batch commits whole or not at all.
//!
//! # Positions and resume
//! Each new message, edit or delete takes the next `pos`. A client remembers
//! the highest `pos` it processed; on reconnect it gets every message it may
//! receive with a higher `pos`, in order, then live frames. Live frames at or
//! below the sync point are skipped by the session, so nothing arrives twice.
//!
//! # Receipts
//! Delivery and read state are per member *watermarks* (`delivered_seq`,
//! `read_seq`), not per message rows: O(members) state per conversation.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use chorus_proto::flags::status;
use chorus_proto::rest::{ConversationSummary, HistoryPage, MemberReceipt, Receipts};
use chorus_proto::ws::{FileRef, Message, ServerFrame, SessionUser};
use chorus_proto::ErrorCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::accounts::Accounts;
use crate::bus::{outbound, FanOut, MsgMeta, Outbound};
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::groups::{GroupPolicy, Groups};

/// Most requests applied in one writer transaction.
pub const BATCH: usize = 512;

/// Where a message goes, as the client names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A user, by address.
    Peer(String),
    /// A group.
    Group(i64),
}

impl Target {
    /// From the `peer` / `gid` pair of a frame or query: exactly one must be set.
    pub fn from_parts(peer: Option<String>, gid: Option<i64>) -> ApiResult<Target> {
        match (peer, gid) {
            (Some(p), None) if !p.is_empty() => Ok(Target::Peer(p)),
            (None, Some(g)) => Ok(Target::Group(g)),
            _ => Err(ApiError::bad_request("give exactly one of peer or gid")),
        }
    }
}

/// The stored content of a message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Content {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// JSON data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// File reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// What a successful send returns.
#[derive(Debug, Clone, Copy)]
pub struct SentInfo {
    /// Message id.
    pub mid: i64,
    /// Conversation sequence.
    pub seq: i64,
    /// Stream position.
    pub pos: i64,
    /// Server time, ms.
    pub ts: i64,
    /// This was a retry of a stored message.
    pub duplicate: bool,
}

/// A send that passed its checks: already answered (a retry), or queued to the writer.
pub enum SendTicket {
    /// A retry of a stored message: the first answer.
    Done(SentInfo),
    /// Queued; the answer comes after the commit.
    Queued(oneshot::Receiver<ApiResult<SentInfo>>),
}

impl SendTicket {
    /// Waits for the answer.
    pub async fn wait(self) -> ApiResult<SentInfo> {
        match self {
            SendTicket::Done(info) => Ok(info),
            SendTicket::Queued(rx) => rx.await.map_err(|_| ApiError::internal("message writer dropped a request"))?,
        }
    }
}

/// A resolved destination, checked before it reaches the writer.
enum Dest {
    Peer(SessionUser),
    Group(i64, Arc<GroupPolicy>),
}

enum WriteOp {
    Send {
        from: SessionUser,
        dest: Dest,
        client_id: String,
        mtype: u32,
        body: String,
        origin: u64,
        reply: oneshot::Sender<ApiResult<SentInfo>>,
    },
    Change {
        from: SessionUser,
        mid: i64,
        /// `None` deletes.
        content: Option<Content>,
        origin: u64,
        reply: oneshot::Sender<ApiResult<()>>,
    },
    Watermark {
        user: SessionUser,
        conv_id: i64,
        seq: i64,
        read: bool,
        /// Set when the caller waits for the commit.
        reply: Option<oneshot::Sender<ApiResult<()>>>,
    },
}

/// Where a request's answer goes.
enum Answer {
    Sent(oneshot::Sender<ApiResult<SentInfo>>),
    Changed(oneshot::Sender<ApiResult<()>>),
}

impl WriteOp {
    /// The request's answer channel, if its caller waits for one.
    fn into_reply(self) -> Option<Answer> {
        match self {
            WriteOp::Send { reply, .. } => Some(Answer::Sent(reply)),
            WriteOp::Change { reply, .. } => Some(Answer::Changed(reply)),
            WriteOp::Watermark { reply, .. } => reply.map(Answer::Changed),
        }
    }
}

/// Where a send goes, decided by the writer.
struct Placed {
    conv_id: i64,
    peer_addr: Option<String>,
    gid: Option<i64>,
    /// Who receives it.
    uids: Vec<i64>,
}

/// Rows per multi-row statement of [`Writer::insert_run`] (11 parameters each). Small on
/// purpose: sqlx's SQLite driver looks every parameter up by name, at a cost that grows with
/// the statement's parameter count (with 256 rows, 60 % of the server's CPU samples were there; 16 rows:
/// 45.8k durable sends/s against 18.6k, bench/RESULTS.md).
const RUN_CHUNK: usize = 16;

/// The frame of a newly stored message, to fan out after commit.
fn new_message(op: &WriteOp, placed: Placed, info: &SentInfo) -> Fanout {
    let WriteOp::Send { from, client_id, mtype, body, origin, .. } = op else {
        unreachable!("only sends store messages")
    };
    let content: Content = serde_json::from_str(body).unwrap_or_default();
    let msg = Message {
        mid: info.mid,
        id: client_id.clone(),
        from: from.address.clone(),
        peer: placed.peer_addr,
        gid: placed.gid,
        seq: info.seq,
        pos: info.pos,
        ts: info.ts,
        mtype: *mtype,
        text: content.text,
        data: content.data,
        file: content.file,
        edited: false,
        deleted: false,
    };
    let meta = MsgMeta { pos: info.pos, conv_id: placed.conv_id, seq: info.seq, sender: from.uid };
    let hook = serde_json::json!({
        "mid": msg.mid, "from": msg.from, "gid": msg.gid, "type": msg.mtype, "text": msg.text, "ts": msg.ts,
    });
    Fanout { uids: placed.uids, frame: outbound(&ServerFrame::Message(msg), Some(meta), *origin), hook: Some(hook) }
}

/// A frame to fan out after commit.
struct Fanout {
    uids: Vec<i64>,
    frame: Arc<Outbound>,
    /// For a new message: its `message.offline` webhook data (without the recipient).
    hook: Option<serde_json::Value>,
}

/// The messaging service.
pub struct Messaging {
    db: Db,
    cfg: Arc<Config>,
    groups: Arc<Groups>,
    accounts: Arc<Accounts>,
    bus: Arc<dyn FanOut>,
    writer: mpsc::Sender<WriteOp>,
    send_rate: DefaultKeyedRateLimiter<i64>,
}

/// SQL condition on `m` (a message) and `cm` (the reader's `conv_members` row): 1:1 messages,
/// or group messages the reader may receive. This is the permission rule
/// ([`chorus_proto::flags::group::allows`], [`GroupPolicy::can_receive`]) written for the store:
/// a member receives exactly when their RECV flag (0x2) is set, in every group mode, and a
/// non-member never does (the test below holds the two together).
const RECEIVABLE: &str = "(m.gid IS NULL OR EXISTS (SELECT 1 FROM members mb \
                           WHERE mb.gid = m.gid AND mb.uid = cm.uid AND (mb.flags & 2) <> 0))";

const MSG_COLS: &str = "m.mid, m.conv_id, m.seq, m.pos, m.sender_uid, m.sender_addr, m.peer_addr, m.gid, \
                        m.client_id, m.mtype, m.body, m.created_at, m.edited, m.deleted";

fn message_from_row(r: &AnyRow) -> Result<(Message, MsgMeta), sqlx::Error> {
    let body: Option<String> = r.try_get("body")?;
    let content: Content = body.and_then(|b| serde_json::from_str(&b).ok()).unwrap_or_default();
    let m = Message {
        mid: r.try_get("mid")?,
        id: r.try_get("client_id")?,
        from: r.try_get("sender_addr")?,
        peer: r.try_get("peer_addr")?,
        gid: r.try_get("gid")?,
        seq: r.try_get("seq")?,
        pos: r.try_get("pos")?,
        ts: r.try_get("created_at")?,
        mtype: r.try_get::<i64, _>("mtype")? as u32,
        text: content.text,
        data: content.data,
        file: content.file,
        edited: r.try_get::<i64, _>("edited")? != 0,
        deleted: r.try_get::<i64, _>("deleted")? != 0,
    };
    let meta = MsgMeta { pos: m.pos, conv_id: r.try_get("conv_id")?, seq: m.seq, sender: r.try_get("sender_uid")? };
    Ok((m, meta))
}

/// Exit status of the process when a task it cannot run without panicked (`EX_SOFTWARE`).
pub const EXIT_TASK_PANICKED: i32 = 70;

/// Waits for a task the server cannot work without (the message writer: every send, edit
/// and receipt goes through it). If it panicked, logs it and calls `stop` — in the server,
/// exiting the process, so that its supervisor (systemd `Restart=`) starts a fresh one, rather
/// than serving on with messaging dead. A task that returns or is cancelled (shutdown) is fine.
pub async fn exit_if_panicked<T>(name: &str, task: tokio::task::JoinHandle<T>, stop: impl FnOnce()) {
    if let Err(e) = task.await {
        if e.is_panic() {
            tracing::error!(task = name, error = %e, "a task the server cannot work without panicked; exiting");
            stop();
        }
    }
}

/// A message body as stored: one of text, data or file, at most `max_bytes` of JSON.
pub(crate) fn encode_content(c: &Content, max_bytes: usize) -> ApiResult<String> {
    if c.text.is_none() && c.data.is_none() && c.file.is_none() {
        return Err(ApiError::bad_request("a message needs text, data or a file"));
    }
    if let Some(f) = &c.file {
        if f.url.is_empty() || f.url.len() > 2048 {
            return Err(ApiError::bad_request("file.url must be 1 to 2048 characters"));
        }
    }
    let body = serde_json::to_string(c).map_err(ApiError::internal)?;
    if body.len() > max_bytes {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("message is {} bytes; the limit is {}", body.len(), max_bytes),
        ));
    }
    Ok(body)
}

/// A client's message id: 1 to 64 printable characters.
pub(crate) fn check_client_id(client_id: &str) -> ApiResult<()> {
    if client_id.is_empty() || client_id.len() > 64 || client_id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("id must be 1 to 64 printable characters"));
    }
    Ok(())
}

/// One page of a session's sync backlog.
pub struct BacklogPage {
    /// Messages to send, in `pos` order, with their metadata.
    pub messages: Vec<(Message, MsgMeta)>,
    /// `pos` of the last row looked at: the next page starts after it.
    pub last: Option<i64>,
    /// Whether rows remain after `last` (up to the page's end).
    pub more: bool,
}

/// Where a session's sync ends.
pub struct SyncEnd {
    /// Live frames at or below this position were covered by the backlog.
    pub covered_to: i64,
    /// False when more exist than one sync sends (`sync_limit`).
    pub complete: bool,
}

/// The rows of a session's backlog, in `pos` order: after a resume cursor, every message of the
/// user's conversations since they joined; on a fresh start, the messages from others not yet
/// delivered to them. Binds `$1` the user, `$2` and `$3` the `pos` range (`$2` excluded).
///
/// Each conversation's rows are one index range: a resume's by `pos` (the range after the
/// cursor), a fresh start's by `(conv_id, seq)` (after the delivered watermark; its `pos` range
/// is everything). A `+` in front of a column keeps the planners from using an index for that
/// term: without `+m.seq` a resume read each conversation from `joined_seq` on, its whole
/// history (SQLite always, PostgreSQL when its statistics were older than the table's growth);
/// without `+m.pos` SQLite would read a fresh start's conversations by `pos` from the start.
/// Either way a page costs what the backlog holds, not the history.
fn backlog_rows(resume: bool, cols: &str) -> String {
    let (pos, which) = if resume {
        ("m.pos", "+m.seq > cm.joined_seq")
    } else {
        ("+m.pos", "m.seq > cm.delivered_seq AND m.sender_uid <> $1")
    };
    format!(
        "SELECT {cols} FROM messages m JOIN conv_members cm ON cm.conv_id = m.conv_id AND cm.uid = $1 \
         WHERE {pos} > $2 AND {pos} <= $3 AND {which} AND {RECEIVABLE} ORDER BY m.pos"
    )
}

impl Messaging {
    /// Builds the service and starts its writer task.
    pub fn start(
        db: Db,
        cfg: Arc<Config>,
        groups: Arc<Groups>,
        accounts: Arc<Accounts>,
        bus: Arc<dyn FanOut>,
        hooks: Arc<crate::webhooks::Webhooks>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(BATCH * 8);
        let quota = Quota::per_second(NonZeroU32::new(cfg.sends_per_second).expect("validated positive"))
            .allow_burst(NonZeroU32::new(cfg.send_burst.max(1)).expect("max(1) is positive"));
        let svc = Arc::new(Messaging {
            db: db.clone(),
            cfg,
            groups: groups.clone(),
            accounts,
            bus: bus.clone(),
            writer: tx,
            send_rate: RateLimiter::keyed(quota),
        });
        let writer = tokio::spawn(Writer { db, groups, bus, hooks, pairs: Default::default() }.run(rx));
        tokio::spawn(exit_if_panicked("message writer", writer, || std::process::exit(EXIT_TASK_PANICKED)));
        // Forget the send-rate state of users who stopped sending.
        let weak = Arc::downgrade(&svc);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(svc) = weak.upgrade() else { return };
                svc.send_rate.retain_recent();
                svc.send_rate.shrink_to_fit();
            }
        });
        svc
    }

    /// The fan-out bus.
    pub fn bus(&self) -> &Arc<dyn FanOut> {
        &self.bus
    }

    /// The group service.
    pub fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// Resolves and permission-checks a destination for `from`.
    async fn resolve(&self, from: &SessionUser, target: &Target) -> ApiResult<Dest> {
        match target {
            Target::Peer(addr) => match self.accounts.by_address(addr).await? {
                Some(u) if u.uid != from.uid => Ok(Dest::Peer(u)),
                Some(_) => Err(ApiError::bad_request("cannot message yourself")),
                None => Err(ApiError::not_found(format!("no user with address {addr:?}"))),
            },
            Target::Group(gid) => {
                let policy = self.groups.policy(*gid).await?.ok_or_else(|| ApiError::not_found("no such group"))?;
                if !policy.can_send(from.uid) {
                    return Err(ApiError::forbidden("you may not send messages to this group"));
                }
                Ok(Dest::Group(*gid, policy))
            }
        }
    }

    /// Validates content against the size limit and returns its stored form.
    fn encode(&self, c: &Content) -> ApiResult<String> {
        encode_content(c, self.cfg.max_message_bytes)
    }

    /// Sends a message. Retrying with the same `client_id` returns the first result.
    pub async fn send(
        &self,
        from: &SessionUser,
        target: &Target,
        client_id: &str,
        mtype: u32,
        content: &Content,
        origin: u64,
    ) -> ApiResult<SentInfo> {
        self.enqueue_send(from, target, client_id, mtype, content, origin).await?.wait().await
    }

    /// Checks a send and queues it to the writer without waiting for the
    /// commit, so one connection can have several sends in flight (they are
    /// stored in the order they were queued).
    pub async fn enqueue_send(
        &self,
        from: &SessionUser,
        target: &Target,
        client_id: &str,
        mtype: u32,
        content: &Content,
        origin: u64,
    ) -> ApiResult<SendTicket> {
        check_client_id(client_id)?;
        let checked = async {
            let body = self.encode(content)?;
            self.take_send_slot(from.uid)?;
            Ok((body, self.resolve(from, target).await?))
        };
        let (body, dest) = match checked.await {
            Ok(ok) => ok,
            // A retry of a stored message gets the first answer, whatever limits say
            // now. (Retries that pass the checks are recognised by the writer.)
            Err(e) => match self.stored(from.uid, client_id).await? {
                Some(info) => return Ok(SendTicket::Done(info)),
                None => return Err(e),
            },
        };
        let (reply, rx) = oneshot::channel();
        let op =
            WriteOp::Send { from: from.clone(), dest, client_id: client_id.to_string(), mtype, body, origin, reply };
        self.writer.send(op).await.map_err(|_| ApiError::internal("message writer stopped"))?;
        Ok(SendTicket::Queued(rx))
    }

    /// The message `uid` already stored under `client_id`, if any.
    async fn stored(&self, uid: i64, client_id: &str) -> ApiResult<Option<SentInfo>> {
        let mut conn = self.db.read.acquire().await?;
        Ok(stored_send(&mut conn, uid, client_id).await?)
    }

    /// Counts one fan-out-causing request of `uid` against the send rate (`sends_per_second`,
    /// `send_burst`): sends, edits, deletes and reads share it.
    fn take_send_slot(&self, uid: i64) -> ApiResult<()> {
        if self.send_rate.check_key(&uid).is_err() {
            return Err(ApiError::rate_limited("sending too fast; slow down"));
        }
        Ok(())
    }

    /// Edits (`Some`) or deletes (`None`) one of the user's own messages. Counts against the
    /// send rate: each one is fanned out to the conversation like a send.
    pub async fn change(&self, from: &SessionUser, mid: i64, content: Option<Content>, origin: u64) -> ApiResult<()> {
        if let Some(c) = &content {
            self.encode(c)?;
        }
        self.take_send_slot(from.uid)?;
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Change { from: from.clone(), mid, content, origin, reply };
        self.writer.send(op).await.map_err(|_| ApiError::internal("message writer stopped"))?;
        rx.await.map_err(|_| ApiError::internal("message writer dropped a request"))?
    }

    /// Records that `user` has had a conversation delivered (or read) up to
    /// `seq`. Reads wait for the commit; delivery acks do not.
    ///
    /// Reads count against the send rate: the client names any `seq`, so without it one user
    /// could walk a long history one message at a time, each step a writer request and a
    /// receipt. Delivery acks do not: a session acks only messages it received, at most one
    /// watermark per conversation per `ack`, so their receipts are bounded by the messages
    /// others sent (and counting them would starve a busy reader's own sends).
    pub async fn watermark(&self, user: &SessionUser, conv_id: i64, seq: i64, read: bool) -> ApiResult<()> {
        if read {
            self.take_send_slot(user.uid)?;
        }
        let (tx, rx) = if read {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let op = WriteOp::Watermark { user: user.clone(), conv_id, seq, read, reply: tx };
        self.writer.send(op).await.map_err(|_| ApiError::internal("message writer stopped"))?;
        match rx {
            Some(rx) => rx.await.map_err(|_| ApiError::internal("message writer dropped a request"))?,
            None => Ok(()),
        }
    }

    /// The conversation id for `user` and `target`, checking read access.
    /// `Ok(None)`: a 1:1 conversation that has no messages yet.
    pub async fn conversation(&self, user: &SessionUser, target: &Target) -> ApiResult<Option<i64>> {
        match target {
            Target::Peer(addr) => {
                let peer = self.accounts.by_address(addr).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
                let (lo, hi) = (user.uid.min(peer.uid), user.uid.max(peer.uid));
                Ok(sqlx::query_scalar("SELECT conv_id FROM conversations WHERE user_lo = $1 AND user_hi = $2")
                    .bind(lo)
                    .bind(hi)
                    .fetch_optional(&self.db.read)
                    .await?)
            }
            Target::Group(gid) => {
                let policy = self.groups.policy(*gid).await?.ok_or_else(|| ApiError::not_found("no such group"))?;
                if !policy.members.contains_key(&user.uid) {
                    return Err(ApiError::not_found("no such group"));
                }
                if !policy.can_receive(user.uid) {
                    return Err(ApiError::forbidden("you may not receive this group's messages"));
                }
                Ok(Some(policy.conv_id))
            }
        }
    }

    /// A page of history before `before` (a `seq`), newest last.
    pub async fn history(
        &self,
        user: &SessionUser,
        target: &Target,
        before: Option<i64>,
        limit: u32,
    ) -> ApiResult<HistoryPage> {
        let limit = limit.clamp(1, 500) as i64;
        let Some(conv_id) = self.conversation(user, target).await? else {
            return Ok(HistoryPage { messages: vec![], before: None });
        };
        let rows = sqlx::query(&format!(
            "SELECT {MSG_COLS} FROM messages m WHERE m.conv_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(conv_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        let mut messages = rows.iter().map(|r| message_from_row(r).map(|(m, _)| m)).collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        let before = match messages.first() {
            Some(m) if m.seq > 1 && messages.len() as i64 == limit => Some(m.seq),
            _ => None,
        };
        Ok(HistoryPage { messages, before })
    }

    /// Every member's delivered / read watermark in a conversation.
    pub async fn receipts(&self, user: &SessionUser, target: &Target) -> ApiResult<Receipts> {
        let Some(conv_id) = self.conversation(user, target).await? else {
            return Ok(Receipts { members: vec![] });
        };
        let rows = sqlx::query(
            "SELECT u.address, cm.delivered_seq, cm.read_seq FROM conv_members cm JOIN users u ON u.uid = cm.uid \
             WHERE cm.conv_id = $1 ORDER BY u.address",
        )
        .bind(conv_id)
        .fetch_all(&self.db.read)
        .await?;
        let members = rows
            .iter()
            .map(|r| {
                Ok(MemberReceipt {
                    address: r.try_get("address")?,
                    delivered: r.try_get("delivered_seq")?,
                    read: r.try_get("read_seq")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Receipts { members })
    }

    /// The user's conversations, most recently active first, with unread counts.
    pub async fn conversations(&self, user: &SessionUser) -> ApiResult<Vec<ConversationSummary>> {
        let rows = sqlx::query(&format!(
            "SELECT c.gid, c.last_seq, cm.read_seq, COALESCE(g.name, u.name, '') AS conv_name, u.address AS peer_addr_of, \
             (SELECT COUNT(*) FROM messages x WHERE x.conv_id = c.conv_id AND x.seq > cm.read_seq AND x.sender_uid <> $1) AS unread, \
             {MSG_COLS} \
             FROM conv_members cm JOIN conversations c ON c.conv_id = cm.conv_id \
             LEFT JOIN groups g ON g.gid = c.gid \
             LEFT JOIN users u ON c.gid IS NULL AND u.uid = CASE WHEN c.user_lo = $1 THEN c.user_hi ELSE c.user_lo END \
             LEFT JOIN messages m ON m.conv_id = c.conv_id AND m.seq = c.last_seq \
             WHERE cm.uid = $1"
        ))
        .bind(user.uid)
        .fetch_all(&self.db.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let gid: Option<i64> = r.try_get("gid")?;
            if let Some(g) = gid {
                match self.groups.policy(g).await? {
                    Some(p) if p.can_receive(user.uid) => {}
                    _ => continue,
                }
            }
            let has_last: Option<i64> = r.try_get("mid")?;
            let last = match has_last {
                Some(_) => Some(message_from_row(r)?.0),
                None => None,
            };
            out.push(ConversationSummary {
                peer: if gid.is_none() { r.try_get("peer_addr_of")? } else { None },
                gid,
                name: r.try_get("conv_name")?,
                last_seq: r.try_get("last_seq")?,
                read_seq: r.try_get("read_seq")?,
                unread: r.try_get("unread")?,
                last,
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map(|m| m.pos).unwrap_or(0)));
        Ok(out)
    }

    /// The current stream head.
    pub async fn head(&self) -> ApiResult<i64> {
        Ok(sqlx::query_scalar("SELECT pos FROM stream WHERE id = 1").fetch_one(&self.db.read).await?)
    }

    /// Where the sync of a (re)connecting session ends: it sends at most `sync_limit` messages
    /// after `resume_pos` if given, else of those not yet delivered, up to `head`. Read `head`
    /// after the session is attached to the bus, so nothing falls between backlog and live.
    pub async fn sync_end(&self, user: &SessionUser, resume_pos: Option<i64>, head: i64) -> ApiResult<SyncEnd> {
        // The last row one sync sends, and whether another follows it.
        let rows: Vec<i64> =
            sqlx::query_scalar(&format!("{} LIMIT 2 OFFSET $4", backlog_rows(resume_pos.is_some(), "m.pos")))
                .bind(user.uid)
                .bind(resume_pos.unwrap_or(-1))
                .bind(head)
                .bind(self.cfg.sync_limit as i64 - 1)
                .fetch_all(&self.db.read)
                .await?;
        Ok(match rows.as_slice() {
            [last, _] => SyncEnd { covered_to: *last, complete: false },
            _ => SyncEnd { covered_to: head, complete: true },
        })
    }

    /// One page of a session's backlog (see [`Messaging::sync_end`]): up to `rows` rows with
    /// `after < pos <= upto`. A session sends its backlog a page at a time, so a client that
    /// reads slowly (or not at all) never has the server hold more than a page of it.
    pub async fn backlog_page(
        &self,
        user: &SessionUser,
        resume: bool,
        after: i64,
        upto: i64,
        rows: usize,
    ) -> ApiResult<BacklogPage> {
        // The page's positions first: finding them reads no message bodies, so the
        // bodies read are only the page's own.
        let found: Vec<i64> = sqlx::query_scalar(&format!("{} LIMIT $4", backlog_rows(resume, "m.pos")))
            .bind(user.uid)
            .bind(after)
            .bind(upto)
            .bind(rows as i64 + 1)
            .fetch_all(&self.db.read)
            .await?;
        let more = found.len() > rows;
        let Some(&last) = found[..found.len().min(rows)].last() else {
            return Ok(BacklogPage { messages: Vec::new(), last: None, more: false });
        };
        let examined = sqlx::query(&format!("{} LIMIT $4", backlog_rows(resume, MSG_COLS)))
            .bind(user.uid)
            .bind(after)
            .bind(last)
            .bind(rows as i64)
            .fetch_all(&self.db.read)
            .await?;
        let mut messages = Vec::with_capacity(examined.len());
        for r in &examined {
            let (m, meta) = message_from_row(r)?;
            if let Some(gid) = m.gid {
                match self.groups.policy(gid).await? {
                    Some(p) if p.can_receive(user.uid) => {}
                    _ => continue,
                }
            }
            messages.push((m, meta));
        }
        Ok(BacklogPage { messages, last: Some(last), more })
    }

    /// Users who share a conversation with `uid` (groups above the presence
    /// size limit excluded): the audience of their presence.
    pub async fn contacts(&self, uid: i64) -> ApiResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT cm2.uid FROM conv_members cm1 \
             JOIN conv_members cm2 ON cm2.conv_id = cm1.conv_id AND cm2.uid <> cm1.uid \
             WHERE cm1.uid = $1 AND (SELECT COUNT(*) FROM conv_members x WHERE x.conv_id = cm1.conv_id) <= $2",
        )
        .bind(uid)
        .bind(self.cfg.presence_max_group as i64)
        .fetch_all(&self.db.read)
        .await?)
    }

    /// Recipients of typing in a conversation (online-ness is the bus's business).
    /// Returns the users, and the `peer` / `gid` the typing frame names.
    pub async fn typing_audience(
        &self,
        user: &SessionUser,
        target: &Target,
    ) -> ApiResult<(Vec<i64>, Option<String>, Option<i64>)> {
        match self.resolve(user, target).await? {
            Dest::Peer(p) => Ok((vec![p.uid], Some(p.address), None)),
            Dest::Group(gid, policy) => {
                if policy.members.len() > self.cfg.presence_max_group {
                    return Ok((vec![], None, Some(gid)));
                }
                Ok((policy.receivers().filter(|u| *u != user.uid).collect(), None, Some(gid)))
            }
        }
    }
}

/// The single writer: applies queued requests in batches.
struct Writer {
    db: Db,
    groups: Arc<Groups>,
    bus: Arc<dyn FanOut>,
    /// `message.offline` for recipients with no live session.
    hooks: Arc<crate::webhooks::Webhooks>,
    /// 1:1 conversation ids by user pair. Only committed rows are cached, and
    /// 1:1 conversations are never deleted, so an entry never goes stale.
    pairs: std::sync::Mutex<HashMap<(i64, i64), i64>>,
}

/// Most user pairs the writer remembers before it starts over.
const PAIR_CACHE: usize = 100_000;

/// What a request came to; answered only after its batch commits.
enum Outcome {
    Sent(ApiResult<SentInfo>),
    Changed(ApiResult<()>),
}

/// What one pass over a batch has written so far.
#[derive(Default)]
struct Applied {
    /// The last stream position handed out.
    pos: i64,
    /// The last `seq` handed out per conversation in this batch, written to `conversations`
    /// once per conversation just before the commit (not once per message).
    last_seq: HashMap<i64, i64>,
    /// One per request, in order; `None`: rolled back alone (its caller sees `internal`).
    outcomes: Vec<Option<Outcome>>,
    fanouts: Vec<Fanout>,
    /// 1:1 conversation ids read from the store, cached after the commit.
    learned: Vec<((i64, i64), i64)>,
}

/// Why a pass over a batch stopped short.
enum PassError {
    /// The fast pass: one request failed on the database; the batch is applied again with
    /// a savepoint per request.
    Request(sqlx::Error),
    /// The transaction itself failed: the whole batch is answered `internal`.
    Batch(sqlx::Error),
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<WriteOp>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            self.apply_batch(&mut batch).await;
            batch.clear();
        }
    }

    /// Applies, commits and answers a batch. The fast pass applies every request straight
    /// into the transaction; only when one fails on the database (rare: say, a user deleted
    /// mid-request) is the batch applied again with each request in its own savepoint, so the
    /// failing one is rolled back alone and the rest commit. Savepoints for every request
    /// would cost two statements per message.
    async fn apply_batch(&self, batch: &mut Vec<WriteOp>) {
        let m = crate::metrics::metrics();
        m.store_batch_size.observe(batch.len() as f64);
        let started = std::time::Instant::now();
        let result = match self.pass(batch, false).await {
            Err(PassError::Request(e)) => {
                tracing::warn!(error = %e, "a request failed; applying the batch again request by request");
                self.pass(batch, true).await
            }
            other => other,
        };
        m.store_commit_seconds.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(applied) => {
                let mut pairs = self.pairs.lock().expect("pair cache poisoned");
                if pairs.len() + applied.learned.len() > PAIR_CACHE {
                    pairs.clear();
                }
                pairs.extend(applied.learned);
                drop(pairs);
                for (op, outcome) in batch.drain(..).zip(applied.outcomes) {
                    match (op.into_reply(), outcome) {
                        (Some(Answer::Sent(tx)), Some(Outcome::Sent(v))) => {
                            if v.as_ref().is_ok_and(|i| !i.duplicate) {
                                m.messages_stored.inc();
                            }
                            drop(tx.send(v))
                        }
                        (Some(Answer::Changed(tx)), Some(Outcome::Changed(v))) => drop(tx.send(v)),
                        // Rolled back alone: dropping the channel answers `internal`.
                        _ => {}
                    }
                }
                for f in applied.fanouts {
                    if let (Some(hook), true) = (&f.hook, self.hooks.enabled()) {
                        let sender = f.frame.msg.as_ref().map(|m| m.sender);
                        for &uid in f.uids.iter().filter(|&&u| Some(u) != sender && !self.bus.online(u)) {
                            let mut data = hook.clone();
                            data["uid"] = uid.into();
                            self.hooks.emit("message.offline", data);
                        }
                    }
                    self.bus.deliver(&mut f.uids.into_iter(), f.frame);
                }
            }
            Err(PassError::Request(e) | PassError::Batch(e)) => {
                let err = ApiError::internal(format_args!("message batch rolled back: {e}"));
                for op in batch.drain(..) {
                    match op.into_reply() {
                        Some(Answer::Sent(tx)) => drop(tx.send(Err(err.clone()))),
                        Some(Answer::Changed(tx)) => drop(tx.send(Err(err.clone()))),
                        None => {}
                    }
                }
            }
        }
    }

    /// One pass over the batch in one transaction; `careful` puts each request in a savepoint.
    async fn pass(&self, batch: &[WriteOp], careful: bool) -> Result<Applied, PassError> {
        use PassError::Batch;
        let mut tx = self.db.write.begin().await.map_err(Batch)?;
        let start: i64 = sqlx::query_scalar("UPDATE stream SET pos = pos WHERE id = 1 RETURNING pos")
            .fetch_one(&mut *tx)
            .await
            .map_err(Batch)?;
        let mut a = Applied { pos: start, outcomes: batch.iter().map(|_| None).collect(), ..Applied::default() };
        if !careful {
            if let Err(e) = self.fast(&mut tx, batch, &mut a).await {
                tx.rollback().await.map_err(Batch)?;
                return Err(PassError::Request(e));
            }
        } else {
            for (i, op) in batch.iter().enumerate() {
                let mark = (a.pos, a.last_seq.clone(), a.fanouts.len(), a.learned.len());
                let mut sp = sqlx::Connection::begin(&mut *tx).await.map_err(Batch)?;
                // A send is stored as a run of one.
                let done = match op {
                    WriteOp::Send { from, dest, .. } => match self.place(&mut sp, from, dest, &mut a.learned).await {
                        Ok(Ok(placed)) => self.insert_run(&mut sp, batch, &mut vec![(i, placed)], &mut a).await,
                        Ok(Err(e)) => {
                            a.outcomes[i] = Some(Outcome::Sent(Err(e)));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    _ => self.apply(&mut sp, op, &mut a).await.map(|outcome| a.outcomes[i] = Some(outcome)),
                };
                match done {
                    Ok(()) => sp.commit().await.map_err(Batch)?,
                    Err(e) => {
                        sp.rollback().await.map_err(Batch)?;
                        tracing::error!(error = %e, "message request rolled back");
                        (a.pos, a.last_seq) = (mark.0, mark.1);
                        a.fanouts.truncate(mark.2);
                        a.learned.truncate(mark.3);
                        a.outcomes[i] = None;
                    }
                }
            }
        }
        for (conv_id, seq) in &a.last_seq {
            sqlx::query("UPDATE conversations SET last_seq = $2 WHERE conv_id = $1")
                .bind(conv_id)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(Batch)?;
        }
        if a.pos != start {
            sqlx::query("UPDATE stream SET pos = $1 WHERE id = 1")
                .bind(a.pos)
                .execute(&mut *tx)
                .await
                .map_err(Batch)?;
        }
        tx.commit().await.map_err(Batch)?;
        Ok(a)
    }

    /// The fast pass's requests: sends are placed as they come and stored together
    /// ([`Self::insert_run`]) when an edit or delete comes (it takes a `pos` too, and may
    /// name a message of the run) and at the end; watermarks are applied as they come.
    async fn fast(&self, tx: &mut Transaction<'_, Any>, batch: &[WriteOp], a: &mut Applied) -> Result<(), sqlx::Error> {
        let mut run = Vec::new();
        for (i, op) in batch.iter().enumerate() {
            if let WriteOp::Send { from, dest, .. } = op {
                match self.place(tx, from, dest, &mut a.learned).await? {
                    Ok(placed) => run.push((i, placed)),
                    Err(e) => a.outcomes[i] = Some(Outcome::Sent(Err(e))),
                }
                continue;
            }
            if matches!(op, WriteOp::Change { .. }) {
                self.insert_run(tx, batch, &mut run, a).await?;
            }
            a.outcomes[i] = Some(self.apply(tx, op, a).await?);
        }
        self.insert_run(tx, batch, &mut run, a).await
    }

    /// Applies an edit, delete or watermark.
    async fn apply(
        &self,
        tx: &mut Transaction<'_, Any>,
        op: &WriteOp,
        a: &mut Applied,
    ) -> Result<Outcome, sqlx::Error> {
        match op {
            WriteOp::Send { .. } => unreachable!("sends are stored by insert_run"),
            WriteOp::Change { from, mid, content, origin, .. } => {
                let row = sqlx::query(&format!("SELECT {MSG_COLS} FROM messages m WHERE m.mid = $1"))
                    .bind(*mid)
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some(row) = row else {
                    return Ok(Outcome::Changed(Err(ApiError::not_found("no such message"))));
                };
                let (mut msg, mut meta) = message_from_row(&row)?;
                if meta.sender != from.uid {
                    return Ok(Outcome::Changed(Err(ApiError::forbidden("you can only change your own messages"))));
                }
                // In a group, only a current member may still change what they said.
                if let Some(gid) = msg.gid {
                    let member =
                        matches!(self.groups.policy(gid).await, Ok(Some(p)) if p.members.contains_key(&from.uid));
                    if !member {
                        return Ok(Outcome::Changed(Err(ApiError::forbidden(
                            "you are no longer a member of this group",
                        ))));
                    }
                }
                if msg.deleted {
                    return Ok(Outcome::Changed(Err(ApiError::new(ErrorCode::Conflict, "the message was deleted"))));
                }
                // An edit changes text and data; an attached file stays.
                let content = content.clone().map(|mut c| {
                    if c.file.is_none() {
                        c.file = msg.file.clone();
                    }
                    c
                });
                a.pos += 1;
                let body = content.as_ref().map(|c| serde_json::to_string(c).expect("content serialises"));
                sqlx::query(
                    "UPDATE messages SET body = $1, pos = $2, edited = CASE WHEN $3 = 1 THEN 1 ELSE edited END, deleted = $4 WHERE mid = $5",
                )
                .bind(&body)
                .bind(a.pos)
                .bind(i64::from(content.is_some()))
                .bind(i64::from(content.is_none()))
                .bind(*mid)
                .execute(&mut **tx)
                .await?;
                let c = content.unwrap_or_default();
                msg.pos = a.pos;
                msg.text = c.text;
                msg.data = c.data;
                msg.file = c.file;
                msg.edited = msg.edited || body.is_some();
                msg.deleted = body.is_none();
                meta.pos = a.pos;
                let uids = self.conv_receivers(tx, meta.conv_id, msg.gid, from.uid).await?;
                a.fanouts.push(Fanout {
                    uids,
                    frame: outbound(&ServerFrame::Message(msg), Some(meta), *origin),
                    hook: None,
                });
                Ok(Outcome::Changed(Ok(())))
            }
            &WriteOp::Watermark { ref user, conv_id, seq, read, .. } => {
                let done = Outcome::Changed;
                let row = sqlx::query(
                    "SELECT cm.delivered_seq, cm.read_seq, c.last_seq, c.gid FROM conv_members cm \
                     JOIN conversations c ON c.conv_id = cm.conv_id WHERE cm.conv_id = $1 AND cm.uid = $2",
                )
                .bind(conv_id)
                .bind(user.uid)
                .fetch_optional(&mut **tx)
                .await?;
                let Some(row) = row else { return Ok(done(Err(ApiError::not_found("not in this conversation")))) };
                let (delivered, read_seq, last, gid): (i64, i64, i64, Option<i64>) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                // Messages this batch stored count, though `last_seq` is written at its end.
                let last = a.last_seq.get(&conv_id).map_or(last, |&s| s.max(last));
                let seq = seq.min(last);
                let old = if read { read_seq } else { delivered };
                if seq <= old {
                    return Ok(done(Ok(())));
                }
                let sql = if read {
                    "UPDATE conv_members SET read_seq = $1, delivered_seq = CASE WHEN delivered_seq < $1 THEN $1 ELSE delivered_seq END \
                     WHERE conv_id = $2 AND uid = $3"
                } else {
                    "UPDATE conv_members SET delivered_seq = $1 WHERE conv_id = $2 AND uid = $3"
                };
                sqlx::query(sql).bind(seq).bind(conv_id).bind(user.uid).execute(&mut **tx).await?;
                let senders: Vec<i64> = sqlx::query_scalar(
                    "SELECT DISTINCT sender_uid FROM messages WHERE conv_id = $1 AND seq > $2 AND seq <= $3 AND sender_uid <> $4",
                )
                .bind(conv_id)
                .bind(old)
                .bind(seq)
                .bind(user.uid)
                .fetch_all(&mut **tx)
                .await?;
                if !senders.is_empty() {
                    let frame = ServerFrame::Receipt {
                        peer: gid.is_none().then(|| user.address.clone()),
                        gid,
                        by: user.address.clone(),
                        status: if read { status::READ } else { status::DELIVERED },
                        seq,
                    };
                    a.fanouts.push(Fanout { uids: senders, frame: outbound(&frame, None, 0), hook: None });
                }
                Ok(done(Ok(())))
            }
        }
    }

    /// Decides where a send goes, with the group's membership as it is now (it may have
    /// changed since the send was queued). `Ok(Err(_))`: refused, nothing to write.
    async fn place(
        &self,
        tx: &mut Transaction<'_, Any>,
        from: &SessionUser,
        dest: &Dest,
        learned: &mut Vec<((i64, i64), i64)>,
    ) -> Result<ApiResult<Placed>, sqlx::Error> {
        Ok(Ok(match dest {
            Dest::Peer(p) => {
                let conv_id = self.one_to_one(tx, from.uid, p.uid, learned).await?;
                Placed { conv_id, peer_addr: Some(p.address.clone()), gid: None, uids: vec![from.uid, p.uid] }
            }
            Dest::Group(gid, queued_policy) => {
                let policy = match self.groups.policy(*gid).await {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(Err(ApiError::not_found("no such group"))),
                    Err(_) => queued_policy.clone(),
                };
                if !policy.can_send(from.uid) {
                    return Ok(Err(ApiError::forbidden("you may not send messages to this group")));
                }
                let mut uids: Vec<i64> = policy.receivers().collect();
                if !policy.can_receive(from.uid) {
                    uids.push(from.uid);
                }
                Placed { conv_id: policy.conv_id, peer_addr: None, gid: Some(*gid), uids }
            }
        }))
    }

    /// Stores a run of placed sends (`run`: index in `batch`, placement) with a few
    /// multi-row statements instead of one per message, which is what lets one writer keep
    /// up with many senders: one lookup finds retries of stored messages (so no `seq` or
    /// `pos` is skipped for them), one reads the conversations' `last_seq`, then every new
    /// message takes the next `seq` of its conversation and the next `pos`, in queue order,
    /// and the rows go in [`RUN_CHUNK`] at a time. A database error fails the fast pass (the
    /// batch is then applied again request by request, each send a run of one).
    async fn insert_run(
        &self,
        tx: &mut Transaction<'_, Any>,
        batch: &[WriteOp],
        run: &mut Vec<(usize, Placed)>,
        a: &mut Applied,
    ) -> Result<(), sqlx::Error> {
        use std::fmt::Write as _;
        if run.is_empty() {
            return Ok(());
        }
        let key = |i: usize| match &batch[i] {
            WriteOp::Send { from, client_id, .. } => (from.uid, client_id.as_str()),
            _ => unreachable!("a run holds sends only"),
        };
        // Retries of messages stored by earlier batches.
        let mut known: HashMap<(i64, String), SentInfo> = HashMap::new();
        for chunk in run.chunks(RUN_CHUNK) {
            let mut sql = String::from(
                "SELECT sender_uid, client_id, mid, seq, pos, created_at FROM messages WHERE (sender_uid, client_id) IN (VALUES ",
            );
            for k in 0..chunk.len() {
                let sep = if k == 0 { "" } else { ", " };
                let _ = write!(sql, "{sep}(${}, ${})", 2 * k + 1, 2 * k + 2);
            }
            sql.push(')');
            let mut q = sqlx::query(&sql);
            for (i, _) in chunk {
                let (uid, client_id) = key(*i);
                q = q.bind(uid).bind(client_id);
            }
            for r in q.fetch_all(&mut **tx).await? {
                let info = SentInfo {
                    mid: r.try_get("mid")?,
                    seq: r.try_get("seq")?,
                    pos: r.try_get("pos")?,
                    ts: r.try_get("created_at")?,
                    duplicate: true,
                };
                known.insert((r.try_get("sender_uid")?, r.try_get("client_id")?), info);
            }
        }
        // The stored `last_seq` of conversations this batch has not written to yet.
        let mut unknown: Vec<i64> =
            run.iter().map(|(_, p)| p.conv_id).filter(|c| !a.last_seq.contains_key(c)).collect();
        unknown.sort_unstable();
        unknown.dedup();
        for chunk in unknown.chunks(RUN_CHUNK) {
            let list = (1..=chunk.len()).map(|k| format!("${k}")).collect::<Vec<_>>().join(", ");
            let sql = format!("SELECT conv_id, last_seq FROM conversations WHERE conv_id IN ({list})");
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q.bind(*c);
            }
            for r in q.fetch_all(&mut **tx).await? {
                a.last_seq.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        // Number the new messages; a retry within the run answers like its first.
        let ts = now_ms();
        let mut fresh: Vec<(usize, i64, i64)> = Vec::with_capacity(run.len()); // (run index, seq, pos)
        let mut repeats: Vec<usize> = Vec::new();
        let mut first_in_run: HashMap<(i64, &str), usize> = HashMap::new();
        for (k, (i, p)) in run.iter().enumerate() {
            let (uid, client_id) = key(*i);
            if let Some(info) = known.get(&(uid, client_id.to_string())) {
                a.outcomes[*i] = Some(Outcome::Sent(Ok(*info)));
            } else if let std::collections::hash_map::Entry::Vacant(v) = first_in_run.entry((uid, client_id)) {
                v.insert(k);
                let last = a.last_seq.get_mut(&p.conv_id).ok_or(sqlx::Error::RowNotFound)?;
                *last += 1;
                a.pos += 1;
                fresh.push((k, *last, a.pos));
            } else {
                repeats.push(k);
            }
        }
        let mut mids: HashMap<i64, i64> = HashMap::with_capacity(fresh.len()); // pos → mid
        for chunk in fresh.chunks(RUN_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO messages (conv_id, seq, pos, sender_uid, sender_addr, peer_addr, gid, client_id, mtype, body, created_at) VALUES ",
            );
            for n in 0..chunk.len() {
                sql.push_str(if n == 0 { "(" } else { ", (" });
                for c in 1..=11 {
                    let sep = if c == 1 { "" } else { ", " };
                    let _ = write!(sql, "{sep}${}", n * 11 + c);
                }
                sql.push(')');
            }
            sql.push_str(" RETURNING mid, pos");
            let mut q = sqlx::query(&sql);
            for &(k, seq, pos) in chunk {
                let (i, p) = &run[k];
                let WriteOp::Send { from, client_id, mtype, body, .. } = &batch[*i] else {
                    unreachable!("a run holds sends only")
                };
                q = q
                    .bind(p.conv_id)
                    .bind(seq)
                    .bind(pos)
                    .bind(from.uid)
                    .bind(&from.address)
                    .bind(&p.peer_addr)
                    .bind(p.gid)
                    .bind(client_id)
                    .bind(i64::from(*mtype))
                    .bind(body)
                    .bind(ts);
            }
            for r in q.fetch_all(&mut **tx).await? {
                mids.insert(r.try_get("pos")?, r.try_get("mid")?);
            }
        }
        let mut answers: HashMap<usize, SentInfo> = HashMap::with_capacity(fresh.len()); // run index → answer
        let mut run: Vec<(usize, Option<Placed>)> = run.drain(..).map(|(i, p)| (i, Some(p))).collect();
        for (k, seq, pos) in fresh {
            let mid = *mids.get(&pos).ok_or(sqlx::Error::RowNotFound)?;
            let info = SentInfo { mid, seq, pos, ts, duplicate: false };
            let (i, placed) = &mut run[k];
            let placed = placed.take().expect("each message is numbered once");
            a.fanouts.push(new_message(&batch[*i], placed, &info));
            a.outcomes[*i] = Some(Outcome::Sent(Ok(info)));
            answers.insert(k, info);
        }
        for k in repeats {
            let i = run[k].0;
            let first = first_in_run[&key(i)];
            let info = SentInfo { duplicate: true, ..answers[&first] };
            a.outcomes[i] = Some(Outcome::Sent(Ok(info)));
        }
        Ok(())
    }

    /// Who receives changes to a conversation's messages.
    async fn conv_receivers(
        &self,
        tx: &mut Transaction<'_, Any>,
        conv_id: i64,
        gid: Option<i64>,
        sender: i64,
    ) -> Result<Vec<i64>, sqlx::Error> {
        if let Some(gid) = gid {
            if let Ok(Some(policy)) = self.groups.policy(gid).await {
                let mut uids: Vec<i64> = policy.receivers().collect();
                if !uids.contains(&sender) {
                    uids.push(sender);
                }
                return Ok(uids);
            }
            return Ok(vec![sender]);
        }
        let row = sqlx::query("SELECT user_lo, user_hi FROM conversations WHERE conv_id = $1")
            .bind(conv_id)
            .fetch_one(&mut **tx)
            .await?;
        Ok(vec![row.try_get(0)?, row.try_get(1)?])
    }
}

impl Writer {
    /// The 1:1 conversation of two users, created (with both watermarks at 0) on
    /// first use. Ids read from the store go to `learned`, cached after commit.
    async fn one_to_one(
        &self,
        tx: &mut Transaction<'_, Any>,
        a: i64,
        b: i64,
        learned: &mut Vec<((i64, i64), i64)>,
    ) -> Result<i64, sqlx::Error> {
        let pair = (a.min(b), a.max(b));
        if let Some(c) = self.pairs.lock().expect("pair cache poisoned").get(&pair) {
            return Ok(*c);
        }
        let conv = one_to_one(tx, pair.0, pair.1).await?;
        learned.push((pair, conv));
        Ok(conv)
    }
}

/// The answer to a retry: the message `uid` stored under `client_id`, if any.
async fn stored_send(
    conn: &mut sqlx::AnyConnection,
    uid: i64,
    client_id: &str,
) -> Result<Option<SentInfo>, sqlx::Error> {
    let row = sqlx::query("SELECT mid, seq, pos, created_at FROM messages WHERE sender_uid = $1 AND client_id = $2")
        .bind(uid)
        .bind(client_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(SentInfo {
            mid: r.try_get("mid")?,
            seq: r.try_get("seq")?,
            pos: r.try_get("pos")?,
            ts: r.try_get("created_at")?,
            duplicate: true,
        })
    })
    .transpose()
}

/// Finds or creates the 1:1 conversation of `lo` < `hi`.
async fn one_to_one(tx: &mut Transaction<'_, Any>, lo: i64, hi: i64) -> Result<i64, sqlx::Error> {
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT conv_id FROM conversations WHERE user_lo = $1 AND user_hi = $2")
            .bind(lo)
            .bind(hi)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(c) = existing {
        return Ok(c);
    }
    let conv: i64 = sqlx::query_scalar(
        "INSERT INTO conversations (user_lo, user_hi, last_seq) VALUES ($1, $2, 0) RETURNING conv_id",
    )
    .bind(lo)
    .bind(hi)
    .fetch_one(&mut **tx)
    .await?;
    for uid in [lo, hi] {
        sqlx::query("INSERT INTO conv_members (conv_id, uid, delivered_seq, read_seq) VALUES ($1, $2, 0, 0)")
            .bind(conv)
            .bind(uid)
            .execute(&mut **tx)
            .await?;
    }
    Ok(conv)
}

#[cfg(test)]
mod tests {
    use chorus_proto::flags::{group, member};

    use std::sync::Arc;

    use chorus_proto::ws::SessionUser;
    use tokio::sync::oneshot;

    use super::{Dest, WriteOp, Writer};
    use crate::bus::LocalBus;
    use crate::config::Config;
    use crate::db::Db;
    use crate::groups::Groups;

    fn user(uid: i64) -> SessionUser {
        SessionUser { uid, address: format!("u{uid}"), name: format!("User {uid}") }
    }

    fn send(from: i64, to: i64, id: &str) -> (WriteOp, oneshot::Receiver<crate::error::ApiResult<super::SentInfo>>) {
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Send {
            from: user(from),
            dest: Dest::Peer(user(to)),
            client_id: id.into(),
            mtype: 0,
            body: r#"{"text":"hi"}"#.into(),
            origin: 0,
            reply,
        };
        (op, rx)
    }

    /// A panicking writer stops the server; one that ends or is cancelled does not.
    #[tokio::test]
    async fn a_panicked_writer_stops_the_server() {
        let stopped = |task: tokio::task::JoinHandle<()>| async move {
            let hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let h = hit.clone();
            super::exit_if_panicked("test task", task, move || h.store(true, std::sync::atomic::Ordering::SeqCst))
                .await;
            hit.load(std::sync::atomic::Ordering::SeqCst)
        };
        assert!(stopped(tokio::spawn(async { panic!("writer bug") })).await);
        assert!(!stopped(tokio::spawn(async {})).await);
        let forever = tokio::spawn(std::future::pending::<()>());
        forever.abort();
        assert!(!stopped(forever).await);
    }

    /// A writer on a fresh SQLite store holding users `uids` (address `u<uid>`).
    async fn writer_with_users(dir: &std::path::Path, uids: &[i64]) -> (Db, Writer) {
        let db = Db::open(None, dir, "normal").await.unwrap();
        for uid in uids {
            sqlx::query("INSERT INTO users (uid, address, name, created_at) VALUES ($1, $2, $3, 0)")
                .bind(uid)
                .bind(format!("u{uid}"))
                .bind(format!("User {uid}"))
                .execute(&db.write)
                .await
                .unwrap();
        }
        let bus: Arc<dyn crate::bus::FanOut> = Arc::new(LocalBus::default());
        let key = Arc::new(crate::pin_key::PinKey::from_bytes(&[7; 32]));
        let groups = Arc::new(Groups::new(db.clone(), Arc::new(Config::default()), bus.clone(), key));
        let hooks = crate::webhooks::Webhooks::start(db.clone(), Arc::new(Config::default()), None);
        (db.clone(), Writer { db, groups, bus, hooks, pairs: Default::default() })
    }

    /// A batch in which one request fails on the database (a recipient whose user row is
    /// gone: the conversation's member row violates its foreign key) commits everything
    /// else: the fast pass gives up, the careful pass rolls back that request alone, and
    /// the survivors keep consecutive `seq`s, with `last_seq` and the stream position
    /// written once for the batch.
    #[tokio::test]
    async fn a_failing_request_is_rolled_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (db, writer) = writer_with_users(dir.path(), &[1, 2]).await;

        let (a, a_rx) = send(1, 2, "a");
        let (bad, bad_rx) = send(1, 999, "bad");
        let (b, b_rx) = send(2, 1, "b");
        let (again, again_rx) = send(1, 2, "a"); // a retry of "a" in the same batch
        writer.apply_batch(&mut vec![a, bad, b, again]).await;

        let a = a_rx.await.unwrap().unwrap();
        let b = b_rx.await.unwrap().unwrap();
        let again = again_rx.await.unwrap().unwrap();
        assert!(bad_rx.await.is_err(), "the failed request is answered internal (its channel dropped)");
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!((a.pos, b.pos), (1, 2));
        assert!(again.duplicate && again.mid == a.mid && !a.duplicate);

        let last: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE user_lo = 1 AND user_hi = 2")
            .fetch_one(&db.read)
            .await
            .unwrap();
        let pos: i64 = sqlx::query_scalar("SELECT pos FROM stream WHERE id = 1").fetch_one(&db.read).await.unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&db.read).await.unwrap();
        let convs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conversations").fetch_one(&db.read).await.unwrap();
        assert_eq!((last, pos, stored, convs), (2, 2, 2, 1));

        // The next batch goes on from there.
        let (c, c_rx) = send(1, 2, "c");
        writer.apply_batch(&mut vec![c]).await;
        let c = c_rx.await.unwrap().unwrap();
        assert_eq!((c.seq, c.pos), (3, 3));
    }

    /// Sends of one batch are stored together: consecutive `seq`s per conversation and `pos`
    /// across them in queue order; a retry of a stored message and a repeat within the batch
    /// answer like the first and store nothing.
    #[tokio::test]
    async fn a_batch_of_sends_is_numbered_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let (db, writer) = writer_with_users(dir.path(), &[1, 2, 3]).await;
        let (first, first_rx) = send(1, 2, "first");
        writer.apply_batch(&mut vec![first]).await;
        let first = first_rx.await.unwrap().unwrap();

        let ops = [(1, 2, "x"), (1, 2, "first"), (2, 1, "y"), (1, 2, "x"), (1, 3, "z"), (3, 1, "w")];
        let (mut batch, rxs): (Vec<_>, Vec<_>) = ops.iter().map(|&(f, t, id)| send(f, t, id)).unzip();
        writer.apply_batch(&mut batch).await;
        let mut got = Vec::new();
        for rx in rxs {
            got.push(rx.await.unwrap().unwrap());
        }
        let (x, retry, y, repeat, z, w) = (&got[0], &got[1], &got[2], &got[3], &got[4], &got[5]);
        assert_eq!((x.seq, y.seq, z.seq, w.seq), (2, 3, 1, 2));
        assert_eq!((x.pos, y.pos, z.pos, w.pos), (2, 3, 4, 5));
        assert!(!x.duplicate && !y.duplicate && !z.duplicate && !w.duplicate);
        assert!(retry.duplicate && (retry.mid, retry.seq, retry.pos) == (first.mid, first.seq, first.pos));
        assert!(repeat.duplicate && (repeat.mid, repeat.seq, repeat.pos) == (x.mid, x.seq, x.pos));
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT seq, pos, client_id FROM messages ORDER BY pos").fetch_all(&db.read).await.unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(ids, ["first", "x", "y", "z", "w"]);
        let last: Vec<i64> = sqlx::query_scalar("SELECT last_seq FROM conversations ORDER BY conv_id")
            .fetch_all(&db.read)
            .await
            .unwrap();
        assert_eq!(last, [3, 2]);
    }

    /// SQLite's plans for a backlog page: a resume reads each conversation from the cursor's
    /// `pos` on, a fresh start from the delivered watermark's `seq` on. With the `seq` index a
    /// resume went through every conversation's whole history for every page.
    #[tokio::test]
    async fn backlog_pages_read_index_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = writer_with_users(dir.path(), &[1]).await;
        for (resume, want) in [
            (true, "USING INDEX messages_conv_pos (conv_id=? AND pos>? AND pos<?)"),
            (false, "USING INDEX sqlite_autoindex_messages_2 (conv_id=? AND seq>?)"),
        ] {
            let sql = format!("EXPLAIN QUERY PLAN {} LIMIT $4", super::backlog_rows(resume, super::MSG_COLS));
            let rows = sqlx::query(&sql).bind(1i64).bind(10i64).bind(20i64).bind(5i64).fetch_all(&db.read).await;
            let plan: Vec<String> = rows.unwrap().iter().map(|r| sqlx::Row::get::<String, _>(r, 3)).collect();
            assert!(
                plan.iter().any(|step| step.starts_with("SEARCH m ") && step.ends_with(want)),
                "resume {resume}: {plan:?}"
            );
        }
    }

    #[test]
    fn receivable_is_the_permission_rule() {
        use chorus_proto::flags::group::{allows, Action};
        assert!(super::RECEIVABLE.contains(&format!("(mb.flags & {}) <> 0", member::RECV)));
        assert!(!super::RECEIVABLE.contains("g.flags"), "the group's mode does not decide for members");
        // What the SQL says (a member receives iff RECV; a non-member never) is the rule's answer.
        for g in [0, group::ALL_SELECTED, group::VALID, group::KNOWN, group::RECV_BY_SELECTED] {
            for f in [0, member::RECV, member::ALL, member::VALID & !member::RECV] {
                assert_eq!(allows(g, Some(f), Action::Receive), f & member::RECV != 0, "{g:#x} {f:#x}");
            }
            assert!(!allows(g, None, Action::Receive));
        }
    }
}
