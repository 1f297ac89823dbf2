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

pub mod ring;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::direct::call_of_room;
use chorus_proto::ws::{ServerFrame, SessionUser};
use chorus_proto::CallId;
use chorus_sfu::{Permissions, RoomSettings};
use tokio::sync::Notify;

use crate::bus::outbound;
use crate::error::ApiError;
use crate::messaging::Messaging;

use super::{CallSession, Calls};
use ring::{Out, Party, Refusal, Ring};

/// The 1:1 calls service.
pub struct DirectCalls {
    ring: Mutex<Ring>,
    /// Wakes the timer task: a new deadline may be earlier than the one it sleeps to.
    timer: Notify,
    messaging: Arc<Messaging>,
    calls: Arc<Calls>,
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
    /// Builds the service and starts its timer task.
    pub fn start(cfg: &crate::config::Config, messaging: Arc<Messaging>, calls: Arc<Calls>) -> Arc<DirectCalls> {
        let svc = Arc::new(DirectCalls {
            ring: Mutex::new(Ring::new(Duration::from_secs(cfg.call_ring_timeout_secs))),
            timer: Notify::new(),
            messaging,
            calls,
        });
        tokio::spawn(timer(svc.clone()));
        svc
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().expect("ring lock")
    }

    /// Carries out what the machine said: frames to the users' sessions, rooms closed. Called
    /// with the machine's lock held, so the statuses of one call reach the sessions in order
    /// (delivery only queues, it never waits).
    fn perform(&self, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Deliver { uids, frame } => {
                    self.messaging.bus().deliver(&mut uids.into_iter(), outbound(&frame, None, 0))
                }
                Out::CloseRoom(id) => self.calls.close_room(chorus_proto::direct::room_of(id)),
            }
        }
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
        let mut ring = self.ring();
        let (id, out) = ring.dial(Instant::now(), party(user), session, party(&callee), video, online)?;
        self.perform(out);
        drop(ring);
        self.timer.notify_one();
        Ok(ServerFrame::CallDialing { rid, call: id, peer: callee.address.clone(), video })
    }

    /// The callee's session `session` answers call `id`.
    pub fn accept(&self, user: &SessionUser, session: u64, id: CallId) -> Result<(), Refused> {
        let mut ring = self.ring();
        let out = ring.accept(user.uid.get(), session, id)?;
        self.perform(out);
        Ok(())
    }

    /// The callee declines call `id`.
    pub fn decline(&self, user: &SessionUser, id: CallId) -> Result<(), Refused> {
        let mut ring = self.ring();
        let out = ring.decline(user.uid.get(), id)?;
        self.perform(out);
        Ok(())
    }

    /// Either side hangs up (or cancels) call `id`.
    pub fn hangup(&self, user: &SessionUser, id: CallId) -> Result<(), Refused> {
        let mut ring = self.ring();
        let out = ring.hangup(user.uid.get(), id)?;
        self.perform(out);
        Ok(())
    }

    /// A session closed: the call it carried, if any, ends `lost`.
    pub fn session_gone(&self, user: &SessionUser, session: u64) {
        let mut ring = self.ring();
        let out = ring.session_gone(user.uid.get(), session);
        self.perform(out);
    }

    /// Joins `user`'s session to the media room `gid` (negative) of an answered 1:1 call it
    /// carries. Anyone else is answered `not_found`, as for a group that is not theirs.
    pub async fn join(
        &self,
        user: &SessionUser,
        session: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let not_found = || ApiError::not_found("no such call, or not yours to join");
        let id = call_of_room(gid).ok_or_else(not_found)?;
        let video = {
            let ring = self.ring();
            if !ring.may_join(user.uid.get(), session, id) {
                return Err(not_found());
            }
            ring.video(id).ok_or_else(not_found)?
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
        let joined = self.calls.enter(user, session, gid, Permissions::MEMBER, settings, None, rid).await?;
        // The call may have ended while the join was on its way: close what was opened for it.
        if !self.ring().may_join(user.uid.get(), session, id) {
            self.calls.close_room(gid);
        }
        Ok(joined)
    }
}

/// Ends unanswered calls at their deadline: sleeps to the earliest deadline, or until a new call
/// may have brought an earlier one (`notify_one` keeps its permit, so none is missed). It runs as
/// long as the server.
async fn timer(svc: Arc<DirectCalls>) {
    loop {
        let deadline = {
            let mut ring = svc.ring();
            let out = ring.tick(Instant::now());
            svc.perform(out);
            ring.next_deadline()
        };
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
