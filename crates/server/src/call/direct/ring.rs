//! The ringing state machine of 1:1 calls, sans-IO.
//!
//! [`Ring`] knows every 1:1 call in progress and who is in one. It reads no clock (every input
//! carries `now`), sends nothing and spawns nothing: each input returns the [`Out`]s the service
//! ([`super::DirectCalls`]) carries out — frames to deliver to a user's sessions, a media room
//! to close. `tests` below drive it in simulated time.
//!
//! A call goes `ringing` → `answered` → ended, or from `ringing` straight to an end
//! (`declined`, `no_answer`, `canceled`, `lost`). A busy or offline callee ends it at once. A
//! user is in at most one call at a time (as caller or callee), so what one user can make the
//! server hold is one call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chorus_proto::direct::{mesibo_status, DirectCallStatus, DirectCallUpdate};
use chorus_proto::ws::ServerFrame;
use chorus_proto::{CallId, ErrorCode};

/// One side of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// User id.
    pub uid: i64,
    /// Public address.
    pub address: String,
    /// Display name.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Ringing until the deadline.
    Ringing { until: Instant },
    /// Answered from the callee's session `session`.
    Answered { session: u64 },
}

#[derive(Debug)]
struct Call {
    caller: Party,
    /// The session that placed the call (it carries the caller's media).
    caller_session: u64,
    callee: Party,
    video: bool,
    phase: Phase,
}

/// What the service must do after an input, in order.
#[derive(Debug, Clone)]
pub enum Out {
    /// Deliver `frame` to every session of these users.
    Deliver {
        /// User ids.
        uids: Vec<i64>,
        /// The frame (boxed: frames are large, `CloseRoom` small).
        frame: Box<ServerFrame>,
    },
    /// The call ended: close its media room (everyone in it leaves).
    CloseRoom(CallId),
}

/// A refused request: the error code, Mesibo's call status, and the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: ErrorCode,
    /// Mesibo's call status number.
    pub status: u8,
    /// What went wrong, in plain words.
    pub message: &'static str,
}

fn refuse(code: ErrorCode, status: u8, message: &'static str) -> Refusal {
    Refusal { code, status, message }
}

fn no_such_call() -> Refusal {
    refuse(ErrorCode::NotFound, mesibo_status::INVALID_DEST, "no such call")
}

/// Every 1:1 call in progress.
#[derive(Debug)]
pub struct Ring {
    calls: HashMap<CallId, Call>,
    /// Who is in a call: user id → call.
    busy: HashMap<i64, CallId>,
    next: i64,
    timeout: Duration,
}

impl Ring {
    /// No calls; a call rings for `timeout` before it ends `no_answer`.
    pub fn new(timeout: Duration) -> Ring {
        Ring { calls: HashMap::new(), busy: HashMap::new(), next: 1, timeout }
    }

    /// Calls in progress (ringing or answered).
    pub fn in_progress(&self) -> usize {
        self.calls.len()
    }

    /// The earliest ringing deadline, when [`Ring::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|c| match c.phase {
                Phase::Ringing { until } => Some(until),
                Phase::Answered { .. } => None,
            })
            .min()
    }

    /// `caller`'s session `session` calls `callee` (a user the caller may message; the service
    /// checked). `callee_online`: the callee has a session to ring. Returns the new call's id and
    /// what to do; refused when the caller is in a call already.
    pub fn dial(
        &mut self,
        now: Instant,
        caller: Party,
        session: u64,
        callee: Party,
        video: bool,
        callee_online: bool,
    ) -> Result<(CallId, Vec<Out>), Refusal> {
        if self.busy.contains_key(&caller.uid) {
            return Err(refuse(
                ErrorCode::Conflict,
                mesibo_status::INVALID_STATE,
                "you are in a call already: hang it up first",
            ));
        }
        if caller.uid == callee.uid {
            return Err(refuse(ErrorCode::BadRequest, mesibo_status::NOT_ALLOWED, "you cannot call yourself"));
        }
        let id = CallId(self.next);
        self.next += 1;
        let call = Call {
            caller,
            caller_session: session,
            callee,
            video,
            phase: Phase::Ringing { until: now + self.timeout },
        };
        let early_end = if self.busy.contains_key(&call.callee.uid) {
            Some(DirectCallStatus::Busy)
        } else if !callee_online {
            Some(DirectCallStatus::Offline)
        } else {
            None
        };
        if let Some(status) = early_end {
            // Told to the caller only: the callee was never rung.
            let frame = status_frame(id, &call, status, None);
            return Ok((id, vec![Out::Deliver { uids: vec![call.caller.uid], frame: Box::new(frame) }]));
        }
        let incoming = ServerFrame::CallIncoming {
            call: id,
            from: call.caller.address.clone(),
            name: call.caller.name.clone(),
            video,
        };
        let out = vec![
            Out::Deliver { uids: vec![call.callee.uid], frame: Box::new(incoming) },
            Out::Deliver {
                uids: vec![call.caller.uid, call.callee.uid],
                frame: Box::new(status_frame(id, &call, DirectCallStatus::Ringing, None)),
            },
        ];
        self.busy.insert(call.caller.uid, id);
        self.busy.insert(call.callee.uid, id);
        self.calls.insert(id, call);
        Ok((id, out))
    }

    /// The callee answers call `id` from its session `session`.
    pub fn accept(&mut self, uid: i64, session: u64, id: CallId) -> Result<Vec<Out>, Refusal> {
        let call = self.calls.get_mut(&id).filter(|c| c.callee.uid == uid).ok_or_else(no_such_call)?;
        if !matches!(call.phase, Phase::Ringing { .. }) {
            return Err(refuse(ErrorCode::Conflict, mesibo_status::INVALID_STATE, "the call was answered already"));
        }
        call.phase = Phase::Answered { session };
        let frame = status_frame(id, call, DirectCallStatus::Answered, None);
        Ok(vec![Out::Deliver { uids: vec![call.caller.uid, call.callee.uid], frame: Box::new(frame) }])
    }

    /// The callee declines call `id` while it rings.
    pub fn decline(&mut self, uid: i64, id: CallId) -> Result<Vec<Out>, Refusal> {
        let call = self.calls.get(&id).filter(|c| c.callee.uid == uid).ok_or_else(no_such_call)?;
        if !matches!(call.phase, Phase::Ringing { .. }) {
            return Err(refuse(
                ErrorCode::Conflict,
                mesibo_status::INVALID_STATE,
                "the call was answered: hang it up instead",
            ));
        }
        Ok(self.end(id, DirectCallStatus::Declined, None))
    }

    /// Either side hangs up call `id`: the caller cancels a ringing call, the callee declines
    /// it, and either ends an answered one.
    pub fn hangup(&mut self, uid: i64, id: CallId) -> Result<Vec<Out>, Refusal> {
        let call =
            self.calls.get(&id).filter(|c| c.caller.uid == uid || c.callee.uid == uid).ok_or_else(no_such_call)?;
        let by_caller = call.caller.uid == uid;
        let (status, by) = match call.phase {
            Phase::Ringing { .. } if by_caller => (DirectCallStatus::Canceled, None),
            Phase::Ringing { .. } => (DirectCallStatus::Declined, None),
            Phase::Answered { .. } => {
                let by = if by_caller { &call.caller.address } else { &call.callee.address };
                (DirectCallStatus::Ended, Some(by.clone()))
            }
        };
        Ok(self.end(id, status, by))
    }

    /// User `uid`'s session `session` closed. The call it placed, or answered, ends `lost`.
    pub fn session_gone(&mut self, uid: i64, session: u64) -> Vec<Out> {
        let Some(&id) = self.busy.get(&uid) else { return Vec::new() };
        let Some(call) = self.calls.get(&id) else { return Vec::new() };
        let carried = if call.caller.uid == uid {
            call.caller_session == session
        } else {
            call.phase == Phase::Answered { session }
        };
        if !carried {
            return Vec::new();
        }
        let by = if call.caller.uid == uid { call.caller.address.clone() } else { call.callee.address.clone() };
        self.end(id, DirectCallStatus::Lost, Some(by))
    }

    /// Ends every call that rang past its deadline (`no_answer`).
    pub fn tick(&mut self, now: Instant) -> Vec<Out> {
        let due: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Ringing { until } if until <= now))
            .map(|(id, _)| *id)
            .collect();
        due.into_iter().flat_map(|id| self.end(id, DirectCallStatus::NoAnswer, None)).collect()
    }

    /// Whether session `session` of user `uid` carries a side of answered call `id` (the
    /// session that placed it, or the one that answered): only these join its media room.
    pub fn may_join(&self, uid: i64, session: u64, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| match c.phase {
            Phase::Ringing { .. } => false,
            Phase::Answered { session: answered } => {
                (c.caller.uid == uid && c.caller_session == session) || (c.callee.uid == uid && answered == session)
            }
        })
    }

    /// Whether call `id` is a video call (`None`: no such call).
    pub fn video(&self, id: CallId) -> Option<bool> {
        self.calls.get(&id).map(|c| c.video)
    }

    fn end(&mut self, id: CallId, status: DirectCallStatus, by: Option<String>) -> Vec<Out> {
        let Some(call) = self.calls.remove(&id) else { return Vec::new() };
        self.busy.remove(&call.caller.uid);
        self.busy.remove(&call.callee.uid);
        let frame = status_frame(id, &call, status, by);
        let mut out = vec![Out::Deliver { uids: vec![call.caller.uid, call.callee.uid], frame: Box::new(frame) }];
        if matches!(call.phase, Phase::Answered { .. }) {
            out.push(Out::CloseRoom(id));
        }
        out
    }
}

fn status_frame(id: CallId, call: &Call, status: DirectCallStatus, by: Option<String>) -> ServerFrame {
    ServerFrame::CallStatus(DirectCallUpdate {
        call: id,
        from: call.caller.address.clone(),
        to: call.callee.address.clone(),
        video: call.video,
        status,
        code: status.mesibo(),
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(45);

    fn party(uid: i64) -> Party {
        Party { uid, address: format!("u{uid}"), name: format!("User {uid}") }
    }

    /// The statuses delivered, with who got each.
    fn statuses(out: &[Out]) -> Vec<(Vec<i64>, DirectCallStatus, Option<String>)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Deliver { uids, frame } => match &**frame {
                    ServerFrame::CallStatus(u) => {
                        assert_eq!(u.code, u.status.mesibo());
                        Some((uids.clone(), u.status, u.by.clone()))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn closes(out: &[Out]) -> Vec<CallId> {
        out.iter()
            .filter_map(|o| match o {
                Out::CloseRoom(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn dial(r: &mut Ring, now: Instant, from: i64, to: i64) -> (CallId, Vec<Out>) {
        r.dial(now, party(from), from as u64 * 10, party(to), true, true).expect("dialled")
    }

    #[test]
    fn a_call_rings_the_callee_and_tells_both() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (id, out) = dial(&mut r, t0, 1, 2);
        match &out[0] {
            Out::Deliver { uids, frame } if matches!(**frame, ServerFrame::CallIncoming { .. }) => {
                let ServerFrame::CallIncoming { call, from, name, video } = &**frame else { unreachable!() };
                assert_eq!(
                    (uids.as_slice(), *call, from.as_str(), name.as_str(), *video),
                    (&[2][..], id, "u1", "User 1", true)
                );
            }
            other => panic!("expected call_incoming first, got {other:?}"),
        }
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Ringing, None)]);
        assert_eq!(r.next_deadline(), Some(t0 + TIMEOUT));
    }

    #[test]
    fn answered_then_hung_up_by_the_callee() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (id, _) = dial(&mut r, t0, 1, 2);
        assert!(!r.may_join(1, 10, id), "no media before the answer");
        let out = r.accept(2, 21, id).unwrap();
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Answered, None)]);
        assert!(r.may_join(1, 10, id) && r.may_join(2, 21, id));
        assert!(!r.may_join(2, 22, id), "the callee's other session does not carry the call");
        assert!(!r.may_join(1, 11, id), "nor does the caller's other session");
        assert!(!r.may_join(3, 30, id), "nor a third user");
        assert_eq!(r.next_deadline(), None, "an answered call does not time out");
        assert!(r.tick(t0 + TIMEOUT * 2).is_empty());
        assert_eq!(r.accept(2, 22, id).unwrap_err().code, ErrorCode::Conflict, "answered once only");
        let out = r.hangup(2, id).unwrap();
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Ended, Some("u2".into()))]);
        assert_eq!(closes(&out), vec![id]);
        assert_eq!(r.in_progress(), 0);
        assert_eq!(r.hangup(1, id).unwrap_err().code, ErrorCode::NotFound, "over");
    }

    #[test]
    fn declined_canceled_and_unanswered_end_without_a_room() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (id, _) = dial(&mut r, t0, 1, 2);
        let out = r.decline(2, id).unwrap();
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Declined, None)]);
        assert!(closes(&out).is_empty());

        let (id, _) = dial(&mut r, t0, 1, 2);
        assert_eq!(r.decline(1, id).unwrap_err().code, ErrorCode::NotFound, "the caller cannot decline");
        let out = r.hangup(1, id).unwrap();
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Canceled, None)]);

        let (id, _) = dial(&mut r, t0, 1, 2);
        let out = r.hangup(2, id).unwrap();
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Declined, None)], "callee's hangup declines");

        let (_, _) = dial(&mut r, t0, 1, 2);
        assert!(r.tick(t0 + TIMEOUT - Duration::from_millis(1)).is_empty(), "still ringing");
        let out = r.tick(t0 + TIMEOUT);
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::NoAnswer, None)]);
        assert_eq!((r.in_progress(), r.next_deadline()), (0, None));
    }

    #[test]
    fn busy_offline_and_a_caller_already_in_a_call() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (first, _) = dial(&mut r, t0, 1, 2);
        // 3 calls 2, who is ringing: busy, told to 3 only, and 2's call goes on.
        let (busy, out) = dial(&mut r, t0, 3, 2);
        assert_ne!(busy, first);
        assert_eq!(statuses(&out), vec![(vec![3], DirectCallStatus::Busy, None)]);
        assert!(out
            .iter()
            .all(|o| !matches!(o, Out::Deliver { frame, .. } if matches!(**frame, ServerFrame::CallIncoming { .. }))));
        assert_eq!(r.in_progress(), 1);
        // 3 calls 1, the caller of a call: busy too.
        assert_eq!(statuses(&dial(&mut r, t0, 3, 1).1)[0].1, DirectCallStatus::Busy);
        // 1 is in a call: cannot place another.
        let e = r.dial(t0, party(1), 10, party(4), false, true).unwrap_err();
        assert_eq!((e.code, e.status), (ErrorCode::Conflict, mesibo_status::INVALID_STATE));
        // Nobody online to ring.
        let (_, out) = r.dial(t0, party(5), 50, party(6), false, false).unwrap();
        assert_eq!(statuses(&out), vec![(vec![5], DirectCallStatus::Offline, None)]);
        assert_eq!(r.in_progress(), 1);
        let e = r.dial(t0, party(5), 50, party(5), false, true).unwrap_err();
        assert_eq!((e.code, e.status), (ErrorCode::BadRequest, mesibo_status::NOT_ALLOWED));
    }

    #[test]
    fn a_third_user_cannot_touch_a_call() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (id, _) = dial(&mut r, t0, 1, 2);
        assert_eq!(r.accept(3, 30, id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(r.decline(3, id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(r.hangup(3, id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(r.accept(1, 10, id).unwrap_err().code, ErrorCode::NotFound, "the caller cannot answer");
        assert!(r.session_gone(3, 30).is_empty());
        assert_eq!(r.in_progress(), 1);
    }

    #[test]
    fn a_vanished_session_ends_the_call_it_carries() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        // The caller's placing session closes while ringing.
        let (_, _) = dial(&mut r, t0, 1, 2);
        assert!(r.session_gone(1, 11).is_empty(), "another session of the caller");
        assert!(r.session_gone(2, 20).is_empty(), "a ringing session of the callee: others may answer");
        let out = r.session_gone(1, 10);
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Lost, Some("u1".into()))]);
        // The callee's answering session closes.
        let (id, _) = dial(&mut r, t0, 1, 2);
        r.accept(2, 21, id).unwrap();
        assert!(r.session_gone(2, 22).is_empty());
        let out = r.session_gone(2, 21);
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Lost, Some("u2".into()))]);
        assert_eq!(closes(&out), vec![id]);
        assert_eq!(r.in_progress(), 0);
        // Both are free again.
        dial(&mut r, t0, 2, 1);
    }
}
