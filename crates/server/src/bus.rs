//! Fan-out: who receives what, behind the [`FanOut`] trait.
//!
//! Services decide *which users* get a frame; the bus finds those users'
//! sessions and queues the frame to each. [`LocalBus`] does it in-process. A
//! clustered bus (NATS subject per user, one subscription per node) implements
//! the same trait: `deliver` publishes, and each node's local registry pushes
//! to its own sessions.
//!
//! Frames are serialised once, before fan-out, and shared as `Arc<Outbound>`:
//! delivering to a thousand sessions costs a thousand pointer copies and queue
//! pushes, not a thousand serialisations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Identifies a stored message a frame carries (for resume de-duplication and delivery acks).
#[derive(Debug, Clone, Copy)]
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
    /// The JSON text frame.
    pub json: Arc<str>,
    /// Set for `message` frames.
    pub msg: Option<MsgMeta>,
    /// Session that caused it (it already got a direct answer), 0 for none.
    pub origin: u64,
    /// Close the session with this WebSocket close code after sending the frame.
    pub close: Option<u16>,
}

/// A session's outbound queue.
pub type SessionTx = mpsc::Sender<Arc<Outbound>>;

/// Routes frames to users' sessions.
pub trait FanOut: Send + Sync + 'static {
    /// Registers a session opened with the token whose fingerprint is `token`.
    /// Returns true if it is the user's first.
    fn attach(&self, uid: i64, session: u64, token: u64, tx: SessionTx) -> bool;
    /// Unregisters a session. Returns true if the user has none left.
    fn detach(&self, uid: i64, session: u64) -> bool;
    /// Queues `frame` to every session of every user in `uids`. A session whose
    /// queue is full is dropped (its connection closes and the client resumes).
    fn deliver(&self, uids: &mut dyn Iterator<Item = i64>, frame: Arc<Outbound>);
    /// Whether the user has a session.
    fn online(&self, uid: i64) -> bool;
    /// Ends the user's sessions (only those opened with `token`, if given):
    /// each gets `frame` and is closed with its close code.
    fn disconnect(&self, uid: i64, token: Option<u64>, frame: Arc<Outbound>);
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
    fn shard(&self, uid: i64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(uid as u64 % SHARDS as u64) as usize].lock().expect("bus shard poisoned")
    }
}

impl FanOut for LocalBus {
    fn attach(&self, uid: i64, session: u64, token: u64, tx: SessionTx) -> bool {
        let mut s = self.shard(uid);
        let list = s.entry(uid).or_default();
        list.push(Entry { session, token, tx });
        list.len() == 1
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
        for uid in uids {
            let mut s = self.shard(uid);
            let Some(list) = s.get_mut(&uid) else { continue };
            list.retain(|e| match e.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(uid, session = e.session, "session queue full: dropping slow session");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                s.remove(&uid);
            }
        }
    }

    fn online(&self, uid: i64) -> bool {
        self.shard(uid).contains_key(&uid)
    }

    fn disconnect(&self, uid: i64, token: Option<u64>, frame: Arc<Outbound>) {
        let mut s = self.shard(uid);
        let Some(list) = s.get_mut(&uid) else { return };
        list.retain(|e| {
            if token.is_some_and(|t| t != e.token) {
                return true;
            }
            // Queue full or closed: dropping the sender ends the session anyway.
            let _ = e.tx.try_send(frame.clone());
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

    #[tokio::test]
    async fn delivers_to_every_session_and_drops_slow_ones() {
        let bus = LocalBus::default();
        let (a1, mut r1) = mpsc::channel(4);
        let (a2, mut r2) = mpsc::channel(1);
        assert!(bus.attach(7, 1, 11, a1));
        assert!(!bus.attach(7, 2, 22, a2));
        let f = Arc::new(Outbound { json: "{}".into(), msg: None, origin: 0, close: None });
        bus.deliver(&mut [7, 8].into_iter(), f.clone());
        assert!(r1.recv().await.is_some());
        assert!(r2.recv().await.is_some());
        bus.deliver(&mut std::iter::once(7), f.clone());
        bus.deliver(&mut std::iter::once(7), f.clone()); // session 2's queue (1) is full now
        assert!(r2.recv().await.is_some());
        assert!(r2.recv().await.is_none(), "slow session was dropped, its queue closed");
        assert!(bus.online(7));
        assert!(bus.detach(7, 1));
        assert!(!bus.online(7));
    }

    #[tokio::test]
    async fn disconnect_by_token() {
        let bus = LocalBus::default();
        let (a1, mut r1) = mpsc::channel(4);
        let (a2, mut r2) = mpsc::channel(4);
        bus.attach(7, 1, 11, a1);
        bus.attach(7, 2, 22, a2);
        let bye = Arc::new(Outbound { json: "{}".into(), msg: None, origin: 0, close: Some(4001) });
        bus.disconnect(7, Some(22), bye);
        assert_eq!(r2.recv().await.unwrap().close, Some(4001));
        assert!(r2.recv().await.is_none(), "session 2 ended");
        assert!(bus.online(7), "session 1 (other token) stays");
        bus.deliver(
            &mut std::iter::once(7),
            Arc::new(Outbound { json: "{}".into(), msg: None, origin: 0, close: None }),
        );
        assert!(r1.recv().await.is_some());
    }
}
