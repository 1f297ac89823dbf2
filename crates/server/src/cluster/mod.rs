//! Cluster mode: several nodes on one PostgreSQL store, joined by NATS (`nats` setting).
//!
//! [`Cluster`] is the [`FanOut`] of a node in a cluster. It wraps the node's [`LocalBus`]
//! (its own sessions) and one NATS subject, `<nats_prefix>.bus`, that every node publishes
//! to and subscribes to:
//!
//! - `deliver` queues the frame to this node's sessions, then publishes the serialised frame
//!   and its recipients' uids once; every other node queues it to its own sessions. One
//!   subject for all, not one per user: a group message is one publish whatever the number
//!   of members, and the order in which a node's messages arrive is the order it sent them
//!   (one publisher, one subscription, one subject), which the gap check below relies on.
//!   The price is that every node receives every fan-out, also those with no recipient there.
//! - `disconnect` (revocation) ends the sessions here and on every other node.
//! - Session counts: a node publishes a user's count of sessions there when it changes, and
//!   all of them when a node says hello. `online` is true for a user with a session on any
//!   node that is alive (heard from within three heartbeats).
//! - Heartbeats: every `node_heartbeat_secs` each node publishes what `/admin/nodes` shows of
//!   it (id, address, sessions, calls).
//! - Invalidations: a node that changed cached data tells the others to drop theirs.
//!
//! **Nothing lost when NATS is.** Each node numbers what it publishes (per process start,
//! `boot`). A node that sees a number skipped from another node (NATS was down, dropped a
//! slow consumer's messages, or the publisher's queue was full), or whose own connection
//! comes back after a loss, may have missed fan-out: it ends every local session with close
//! code 4000 ([`CLOSE_RESYNC`]), so the clients reconnect and resume from their cursor,
//! which exact resume makes lossless (ARCHITECTURE.md). While NATS is unreachable the node
//! reports unhealthy (`/healthz` 503) and keeps serving its own sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub mod calls;
pub mod forward;
mod order;

use crate::bus::{
    close_only, FanOut, Invalidation, LocalBus, MsgMeta, Outbound, SessionTx, TooManySessions, CLOSE_RESYNC,
};
use crate::config::Config;

/// Messages waiting for the publisher task; past this a message is dropped (and the gap it
/// leaves makes the other nodes resync their sessions).
const OUT_QUEUE: usize = 65_536;
/// Most bytes of frames in one NATS message (a batch is sent in parts past it): NATS refuses
/// messages over its `max_payload`, 1 MiB by default.
const PART_BYTES: usize = 512 * 1024;
/// Most users in one message of session counts.
const COUNTS_PER_MESSAGE: usize = 10_000;
/// A node not heard from for this many heartbeats is gone.
const MISSED_BEATS: u32 = 3;
/// How long a writer batch waits for the batches before it ([`order`]) before the hole is
/// skipped and the local sessions resume from the store.
const HOLE_WAIT: Duration = Duration::from_secs(2);

/// One node as `/admin/nodes` shows it, and as its heartbeat carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (`node_id`, else random at each start).
    pub id: String,
    /// The host's name.
    pub node: String,
    /// The URL it listens on.
    pub address: String,
    /// Its version.
    pub version: String,
    /// Start time, ms since the epoch.
    pub started_at: i64,
    /// `sqlite` or `postgresql`.
    pub store: String,
    /// WebSocket sessions open on it.
    pub sessions: i64,
    /// Calls in progress on it.
    pub calls: usize,
    /// Sessions in those calls.
    pub participants: usize,
    /// Where its call media is received (UDP, as clients are told): a call placed on this node
    /// gets its participants' media there, whichever node their WebSocket is on.
    #[serde(default)]
    pub media: String,
    /// When it was last heard from (its last heartbeat, as this node received it), ms since
    /// the epoch; for the node answering, now.
    pub last_heartbeat: i64,
}

/// What one NATS message carries (its header; a frame's text follows the header's line).
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// Sending node.
    n: String,
    /// The sending process's start (a restarted node numbers from 1 again).
    b: u64,
    /// Number of this message among the sender's.
    s: u64,
    k: Kind,
}

#[derive(Debug, Serialize, Deserialize)]
enum Kind {
    /// The frame (after the header) to these users' sessions.
    Fan { uids: Vec<i64>, msg: Option<MsgMeta> },
    /// A writer batch that handed out the positions `from + 1..=to`, or a part of it (`last`
    /// on its last part; parts follow each other): its frames, one after the other after the
    /// header, each `(recipients, message, length in bytes)`.
    Batch { from: i64, to: i64, last: bool, items: BatchItems },
    /// End these sessions of the user (those opened with `token`, if given) with the frame.
    Disconnect { uid: i64, token: Option<u64>, code: u16 },
    /// The sender's count of sessions of users (`full`: all of them, replacing what was known).
    Sessions { full: bool, users: Vec<(i64, u32)> },
    /// Heartbeat.
    Beat(NodeInfo),
    /// A node (re)joined: everyone sends their full session counts.
    Hello,
    /// The sender is leaving (drained on SIGTERM): it is gone from now.
    Bye,
    /// Cached data changed.
    Invalidate(Invalidation),
}

/// A batch part's frames: `(recipients, message, length in bytes)` each.
type BatchItems = Vec<(Vec<i64>, Option<MsgMeta>, usize)>;

/// What the publisher task sends: a header kind and the frame text, if any.
struct Out {
    kind: Kind,
    body: Option<Bytes>,
    /// Told once this message (and every one before it) has reached NATS.
    flushed: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Another node, as heard.
struct Peer {
    boot: u64,
    seq: u64,
    heard: Instant,
    info: Option<NodeInfo>,
    /// Its users with sessions, and how many.
    sessions: HashMap<i64, u32>,
    /// The parts received so far of the batch it is sending.
    partial: order::Fanouts,
}

type InfoFn = Box<dyn Fn() -> NodeInfo + Send + Sync>;
type InvalidateFn = Box<dyn Fn(&Invalidation) + Send + Sync>;
type GoneFn = Box<dyn Fn(&str, Vec<i64>) + Send + Sync>;

/// A node of a cluster: the bus across nodes, the node list, the health of the NATS link.
pub struct Cluster {
    local: LocalBus,
    id: String,
    boot: u64,
    subject: String,
    heartbeat: Duration,
    out: mpsc::Sender<Out>,
    /// Messages not published (queue full or NATS refused them) since the last one that was:
    /// the next number skips as many, so the other nodes see the gap.
    skipped: AtomicU64,
    peers: Mutex<HashMap<String, Peer>>,
    connected: AtomicBool,
    /// Set by [`Cluster::leave`]: no more heartbeats.
    leaving: AtomicBool,
    info: OnceLock<InfoFn>,
    on_invalidate: OnceLock<InvalidateFn>,
    on_gone: OnceLock<GoneFn>,
    /// The NATS connection (also for the call routing of [`calls`]).
    nats: async_nats::Client,
    prefix: String,
    /// Writer batches of every node, released to the local sessions in position order.
    order: Mutex<order::Sequencer>,
}

impl Cluster {
    /// Connects to NATS (`nats`), subscribes and starts the node's tasks. An unreachable NATS
    /// is an error: the node does not start.
    pub async fn start(cfg: &Config, id: String) -> anyhow::Result<Arc<Cluster>> {
        let nats = cfg.nats.as_deref().ok_or_else(|| anyhow::anyhow!("cluster mode needs the nats setting"))?;
        // What errors and logs show: never the password.
        let url = &redacted(nats);
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let options = async_nats::ConnectOptions::new()
            .name(format!("chorus {id}"))
            .connection_timeout(Duration::from_secs(5))
            // Back within a second of NATS: the sessions resync as soon as it is.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)))
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            });
        // The connection's task runs where it is made: on the NATS thread (see [`io_runtime`]).
        let io = io_runtime()?;
        let target = nats.to_string();
        let client = io
            .spawn(async move { options.connect(target).await })
            .await?
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {url}: {e}"))?;
        let subject = format!("{}.bus", cfg.nats_prefix);
        let mut sub = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject} on NATS at {url}: {e}"))?;
        let (out, mut rx) = mpsc::channel::<Out>(OUT_QUEUE);
        let cluster = Arc::new(Cluster {
            local: LocalBus::default(),
            id,
            boot: rand::random::<u64>() | 1,
            subject,
            heartbeat: Duration::from_secs(cfg.node_heartbeat_secs),
            out,
            skipped: AtomicU64::new(0),
            peers: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(true),
            leaving: AtomicBool::new(false),
            info: OnceLock::new(),
            on_invalidate: OnceLock::new(),
            on_gone: OnceLock::new(),
            nats: client.clone(),
            prefix: cfg.nats_prefix.clone(),
            order: Mutex::new(order::Sequencer::default()),
        });
        // The subscription is in place before the caller reads the store's position.
        client.flush().await.map_err(|e| anyhow::anyhow!("NATS at {url} does not answer: {e}"))?;
        // Publisher: numbers every message in the order it was queued.
        let this = cluster.clone();
        let publisher = client.clone();
        io.spawn(async move {
            let mut seq = 0u64;
            while let Some(o) = rx.recv().await {
                seq += 1 + this.skipped.swap(0, Ordering::AcqRel);
                let header = Header { n: this.id.clone(), b: this.boot, s: seq, k: o.kind };
                let head = serde_json::to_vec(&header).expect("cluster headers serialise");
                let body = o.body.unwrap_or_default();
                let mut buf = BytesMut::with_capacity(head.len() + 1 + body.len());
                buf.put_slice(&head);
                buf.put_u8(b'\n');
                buf.put_slice(&body);
                if let Err(e) = publisher.publish(this.subject.clone(), buf.freeze()).await {
                    tracing::warn!(error = %e, "cluster: publish failed");
                    this.skipped.fetch_add(1, Ordering::AcqRel);
                }
                if let Some(done) = o.flushed {
                    let _ = publisher.flush().await;
                    let _ = done.send(());
                }
            }
        });
        // Receiver.
        let this = cluster.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                this.receive(m.payload);
            }
            tracing::error!("cluster: the NATS subscription ended");
        });
        // Connection events: health, and a resync after a loss.
        let this = cluster.clone();
        tokio::spawn(async move {
            let mut lost = false;
            while let Some(event) = events.recv().await {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("cluster: NATS connection lost; serving local sessions only");
                        this.connected.store(false, Ordering::Release);
                        lost = true;
                    }
                    async_nats::Event::Connected if lost => {
                        lost = false;
                        tracing::warn!("cluster: NATS connection back; local sessions resume");
                        this.connected.store(true, Ordering::Release);
                        this.resync();
                    }
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            }
        });
        // Holes in the batch order that waited too long.
        let this = cluster.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let skipped = this.order.lock().expect("cluster order poisoned").give_up(Instant::now(), HOLE_WAIT);
                if skipped {
                    tracing::warn!("cluster: a writer batch did not arrive; local sessions resume");
                    this.resync();
                }
            }
        });
        // Heartbeats, and forgetting nodes gone silent.
        let this = cluster.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.heartbeat);
            loop {
                tick.tick().await;
                if this.leaving.load(Ordering::Acquire) {
                    return;
                }
                if let Some(info) = this.info.get() {
                    this.send(Kind::Beat(info()), None);
                }
                // A silent node is forgotten, all but its numbering: if it comes back without
                // having restarted, what it sent meanwhile shows as a gap.
                let silent = this.heartbeat * MISSED_BEATS;
                let mut gone = Vec::new();
                for (id, p) in this.peers.lock().expect("cluster peers poisoned").iter_mut() {
                    if p.info.is_some() && p.heard.elapsed() >= silent {
                        tracing::warn!(node = %id, "cluster: node gone (no heartbeat)");
                        p.info = None;
                        gone.push((id.clone(), p.sessions.drain().map(|(uid, _)| uid).collect()));
                    }
                }
                for (id, users) in gone {
                    this.gone(&id, users);
                }
            }
        });
        cluster.send(Kind::Hello, None);
        tracing::info!(node = %cluster.id, nats = %url, subject = %cluster.subject, "cluster: joined");
        Ok(cluster)
    }

    /// Starts releasing writer batches to the local sessions after the stream position `pos`
    /// (read from the store after [`Cluster::start`], before any session exists).
    pub fn start_at(&self, pos: i64) {
        let mut order = self.order.lock().expect("cluster order poisoned");
        for fanouts in order.start_at(pos, Instant::now()) {
            self.release(fanouts);
        }
    }

    /// Takes a committed writer batch (this node's or another's) into the order.
    fn sequence(&self, from: i64, to: i64, fanouts: order::Fanouts) {
        // Released under the lock: two batches never interleave.
        let mut order = self.order.lock().expect("cluster order poisoned");
        for fanouts in order.offer(from, to, fanouts, Instant::now()) {
            self.release(fanouts);
        }
    }

    fn release(&self, fanouts: order::Fanouts) {
        for (uids, frame) in fanouts {
            self.local.deliver(&mut uids.into_iter(), frame);
        }
    }

    /// Whether the NATS link is up (`/healthz`).
    pub fn healthy(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Sets what this node's heartbeat says of it (called once, when the services exist).
    pub fn set_info(&self, info: impl Fn() -> NodeInfo + Send + Sync + 'static) {
        let _ = self.info.set(Box::new(info));
    }

    /// Sets what to do when another node invalidates cached data (called once).
    pub fn on_invalidate(&self, f: impl Fn(&Invalidation) + Send + Sync + 'static) {
        let _ = self.on_invalidate.set(Box::new(f));
    }

    /// Sets what to do when another node is gone, with the users it had sessions of: silent
    /// for three heartbeats, drained, or heard again after a restart (what it held is lost
    /// either way). Called once.
    pub fn on_gone(&self, f: impl Fn(&str, Vec<i64>) + Send + Sync + 'static) {
        let _ = self.on_gone.set(Box::new(f));
    }

    fn gone(&self, id: &str, users: Vec<i64>) {
        if let Some(f) = self.on_gone.get() {
            f(id, users);
        }
    }

    /// Whether this node is the one, among the live nodes, that speaks for the cluster where
    /// one node must (the lowest id): e.g. announcing offline the users of a node that died.
    pub fn speaks_for_cluster(&self) -> bool {
        let peers = self.peers.lock().expect("cluster peers poisoned");
        peers.iter().all(|(id, p)| p.info.is_none() || *id > self.id)
    }

    /// This node as its heartbeat describes it (once [`Cluster::set_info`] was called).
    pub fn this_node(&self) -> Option<NodeInfo> {
        self.info.get().map(|f| f())
    }

    /// Whether node `id` is alive: this node, or another heard from within three heartbeats.
    pub fn alive(&self, id: &str) -> bool {
        id == self.id || self.peers.lock().expect("cluster peers poisoned").get(id).is_some_and(|p| p.info.is_some())
    }

    /// The other nodes alive (heard from within three heartbeats), as their last heartbeats
    /// describe them, by id.
    pub fn peers(&self) -> Vec<NodeInfo> {
        let peers = self.peers.lock().expect("cluster peers poisoned");
        let mut list: Vec<NodeInfo> = peers.values().filter_map(|p| p.info.clone()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Leaves the cluster (a drain, on SIGTERM): no more heartbeats, and every other node is
    /// told this one is gone at once, as if it had missed three heartbeats (their sessions in
    /// calls held here rejoin elsewhere). Returns once that has reached NATS (or after 2 s).
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.out.try_send(Out { kind: Kind::Bye, body: None, flushed: Some(done) }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), flushed).await;
        }
    }

    /// Ends this node's sessions with close code 4000 (reconnect, to another node, and resume).
    pub fn end_sessions(&self) {
        self.local.end_all(&close_only(CLOSE_RESYNC));
    }

    fn send(&self, kind: Kind, body: Option<Bytes>) {
        if self.out.try_send(Out { kind, body, flushed: None }).is_err() {
            tracing::warn!("cluster: publish queue full; dropping a message (the other nodes will resync)");
            self.skipped.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Ends every local session (close 4000: reconnect and resume) and asks every node for its
    /// session counts again: what came from the others may have been missed.
    fn resync(&self) {
        self.local.end_all(&close_only(CLOSE_RESYNC));
        self.send(Kind::Hello, None);
        self.send_counts();
    }

    /// Publishes the session counts of every local user (in messages of at most
    /// [`COUNTS_PER_MESSAGE`], the first replacing what the others knew).
    fn send_counts(&self) {
        let counts = self.local.counts();
        let mut chunks = counts.chunks(COUNTS_PER_MESSAGE);
        self.send(Kind::Sessions { full: true, users: chunks.next().unwrap_or_default().to_vec() }, None);
        for chunk in chunks {
            self.send(Kind::Sessions { full: false, users: chunk.to_vec() }, None);
        }
    }

    fn receive(&self, payload: Bytes) {
        let Some(split) = payload.iter().position(|&b| b == b'\n') else {
            return tracing::warn!("cluster: a message without a header line; ignored");
        };
        let header: Header = match serde_json::from_slice(&payload[..split]) {
            Ok(h) => h,
            Err(e) => return tracing::warn!(error = %e, "cluster: an unreadable message; ignored"),
        };
        if header.n == self.id {
            if header.b != self.boot {
                tracing::error!(node = %self.id, "cluster: another process uses this node_id");
            }
            return;
        }
        let mut ask = false;
        let mut restarted = None;
        let gap = {
            let mut peers = self.peers.lock().expect("cluster peers poisoned");
            let p = peers.entry(header.n.clone()).or_insert_with(|| Peer {
                boot: header.b,
                seq: header.s.saturating_sub(1),
                heard: Instant::now(),
                info: None,
                sessions: HashMap::new(),
                partial: Vec::new(),
            });
            let gap = if p.boot != header.b {
                // The node restarted: what it had before is gone with it.
                p.boot = header.b;
                restarted = Some(p.sessions.drain().map(|(uid, _)| uid).collect());
                false
            } else {
                header.s != p.seq + 1
            };
            if gap {
                p.partial.clear();
            }
            p.seq = header.s;
            p.heard = Instant::now();
            match &header.k {
                Kind::Sessions { full, users } => {
                    if *full {
                        p.sessions.clear();
                    }
                    for &(uid, n) in users {
                        if n == 0 {
                            p.sessions.remove(&uid);
                        } else {
                            p.sessions.insert(uid, n);
                        }
                    }
                }
                Kind::Beat(info) => {
                    let mut info = info.clone();
                    info.last_heartbeat = crate::clock::now_ms();
                    // A node first heard, or back after silence: learn its sessions.
                    ask = p.info.replace(info).is_none();
                }
                _ => {}
            }
            gap
        };
        if let Some(users) = restarted {
            self.gone(&header.n, users);
        }
        if gap {
            tracing::warn!(node = %header.n, "cluster: messages from a node were missed; local sessions resume");
            self.resync();
        } else if ask {
            self.send(Kind::Hello, None);
        }
        match header.k {
            Kind::Fan { uids, msg } => {
                let Ok(json) = axum::extract::ws::Utf8Bytes::try_from(payload.slice(split + 1..)) else {
                    return tracing::warn!("cluster: a frame that is not UTF-8; ignored");
                };
                self.local.deliver(&mut uids.into_iter(), Arc::new(Outbound { json, msg, origin: 0, close: None }));
            }
            Kind::Batch { from, to, last, items } => {
                let mut at = split + 1;
                let mut fanouts = Vec::with_capacity(items.len());
                for (uids, msg, len) in items {
                    let Some(text) = at.checked_add(len).and_then(|end| payload.get(at..end)) else {
                        return tracing::warn!("cluster: a batch shorter than its header says; ignored");
                    };
                    let Ok(json) = axum::extract::ws::Utf8Bytes::try_from(payload.slice_ref(text)) else {
                        return tracing::warn!("cluster: a frame that is not UTF-8; ignored");
                    };
                    at += len;
                    fanouts.push((uids, Arc::new(Outbound { json, msg, origin: 0, close: None })));
                }
                let whole = {
                    let mut peers = self.peers.lock().expect("cluster peers poisoned");
                    let Some(p) = peers.get_mut(&header.n) else { return };
                    p.partial.append(&mut fanouts);
                    last.then(|| std::mem::take(&mut p.partial))
                };
                if let Some(fanouts) = whole {
                    self.sequence(from, to, fanouts);
                }
            }
            Kind::Disconnect { uid, token, code } => {
                let Ok(json) = axum::extract::ws::Utf8Bytes::try_from(payload.slice(split + 1..)) else { return };
                self.local.disconnect(uid, token, Arc::new(Outbound { json, msg: None, origin: 0, close: Some(code) }));
            }
            Kind::Hello => self.send_counts(),
            Kind::Bye => {
                tracing::info!(node = %header.n, "cluster: node left (drained)");
                let users = match self.peers.lock().expect("cluster peers poisoned").get_mut(&header.n) {
                    Some(p) => {
                        p.info = None;
                        p.sessions.drain().map(|(uid, _)| uid).collect()
                    }
                    None => Vec::new(),
                };
                self.gone(&header.n, users);
            }
            Kind::Invalidate(what) => {
                if let Some(f) = self.on_invalidate.get() {
                    f(&what);
                }
            }
            Kind::Sessions { .. } | Kind::Beat(_) => {}
        }
    }

    fn publish_count(&self, uid: i64) {
        let n = self.local.sessions(uid) as u32;
        self.send(Kind::Sessions { full: false, users: vec![(uid, n)] }, None);
    }
}

/// A batch's fan-outs as the parts it is published in: each holds frames of at most `max`
/// bytes in all (a larger frame goes alone), the last is marked; an empty batch is one part.
fn parts(fanouts: &order::Fanouts, max: usize) -> Vec<(BatchItems, Bytes, bool)> {
    let mut out = Vec::new();
    let mut body = BytesMut::new();
    let mut items = Vec::new();
    for (i, (uids, f)) in fanouts.iter().enumerate() {
        body.put_slice(f.json.as_bytes());
        items.push((uids.clone(), f.msg, f.json.len()));
        let next = fanouts.get(i + 1).map(|(_, f)| f.json.len());
        if next.is_none_or(|n| body.len() + n > max) {
            out.push((std::mem::take(&mut items), body.split().freeze(), next.is_none()));
        }
    }
    if out.is_empty() {
        out.push((Vec::new(), Bytes::new(), true));
    }
    out
}

/// The runtime of the NATS thread: the bus's publisher and the NATS connection's own task run
/// there, one thread of their own, not on the runtime of the sessions. A writer batch wakes the
/// publisher and then the local sessions it is for; on the shared runtime the publish, and then
/// the connection's write, waited behind those sessions' writes (hundreds of sockets, a few ms),
/// which is what the other nodes' receivers measured as the cross-node delay.
fn io_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    static IO: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    if let Some(h) = IO.get() {
        return Ok(h.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("chorus-nats".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => {
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    })?;
    let handle = rx.recv()??;
    Ok(IO.get_or_init(|| handle).clone())
}

/// `url` without the password of its user, if it has one.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (user, host) = rest.rsplit_once('@').expect("an @ is there");
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl FanOut for Cluster {
    fn attach(&self, uid: i64, session: u64, token: u64, tx: SessionTx, max: usize) -> Result<bool, TooManySessions> {
        let first = self.local.attach(uid, session, token, tx, max)?;
        self.publish_count(uid);
        Ok(first)
    }

    fn detach(&self, uid: i64, session: u64) -> bool {
        let before = self.local.sessions(uid);
        let none = self.local.detach(uid, session);
        if self.local.sessions(uid) != before {
            self.publish_count(uid);
        }
        none
    }

    fn deliver(&self, uids: &mut dyn Iterator<Item = i64>, frame: Arc<Outbound>) {
        let uids: Vec<i64> = uids.collect();
        let msg = frame.msg;
        let body = Bytes::from(frame.json.clone());
        self.local.deliver(&mut uids.iter().copied(), frame);
        self.send(Kind::Fan { uids, msg }, Some(body));
    }

    fn deliver_batch(&self, from: i64, to: i64, fanouts: Vec<(Vec<i64>, Arc<Outbound>)>) {
        if from == to {
            // No position handed out (receipts only): nothing to order.
            for (uids, frame) in fanouts {
                self.deliver(&mut uids.into_iter(), frame);
            }
            return;
        }
        for (items, body, last) in parts(&fanouts, PART_BYTES) {
            self.send(Kind::Batch { from, to, last, items }, Some(body));
        }
        self.sequence(from, to, fanouts);
    }

    fn online(&self, uid: i64) -> bool {
        self.local.online(uid) || self.elsewhere(uid)
    }

    fn elsewhere(&self, uid: i64) -> bool {
        self.peers.lock().expect("cluster peers poisoned").values().any(|p| p.sessions.contains_key(&uid))
    }

    fn sessions(&self, uid: i64) -> usize {
        self.local.sessions(uid)
    }

    fn disconnect(&self, uid: i64, token: Option<u64>, frame: Arc<Outbound>) {
        let code = frame.close.unwrap_or(CLOSE_RESYNC);
        let body = Bytes::from(frame.json.clone());
        self.local.disconnect(uid, token, frame);
        self.send(Kind::Disconnect { uid, token, code }, Some(body));
    }

    fn invalidate(&self, what: Invalidation) {
        self.send(Kind::Invalidate(what), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_published_in_parts_of_bounded_size() {
        let frame = |n: usize| {
            (vec![1, 2], Arc::new(Outbound { json: "x".repeat(n).into(), msg: None, origin: 0, close: None }))
        };
        let sizes = |fanouts: &order::Fanouts, max| {
            parts(fanouts, max)
                .into_iter()
                .map(|(items, body, last)| (items.len(), body.len(), last))
                .collect::<Vec<_>>()
        };
        let batch = vec![frame(4), frame(4), frame(4), frame(20), frame(1)];
        assert_eq!(sizes(&batch, 10), [(2, 8, false), (1, 4, false), (1, 20, false), (1, 1, true)]);
        assert_eq!(sizes(&batch, 100), [(5, 33, true)]);
        assert_eq!(sizes(&Vec::new(), 10), [(0, 0, true)], "an empty batch still fills its place");
        let (items, body, _) = parts(&batch, 10).remove(2);
        assert_eq!((items[0].0.as_slice(), items[0].2, body.len()), (&[1, 2][..], 20, 20));
    }

    #[test]
    fn a_password_in_the_nats_url_is_not_shown() {
        assert_eq!(super::redacted("nats://chorus:s3cr3t@10.0.0.5:4222"), "nats://chorus:***@10.0.0.5:4222");
        assert_eq!(super::redacted("nats://10.0.0.5:4222"), "nats://10.0.0.5:4222");
    }
}
