//! The single writer: the one task that changes messages, conversations, watermarks and
//! the stream position.
//!
//! # Invariant
//! **Every message stored, edited or deleted, every `seq` and `pos` handed out
//! (`conversations.last_seq`, `stream.pos`) and every watermark advanced is written here, by
//! one task, one batch at a time; nothing is answered or fanned out before its batch
//! commits.** (Groups create group conversations and add and remove their member rows, and
//! deleting a group or a user removes its rows by cascade: none of that numbers anything or
//! moves a watermark.) Everything else follows from it:
//! - stream positions (`pos`) are handed out in commit order, so "resume after `pos`" is
//!   exact, and each conversation's `seq`s are consecutive;
//! - a batch commits whole or not at all (a request that fails on the database is rolled
//!   back alone, in a savepoint, and the rest commit), and one commit (one fsync) serves
//!   the whole batch;
//! - a client never sees a frame, or an answer, for something that was not stored.
//!
//! Requests arrive checked by the [service](super::service) as [`WriteOp`]s, carrying the
//! resolved destination and the parsed content; what the writer decides itself is what
//! only it can know: the group's membership at commit time, retries of stored messages,
//! and the numbers (`seq`, `pos`, `mid`).
//!
//! If the writer panics, messaging is dead: [`exit_if_panicked`] ends the process so its
//! supervisor starts a fresh one.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_proto::flags::status;
use chorus_proto::ws::{Message, ServerFrame, SessionUser};
use chorus_proto::ErrorCode;
use chorus_proto::{GroupId, MessageId, Pos, Seq};
use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::rows::{message_from_row, MSG_COLS};
use super::{Content, SentInfo};
use crate::bus::{outbound, FanOut, MsgMeta, Outbound};
use crate::clock::now_ms;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::groups::{GroupPolicy, Groups};

/// Most requests applied in one writer transaction.
pub const BATCH: usize = 512;

/// Exit status of the process when a task it cannot run without panicked (`EX_SOFTWARE`).
pub const EXIT_TASK_PANICKED: i32 = 70;

/// Starts the writer task, with a watch that exits the process if it panics. Returns the
/// queue it takes requests from.
pub(super) fn start(
    db: Db,
    groups: Arc<Groups>,
    bus: Arc<dyn FanOut>,
    hooks: Arc<crate::webhooks::Webhooks>,
) -> mpsc::Sender<WriteOp> {
    let (tx, rx) = mpsc::channel(BATCH * 8);
    let writer = tokio::spawn(Writer { db, groups, bus, hooks, pairs: Default::default() }.run(rx));
    tokio::spawn(exit_if_panicked("message writer", writer, || std::process::exit(EXIT_TASK_PANICKED)));
    tx
}

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

/// A resolved destination, checked before it reaches the writer.
pub(super) enum Dest {
    Peer(SessionUser),
    Group(i64, Arc<GroupPolicy>),
}

/// A request to the writer, checked by the service.
pub(super) enum WriteOp {
    Send(SendOp),
    Change(ChangeOp),
    Watermark(WatermarkOp),
}

/// A message to store.
pub(super) struct SendOp {
    pub(super) from: SessionUser,
    pub(super) dest: Dest,
    pub(super) client_id: String,
    pub(super) mtype: u32,
    /// The content as the service checked it; the fanned-out frame is built from it.
    pub(super) content: Content,
    /// `content` in its stored form ([`super::encode_content`]).
    pub(super) body: String,
    pub(super) origin: u64,
    pub(super) reply: oneshot::Sender<ApiResult<SentInfo>>,
}

/// An edit or delete of one of the sender's messages.
pub(super) struct ChangeOp {
    pub(super) from: SessionUser,
    pub(super) mid: i64,
    /// `None` deletes.
    pub(super) content: Option<Content>,
    pub(super) origin: u64,
    pub(super) reply: oneshot::Sender<ApiResult<()>>,
}

/// A delivered or read watermark.
pub(super) struct WatermarkOp {
    pub(super) user: SessionUser,
    pub(super) conv_id: i64,
    pub(super) seq: i64,
    pub(super) read: bool,
    /// Set when the caller waits for the commit.
    pub(super) reply: Option<oneshot::Sender<ApiResult<()>>>,
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
            WriteOp::Send(op) => Some(Answer::Sent(op.reply)),
            WriteOp::Change(op) => Some(Answer::Changed(op.reply)),
            WriteOp::Watermark(op) => op.reply.map(Answer::Changed),
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

/// A placed send of the fast pass's current run: its index in the batch, the request, and
/// where it goes.
struct RunEntry<'a> {
    i: usize,
    op: &'a SendOp,
    placed: Placed,
}

/// The frame of a newly stored message, to fan out after commit.
fn new_message(op: &SendOp, placed: Placed, info: &SentInfo) -> Fanout {
    let SendOp { from, client_id, mtype, content, origin, .. } = op;
    let content = content.clone();
    let msg = Message {
        mid: MessageId(info.mid),
        id: client_id.clone(),
        from: from.address.clone(),
        peer: placed.peer_addr,
        gid: placed.gid.map(GroupId),
        seq: Seq(info.seq),
        pos: Pos(info.pos),
        ts: info.ts,
        mtype: *mtype,
        text: content.text,
        data: content.data,
        file: content.file,
        edited: false,
        deleted: false,
    };
    let meta = MsgMeta { pos: info.pos, conv_id: placed.conv_id, seq: info.seq, sender: from.uid.get() };
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
    /// The stream position before the batch (it hands out `from + 1..=pos`).
    from: i64,
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
                let mut fanouts = Vec::with_capacity(applied.fanouts.len());
                for f in applied.fanouts {
                    if let (Some(hook), true) = (&f.hook, self.hooks.enabled()) {
                        let sender = f.frame.msg.as_ref().map(|m| m.sender);
                        for &uid in f.uids.iter().filter(|&&u| Some(u) != sender && !self.bus.online(u)) {
                            let mut data = hook.clone();
                            data["uid"] = uid.into();
                            self.hooks.emit("message.offline", data);
                        }
                    }
                    fanouts.push((f.uids, f.frame));
                }
                self.bus.deliver_batch(applied.from, applied.pos, fanouts);
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
        let mut a =
            Applied { from: start, pos: start, outcomes: batch.iter().map(|_| None).collect(), ..Applied::default() };
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
                    WriteOp::Send(send) => match self.place(&mut sp, send, &mut a.learned).await {
                        Ok(Ok(placed)) => {
                            self.insert_run(&mut sp, &mut vec![RunEntry { i, op: send, placed }], &mut a).await
                        }
                        Ok(Err(e)) => {
                            a.outcomes[i] = Some(Outcome::Sent(Err(e)));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    WriteOp::Change(change) => {
                        self.change(&mut sp, change, &mut a).await.map(|r| a.outcomes[i] = Some(Outcome::Changed(r)))
                    }
                    WriteOp::Watermark(mark) => {
                        self.watermark(&mut sp, mark, &mut a).await.map(|r| a.outcomes[i] = Some(Outcome::Changed(r)))
                    }
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
            match op {
                WriteOp::Send(send) => match self.place(tx, send, &mut a.learned).await? {
                    Ok(placed) => run.push(RunEntry { i, op: send, placed }),
                    Err(e) => a.outcomes[i] = Some(Outcome::Sent(Err(e))),
                },
                WriteOp::Change(change) => {
                    self.insert_run(tx, &mut run, a).await?;
                    a.outcomes[i] = Some(Outcome::Changed(self.change(tx, change, a).await?));
                }
                WriteOp::Watermark(mark) => {
                    a.outcomes[i] = Some(Outcome::Changed(self.watermark(tx, mark, a).await?));
                }
            }
        }
        self.insert_run(tx, &mut run, a).await
    }

    /// Applies an edit or delete. `Ok(Err(_))`: refused, nothing written.
    async fn change(
        &self,
        tx: &mut Transaction<'_, Any>,
        op: &ChangeOp,
        a: &mut Applied,
    ) -> Result<ApiResult<()>, sqlx::Error> {
        let ChangeOp { from, mid, content, origin, .. } = op;
        let row = sqlx::query(&format!("SELECT {MSG_COLS} FROM messages m WHERE m.mid = $1"))
            .bind(*mid)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else {
            return Ok(Err(ApiError::not_found("no such message")));
        };
        let (mut msg, mut meta) = message_from_row(&row)?;
        if meta.sender != from.uid.get() {
            return Ok(Err(ApiError::forbidden("you can only change your own messages")));
        }
        // In a group, only a current member may still change what they said.
        if let Some(gid) = msg.gid {
            let member =
                matches!(self.groups.policy(gid.get()).await, Ok(Some(p)) if p.members.contains_key(&from.uid.get()));
            if !member {
                return Ok(Err(ApiError::forbidden("you are no longer a member of this group")));
            }
        }
        if msg.deleted {
            return Ok(Err(ApiError::new(ErrorCode::Conflict, "the message was deleted")));
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
        msg.pos = Pos(a.pos);
        msg.text = c.text;
        msg.data = c.data;
        msg.file = c.file;
        msg.edited = msg.edited || body.is_some();
        msg.deleted = body.is_none();
        meta.pos = a.pos;
        let uids = self.conv_receivers(tx, meta.conv_id, msg.gid.map(GroupId::get), from.uid.get()).await?;
        a.fanouts.push(Fanout { uids, frame: outbound(&ServerFrame::Message(msg), Some(meta), *origin), hook: None });
        Ok(Ok(()))
    }

    /// Applies a watermark, and queues the receipt for the senders it covers.
    async fn watermark(
        &self,
        tx: &mut Transaction<'_, Any>,
        op: &WatermarkOp,
        a: &mut Applied,
    ) -> Result<ApiResult<()>, sqlx::Error> {
        let WatermarkOp { ref user, conv_id, seq, read, .. } = *op;
        let row = sqlx::query(
            "SELECT cm.delivered_seq, cm.read_seq, c.last_seq, c.gid FROM conv_members cm \
             JOIN conversations c ON c.conv_id = cm.conv_id WHERE cm.conv_id = $1 AND cm.uid = $2",
        )
        .bind(conv_id)
        .bind(user.uid.get())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(Err(ApiError::not_found("not in this conversation"))) };
        let (delivered, read_seq, last, gid): (i64, i64, i64, Option<i64>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        // Messages this batch stored count, though `last_seq` is written at its end.
        let last = a.last_seq.get(&conv_id).map_or(last, |&s| s.max(last));
        let seq = seq.min(last);
        let old = if read { read_seq } else { delivered };
        if seq <= old {
            return Ok(Ok(()));
        }
        let sql = if read {
            "UPDATE conv_members SET read_seq = $1, delivered_seq = CASE WHEN delivered_seq < $1 THEN $1 ELSE delivered_seq END \
             WHERE conv_id = $2 AND uid = $3"
        } else {
            "UPDATE conv_members SET delivered_seq = $1 WHERE conv_id = $2 AND uid = $3"
        };
        sqlx::query(sql).bind(seq).bind(conv_id).bind(user.uid.get()).execute(&mut **tx).await?;
        let senders: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT sender_uid FROM messages WHERE conv_id = $1 AND seq > $2 AND seq <= $3 AND sender_uid <> $4",
        )
        .bind(conv_id)
        .bind(old)
        .bind(seq)
        .bind(user.uid.get())
        .fetch_all(&mut **tx)
        .await?;
        if !senders.is_empty() {
            let frame = ServerFrame::Receipt {
                peer: gid.is_none().then(|| user.address.clone()),
                gid: gid.map(GroupId),
                by: user.address.clone(),
                status: if read { status::READ } else { status::DELIVERED },
                seq: Seq(seq),
            };
            a.fanouts.push(Fanout { uids: senders, frame: outbound(&frame, None, 0), hook: None });
        }
        Ok(Ok(()))
    }

    /// Decides where a send goes, with the group's membership as it is now (it may have
    /// changed since the send was queued). `Ok(Err(_))`: refused, nothing to write.
    async fn place(
        &self,
        tx: &mut Transaction<'_, Any>,
        op: &SendOp,
        learned: &mut Vec<((i64, i64), i64)>,
    ) -> Result<ApiResult<Placed>, sqlx::Error> {
        let SendOp { from, dest, .. } = op;
        let placed = match dest {
            Dest::Peer(p) => {
                let conv_id = self.one_to_one(tx, from.uid.get(), p.uid.get(), learned).await?;
                Placed {
                    conv_id,
                    peer_addr: Some(p.address.clone()),
                    gid: None,
                    uids: vec![from.uid.get(), p.uid.get()],
                }
            }
            Dest::Group(gid, queued_policy) => {
                let policy = match self.groups.policy(*gid).await {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(Err(ApiError::not_found("no such group"))),
                    Err(_) => queued_policy.clone(),
                };
                if !policy.can_send(from.uid.get()) {
                    return Ok(Err(ApiError::forbidden("you may not send messages to this group")));
                }
                let mut uids: Vec<i64> = policy.receivers().collect();
                if !policy.can_receive(from.uid.get()) {
                    uids.push(from.uid.get());
                }
                Placed { conv_id: policy.conv_id, peer_addr: None, gid: Some(*gid), uids }
            }
        };
        // A stored file sent here becomes readable by the conversation's members
        // (`Media::may_read`); checked as the sender's finished upload before it was queued.
        if let Some(upload) = op.content.file.as_ref().and_then(|f| f.upload.as_deref()) {
            sqlx::query("INSERT INTO conv_files (upload_id, conv_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(upload)
                .bind(placed.conv_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(Ok(placed))
    }

    /// Stores a run of placed sends with a few
    /// multi-row statements instead of one per message, which is what lets one writer keep
    /// up with many senders: one lookup finds retries of stored messages (so no `seq` or
    /// `pos` is skipped for them), one reads the conversations' `last_seq`, then every new
    /// message takes the next `seq` of its conversation and the next `pos`, in queue order,
    /// and the rows go in [`RUN_CHUNK`] at a time. A database error fails the fast pass (the
    /// batch is then applied again request by request, each send a run of one).
    async fn insert_run(
        &self,
        tx: &mut Transaction<'_, Any>,
        run: &mut Vec<RunEntry<'_>>,
        a: &mut Applied,
    ) -> Result<(), sqlx::Error> {
        use std::fmt::Write as _;
        if run.is_empty() {
            return Ok(());
        }
        let key = |op: &SendOp| (op.from.uid.get(), op.client_id.clone());
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
            for e in chunk {
                q = q.bind(e.op.from.uid.get()).bind(e.op.client_id.as_str());
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
            run.iter().map(|e| e.placed.conv_id).filter(|c| !a.last_seq.contains_key(c)).collect();
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
        let mut first_in_run: HashMap<(i64, String), usize> = HashMap::new();
        for (k, e) in run.iter().enumerate() {
            let key = key(e.op);
            if let Some(info) = known.get(&key) {
                a.outcomes[e.i] = Some(Outcome::Sent(Ok(*info)));
            } else if let std::collections::hash_map::Entry::Vacant(v) = first_in_run.entry(key) {
                v.insert(k);
                let last = a.last_seq.get_mut(&e.placed.conv_id).ok_or(sqlx::Error::RowNotFound)?;
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
                let RunEntry { op: SendOp { from, client_id, mtype, body, .. }, placed: p, .. } = &run[k];
                q = q
                    .bind(p.conv_id)
                    .bind(seq)
                    .bind(pos)
                    .bind(from.uid.get())
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
        let mut run: Vec<(usize, &SendOp, Option<Placed>)> =
            run.drain(..).map(|e| (e.i, e.op, Some(e.placed))).collect();
        for (k, seq, pos) in fresh {
            let mid = *mids.get(&pos).ok_or(sqlx::Error::RowNotFound)?;
            let info = SentInfo { mid, seq, pos, ts, duplicate: false };
            let (i, op, placed) = &mut run[k];
            let placed = placed.take().expect("each message is numbered once");
            a.fanouts.push(new_message(op, placed, &info));
            a.outcomes[*i] = Some(Outcome::Sent(Ok(info)));
            answers.insert(k, info);
        }
        for k in repeats {
            let (i, op, _) = &run[k];
            let i = *i;
            let first = first_in_run[&key(op)];
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
    use std::sync::Arc;

    use chorus_proto::ws::SessionUser;
    use chorus_proto::UserId;
    use tokio::sync::oneshot;

    use super::{Dest, SendOp, WriteOp, Writer};
    use crate::bus::LocalBus;
    use crate::config::Config;
    use crate::db::Db;
    use crate::groups::Groups;
    use crate::messaging::Content;

    fn user(uid: i64) -> SessionUser {
        SessionUser { uid: UserId(uid), address: format!("u{uid}"), name: format!("User {uid}") }
    }

    fn send(from: i64, to: i64, id: &str) -> (WriteOp, oneshot::Receiver<crate::error::ApiResult<super::SentInfo>>) {
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Send(SendOp {
            from: user(from),
            dest: Dest::Peer(user(to)),
            client_id: id.into(),
            mtype: 0,
            content: Content { text: Some("hi".into()), ..Content::default() },
            body: r#"{"text":"hi"}"#.into(),
            origin: 0,
            reply,
        });
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
        let db = Db::open(None, dir, "normal", 2000).await.unwrap();
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
}
