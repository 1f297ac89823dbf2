//! Fan-out: who receives what, behind the [`FanOut`] trait.
//!
//! Services decide *which users* get a frame; the bus finds those users'
//! sessions and queues the frame to each. [`LocalBus`] does it in-process; in cluster
//! mode [`crate::cluster::Cluster`] wraps a `LocalBus`: `deliver` queues to this node's
//! sessions and publishes the frame once on NATS, and every other node's `LocalBus`
//! queues it to its own sessions.
//!
//! Frames are serialised once, before fan-out, by [`outbound`] (the one place that
//! turns a [`ServerFrame`] into what a session writes), and shared as `Arc<Outbound>`.
//! The text is a reference-counted buffer ([`Utf8Bytes`], the WebSocket text payload
//! itself), so every session writes the same bytes: delivering to a thousand sessions
//! costs a thousand pointer copies and queue pushes, not a thousand serialisations or
//! buffer copies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use chorus_proto::ws::ServerFrame;
use tokio::sync::mpsc;

/// A serialised server frame as sessions write it: reference-counted UTF-8 bytes, so every
/// recipient of one frame writes the same buffer.
pub type FrameText = Utf8Bytes;

/// Identifies a stored message a frame carries (for resume de-duplication and delivery acks).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct MsgMeta {
    /// Stream position.
    pub pos: i64,
    /// Conversation.
    pub conv_id: i64,
    /// Sequence in the conversation.
    pub seq: i64,
    /// Sender.
    pub sender: i64,
}

/// A serialised server frame on its way to sessions.
#[derive(Debug)]
pub struct Outbound {
    /// The JSON text frame, shared: a session writes a clone of it (no copy of the bytes).
    pub json: Utf8Bytes,
    /// Set for `message` frames.
    pub msg: Option<MsgMeta>,
    /// Session that caused it (it already got a direct answer), 0 for none.
    pub origin: u64,
    /// Close the session with this WebSocket close code after sending the frame.
    pub close: Option<u16>,
}

/// The JSON text of a server frame, as a session writes it.
pub fn frame_text(frame: &ServerFrame) -> FrameText {
    serde_json::to_string(frame).expect("server frames always serialise").into()
}

/// Serialises a frame once for fan-out. `msg` is set for `message` frames; `origin` is the
/// session that caused it (0 for none).
pub fn outbound(frame: &ServerFrame, msg: Option<MsgMeta>, origin: u64) -> Arc<Outbound> {
    Arc::new(Outbound { json: frame_text(frame), msg, origin, close: None })
}

/// The last frame of a session ended on purpose ([`FanOut::disconnect`]): the session writes
/// it, then closes with `code`.
pub fn closing(frame: &ServerFrame, code: u16) -> Arc<Outbound> {
    Arc::new(Outbound { json: frame_text(frame), msg: None, origin: 0, close: Some(code) })
}

/// Cached data that changed: in cluster mode the other nodes drop their copies
/// ([`FanOut::invalidate`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Invalidation {
    /// A group's policy and members (`Groups::policy`), and what calls hold of it.
    Group(i64),
    /// A file kept by `Media::file`.
    File(String),
    /// Every file kept by `Media::file`.
    AllFiles,
    /// Users resolved by address (`Accounts::by_address`).
    Addresses,
    /// A stream key was revoked: its WHIP session ends on whichever node holds it.
    StreamKey(i64),
}

/// Close code telling a client to reconnect at once and resume from its cursor: its session
/// fell behind, or (cluster mode) it may have missed frames from other nodes.
pub const CLOSE_RESYNC: u16 = 4000;

/// The last frame-less entry of a session that must reconnect and resume: the session closes
/// with `code` without writing a frame first.
pub fn close_only(code: u16) -> Arc<Outbound> {
    Arc::new(Outbound { json: Utf8Bytes::from_static(""), msg: None, origin: 0, close: Some(code) })
}

/// Why a session could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySessions;

/// Routes frames to users' sessions.
pub trait FanOut: Send + Sync + 'static {
    /// Registers a session opened with the token whose fingerprint is `token`, unless the user
    /// already has `max` sessions. Returns true if it is the user's first.
    fn attach(&self, uid: i64, session: u64, token: u64, tx: SessionTx, max: usize) -> Result<bool, TooManySessions>;
    /// Unregisters a session. Returns true if the user has none left.
    fn detach(&self, uid: i64, session: u64) -> bool;
    /// Queues `frame` to every session of every user in `uids` (a message frame not to the
    /// session that sent it). A session whose queue is full (in frames or in bytes) is dropped
    /// (its connection closes and the client resumes).
    fn deliver(&self, uids: &mut dyn Iterator<Item = i64>, frame: Arc<Outbound>);
    /// Delivers the fan-outs of one committed writer batch, in order: the batch handed out the
    /// stream positions `from + 1..=to` (none if `from == to`). In a cluster every node
    /// delivers batches in position order, whichever node wrote them, so a session never sees
    /// a `pos` before a smaller one and its resume cursor skips nothing.
    fn deliver_batch(&self, _from: i64, _to: i64, fanouts: Vec<(Vec<i64>, Arc<Outbound>)>) {
        for (uids, frame) in fanouts {
            self.deliver(&mut uids.into_iter(), frame);
        }
    }
    /// Whether the user has a session (on any node of a cluster).
    fn online(&self, uid: i64) -> bool;
    /// Whether the user has a session on another node of the cluster (never, on one node).
    fn elsewhere(&self, _uid: i64) -> bool {
        false
    }
    /// How many sessions the user has on this node.
    fn sessions(&self, uid: i64) -> usize;
    /// Ends the user's sessions (only those opened with `token`, if given), on every node:
    /// each gets `frame` and is closed with its close code.
    fn disconnect(&self, uid: i64, token: Option<u64>, frame: Arc<Outbound>);
    /// Tells the other nodes of the cluster that `what` changed (nothing to do on one node).
    fn invalidate(&self, _what: Invalidation) {}
}

/// What a session's queue holds, in bytes of frame text: frames queued, plus frames the
/// session has taken out but not yet flushed to its socket. A frame shared by many sessions
/// (one `Arc`) counts once per session: each of them may be what keeps it alive.
struct Budget {
    bytes: AtomicUsize,
    limit: usize,
    fell_behind: AtomicBool,
}

/// The bus's end of a session's outbound queue.
pub struct SessionTx {
    tx: mpsc::Sender<Arc<Outbound>>,
    budget: Arc<Budget>,
}

/// The session's end of its outbound queue.
pub struct SessionRx {
    rx: mpsc::Receiver<Arc<Outbound>>,
    budget: Arc<Budget>,
}

/// Why a frame was not queued.
enum Refused {
    /// The session is too far behind (frames or bytes): drop it.
    Behind,
    /// The session has ended.
    Gone,
}

/// A session's outbound queue: at most `frames` frames and `bytes` bytes (a frame that arrives
/// at an empty queue is always taken, however large).
pub fn session_queue(frames: usize, bytes: usize) -> (SessionTx, SessionRx) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let budget = Arc::new(Budget { bytes: AtomicUsize::new(0), limit: bytes, fell_behind: AtomicBool::new(false) });
    (SessionTx { tx, budget: budget.clone() }, SessionRx { rx, budget })
}

impl SessionTx {
    fn offer(&self, frame: &Arc<Outbound>) -> Result<(), Refused> {
        let len = frame.json.len();
        let held = self.budget.bytes.fetch_add(len, Ordering::AcqRel);
        if held > 0 && held + len > self.budget.limit {
            self.budget.bytes.fetch_sub(len, Ordering::AcqRel);
            self.budget.fell_behind.store(true, Ordering::Release);
            return Err(Refused::Behind);
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.budget.bytes.fetch_sub(len, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.budget.fell_behind.store(true, Ordering::Release);
                        Err(Refused::Behind)
                    }
                    mpsc::error::TrySendError::Closed(_) => Err(Refused::Gone),
                }
            }
        }
    }

    /// Queues the last frame of a session ended on purpose, whatever its budget says.
    fn last(&self, frame: &Arc<Outbound>) {
        let len = frame.json.len();
        self.budget.bytes.fetch_add(len, Ordering::AcqRel);
        if self.tx.try_send(frame.clone()).is_err() {
            self.budget.bytes.fetch_sub(len, Ordering::AcqRel);
        }
    }
}

impl SessionRx {
    /// The next queued frame; `None` once the bus has let the session go and the queue is empty.
    pub async fn recv(&mut self) -> Option<Arc<Outbound>> {
        self.rx.recv().await
    }

    /// The next queued frame, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Outbound>> {
        self.rx.try_recv().ok()
    }

    /// Frames of `bytes` taken from the queue have been flushed to the socket (or skipped):
    /// they no longer count against the budget.
    pub fn release(&self, bytes: usize) {
        self.budget.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held: queued, or taken and not yet released.
    pub fn held(&self) -> usize {
        self.budget.bytes.load(Ordering::Acquire)
    }

    /// Whether the bus dropped the session because its queue was full.
    pub fn fell_behind(&self) -> bool {
        self.budget.fell_behind.load(Ordering::Acquire)
    }
}

const SHARDS: usize = 32;

/// A registered session: its id, the fingerprint of the token it logged in
/// with (to end it when that token is revoked), and its queue.
struct Entry {
    session: u64,
    token: u64,
    tx: SessionTx,
}

/// One shard of the session registry: user → their sessions.
type Shard = HashMap<i64, Vec<Entry>>;

/// In-process bus: sessions by user, sharded to keep lock hold times short.
pub struct LocalBus {
    shards: Vec<Mutex<Shard>>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl LocalBus {
    /// Every user with a session here, with their number of sessions.
    pub fn counts(&self) -> Vec<(i64, u32)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let s = shard.lock().expect("bus shard poisoned");
            all.extend(s.iter().map(|(uid, list)| (*uid, list.len() as u32)));
        }
        all
    }

    /// Ends every session here: each gets `frame` (see [`close_only`]) and is closed.
    pub fn end_all(&self, frame: &Arc<Outbound>) {
        for shard in &self.shards {
            let mut s = shard.lock().expect("bus shard poisoned");
            for (_, list) in s.drain() {
                for e in list {
                    e.tx.last(frame);
                }
            }
        }
    }

    fn shard(&self, uid: i64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(uid as u64 % SHARDS as u64) as usize].lock().expect("bus shard poisoned")
    }
}

impl FanOut for LocalBus {
    fn attach(&self, uid: i64, session: u64, token: u64, tx: SessionTx, max: usize) -> Result<bool, TooManySessions> {
        let mut s = self.shard(uid);
        let list = s.entry(uid).or_default();
        if list.len() >= max {
            return Err(TooManySessions);
        }
        list.push(Entry { session, token, tx });
        Ok(list.len() == 1)
    }

    fn detach(&self, uid: i64, session: u64) -> bool {
        let mut s = self.shard(uid);
        let Some(list) = s.get_mut(&uid) else { return true };
        list.retain(|e| e.session != session);
        if list.is_empty() {
            s.remove(&uid);
            true
        } else {
            false
        }
    }

    fn deliver(&self, uids: &mut dyn Iterator<Item = i64>, frame: Arc<Outbound>) {
        let mut delivered = 0;
        for uid in uids {
            let mut s = self.shard(uid);
            let Some(list) = s.get_mut(&uid) else { continue };
            list.retain(|e| {
                // The session that sent a message has its answer; a copy would only be
                // skipped there, after counting against its queue.
                if frame.msg.is_some() && frame.origin == e.session {
                    return true;
                }
                match e.tx.offer(&frame) {
                    Ok(()) => {
                        delivered += 1;
                        true
                    }
                    Err(Refused::Behind) => {
                        tracing::warn!(uid, session = e.session, "session queue full: dropping slow session");
                        false
                    }
                    Err(Refused::Gone) => false,
                }
            });
            if list.is_empty() {
                s.remove(&uid);
            }
        }
        if frame.msg.is_some() {
            crate::metrics::metrics().messages_delivered.inc_by(delivered);
        }
    }

    fn online(&self, uid: i64) -> bool {
        self.shard(uid).contains_key(&uid)
    }

    fn sessions(&self, uid: i64) -> usize {
        self.shard(uid).get(&uid).map_or(0, Vec::len)
    }

    fn disconnect(&self, uid: i64, token: Option<u64>, frame: Arc<Outbound>) {
        let mut s = self.shard(uid);
        let Some(list) = s.get_mut(&uid) else { return };
        list.retain(|e| {
            if token.is_some_and(|t| t != e.token) {
                return true;
            }
            // Queue full or closed: dropping the sender ends the session anyway.
            e.tx.last(&frame);
            false
        });
        if list.is_empty() {
            s.remove(&uid);
        }
    }
}

/// A token's fingerprint for [`FanOut::attach`] / [`FanOut::disconnect`].
pub fn token_fingerprint(token: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(token.as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("sha256 has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(json: &str) -> Arc<Outbound> {
        Arc::new(Outbound { json: json.into(), msg: None, origin: 0, close: None })
    }

    #[tokio::test]
    async fn delivers_to_every_session_and_drops_slow_ones() {
        let bus = LocalBus::default();
        let (a1, mut r1) = session_queue(4, 1 << 20);
        let (a2, mut r2) = session_queue(1, 1 << 20);
        assert_eq!(bus.attach(7, 1, 11, a1, 16), Ok(true));
        assert_eq!(bus.attach(7, 2, 22, a2, 16), Ok(false));
        assert_eq!(bus.sessions(7), 2);
        let f = frame("{}");
        bus.deliver(&mut [7, 8].into_iter(), f.clone());
        assert!(r1.recv().await.is_some());
        assert!(r2.recv().await.is_some());
        bus.deliver(&mut std::iter::once(7), f.clone());
        bus.deliver(&mut std::iter::once(7), f.clone()); // session 2's queue (1) is full now
        assert!(r2.recv().await.is_some());
        assert!(r2.recv().await.is_none(), "slow session was dropped, its queue closed");
        assert!(r2.fell_behind());
        assert!(!r1.fell_behind());
        assert!(bus.online(7));
        assert!(bus.detach(7, 1));
        assert!(!bus.online(7));
    }

    #[tokio::test]
    async fn sessions_per_user_are_capped() {
        let bus = LocalBus::default();
        let mut rxs = Vec::new();
        for i in 0..3 {
            let (tx, rx) = session_queue(4, 1024);
            assert!(bus.attach(7, i, 1, tx, 3).is_ok());
            rxs.push(rx);
        }
        let (tx, _rx) = session_queue(4, 1024);
        assert_eq!(bus.attach(7, 9, 1, tx, 3), Err(TooManySessions));
        let (tx, _rx) = session_queue(4, 1024);
        assert_eq!(bus.attach(8, 9, 1, tx, 3), Ok(true), "another user is not affected");
        bus.detach(7, 0);
        let (tx, _rx) = session_queue(4, 1024);
        assert_eq!(bus.attach(7, 9, 1, tx, 3), Ok(false), "a freed place can be taken");
    }

    #[tokio::test]
    async fn bytes_held_are_bounded_until_released() {
        let bus = LocalBus::default();
        let (tx, mut rx) = session_queue(100, 10);
        bus.attach(7, 1, 1, tx, 16).unwrap();
        // A frame larger than the budget still goes through an empty queue.
        bus.deliver(&mut std::iter::once(7), frame("0123456789abcdef"));
        assert_eq!(rx.held(), 16);
        let big = rx.recv().await.unwrap();
        assert_eq!(rx.held(), 16, "taken but not flushed still counts");
        rx.release(big.json.len());
        assert_eq!(rx.held(), 0);
        for _ in 0..3 {
            bus.deliver(&mut std::iter::once(7), frame("abcd"));
        }
        assert_eq!(rx.held(), 8, "the third frame would pass 10 bytes");
        assert!(rx.fell_behind());
        assert!(!bus.online(7), "the session was dropped");
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_message_is_not_queued_to_the_session_that_sent_it() {
        let bus = LocalBus::default();
        let (a1, mut r1) = session_queue(4, 1024);
        let (a2, mut r2) = session_queue(4, 1024);
        bus.attach(7, 1, 11, a1, 16).unwrap();
        bus.attach(7, 2, 11, a2, 16).unwrap();
        let meta = MsgMeta { pos: 1, conv_id: 1, seq: 1, sender: 7 };
        bus.deliver(
            &mut std::iter::once(7),
            Arc::new(Outbound { json: "{}".into(), msg: Some(meta), origin: 1, close: None }),
        );
        assert!(r2.try_recv().is_some(), "the user's other session gets it");
        assert!(r1.try_recv().is_none());
        assert_eq!(r1.held(), 0);
    }

    #[tokio::test]
    async fn disconnect_by_token() {
        let bus = LocalBus::default();
        let (a1, mut r1) = session_queue(4, 1024);
        let (a2, mut r2) = session_queue(4, 1024);
        bus.attach(7, 1, 11, a1, 16).unwrap();
        bus.attach(7, 2, 22, a2, 16).unwrap();
        let bye = Arc::new(Outbound { json: "{}".into(), msg: None, origin: 0, close: Some(4001) });
        bus.disconnect(7, Some(22), bye);
        assert_eq!(r2.recv().await.unwrap().close, Some(4001));
        assert!(r2.recv().await.is_none(), "session 2 ended");
        assert!(!r2.fell_behind());
        assert!(bus.online(7), "session 1 (other token) stays");
        bus.deliver(&mut std::iter::once(7), frame("{}"));
        assert!(r1.recv().await.is_some());
    }
}
