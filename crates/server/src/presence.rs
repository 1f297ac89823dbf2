//! Online / offline presence, throttled.
//!
//! A user is announced online when their first session attaches and offline
//! only after their last session has been gone for `presence_grace_secs`, so a
//! page reload or a network blip causes no offline/online flapping. Presence is
//! never stored and goes only to users who share a conversation with the user.
//!
//! In cluster mode a user is online while they have a session on any node: the node of
//! their first session announces them, and the node of their last one announces them
//! offline (after the grace period, if no node has a session of theirs by then). When a node
//! dies (or drains), one live node (the lowest id) announces its users offline the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_proto::flags::presence;
use chorus_proto::ws::{ServerFrame, SessionUser};

use crate::bus::outbound;
use crate::messaging::Messaging;

/// Presence announcer.
pub struct Presence {
    messaging: Arc<Messaging>,
    grace: Duration,
    /// Users announced online → generation, bumped whenever a first session
    /// attaches, so an offline timer started before a reconnect knows it is stale.
    announced: Mutex<HashMap<i64, u64>>,
}

impl Presence {
    /// Builds it.
    pub fn new(messaging: Arc<Messaging>, grace: Duration) -> Arc<Self> {
        Arc::new(Presence { messaging, grace, announced: Mutex::new(HashMap::new()) })
    }

    /// Whether `uid` is currently announced online.
    pub fn is_announced(&self, uid: i64) -> bool {
        self.announced.lock().expect("presence lock poisoned").contains_key(&uid)
    }

    /// The user's first session attached.
    pub async fn came_online(&self, user: &SessionUser) {
        let fresh = {
            let mut map = self.announced.lock().expect("presence lock poisoned");
            let generation = map.entry(user.uid.get()).or_insert(0);
            *generation += 1;
            *generation == 1
        };
        // Not when another node has them online: it announced them.
        if fresh && !self.messaging.bus().elsewhere(user.uid.get()) {
            self.broadcast(user, presence::ONLINE).await;
        } // else: still announced from before the grace period ended
    }

    /// The user's last session detached: announce offline after the grace period
    /// unless a session came back.
    pub fn went_away(self: &Arc<Self>, user: SessionUser) {
        let this = self.clone();
        let generation = self.announced.lock().expect("presence lock poisoned").get(&user.uid.get()).copied();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            let bus = this.messaging.bus();
            if bus.sessions(user.uid.get()) > 0 {
                return;
            }
            let gone = {
                let mut map = this.announced.lock().expect("presence lock poisoned");
                // Only if no session came (and went) since this timer started.
                let current = map.get(&user.uid.get()).copied();
                current.is_some() && current == generation && map.remove(&user.uid.get()).is_some()
            };
            // Still online on another node (cluster mode): forgotten here, not offline.
            if gone && !bus.online(user.uid.get()) {
                this.broadcast(&user, presence::OFFLINE).await;
            }
        });
    }

    /// A node is gone with the sessions of `users` (cluster mode): after the grace period, those
    /// with a session on no node (here or elsewhere) are announced offline.
    pub fn node_gone(self: &Arc<Self>, users: Vec<i64>) {
        if users.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            for uid in users {
                if this.messaging.bus().online(uid) {
                    continue;
                }
                match this.messaging.address_of(uid).await {
                    Ok(Some(address)) => {
                        let user = SessionUser { uid: chorus_proto::UserId(uid), address, name: String::new() };
                        this.broadcast(&user, presence::OFFLINE).await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e.message, "presence: offline of a gone node's user skipped"),
                }
            }
        });
    }

    async fn broadcast(&self, user: &SessionUser, value: u8) {
        match self.messaging.contacts(user.uid.get()).await {
            Ok(contacts) => {
                let frame =
                    ServerFrame::Presence { from: user.address.clone(), peer: None, gid: None, presence: value };
                self.messaging.bus().deliver(&mut contacts.into_iter(), outbound(&frame, None, 0));
            }
            Err(e) => tracing::warn!(error = %e.message, "presence broadcast skipped"),
        }
    }
}
