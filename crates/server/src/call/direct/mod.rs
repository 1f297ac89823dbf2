//! 1:1 calls: ringing on the callee's sessions, answering, hanging up; media through the SFU.
//!
//! A 1:1 call is a private two-party call. Its signalling (`call_dial`, `call_accept`,
//! `call_decline`, `call_hangup`; `call_incoming` and `call_status` back) is decided by the
//! sans-IO state machine [`ring::Ring`]; this service is its I/O edge: it checks that the caller
//! may message the callee (the messaging service's rule for 1:1 messages), passes each request
//! to the machine with the time, delivers what the machine says to the users' sessions through
//! the bus, and runs one timer task that ends unanswered calls.
//!
//! **Media.** An answered call's media go through the same call engine as group calls: a call
//! room keyed `-call` (the negative of the call id, so it never meets a group's id), which only
//! the two sessions that carry the call may join (the caller's placing session and the callee's
//! answering one), each with publish + subscribe + list. When the call ends the room is closed
//! ([`super::Calls::close_room`]): whoever is still in it leaves (`left`, reason `not_member`).
//!
//! **Across nodes** (cluster mode, [`crate::cluster::calls::CallRouter`]). A call lives on the
//! node that got its `call_dial`: its ring entry there, and its media room. Its id is random
//! below 2^53 (ids go to JavaScript), unique because the dial inserts the call's row in
//! `call_nodes` (keyed by the room, `-id`; see [`rows`]) and picks another id on a conflict; the
//! row tells the other nodes where the call is. A session on another node that accepts,
//! declines or hangs up asks that node over NATS and gets its answer back; its `call_join`
//! reaches the room as a leg, and the call's node checks the 1:1 rule there with the session
//! named by its node ([`ring::SessionAt`]). The node of a session that answered a call held
//! elsewhere remembers it (`away`), so the session's end ends the call. `direct_busy` rows (one
//! per user in a call) keep "one call per user" true across nodes, and when a node dies they
//! tell the node speaking for the cluster whom to tell `lost` for the calls that died with it. On one node none of this runs: ids count up, nothing is stored.

pub mod ring;
mod rows;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::direct::{call_of_room, DirectCallStatus, DirectCallUpdate};
use chorus_proto::ws::{ServerFrame, SessionUser};
use chorus_proto::{CallId, ErrorCode};
use chorus_sfu::{Permissions, RoomSettings};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::bus::outbound;
use crate::cluster::calls::CallRouter;
use crate::error::ApiError;
use crate::messaging::Messaging;

use super::{CallSession, Calls};
use ring::{Out, Party, Reach, Refusal, Ring, SessionAt};

/// The 1:1 calls service.
pub struct DirectCalls {
    ring: Mutex<Ring>,
    /// Wakes the timer task: a new deadline may be earlier than the one it sleeps to.
    timer: Notify,
    messaging: Arc<Messaging>,
    calls: Arc<Calls>,
    /// This node's id: with a session's number, names the session in the ring.
    node: Arc<str>,
    /// Cluster mode: the other nodes.
    router: Option<Arc<CallRouter>>,
    /// Cluster mode: ids placed in `call_nodes` whose dial has not reached the ring yet (their
    /// rows are not stale).
    dialing: Mutex<HashSet<CallId>>,
    /// Cluster mode: this node's sessions that answered a call held by another node, by
    /// session number (one call per session).
    away: Mutex<HashMap<u64, AnsweredElsewhere>>,
}

/// A call held by another node that a session of this node answered.
#[derive(Debug, Clone)]
pub struct AnsweredElsewhere {
    /// The call's node.
    pub host: String,
    /// The call.
    pub call: CallId,
}

/// A request of a session of another node about a call held here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Ask {
    /// `call_accept` from the session `session` of the asking node.
    Accept { uid: i64, session: u64, call: CallId },
    /// `call_decline`.
    Decline { uid: i64, call: CallId },
    /// `call_hangup`.
    Hangup { uid: i64, call: CallId },
}

/// The answer to an [`Ask`]: `refused`, or done; an accepted call's details come with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Why not: the error code, Mesibo's call status, the words.
    #[serde(default)]
    pub refused: Option<(ErrorCode, Option<u8>, String)>,
    /// An accepted call: who is in it and its `answered` status.
    #[serde(default)]
    pub answered: Option<(Vec<i64>, DirectCallUpdate)>,
}

impl Reply {
    /// A refusal.
    pub fn refused(r: Refused) -> Reply {
        Reply { refused: Some((r.error.code, r.status, r.error.message)), answered: None }
    }

    fn result(&self) -> Result<(), Refused> {
        match &self.refused {
            None => Ok(()),
            Some((code, status, message)) => {
                Err(Refused { error: ApiError::new(*code, message.clone()), status: *status })
            }
        }
    }
}

/// A refused request, as the WebSocket reports it: the error and Mesibo's call status.
pub struct Refused {
    /// The error.
    pub error: ApiError,
    /// Mesibo's call status number (`error.status`).
    pub status: Option<u8>,
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        Refused { error: ApiError::new(r.code, r.message), status: Some(r.status) }
    }
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        let status = match error.code {
            chorus_proto::ErrorCode::NotFound => Some(chorus_proto::direct::mesibo_status::INVALID_DEST),
            chorus_proto::ErrorCode::BadRequest | chorus_proto::ErrorCode::Forbidden => {
                Some(chorus_proto::direct::mesibo_status::NOT_ALLOWED)
            }
            _ => None,
        };
        Refused { error, status }
    }
}

fn party(u: &SessionUser) -> Party {
    Party { uid: u.uid.get(), address: u.address.clone(), name: u.name.clone() }
}

impl DirectCalls {
    /// Builds the service and starts its timer task. `router`: cluster mode.
    pub fn start(
        cfg: &crate::config::Config,
        messaging: Arc<Messaging>,
        calls: Arc<Calls>,
        router: Option<Arc<CallRouter>>,
        node: Arc<str>,
    ) -> Arc<DirectCalls> {
        let svc = Arc::new(DirectCalls {
            ring: Mutex::new(Ring::new(Duration::from_secs(cfg.call_ring_timeout_secs))),
            timer: Notify::new(),
            messaging,
            calls,
            node,
            router: router.clone(),
            dialing: Mutex::new(HashSet::new()),
            away: Mutex::new(HashMap::new()),
        });
        if let Some(r) = router {
            r.set_direct(&svc);
        }
        tokio::spawn(timer(svc.clone()));
        svc
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().expect("ring lock")
    }

    fn at(&self, session: u64) -> SessionAt {
        SessionAt { node: self.node.clone(), session }
    }

    /// Carries out what the machine said: frames to the users' sessions, rooms closed. Called
    /// with the machine's lock held, so the statuses of one call reach the sessions in order
    /// (delivery only queues, it never waits). Returns the ids released, whose rows the caller
    /// deletes once the lock is let go ([`DirectCalls::release`]).
    fn perform(&self, out: Vec<Out>) -> Vec<CallId> {
        let mut released = Vec::new();
        for o in out {
            match o {
                Out::Deliver { uids, frame } => {
                    self.messaging.bus().deliver(&mut uids.into_iter(), outbound(&frame, None, 0))
                }
                Out::CloseRoom(id) => self.calls.close_room(chorus_proto::direct::room_of(id)),
                Out::Released { id, answered } => {
                    // The node of a session that answered from elsewhere forgets the call.
                    if let (Some(r), Some(at)) = (&self.router, answered.filter(|a| a.node != self.node)) {
                        r.direct_ended(&at.node, at.session, id);
                    }
                    released.push(id);
                }
            }
        }
        released
    }

    /// Deletes the rows of calls that ended (cluster mode; nothing on one node).
    async fn release(&self, ids: Vec<CallId>) {
        let Some(router) = &self.router else { return };
        for id in ids {
            rows::release(router, id).await;
        }
    }

    /// [`DirectCalls::release`] from where nothing may wait (a session's end, the timer).
    fn release_later(self: &Arc<Self>, ids: Vec<CallId>) {
        if self.router.is_some() && !ids.is_empty() {
            let this = self.clone();
            tokio::spawn(async move { this.release(ids).await });
        }
    }

    /// Runs one input of the machine and carries out what it says; returns the `answered`
    /// status among them, if any.
    async fn apply(
        &self,
        input: impl FnOnce(&mut Ring) -> Result<Vec<Out>, Refusal>,
    ) -> Result<Option<(Vec<i64>, DirectCallUpdate)>, Refused> {
        let (released, answered) = {
            let mut ring = self.ring();
            let out = input(&mut ring)?;
            let answered = answered_in(&out);
            (self.perform(out), answered)
        };
        self.release(released).await;
        Ok(answered)
    }

    /// `user`'s session `session` calls `peer`. Returns the `call_dialing` answer.
    pub async fn dial(
        &self,
        user: &SessionUser,
        session: u64,
        peer: &str,
        video: bool,
        rid: Option<String>,
    ) -> Result<ServerFrame, Refused> {
        let callee = self.messaging.peer(user, peer).await?;
        let online = self.messaging.bus().online(callee.uid.get());
        let mut reach = if online { Reach::Online } else { Reach::Offline };
        let id = match &self.router {
            None => self.ring().next_id(),
            Some(router) => {
                let about = rows::About { from: user.address.clone(), to: callee.address.clone(), video };
                let placed = rows::place(router, self, user.uid.get(), callee.uid.get(), &about).await?;
                if !placed.caller_free {
                    self.dialing.lock().expect("dialing lock").remove(&placed.id);
                    rows::release(router, placed.id).await;
                    return Err(Refusal::in_a_call().into());
                }
                if !placed.callee_free {
                    reach = Reach::BusyElsewhere;
                }
                placed.id
            }
        };
        let at = self.at(session);
        let dialed = self.apply(|r| r.dial(Instant::now(), id, party(user), at, party(&callee), video, reach)).await;
        self.dialing.lock().expect("dialing lock").remove(&id);
        if let Err(e) = dialed {
            // Refused: the id was not taken.
            self.release(vec![id]).await;
            return Err(e);
        }
        self.timer.notify_one();
        Ok(ServerFrame::CallDialing { rid, call: id, peer: callee.address.clone(), video })
    }

    /// Cluster mode: the node holding call `id` when it is another one (`None`: here, or
    /// nowhere, which the ring then answers `not_found`).
    async fn elsewhere(&self, id: CallId) -> Result<Option<(&Arc<CallRouter>, String)>, Refused> {
        let Some(router) = &self.router else { return Ok(None) };
        if self.ring().holds(id) {
            return Ok(None);
        }
        let host = rows::holder(router, id).await?;
        Ok(host.filter(|h| **h != *self.node).map(|h| (router, h)))
    }

    /// The callee's session `session` answers call `id`.
    pub async fn accept(&self, user: &SessionUser, session: u64, id: CallId) -> Result<(), Refused> {
        let uid = user.uid.get();
        if let Some((router, host)) = self.elsewhere(id).await? {
            // The router notes the call in `away` when the answer arrives.
            return router.ask_direct(&host, Ask::Accept { uid, session, call: id }).await.result();
        }
        let at = self.at(session);
        self.apply(|r| r.accept(uid, at, id)).await.map(drop)
    }

    /// The callee declines call `id`.
    pub async fn decline(&self, user: &SessionUser, id: CallId) -> Result<(), Refused> {
        let uid = user.uid.get();
        if let Some((router, host)) = self.elsewhere(id).await? {
            return router.ask_direct(&host, Ask::Decline { uid, call: id }).await.result();
        }
        self.apply(|r| r.decline(uid, id)).await.map(drop)
    }

    /// Either side hangs up (or cancels) call `id`.
    pub async fn hangup(&self, user: &SessionUser, id: CallId) -> Result<(), Refused> {
        let uid = user.uid.get();
        if let Some((router, host)) = self.elsewhere(id).await? {
            return router.ask_direct(&host, Ask::Hangup { uid, call: id }).await.result();
        }
        self.apply(|r| r.hangup(uid, id)).await.map(drop)
    }

    /// Cluster mode: answers the request of a session of node `from` about a call held here.
    pub async fn answer(&self, from: &str, ask: Ask) -> Reply {
        let at = |session| SessionAt { node: from.into(), session };
        let done = match ask {
            Ask::Accept { uid, session, call } => self.apply(|r| r.accept(uid, at(session), call)).await,
            Ask::Decline { uid, call } => self.apply(|r| r.decline(uid, call)).await,
            Ask::Hangup { uid, call } => self.apply(|r| r.hangup(uid, call)).await,
        };
        match done {
            Ok(answered) => Reply { refused: None, answered },
            Err(e) => Reply::refused(e),
        }
    }

    /// A session closed: the call it carried, if any, ends `lost` (here, or on the node that
    /// holds the call it answered).
    pub fn session_gone(self: &Arc<Self>, user: &SessionUser, session: u64) {
        let released = {
            let mut ring = self.ring();
            let out = ring.session_gone(user.uid.get(), &self.at(session));
            self.perform(out)
        };
        self.release_later(released);
        let away = self.away.lock().expect("away lock").remove(&session);
        if let (Some(router), Some(a)) = (&self.router, away) {
            router.direct_gone(&a.host, user.uid.get(), session);
        }
    }

    /// Cluster mode: session `session` of node `from` closed (see [`DirectCalls::session_gone`]).
    pub fn remote_session_gone(self: &Arc<Self>, from: &str, uid: i64, session: u64) {
        let released = {
            let mut ring = self.ring();
            let out = ring.session_gone(uid, &SessionAt { node: from.into(), session });
            self.perform(out)
        };
        self.release_later(released);
    }

    /// Cluster mode: this node's session `session` answered a call held by another node.
    pub fn note_away(&self, session: u64, away: AnsweredElsewhere) {
        self.away.lock().expect("away lock").insert(session, away);
    }

    /// Cluster mode: the call `id` that this node's session `session` answered has ended on
    /// its node.
    pub fn away_ended(&self, session: u64, id: CallId) {
        let mut away = self.away.lock().expect("away lock");
        if away.get(&session).is_some_and(|a| a.call == id) {
            away.remove(&session);
        }
    }

    /// Cluster mode: node `node` is gone. The calls held here that its sessions carried end
    /// `lost`. The calls it held died with it: the node speaking for the cluster tells their
    /// users `lost` (ringing or answered, whichever nodes they are on) from the store.
    pub fn node_gone(self: &Arc<Self>, node: &str, speaks_for_cluster: bool) {
        let released = {
            let mut ring = self.ring();
            let out = ring.node_gone(node);
            self.perform(out)
        };
        self.release_later(released);
        self.away.lock().expect("away lock").retain(|_, a| a.host != node);
        let Some(router) = self.router.clone().filter(|_| speaks_for_cluster) else { return };
        let (this, node) = (self.clone(), node.to_string());
        tokio::spawn(async move {
            match rows::node_died(&router, &node).await {
                Ok(lost) => {
                    for (uids, update) in lost {
                        let frame = ServerFrame::CallStatus(update);
                        this.messaging.bus().deliver(&mut uids.into_iter(), outbound(&frame, None, 0));
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e.message, "cluster: a gone node's 1:1 calls not ended")
                }
            }
        });
    }

    /// Cluster mode: the media rooms of the calls held here (ringing ones too) and being
    /// dialed: their `call_nodes` rows stay.
    pub fn held_rooms(&self) -> Vec<i64> {
        let mut ids = self.ring().ids();
        ids.extend(self.dialing.lock().expect("dialing lock").iter().copied());
        ids.into_iter().map(chorus_proto::direct::room_of).collect()
    }

    /// Cluster mode: deletes this node's leftover `direct_busy` rows (see [`rows::sweep`]).
    pub async fn sweep_rows(&self) -> Result<(), ApiError> {
        match &self.router {
            Some(router) => rows::sweep(router, self).await,
            None => Ok(()),
        }
    }

    /// Joins `user`'s session to the media room `gid` (negative) of an answered 1:1 call it
    /// carries, on whichever node holds the call. Anyone else is answered `not_found`, as for
    /// a group that is not theirs.
    pub async fn join(
        &self,
        user: &SessionUser,
        session: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let id = call_of_room(gid).ok_or_else(not_yours)?;
        if let Some(router) = &self.router {
            if !self.ring().holds(id) {
                return router.join_direct(user, session, gid, rid).await;
            }
        }
        self.enter(user, &self.at(session), session, gid, rid).await
    }

    /// Joins the session `at` of `user` to the media room `gid` of a call held here, if it
    /// carries a side of it; `local` is the session number the room knows it by (on another
    /// node's behalf, its leg's).
    pub async fn enter(
        &self,
        user: &SessionUser,
        at: &SessionAt,
        local: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let id = call_of_room(gid).ok_or_else(not_yours)?;
        let video = {
            let ring = self.ring();
            if !ring.may_join(user.uid.get(), at, id) {
                return Err(not_yours());
            }
            ring.video(id).ok_or_else(not_yours)?
        };
        let settings = RoomSettings {
            audio: true,
            video,
            screen: video,
            simulcast: true,
            max_height: Some(720),
            max_duration: None,
            max_streams: 2,
            live: false,
        };
        let joined = self.calls.enter(user, local, gid, Permissions::MEMBER, settings, None, rid).await?;
        // The call may have ended while the join was on its way: close what was opened for it.
        if !self.ring().may_join(user.uid.get(), at, id) {
            self.calls.close_room(gid);
        }
        Ok(joined)
    }
}

fn not_yours() -> ApiError {
    ApiError::not_found("no such call, or not yours to join")
}

/// The `answered` status among `out`, with its recipients (the caller and the callee).
fn answered_in(out: &[Out]) -> Option<(Vec<i64>, DirectCallUpdate)> {
    out.iter().find_map(|o| match o {
        Out::Deliver { uids, frame } => match &**frame {
            ServerFrame::CallStatus(u) if u.status == DirectCallStatus::Answered => Some((uids.clone(), u.clone())),
            _ => None,
        },
        _ => None,
    })
}

/// Ends unanswered calls at their deadline: sleeps to the earliest deadline, or until a new call
/// may have brought an earlier one (`notify_one` keeps its permit, so none is missed). It runs as
/// long as the server.
async fn timer(svc: Arc<DirectCalls>) {
    loop {
        let (deadline, released) = {
            let mut ring = svc.ring();
            let out = ring.tick(Instant::now());
            let released = svc.perform(out);
            (ring.next_deadline(), released)
        };
        svc.release(released).await;
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = svc.timer.notified() => {}
                }
            }
            None => svc.timer.notified().await,
        }
    }
}
