//! 1:1 calls against the real `chorus serve`: ringing on every session of the callee, answer,
//! decline, busy, no answer, cancel, a lost session, and the media of an answered call through
//! the SFU (real WebRTC with str0m on both ends, synthetic VP8 + Opus from the Rust client).
//!
//! Who may call whom is the messaging rule for 1:1 messages, which reads the store (users,
//! deactivation): every scenario runs on SQLite and PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use chorus_client::call::stats::Kind;
use chorus_client::call::{Call, CallNotice, CallOptions, PublishOptions};
use chorus_client::direct::DirectRefusal;
use chorus_client::Connection;
use chorus_proto::call::CallLeaveReason;
use chorus_proto::direct::{room_of, DirectCallStatus, DirectCallUpdate};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::{CallId, ErrorCode, GroupId};
use common::calls::wait_frames;
use common::{Backend, Server, ADMIN_TOKEN, QUIET, WAIT};
use serde_json::json;

struct User {
    address: String,
    http: chorus_client::Http,
}

async fn user(s: &Server, email: &str, name: &str) -> User {
    let (sess, http) = s.login(email, name).await;
    User { address: sess.user.address, http }
}

async fn session(s: &Server, u: &User) -> Connection {
    s.connect(&u.http).await.0
}

/// The refusal inside a failed request.
fn refusal(e: anyhow::Error) -> DirectRefusal {
    e.downcast::<DirectRefusal>().unwrap_or_else(|e| panic!("expected a refusal, got {e:#}"))
}

/// The next `call_status` of `call` on `c` (whatever its status).
async fn status(c: &mut Connection, call: CallId) -> DirectCallUpdate {
    c.call_status(call, WAIT, |_| true).await.expect("a call_status")
}

/// Asserts that no frame about 1:1 calls reaches `c` for a while.
async fn no_call_frames(c: &mut Connection, who: &str) {
    let frames = c.drain(QUIET).await;
    let about_calls: Vec<_> =
        frames.iter().filter(|f| matches!(f, ServerFrame::CallIncoming { .. } | ServerFrame::CallStatus(_))).collect();
    assert!(about_calls.is_empty(), "{who} saw {about_calls:?}");
}

/// Waits for call `call` to ring on `c` (older `call_incoming`s stay buffered).
async fn rings(c: &mut Connection, call: CallId) -> chorus_client::direct::Incoming {
    match c.expect(WAIT, |f| matches!(f, ServerFrame::CallIncoming { call: id, .. } if *id == call)).await {
        Ok(ServerFrame::CallIncoming { call, from, name, video }) => {
            chorus_client::direct::Incoming { call, from, name, video }
        }
        other => panic!("call {call} did not ring: {other:?}"),
    }
}

/// Sends `call_join` for a 1:1 call's room and returns the answer.
async fn try_join(c: &mut Connection, call: CallId) -> ServerFrame {
    c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(room_of(call)) }).await.expect("an answer")
}

fn assert_not_found(f: ServerFrame, what: &str) {
    match f {
        ServerFrame::Error { code: ErrorCode::NotFound, .. } => {}
        other => panic!("{what}: expected not_found, got {other:?}"),
    }
}

/// The whole life of an answered call: it rings on both of Bob's sessions, one answers and the
/// other stops ringing, media flow both ways through the SFU, Carol can neither see nor touch
/// nor join it, and Alice's hang-up reaches both sides and closes the media.
async fn answered_call_carries_media_and_hangup_reaches_both(b: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(b).await;
    let alice = user(&s, "alice@example.org", "Alice").await;
    let bob = user(&s, "bob@example.org", "Bob").await;
    let carol = user(&s, "carol@example.org", "Carol").await;
    let mut a = session(&s, &alice).await;
    let mut b1 = session(&s, &bob).await;
    let mut b2 = session(&s, &bob).await;
    let mut c = session(&s, &carol).await;

    let call = a.dial(&bob.address, true).await.expect("dial");
    let ringing = status(&mut a, call).await;
    assert_eq!((ringing.status, ringing.code), (DirectCallStatus::Ringing, 0x03));
    assert_eq!(
        (ringing.from.as_str(), ringing.to.as_str(), ringing.video),
        (alice.address.as_str(), bob.address.as_str(), true)
    );
    for (name, conn) in [("b1", &mut b1), ("b2", &mut b2)] {
        let inc = conn.incoming_call(WAIT).await.unwrap_or_else(|e| panic!("{name} does not ring: {e:#}"));
        assert_eq!(
            (inc.call, inc.from.as_str(), inc.name.as_str(), inc.video),
            (call, alice.address.as_str(), "Alice", true)
        );
    }

    // Carol knows the id (it is a small number) but it is not her call.
    for frame in [
        ClientFrame::CallAccept { rid: None, call },
        ClientFrame::CallDecline { rid: None, call },
        ClientFrame::CallHangup { rid: None, call },
    ] {
        let answer = c.request(|rid| frame.with_rid(rid)).await.unwrap();
        assert_not_found(answer, "carol touching the call");
    }
    assert_not_found(try_join(&mut c, call).await, "carol joining the ringing call");
    // Nobody may join before the answer, not even the caller.
    assert_not_found(try_join(&mut a, call).await, "joining before the answer");

    b2.accept_call(call).await.expect("b2 answers");
    assert_eq!(status(&mut a, call).await.status, DirectCallStatus::Answered);
    let answered = b1.call_status(call, WAIT, |s| s != DirectCallStatus::Ringing).await.unwrap();
    assert_eq!((answered.status, answered.code), (DirectCallStatus::Answered, 0x05), "b1 stops ringing");
    let again = b1.accept_call(call).await.map_err(refusal).unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict, "answered once only");
    assert_not_found(try_join(&mut b1, call).await, "the session that did not answer");

    // Media through the SFU, both ways.
    let opts = CallOptions { subscribe_all: true, ..Default::default() };
    let ca = Call::join_direct(a, call, opts.clone()).await.expect("alice joins the call's room");
    let cb = Call::join_direct(b2, call, opts).await.expect("bob joins from the answering session");
    assert_eq!(ca.joined().gid, room_of(call));
    assert!(ca.permissions().publish && ca.permissions().subscribe);
    assert_not_found(try_join(&mut c, call).await, "carol joining the answered call");
    let one_layer = PublishOptions { layers: 1, height: 360, ..Default::default() };
    ca.publish_camera(0, one_layer).await.expect("alice publishes");
    cb.publish_camera(0, one_layer).await.expect("bob publishes");
    wait_frames(&cb, &alice.address, Kind::Video, 30).await;
    wait_frames(&cb, &alice.address, Kind::Audio, 50).await;
    wait_frames(&ca, &bob.address, Kind::Video, 30).await;
    wait_frames(&ca, &bob.address, Kind::Audio, 50).await;
    assert_eq!(ca.roster().len(), 2, "exactly the two of them: {:?}", ca.roster().keys());

    // Alice hangs up: both sides are told, and the room closes under both.
    ca.hangup(call).await.expect("hang up");
    for (who, mut cl) in [("alice", ca), ("bob", cb)] {
        let mut ended = None;
        let mut left = false;
        let until = Instant::now() + WAIT;
        while Instant::now() < until && !(ended.is_some() && left) {
            match cl.next_notice(until - Instant::now()).await {
                Some(CallNotice::Status(u)) if u.call == call => ended = Some(u),
                Some(CallNotice::Event(chorus_proto::call::CallEvent::Left { address, reason, .. }))
                    if address == cl.address() =>
                {
                    assert_eq!(reason, CallLeaveReason::NotMember);
                    left = true;
                }
                Some(_) => {}
                None => break,
            }
        }
        let ended = ended.unwrap_or_else(|| panic!("{who} was not told the call ended"));
        assert_eq!(
            (ended.status, ended.code, ended.by.as_deref()),
            (DirectCallStatus::Ended, 0x40, Some(alice.address.as_str()))
        );
        assert!(left, "{who} is out of the call's room");
    }
    let ended = b1.call_status(call, WAIT, |s| s.ended()).await.unwrap();
    assert_eq!(ended.status, DirectCallStatus::Ended, "bob's other session hears the end too");
    no_call_frames(&mut c, "carol").await;
}

/// Decline, busy, cancel, no answer after the (configured) timeout, and a lost session: each
/// told to both sides with its status and Mesibo's number.
async fn every_way_a_call_ends_unanswered(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_CALL_RING_TIMEOUT_SECS", "2")]).await;
    let alice = user(&s, "alice@example.org", "Alice").await;
    let bob = user(&s, "bob@example.org", "Bob").await;
    let carol = user(&s, "carol@example.org", "Carol").await;
    let mut a = session(&s, &alice).await;
    let mut b1 = session(&s, &bob).await;
    let mut b2 = session(&s, &bob).await;
    let mut c = session(&s, &carol).await;

    // Declined from one session: the caller and both of Bob's sessions hear it.
    let call = a.dial(&bob.address, false).await.unwrap();
    let inc = rings(&mut b1, call).await;
    assert!(!inc.video, "a voice call");
    rings(&mut b2, call).await;
    b1.decline_call(call).await.unwrap();
    for conn in [&mut a, &mut b1, &mut b2] {
        let u = conn.call_status(call, WAIT, |s| s.ended()).await.unwrap();
        assert_eq!((u.status, u.code), (DirectCallStatus::Declined, 0x43));
    }

    // Busy: Bob is ringing with Alice's call when Carol calls; Bob never rings for Carol.
    let first = a.dial(&bob.address, true).await.unwrap();
    rings(&mut b1, first).await;
    rings(&mut b2, first).await;
    let second = c.dial(&bob.address, true).await.unwrap();
    assert_ne!(first, second);
    let busy = c.call_status(second, WAIT, |s| s.ended()).await.unwrap();
    assert_eq!((busy.status, busy.code), (DirectCallStatus::Busy, 0x43));
    // Alice is in a call: she cannot place a second one.
    let twice = a.dial(&carol.address, true).await.map_err(refusal).unwrap_err();
    assert_eq!((twice.code, twice.status), (ErrorCode::Conflict, Some(0x47)));

    // Cancel: Alice hangs up while it rings.
    a.hangup_call(first).await.unwrap();
    for conn in [&mut a, &mut b1, &mut b2] {
        let u = conn.call_status(first, WAIT, |s| s.ended()).await.unwrap();
        assert_eq!((u.status, u.code), (DirectCallStatus::Canceled, 0x41));
    }
    no_call_frames(&mut b1, "bob (carol's busy call never rang)").await;

    // No answer within the 2 s configured.
    let started = Instant::now();
    let call = a.dial(&bob.address, true).await.unwrap();
    rings(&mut b1, call).await;
    for conn in [&mut a, &mut b1, &mut b2] {
        let u = conn.call_status(call, WAIT, |s| s.ended()).await.unwrap();
        assert_eq!((u.status, u.code), (DirectCallStatus::NoAnswer, 0x42));
    }
    let rang = started.elapsed();
    assert!(rang >= Duration::from_millis(1900) && rang < Duration::from_secs(4), "rang {rang:?}");

    // A lost session: Bob answers, then Alice's connection drops (no close frame).
    let call = a.dial(&bob.address, true).await.unwrap();
    rings(&mut b1, call).await;
    b1.accept_call(call).await.unwrap();
    a.call_status(call, WAIT, |s| s == DirectCallStatus::Answered).await.unwrap();
    a.abort();
    for conn in [&mut b1, &mut b2] {
        let u = conn.call_status(call, WAIT, |s| s.ended()).await.unwrap();
        assert_eq!((u.status, u.by.as_deref()), (DirectCallStatus::Lost, Some(alice.address.as_str())));
    }
    // Everyone is free again: Carol reaches Bob.
    let call = c.dial(&bob.address, true).await.unwrap();
    assert_eq!(rings(&mut b2, call).await.from, carol.address);
    b2.hangup_call(call).await.unwrap();
    assert_eq!(c.call_status(call, WAIT, |s| s.ended()).await.unwrap().status, DirectCallStatus::Declined);

    // Nobody online to ring: offline at once.
    drop((b1, b2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = c.dial(&bob.address, true).await.unwrap();
    let u = c.call_status(call, WAIT, |s| s.ended()).await.unwrap();
    assert_eq!((u.status, u.code), (DirectCallStatus::Offline, 0x45));
}

/// Calling is allowed exactly where 1:1 messaging is: not yourself, not an unknown address, not
/// a deactivated user, each refused with its code and Mesibo's call status.
async fn calling_someone_you_may_not_message_is_refused(b: Backend) {
    let s = Server::start(b).await;
    let alice = user(&s, "alice@example.org", "Alice").await;
    let dave = user(&s, "dave@example.org", "Dave").await;
    let mut a = session(&s, &alice).await;
    let _d = session(&s, &dave).await;

    let me = a.dial(&alice.address, true).await.map_err(refusal).unwrap_err();
    assert_eq!((me.code, me.status), (ErrorCode::BadRequest, Some(0x4A)));
    let nobody = a.dial("no-such-user", true).await.map_err(refusal).unwrap_err();
    assert_eq!((nobody.code, nobody.status), (ErrorCode::NotFound, Some(0x46)));

    let r =
        s.backend(json!({"op": "userset", "token": ADMIN_TOKEN, "user": {"address": dave.address, "active": 0}})).await;
    assert_eq!(r["result"], json!(true), "{r}");
    let gone = a.dial(&dave.address, true).await.map_err(refusal).unwrap_err();
    assert_eq!((gone.code, gone.status), (ErrorCode::NotFound, Some(0x46)));
    // The same rule as a message to them.
    match a.send_text(Some(&dave.address), None, "m1", "hello?").await.unwrap() {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("a message to a deactivated user: {other:?}"),
    }
    // Bad input: a call id that never existed, a frame with a wrong type.
    let e = a.hangup_call(CallId(999_999)).await.map_err(refusal).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    a.send_raw(r#"{"type":"call_dial","rid":"x","peer":42}"#).await.unwrap();
    match a.expect(WAIT, |f| matches!(f, ServerFrame::Error { .. })).await.unwrap() {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
}

both_backends!(
    answered_call_carries_media_and_hangup_reaches_both,
    every_way_a_call_ends_unanswered,
    calling_someone_you_may_not_message_is_refused,
);
