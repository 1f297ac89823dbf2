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
//!
//! **Across nodes.** In a cluster a call lives in the `Ring` of the node that got its
//! `call_dial`, while the callee may answer from a session on another node. So a session is
//! named by its node and its number there ([`SessionAt`]), never by a bare number (session
//! numbers of two nodes collide); the ids a `Ring` hands out are the service's to choose
//! ([`Ring::dial`] takes one), and every id `dial` accepted is [`Out::Released`] exactly once,
//! so the service can drop what it keeps for the call outside this machine.

use std::collections::HashMap;
use std::sync::Arc;
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

/// A session of some node: the node's id and the session's number there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionAt {
    /// The node the session is connected to.
    pub node: Arc<str>,
    /// The session's number on that node.
    pub session: u64,
}

/// Whether a callee can be rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Online and in no call: ring them.
    Online,
    /// No session anywhere.
    Offline,
    /// In a call this `Ring` does not know (held by another node).
    BusyElsewhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Ringing until the deadline.
    Ringing { until: Instant },
    /// Answered from the callee's session `session`.
    Answered { session: SessionAt },
}

#[derive(Debug)]
struct Call {
    caller: Party,
    /// The session that placed the call (it carries the caller's media).
    caller_session: SessionAt,
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
    /// The id is done with (the call ended, or never rang): whatever the service keeps for it
    /// outside the machine (a cluster's rows) can go. Once per id `dial` accepted.
    Released {
        /// The call.
        id: CallId,
        /// The callee's answering session, if it was answered (its node may keep a note).
        answered: Option<SessionAt>,
    },
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

impl Refusal {
    /// The caller is in a call already.
    pub fn in_a_call() -> Refusal {
        refuse(ErrorCode::Conflict, mesibo_status::INVALID_STATE, "you are in a call already: hang it up first")
    }
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
    /// The next id of [`Ring::next_id`].
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

    /// A new call id, 1, 2, 3…: for a `Ring` that is alone (one node), where nobody else hands
    /// out ids.
    pub fn next_id(&mut self) -> CallId {
        let id = CallId(self.next);
        self.next += 1;
        id
    }

    /// Whether call `id` is in progress here.
    pub fn holds(&self, id: CallId) -> bool {
        self.calls.contains_key(&id)
    }

    /// The ids of the calls in progress.
    pub fn ids(&self) -> Vec<CallId> {
        self.calls.keys().copied().collect()
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
    /// checked) as call `id` (new: from [`Ring::next_id`], or unique across a cluster).
    /// `reach`: whether the callee can be rung, as far as the service knows. Returns what to
    /// do; refused when the caller is in a call already (`id` is then not taken: no
    /// [`Out::Released`] for it).
    #[allow(clippy::too_many_arguments)]
    pub fn dial(
        &mut self,
        now: Instant,
        id: CallId,
        caller: Party,
        session: SessionAt,
        callee: Party,
        video: bool,
        reach: Reach,
    ) -> Result<Vec<Out>, Refusal> {
        if self.busy.contains_key(&caller.uid) {
            return Err(Refusal::in_a_call());
        }
        if caller.uid == callee.uid {
            return Err(refuse(ErrorCode::BadRequest, mesibo_status::NOT_ALLOWED, "you cannot call yourself"));
        }
        if self.calls.contains_key(&id) {
            return Err(refuse(ErrorCode::Conflict, mesibo_status::INVALID_STATE, "that call id is taken; try again"));
        }
        let call = Call {
            caller,
            caller_session: session,
            callee,
            video,
            phase: Phase::Ringing { until: now + self.timeout },
        };
        let early_end = if self.busy.contains_key(&call.callee.uid) || reach == Reach::BusyElsewhere {
            Some(DirectCallStatus::Busy)
        } else if reach == Reach::Offline {
            Some(DirectCallStatus::Offline)
        } else {
            None
        };
        if let Some(status) = early_end {
            // Told to the caller only: the callee was never rung.
            let frame = status_frame(id, &call, status, None);
            return Ok(vec![
                Out::Deliver { uids: vec![call.caller.uid], frame: Box::new(frame) },
                Out::Released { id, answered: None },
            ]);
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
        Ok(out)
    }

    /// The callee answers call `id` from its session `session`.
    pub fn accept(&mut self, uid: i64, session: SessionAt, id: CallId) -> Result<Vec<Out>, Refusal> {
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
    pub fn session_gone(&mut self, uid: i64, session: &SessionAt) -> Vec<Out> {
        let Some(&id) = self.busy.get(&uid) else { return Vec::new() };
        let Some(call) = self.calls.get(&id) else { return Vec::new() };
        let carried = if call.caller.uid == uid {
            call.caller_session == *session
        } else {
            matches!(&call.phase, Phase::Answered { session: s } if s == session)
        };
        if !carried {
            return Vec::new();
        }
        let by = if call.caller.uid == uid { call.caller.address.clone() } else { call.callee.address.clone() };
        self.end(id, DirectCallStatus::Lost, Some(by))
    }

    /// Node `node` is gone (died or drained): every call a session of it carried (placed, or
    /// answered) ends `lost`, by the side whose session it was. A call still ringing on that
    /// node's sessions goes on: the callee's other sessions may answer.
    pub fn node_gone(&mut self, node: &str) -> Vec<Out> {
        let lost: Vec<(CallId, String)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| {
                if &*c.caller_session.node == node {
                    return Some((*id, c.caller.address.clone()));
                }
                match &c.phase {
                    Phase::Answered { session } if &*session.node == node => Some((*id, c.callee.address.clone())),
                    _ => None,
                }
            })
            .collect();
        lost.into_iter().flat_map(|(id, by)| self.end(id, DirectCallStatus::Lost, Some(by))).collect()
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
    pub fn may_join(&self, uid: i64, session: &SessionAt, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| match &c.phase {
            Phase::Ringing { .. } => false,
            Phase::Answered { session: answered } => {
                (c.caller.uid == uid && c.caller_session == *session) || (c.callee.uid == uid && answered == session)
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
        let answered = match call.phase {
            Phase::Answered { session } => {
                out.push(Out::CloseRoom(id));
                Some(session)
            }
            Phase::Ringing { .. } => None,
        };
        out.push(Out::Released { id, answered });
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

    /// Session `n` of node `n0`.
    fn at(n: u64) -> SessionAt {
        SessionAt { node: "n0".into(), session: n }
    }

    /// Session `n` of node `node`.
    fn on(node: &str, n: u64) -> SessionAt {
        SessionAt { node: node.into(), session: n }
    }

    fn released(out: &[Out]) -> Vec<CallId> {
        out.iter()
            .filter_map(|o| match o {
                Out::Released { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn dial(r: &mut Ring, now: Instant, from: i64, to: i64) -> (CallId, Vec<Out>) {
        let id = r.next_id();
        (id, r.dial(now, id, party(from), at(from as u64 * 10), party(to), true, Reach::Online).expect("dialled"))
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
        assert!(!r.may_join(1, &at(10), id), "no media before the answer");
        let out = r.accept(2, at(21), id).unwrap();
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Answered, None)]);
        assert!(r.may_join(1, &at(10), id) && r.may_join(2, &at(21), id));
        assert!(!r.may_join(2, &at(22), id), "the callee's other session does not carry the call");
        assert!(!r.may_join(1, &at(11), id), "nor does the caller's other session");
        assert!(!r.may_join(3, &at(30), id), "nor a third user");
        assert_eq!(r.next_deadline(), None, "an answered call does not time out");
        assert!(r.tick(t0 + TIMEOUT * 2).is_empty());
        assert_eq!(r.accept(2, at(22), id).unwrap_err().code, ErrorCode::Conflict, "answered once only");
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
        let id = r.next_id();
        let e = r.dial(t0, id, party(1), at(10), party(4), false, Reach::Online).unwrap_err();
        assert_eq!((e.code, e.status), (ErrorCode::Conflict, mesibo_status::INVALID_STATE));
        // Nobody online to ring.
        let id = r.next_id();
        let out = r.dial(t0, id, party(5), at(50), party(6), false, Reach::Offline).unwrap();
        assert_eq!(statuses(&out), vec![(vec![5], DirectCallStatus::Offline, None)]);
        assert_eq!(released(&out), vec![id], "a call that never rang is released at once");
        // In a call on another node: busy, told to the caller only.
        let id = r.next_id();
        let out = r.dial(t0, id, party(5), at(50), party(6), false, Reach::BusyElsewhere).unwrap();
        assert_eq!(statuses(&out), vec![(vec![5], DirectCallStatus::Busy, None)]);
        assert_eq!(released(&out), vec![id]);
        assert_eq!(r.in_progress(), 1);
        let id = r.next_id();
        let e = r.dial(t0, id, party(5), at(50), party(5), false, Reach::Online).unwrap_err();
        assert_eq!((e.code, e.status), (ErrorCode::BadRequest, mesibo_status::NOT_ALLOWED));
    }

    #[test]
    fn a_third_user_cannot_touch_a_call() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (id, _) = dial(&mut r, t0, 1, 2);
        assert_eq!(r.accept(3, at(30), id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(r.decline(3, id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(r.hangup(3, id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(r.accept(1, at(10), id).unwrap_err().code, ErrorCode::NotFound, "the caller cannot answer");
        assert!(r.session_gone(3, &at(30)).is_empty());
        assert_eq!(r.in_progress(), 1);
    }

    #[test]
    fn a_vanished_session_ends_the_call_it_carries() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        // The caller's placing session closes while ringing.
        let (_, _) = dial(&mut r, t0, 1, 2);
        assert!(r.session_gone(1, &at(11)).is_empty(), "another session of the caller");
        assert!(r.session_gone(2, &at(20)).is_empty(), "a ringing session of the callee: others may answer");
        let out = r.session_gone(1, &at(10));
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Lost, Some("u1".into()))]);
        // The callee's answering session closes.
        let (id, _) = dial(&mut r, t0, 1, 2);
        r.accept(2, at(21), id).unwrap();
        assert!(r.session_gone(2, &at(22)).is_empty());
        let out = r.session_gone(2, &at(21));
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Lost, Some("u2".into()))]);
        assert_eq!(closes(&out), vec![id]);
        assert_eq!(r.in_progress(), 0);
        // Both are free again.
        dial(&mut r, t0, 2, 1);
    }

    #[test]
    fn sessions_of_two_nodes_with_one_number_are_two_sessions() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let id = r.next_id();
        r.dial(t0, id, party(1), on("a", 7), party(2), true, Reach::Online).unwrap();
        r.accept(2, on("b", 7), id).unwrap();
        assert!(r.may_join(1, &on("a", 7), id) && r.may_join(2, &on("b", 7), id));
        assert!(!r.may_join(2, &on("a", 7), id), "the callee's session 7 of node a did not answer");
        assert!(!r.may_join(1, &on("b", 7), id), "the caller's session 7 of node b did not place it");
        assert!(r.session_gone(2, &on("a", 7)).is_empty());
        let out = r.session_gone(2, &on("b", 7));
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Lost, Some("u2".into()))]);
        assert_eq!((closes(&out), released(&out)), (vec![id], vec![id]));
    }

    #[test]
    fn a_node_gone_ends_the_calls_its_sessions_carry() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        // 1 → 2 answered on node b; 3 → 4 ringing; 5 → 6 answered on node c.
        let (a, b, c) = (r.next_id(), r.next_id(), r.next_id());
        r.dial(t0, a, party(1), on("a", 1), party(2), true, Reach::Online).unwrap();
        r.accept(2, on("b", 1), a).unwrap();
        r.dial(t0, b, party(3), on("a", 3), party(4), true, Reach::Online).unwrap();
        r.dial(t0, c, party(5), on("a", 5), party(6), true, Reach::Online).unwrap();
        r.accept(6, on("c", 1), c).unwrap();
        let out = r.node_gone("b");
        assert_eq!(statuses(&out), vec![(vec![1, 2], DirectCallStatus::Lost, Some("u2".into()))]);
        assert_eq!((closes(&out), released(&out)), (vec![a], vec![a]));
        assert!(r.holds(b) && r.holds(c), "a ringing call and another node's call go on");
        // The node of the calls' placing sessions: all its calls end, ringing ones too.
        let out = r.node_gone("a");
        let mut ended = released(&out);
        ended.sort_by_key(|i| i.get());
        assert_eq!(ended, vec![b, c]);
        assert!(statuses(&out).iter().all(|(_, s, _)| *s == DirectCallStatus::Lost));
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn every_accepted_id_is_released_once_and_a_taken_id_is_refused() {
        let t0 = Instant::now();
        let mut r = Ring::new(TIMEOUT);
        let (id, out) = dial(&mut r, t0, 1, 2);
        assert!(released(&out).is_empty(), "ringing: still held");
        let e = r.dial(t0, id, party(3), at(30), party(4), true, Reach::Online).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "ids are unique");
        r.accept(2, at(20), id).unwrap();
        let out = r.hangup(1, id).unwrap();
        assert_eq!(released(&out), vec![id]);
        assert!(r.hangup(2, id).is_err() && r.tick(t0 + TIMEOUT).is_empty(), "nothing more for it");
    }
}
