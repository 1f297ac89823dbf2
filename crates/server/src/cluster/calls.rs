//! Calls across nodes: a group's call lives on one node; sessions on the others reach it over NATS.
//!
//! A call's room (its engine, peer connections and forwarders) runs on one node, the call's
//! **host**. A session on another node, its **origin**, joins it through a **leg**:
//!
//! - **Placement.** The first join of a call picks its host: the live node (heard within three
//!   heartbeats) with the fewest call participants, then the fewest calls, then the lowest id,
//!   from the heartbeats' figures. The pick is written to `call_nodes` (`INSERT … ON CONFLICT DO
//!   NOTHING`), so two nodes placing one call at once agree on the row that won. A row naming a
//!   node that is gone is deleted by the next join, which places the call again; the host
//!   deletes its rows of calls that have ended.
//! - **Signaling.** Every node subscribes to `<nats_prefix>.call.<node_id>`. The origin sends the
//!   host `Join`, then `Request`s (every call frame the session sends) and `Leave`; the host
//!   joins a local session for the leg and sends back `Joined`, each request's `Answer`, every
//!   `Event` its room queues for the session, and `Ended` when the room lets the session go.
//!   One publisher task per node keeps each direction in order.
//! - **Media** never goes through the origin: the answers the host's engine writes carry the
//!   host's own ICE candidates, so the client's connections go to the host's media address
//!   (`media` in the heartbeats and `/admin/nodes`).
//! - **A node gone** (three heartbeats missed, or heard again after a restart): its legs here
//!   end, and the origin tells each of its sessions in a call there `left` with reason `lost`,
//!   the SDK's cue to join again at once. That join places the call anew on a live node, so the
//!   participants meet again on another host within the heartbeat timeout and a rejoin.
//!   A host whose origin is gone drops that origin's legs, which takes them out of the room.
//!
//! - **1:1 calls** ([`crate::call::direct`]) are not placed: a call lives on the node that got
//!   its `call_dial`, which writes its `call_nodes` row (keyed by its room, `-id`). A session
//!   elsewhere asks that node to accept, decline or hang up (`Direct`, answered `DirectAnswer`
//!   within [`ASK_WAIT`], else `rate_limited`), joins the media room through a leg like any
//!   other (the `Join` names the origin session, so the call's node checks that this session is
//!   the one that answered), and tells the call's node when that session closes
//!   (`DirectGone`); the call's node tells the session's node when the call ended
//!   (`DirectEnded`), so it stops watching it.
//!
//! Legs are few and signaling is light, so messages are JSON; media is never on NATS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chorus_proto::call::{CallEvent, CallLeaveReason};
use chorus_proto::ws::{ClientFrame, ServerFrame, SessionUser};
use chorus_proto::{CallId, ErrorCode, GroupId};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use crate::call::direct::ring::SessionAt;
use crate::call::direct::{AnsweredElsewhere, Ask, DirectCalls, Refused, Reply};
use crate::call::{CallSession, Calls, RemoteRoom};
use crate::db::Db;
use crate::error::ApiError;

/// Messages waiting to be published; past this a request or answer is dropped (its asker
/// hears "the call has ended") rather than held without bound.
const OUT_QUEUE: usize = 16_384;
/// Frames a host's leg has queued for a request before the origin's answers; past this the
/// leg's requests are refused with `rate_limited`, as a full room queue is.
const LEG_REQUESTS: usize = 256;
/// `Leave`s remembered for legs not joined yet.
const EARLY_LEAVES: usize = 256;
/// How long a join waits for the call's node to answer (a node that dies meanwhile is found
/// gone sooner, after three heartbeats, and the call placed again).
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// How long a row of a call the host does not hold stays: a join placed here may be on its
/// way.
const PLACED_GRACE_MS: i64 = 30_000;
/// How long a 1:1 call request waits for the call's node (gone, it is heard gone later).
const ASK_WAIT: Duration = Duration::from_secs(5);

/// What nodes say to each other about calls.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Msg {
    /// Origin → host: join `user`'s session `session` (of the origin) to the call of `gid` as
    /// the origin's leg `leg`.
    Join {
        from: String,
        leg: u64,
        user: SessionUser,
        gid: i64,
        rid: Option<String>,
        #[serde(default)]
        session: u64,
    },
    /// Origin → host: a call frame of the leg's session, to be answered with `Answer { req }`.
    Request { from: String, leg: u64, req: u64, frame: ClientFrame },
    /// Origin → host: the session left (or closed): take the leg out of the call.
    Leave { from: String, leg: u64 },
    /// Host → origin: the answer to `Join`: `call_joined`, or an error frame.
    Joined { leg: u64, frame: ServerFrame },
    /// Host → origin: the answer to request `req`.
    Answer { leg: u64, req: u64, frame: ServerFrame },
    /// Host → origin: a frame the room queued for the leg's session (serialised).
    Event { leg: u64, frame: String },
    /// Host → origin: the room let the leg go; nothing more comes for it.
    Ended { leg: u64 },
    /// Any node → a 1:1 call's node: a request of a session of `from`, answered `DirectAnswer`.
    Direct { from: String, req: u64, ask: Ask },
    /// A 1:1 call's node → the asker: the answer to `Direct { req }`.
    DirectAnswer { req: u64, reply: Reply },
    /// A session's node → a 1:1 call's node: session `session` of `from` (user `uid`) closed.
    DirectGone { from: String, uid: i64, session: u64 },
    /// A 1:1 call's node → the node of its answering session: call `call` ended.
    DirectEnded { session: u64, call: CallId },
}

/// A 1:1 call request waiting for its answer: where it went, the asking session if it is an
/// accept, and who waits.
struct Pending {
    host: String,
    accepting: Option<u64>,
    tx: oneshot::Sender<Reply>,
}

/// Where a hosted leg's requests go: `(req, frame)` to the task relaying it.
type LegRequests = mpsc::Sender<(u64, ClientFrame)>;

/// A session of this node in a call on another node.
struct Away {
    host: String,
    gid: i64,
    address: String,
    /// The session's frames (the `rx` of its [`CallSession`]).
    events: mpsc::Sender<crate::bus::FrameText>,
    joined: Option<oneshot::Sender<ServerFrame>>,
    answers: HashMap<u64, oneshot::Sender<ServerFrame>>,
    next_req: u64,
}

/// The call routing of one node.
pub struct CallRouter {
    cluster: Arc<Cluster>,
    db: Db,
    calls: Weak<Calls>,
    out: mpsc::Sender<(String, Msg)>,
    /// Host side: the legs of other nodes' sessions in calls here, by (origin, leg).
    hosted: Mutex<HashMap<(String, u64), LegRequests>>,
    /// Host side: `Leave`s that came before their leg was joined here (the origin gave up
    /// waiting, or its session closed meanwhile), the latest [`EARLY_LEAVES`].
    left_early: Mutex<std::collections::VecDeque<(String, u64)>>,
    /// Origin side: this node's sessions in calls elsewhere, by leg.
    away: Mutex<HashMap<u64, Away>>,
    next_leg: AtomicU64,
    /// Session ids for hosted legs: from the node's own session counter, so never a local session's.
    next_session: Arc<AtomicU64>,
    event_queue: usize,
    /// The 1:1 calls service (set once it is built).
    direct: OnceLock<Weak<DirectCalls>>,
    /// 1:1 call requests of this node's sessions waiting for another node's answer.
    asks: Mutex<HashMap<u64, Pending>>,
    next_ask: AtomicU64,
}

impl CallRouter {
    /// Subscribes to this node's call subject and starts routing.
    pub async fn start(
        cluster: Arc<Cluster>,
        db: Db,
        calls: &Arc<Calls>,
        next_session: Arc<AtomicU64>,
        event_queue: usize,
    ) -> anyhow::Result<Arc<CallRouter>> {
        let nats = cluster.nats.clone();
        let mut sub = nats
            .subscribe(subject(&cluster.prefix, &cluster.id))
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to the call subject on NATS: {e}"))?;
        let (out, mut rx) = mpsc::channel::<(String, Msg)>(OUT_QUEUE);
        let router = Arc::new(CallRouter {
            cluster: cluster.clone(),
            db,
            calls: Arc::downgrade(calls),
            out,
            hosted: Mutex::new(HashMap::new()),
            left_early: Mutex::new(std::collections::VecDeque::new()),
            away: Mutex::new(HashMap::new()),
            next_leg: AtomicU64::new(1),
            next_session,
            event_queue,
            direct: OnceLock::new(),
            asks: Mutex::new(HashMap::new()),
            next_ask: AtomicU64::new(1),
        });
        let prefix = cluster.prefix.clone();
        tokio::spawn(async move {
            while let Some((node, msg)) = rx.recv().await {
                let body = serde_json::to_vec(&msg).expect("call messages serialise");
                if let Err(e) = nats.publish(subject(&prefix, &node), body.into()).await {
                    tracing::warn!(node = %node, error = %e, "cluster: a call message was not published");
                }
            }
        });
        let this = Arc::downgrade(&router);
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Some(this) = this.upgrade() else { return };
                match serde_json::from_slice::<Msg>(&m.payload) {
                    Ok(msg) => this.receive(msg),
                    Err(e) => tracing::warn!(error = %e, "cluster: an unreadable call message; ignored"),
                }
            }
        });
        // Rows of calls this node no longer holds.
        let this = Arc::downgrade(&router);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { return };
                if let Err(e) = this.release_ended().await {
                    tracing::warn!(error = %e.message, "cluster: ended calls not released");
                }
            }
        });
        Ok(router)
    }

    /// Joins `user`'s session to the call of `gid`, on whichever node holds it (placing the call
    /// first if no live node does).
    pub async fn join(
        self: &Arc<Self>,
        user: &SessionUser,
        session: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let calls = self.calls.upgrade().ok_or_else(|| ApiError::not_found("the server is stopping"))?;
        // 1:1 calls' rooms (negative gids) are not placed: they stay on the node that rang.
        if gid < 0 {
            return self.join_direct(user, session, gid, rid).await;
        }
        // Nothing is placed for someone who may not join.
        calls.check_member(user.uid.get(), gid).await?;
        // A host that dies while the join waits for it is found gone; the call is placed again.
        for _ in 0..2 {
            let host = self.place(gid).await?;
            if host == self.cluster.id {
                return calls.join(user, session, gid, rid).await;
            }
            match self.join_on(&host, user, session, gid, rid.clone()).await {
                Some(joined) => return joined,
                None => tracing::warn!(gid, node = %host, "cluster: the call's node is gone; placing it again"),
            }
        }
        Err(ApiError::rate_limited("the call's node is not answering; try again"))
    }

    /// Sets the 1:1 calls service, once.
    pub fn set_direct(&self, direct: &Arc<DirectCalls>) {
        let _ = self.direct.set(Arc::downgrade(direct));
    }

    fn direct(&self) -> Option<Arc<DirectCalls>> {
        self.direct.get().and_then(Weak::upgrade)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.cluster.id
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether node `id` is alive (see [`Cluster::alive`]).
    pub fn alive(&self, id: &str) -> bool {
        self.cluster.alive(id)
    }

    /// Joins `user`'s session to the media room `gid` of a 1:1 call, on the node that holds
    /// the call; that node checks that the session carries a side of it.
    pub async fn join_direct(
        self: &Arc<Self>,
        user: &SessionUser,
        session: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let not_found = || ApiError::not_found("no such call, or not yours to join");
        let Some(direct) = self.direct().filter(|_| chorus_proto::direct::call_of_room(gid).is_some()) else {
            return Err(not_found());
        };
        match self.holder(gid).await? {
            None => Err(not_found()),
            Some(h) if h == self.cluster.id => {
                let at = SessionAt { node: self.cluster.id.as_str().into(), session };
                direct.enter(user, &at, session, gid, rid).await
            }
            // Gone before it answered: the call went with it.
            Some(h) => self.join_on(&h, user, session, gid, rid).await.unwrap_or_else(|| Err(not_found())),
        }
    }

    /// Asks node `host` to carry out a 1:1 call request of a session of this node; a node that
    /// does not answer within [`ASK_WAIT`] is answered `rate_limited` (try again: by then a
    /// dead node is found gone and the call `not_found`).
    pub async fn ask_direct(&self, host: &str, ask: Ask) -> Reply {
        let req = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let accepting = match ask {
            Ask::Accept { session, .. } => Some(session),
            _ => None,
        };
        self.asks.lock().expect("asks poisoned").insert(req, Pending { host: host.to_string(), accepting, tx });
        self.send(host, Msg::Direct { from: self.cluster.id.clone(), req, ask });
        let answer = tokio::time::timeout(ASK_WAIT, rx).await;
        self.asks.lock().expect("asks poisoned").remove(&req);
        match answer {
            Ok(Ok(reply)) => reply,
            _ => Reply::refused(Refused {
                error: ApiError::rate_limited("the call's node is not answering; try again"),
                status: None,
            }),
        }
    }

    /// Tells 1:1 call node `host` that this node's session `session` (user `uid`) closed.
    pub fn direct_gone(&self, host: &str, uid: i64, session: u64) {
        self.send(host, Msg::DirectGone { from: self.cluster.id.clone(), uid, session });
    }

    /// Tells `node` that call `id`, answered from its session `session`, ended.
    pub fn direct_ended(&self, node: &str, session: u64, id: CallId) {
        self.send(node, Msg::DirectEnded { session, call: id });
    }

    /// Whether the call of `gid` is held by a live node (placed and not yet released).
    pub async fn in_progress(&self, gid: i64) -> bool {
        self.holder(gid).await.ok().flatten().is_some()
    }

    /// The live node that holds the call of `gid`, if one does (nothing is placed).
    pub async fn holder(&self, gid: i64) -> Result<Option<String>, ApiError> {
        let row: Option<String> = sqlx::query_scalar("SELECT node FROM call_nodes WHERE gid = $1")
            .bind(gid)
            .fetch_optional(&self.db.read)
            .await?;
        Ok(row.filter(|node| self.cluster.alive(node)))
    }

    /// The node that holds the call of `gid`: the one its row names if alive, else the one this
    /// join places it on.
    pub async fn place(&self, gid: i64) -> Result<String, ApiError> {
        for _ in 0..3 {
            let row: Option<String> = sqlx::query_scalar("SELECT node FROM call_nodes WHERE gid = $1")
                .bind(gid)
                .fetch_optional(&self.db.write)
                .await?;
            match row {
                Some(node) if self.cluster.alive(&node) => return Ok(node),
                Some(dead) => {
                    sqlx::query("DELETE FROM call_nodes WHERE gid = $1 AND node = $2")
                        .bind(gid)
                        .bind(&dead)
                        .execute(&self.db.write)
                        .await?;
                }
                None => {}
            }
            let pick = self.least_loaded();
            sqlx::query(
                "INSERT INTO call_nodes (gid, node, placed_at) VALUES ($1, $2, $3) ON CONFLICT (gid) DO NOTHING",
            )
            .bind(gid)
            .bind(&pick)
            .bind(crate::clock::now_ms())
            .execute(&self.db.write)
            .await?;
        }
        Err(ApiError::rate_limited("the call is being placed; try again"))
    }

    /// The live node with the fewest participants, then calls, then the lowest id.
    fn least_loaded(&self) -> String {
        let mut nodes = self.cluster.peers();
        nodes.extend(self.cluster.this_node());
        nodes
            .iter()
            .min_by(|a, b| (a.participants, a.calls, &a.id).cmp(&(b.participants, b.calls, &b.id)))
            .map_or_else(|| self.cluster.id.clone(), |n| n.id.clone())
    }

    /// Deletes this node's rows of calls it does not hold (placed more than a grace ago).
    async fn release_ended(&self) -> Result<(), ApiError> {
        let Some(calls) = self.calls.upgrade() else { return Ok(()) };
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT gid, placed_at FROM call_nodes WHERE node = $1")
            .bind(&self.cluster.id)
            .fetch_all(&self.db.write)
            .await?;
        let mut live: Vec<i64> = calls.live().iter().map(|c| c.gid).collect();
        // A 1:1 call's row stays while its ring entry does (ringing, it has no room yet).
        let direct = self.direct();
        live.extend(direct.iter().flat_map(|d| d.held_rooms()));
        let old = crate::clock::now_ms() - PLACED_GRACE_MS;
        for (gid, at) in rows {
            if at < old && !live.contains(&gid) {
                sqlx::query("DELETE FROM call_nodes WHERE gid = $1 AND node = $2 AND placed_at = $3")
                    .bind(gid)
                    .bind(&self.cluster.id)
                    .bind(at)
                    .execute(&self.db.write)
                    .await?;
            }
        }
        match direct {
            Some(d) => d.sweep_rows().await,
            None => Ok(()),
        }
    }

    /// Forgets every call this node holds (a drain): the next join of each group call places it
    /// anew; its 1:1 calls end with it (the other nodes hear it gone).
    pub async fn release_all(&self) {
        let r =
            sqlx::query("DELETE FROM call_nodes WHERE node = $1").bind(&self.cluster.id).execute(&self.db.write).await;
        let users =
            sqlx::query("DELETE FROM direct_busy WHERE node = $1").bind(&self.cluster.id).execute(&self.db.write).await;
        if let Err(e) = r.and(users) {
            tracing::warn!(error = %e, "cluster: the calls of this node not released");
        }
    }

    /// Joins through `host`; `None` when `host` was found gone before it answered.
    async fn join_on(
        self: &Arc<Self>,
        host: &str,
        user: &SessionUser,
        session: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Option<Result<(CallSession, ServerFrame), ApiError>> {
        let leg = self.next_leg.fetch_add(1, Ordering::Relaxed);
        let (events, rx) = mpsc::channel(self.event_queue);
        let (joined_tx, joined) = oneshot::channel();
        self.away.lock().expect("call legs poisoned").insert(
            leg,
            Away {
                host: host.to_string(),
                gid,
                address: user.address.clone(),
                events,
                joined: Some(joined_tx),
                answers: HashMap::new(),
                next_req: 1,
            },
        );
        // From here the leg leaves the host when dropped: also if this join is abandoned.
        let room = Leg { router: Arc::downgrade(self), leg };
        let from = self.cluster.id.clone();
        self.send(host, Msg::Join { from, leg, user: user.clone(), gid, rid, session });
        // Dropped (the host is gone): place again.
        let frame = match tokio::time::timeout(JOIN_WAIT, joined).await {
            Ok(answer) => answer.ok()?,
            Err(_) => return Some(Err(ApiError::rate_limited("the call's node is not answering; try again"))),
        };
        if let ServerFrame::Error { code, message, .. } = frame {
            self.away.lock().expect("call legs poisoned").remove(&leg);
            return Some(Err(ApiError::new(code, message)));
        }
        Some(Ok((CallSession::remote(gid, user.uid.get(), session, Box::new(room), rx), frame)))
    }

    fn send(&self, node: &str, msg: Msg) {
        if self.out.try_send((node.to_string(), msg)).is_err() {
            tracing::warn!(node = %node, "cluster: the call message queue is full; a message was dropped");
        }
    }

    fn receive(self: &Arc<Self>, msg: Msg) {
        match msg {
            Msg::Join { from, leg, user, gid, rid, session } => {
                let this = self.clone();
                tokio::spawn(async move { this.host(from, leg, user, gid, rid, session).await });
            }
            Msg::Direct { from, req, ask } => {
                let this = self.clone();
                tokio::spawn(async move {
                    let reply = match this.direct() {
                        Some(d) => d.answer(&from, ask).await,
                        None => Reply::refused(ApiError::not_found("no such call").into()),
                    };
                    this.send(&from, Msg::DirectAnswer { req, reply });
                });
            }
            Msg::DirectAnswer { req, reply } => {
                let Some(p) = self.asks.lock().expect("asks poisoned").remove(&req) else { return };
                // An accepted call is noted here, before a `DirectEnded` that may follow it is
                // read (it is next on this subscription), not once the asker wakes.
                if let (Some(session), None, Some((_, update)), Some(d)) =
                    (p.accepting, &reply.refused, &reply.answered, self.direct())
                {
                    d.note_away(session, AnsweredElsewhere { host: p.host, call: update.call });
                }
                let _ = p.tx.send(reply);
            }
            Msg::DirectGone { from, uid, session } => {
                if let Some(d) = self.direct() {
                    d.remote_session_gone(&from, uid, session);
                }
            }
            Msg::DirectEnded { session, call } => {
                if let Some(d) = self.direct() {
                    d.away_ended(session, call);
                }
            }
            Msg::Request { from, leg, req, frame } => {
                let tx = self.hosted.lock().expect("hosted legs poisoned").get(&(from.clone(), leg)).cloned();
                let refused = match tx {
                    Some(tx) => tx.try_send((req, frame)).err().map(|e| match e {
                        mpsc::error::TrySendError::Full((_, f)) => (ErrorCode::RateLimited, f),
                        mpsc::error::TrySendError::Closed((_, f)) => (ErrorCode::NotFound, f),
                    }),
                    None => Some((ErrorCode::NotFound, frame)),
                };
                if let Some((code, frame)) = refused {
                    let message = match code {
                        ErrorCode::RateLimited => "the call is busy; try again",
                        _ => "the call has ended",
                    };
                    let frame = error(frame.rid().map(str::to_string), code, message);
                    self.send(&from, Msg::Answer { leg, req, frame });
                }
            }
            Msg::Leave { from, leg } => {
                let mut hosted = self.hosted.lock().expect("hosted legs poisoned");
                if hosted.remove(&(from.clone(), leg)).is_none() {
                    // Its join may still be on its way to the room: it leaves as soon as it is in.
                    let mut early = self.left_early.lock().expect("early leaves poisoned");
                    if early.len() == EARLY_LEAVES {
                        early.pop_front();
                    }
                    early.push_back((from, leg));
                }
            }
            Msg::Joined { leg, frame } => {
                let tx = self.away.lock().expect("call legs poisoned").get_mut(&leg).and_then(|a| a.joined.take());
                match tx {
                    Some(tx) => {
                        let _ = tx.send(frame);
                    }
                    None => tracing::debug!(leg, "cluster: a join answer for no leg"),
                }
            }
            Msg::Answer { leg, req, frame } => {
                let tx =
                    self.away.lock().expect("call legs poisoned").get_mut(&leg).and_then(|a| a.answers.remove(&req));
                if let Some(tx) = tx {
                    let _ = tx.send(frame);
                }
            }
            Msg::Event { leg, frame } => {
                let mut away = self.away.lock().expect("call legs poisoned");
                let Some(a) = away.get(&leg) else { return };
                if a.events.try_send(frame.into()).is_err() {
                    // The session fell behind (or is gone): out of the call, as a local one is.
                    let a = away.remove(&leg).expect("just found");
                    drop(away);
                    self.send(&a.host, Msg::Leave { from: self.cluster.id.clone(), leg });
                }
            }
            Msg::Ended { leg } => {
                self.away.lock().expect("call legs poisoned").remove(&leg);
            }
        }
    }

    /// Host side: joins the leg `leg` of node `from` to the local call of `gid` and relays
    /// between them until one side lets go.
    /// A 1:1 call's room (`gid` < 0) is joined only by the origin's session `origin` that
    /// carries a side of the call.
    async fn host(
        self: Arc<Self>,
        from: String,
        leg: u64,
        user: SessionUser,
        gid: i64,
        rid: Option<String>,
        origin: u64,
    ) {
        let Some(calls) = self.calls.upgrade() else { return };
        let session = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
        let joined = match (gid < 0, self.direct()) {
            (false, _) => calls.join(&user, session, gid, rid.clone()).await,
            (true, Some(direct)) => {
                let at = SessionAt { node: from.as_str().into(), session: origin };
                direct.enter(&user, &at, session, gid, rid.clone()).await
            }
            (true, None) => Err(ApiError::not_found("no such call, or not yours to join")),
        };
        let (mut call, joined) = match joined {
            Ok(j) => j,
            Err(e) => return self.send(&from, Msg::Joined { leg, frame: error(rid, e.code, &e.message) }),
        };
        let (tx, mut requests) = mpsc::channel::<(u64, ClientFrame)>(LEG_REQUESTS);
        {
            let mut hosted = self.hosted.lock().expect("hosted legs poisoned");
            let mut early = self.left_early.lock().expect("early leaves poisoned");
            if let Some(i) = early.iter().position(|(f, l)| *f == from && *l == leg) {
                early.remove(i);
                return; // left while joining: dropping `call` takes it out again
            }
            hosted.insert((from.clone(), leg), tx);
        }
        self.send(&from, Msg::Joined { leg, frame: joined });
        loop {
            tokio::select! {
                ev = call.rx.recv() => match ev {
                    Some(frame) => {
                        // Waits for room in the queue rather than dropping: the room's bounded
                        // queue for the session is what holds back a slow origin.
                        let msg = (from.clone(), Msg::Event { leg, frame: frame.as_str().to_string() });
                        if self.out.send(msg).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        self.send(&from, Msg::Ended { leg });
                        break;
                    }
                },
                r = requests.recv() => match r {
                    Some((req, frame)) => {
                        // Answered here, in turn: an answer goes out before the `Ended` that may
                        // follow it (a `call_leave`), as the origin expects.
                        let rid = frame.rid().map(str::to_string);
                        let answer = call.request(frame).await;
                        let frame = answer.unwrap_or_else(|_| error(rid, ErrorCode::NotFound, "the call has ended"));
                        self.send(&from, Msg::Answer { leg, req, frame });
                    }
                    // `Leave`, or the origin is gone.
                    None => break,
                },
            }
        }
        self.hosted.lock().expect("hosted legs poisoned").remove(&(from, leg));
    }

    /// Node `id` is gone: the legs it hosted for this node's sessions end with `left` (`lost`),
    /// and the legs this node hosted for its sessions end.
    pub fn node_gone(&self, id: &str) {
        // 1:1 calls: those held here that its sessions carried end `lost`; those it held end
        // `lost` too, told by the node that speaks for the cluster.
        if let Some(d) = self.direct() {
            d.node_gone(id, self.cluster.speaks_for_cluster());
        }
        let ended: Vec<Away> = {
            let mut away = self.away.lock().expect("call legs poisoned");
            let legs: Vec<u64> = away.iter().filter(|(_, a)| a.host == id).map(|(l, _)| *l).collect();
            legs.into_iter().filter_map(|l| away.remove(&l)).collect()
        };
        for a in ended {
            let left = ServerFrame::CallEvent {
                gid: GroupId(a.gid),
                event: CallEvent::Left { address: a.address.clone(), reason: CallLeaveReason::Lost, by: None },
            };
            let json = serde_json::to_string(&left).expect("frames serialise");
            let _ = a.events.try_send(json.into());
            // Dropping `a` ends the session's call (its receiver yields `None` after `left`),
            // and drops the pending join and answers.
        }
        self.hosted.lock().expect("hosted legs poisoned").retain(|(origin, _), _| origin != id);
    }
}

/// An error frame.
fn error(rid: Option<String>, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error { rid, id: None, code, message: message.to_string(), status: None }
}

fn subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.call.{node}")
}

/// A session's leg to a call on another node: its [`RemoteRoom`].
struct Leg {
    router: Weak<CallRouter>,
    leg: u64,
}

impl RemoteRoom for Leg {
    fn request(&self, frame: ClientFrame) -> oneshot::Receiver<ServerFrame> {
        let (tx, rx) = oneshot::channel();
        let Some(router) = self.router.upgrade() else { return rx };
        let mut away = router.away.lock().expect("call legs poisoned");
        let Some(a) = away.get_mut(&self.leg) else { return rx };
        let req = a.next_req;
        a.next_req += 1;
        a.answers.insert(req, tx);
        let host = a.host.clone();
        drop(away);
        router.send(&host, Msg::Request { from: router.cluster.id.clone(), leg: self.leg, req, frame });
        rx
    }
}

impl Drop for Leg {
    fn drop(&mut self) {
        let Some(router) = self.router.upgrade() else { return };
        let gone = router.away.lock().expect("call legs poisoned").remove(&self.leg);
        if let Some(a) = gone {
            router.send(&a.host, Msg::Leave { from: router.cluster.id.clone(), leg: self.leg });
        }
    }
}
