//! Group calls against the real `chorus serve`: real WebRTC (str0m on both ends) over real UDP on
//! loopback, synthetic VP8 simulcast + Opus from the Rust client.
//!
//! The media path does not touch the store, so these run on SQLite only; the permission lookup at
//! join is the groups service the other tests cover on both backends.

mod common;

use chorus_proto::GroupId;
use std::time::{Duration, Instant};

use chorus_client::call::stats::{CallStats, Kind, LegState, TrackKey};
use chorus_client::call::{Call, CallNotice, CallOptions, PublishOptions};
use chorus_client::Http;
use chorus_proto::call::{AdminAction, CallEvent, CallLeaveReason, StreamEndReason};
use chorus_proto::flags::member;
use chorus_proto::rest::Group;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::ErrorCode;
use common::calls::{frames, join, member_with_pin, room, wait_frames, MEDIA};
use common::{Backend, Server};
use serde_json::json;

const EVENT: Duration = Duration::from_secs(10);

/// Subscribes to every stream others publish.
fn auto() -> CallOptions {
    CallOptions { subscribe_all: true, ..Default::default() }
}

fn received_from(s: &CallStats, publisher: &str) -> u64 {
    s.received.iter().filter(|(k, _)| k.publisher == publisher).map(|(_, t)| t.frames).sum()
}

async fn three_participants_each_receive_the_other_two(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hc, _) = member_with_pin(&s, &r, "cat@example.org", &r.publisher_pin).await;
    let mut calls = Vec::new();
    for h in [&r.owner, &hb, &hc] {
        let c = join(h, r.gid, auto()).await;
        let granted = c.publish_camera(0, PublishOptions::default()).await.expect("publish");
        assert_eq!((granted.layers, granted.height), (3, Some(720)));
        calls.push(c);
    }
    let addresses: Vec<String> = calls.iter().map(|c| c.address().to_string()).collect();
    for c in &calls {
        for other in addresses.iter().filter(|a| *a != c.address()) {
            let st = wait_frames(c, other, Kind::Video, 30).await;
            let st2 = wait_frames(c, other, Kind::Audio, 50).await;
            let v = &st.received[&TrackKey { publisher: other.clone(), sid: 0, kind: Kind::Video }];
            assert!(v.keyframes >= 1, "video starts at a keyframe: {v:?}");
            // The subscribe connection's setup, step by step (what the bench reports), in order.
            let steps = st.subscribe_setup;
            let order = [steps.offer_at, steps.ice_at, steps.dtls_at, steps.first_rtp_at, v.first_at];
            assert!(order.iter().all(Option::is_some), "a setup step missing: {steps:?}");
            assert!(order.windows(2).all(|w| w[0] <= w[1]), "setup steps out of order: {steps:?}");
            assert_eq!(v.first_keyframe_at, v.first_at, "the first video frame is a keyframe");
            let a = &st2.received[&TrackKey { publisher: other.clone(), sid: 0, kind: Kind::Audio }];
            assert!(a.last_latency_us.is_some_and(|l| l < 500_000), "loopback latency: {:?}", a.last_latency_us);
        }
        // Everyone has the list permission: the roster shows all three.
        let roster = c.wait_until(EVENT, |_| true).await.map(|_| c.roster()).expect("roster");
        assert_eq!(roster.len(), 3, "{} sees {:?}", c.address(), roster.keys());
        assert!(roster.values().all(|p| p.streams.iter().any(|s| s.sid == 0 && s.audio && s.video)));
    }
    // Steady: over two more seconds everyone received what the others sent, nothing lost.
    // (Compared with what each publisher really sent: on a starved machine its clock slips.)
    let sent_audio = |c: &Call| c.stats().sent.get(&(0, Kind::Audio)).map_or(0, |s| s.frames.iter().sum::<u64>());
    let before: Vec<(CallStats, u64)> = calls.iter().map(|c| (c.stats(), sent_audio(c))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<(CallStats, u64)> = calls.iter().map(|c| (c.stats(), sent_audio(c))).collect();
    for (i, c) in calls.iter().enumerate() {
        for (j, other) in addresses.iter().enumerate().filter(|(_, a)| *a != c.address()) {
            let sent = after[j].1 - before[j].1;
            assert!(sent >= 50, "{other} sent only {sent} audio frames in 2 s (100 expected)");
            let audio = frames(&after[i].0, other, Kind::Audio) - frames(&before[i].0, other, Kind::Audio);
            assert!(
                audio + 5 >= sent && audio <= sent + 5,
                "{} got {audio} of {sent} audio frames from {other}",
                c.address()
            );
            let video = frames(&after[i].0, other, Kind::Video) - frames(&before[i].0, other, Kind::Video);
            assert!(video >= 20, "{} got {video} video frames from {other} in 2 s (60 expected)", c.address());
            let key = TrackKey { publisher: other.clone(), sid: 0, kind: Kind::Video };
            assert_eq!(after[i].0.received[&key].lost, before[i].0.received[&key].lost, "video frames lost");
        }
    }
    for c in calls {
        c.leave().await.expect("leave");
    }
}

async fn view_only_member_cannot_publish_and_nothing_of_it_reaches_anyone(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hv, viewer) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let owner = join(&r.owner, r.gid, auto()).await;
    owner.publish_camera(0, PublishOptions::default()).await.expect("owner publishes");
    let v = join(&hv, r.gid, auto()).await;
    assert!(!v.permissions().publish && v.permissions().subscribe && v.permissions().list);
    let e = v.publish_camera(0, PublishOptions::default()).await.expect_err("view-only publish");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    let e = v.publish_camera(1, PublishOptions { video: false, ..Default::default() }).await.expect_err("audio only");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    // The viewer watches: it receives the owner.
    wait_frames(&v, &r.owner_address, Kind::Video, 30).await;
    // Nothing from the viewer reaches the owner, and the roster shows it without streams.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = owner.stats();
    assert_eq!(received_from(&st, &viewer), 0, "the owner received media from the viewer: {st:#?}");
    assert!(owner.roster().get(&viewer).is_some_and(|p| p.streams.is_empty()));
    assert!(v.stats().sent.values().all(|s| s.frames.iter().sum::<u64>() == 0), "the viewer never got to send");
}

async fn member_without_subscribe_receives_nothing(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hn, nosub) = {
        let (sess, h) = s.login("nosub@example.org", "NoSub").await;
        let flags = member::SEND | member::RECV | member::PUBLISH | member::LIST;
        let _: serde_json::Value = r
            .owner
            .post(&format!("/v1/groups/{}/members", r.gid), &json!({"addresses": [sess.user.address], "flags": flags}))
            .await
            .unwrap();
        (h, sess.user.address)
    };
    let owner = join(&r.owner, r.gid, auto()).await;
    owner.publish_camera(0, PublishOptions::default()).await.unwrap();
    let mut n = join(&hn, r.gid, auto()).await;
    assert!(!n.permissions().subscribe);
    let e = n.subscribe(&r.owner_address, 0, true, true, None).await.expect_err("subscribe refused");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    // It may publish, and the owner receives it.
    n.publish_camera(0, PublishOptions::default()).await.expect("publish without subscribe");
    wait_frames(&owner, &nosub, Kind::Video, 30).await;
    let st = n.stats();
    assert!(st.received.values().all(|t| t.frames == 0), "received: {st:#?}");
    assert_eq!(st.unmapped_frames, 0);
    let _ = n.drain_notices();
}

async fn subscriber_asking_small_gets_the_low_layer_and_capped_one_steps_down(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hs, _) = member_with_pin(&s, &r, "small@example.org", &r.publisher_pin).await;
    let (hl, _) = member_with_pin(&s, &r, "large@example.org", &r.publisher_pin).await;
    let owner = join(&r.owner, r.gid, CallOptions::default()).await;
    owner.publish_camera(0, PublishOptions::default()).await.unwrap();
    let small = join(&hs, r.gid, CallOptions::default()).await;
    small.subscribe(&r.owner_address, 0, true, true, Some(180)).await.unwrap();
    let mut large = join(&hl, r.gid, CallOptions::default()).await;
    large.subscribe(&r.owner_address, 0, true, true, None).await.unwrap();
    let key = TrackKey { publisher: r.owner_address.clone(), sid: 0, kind: Kind::Video };

    let st = small.wait_until(MEDIA, |s| s.received.get(&key).is_some_and(|t| t.frames >= 60)).await.unwrap();
    let t = &st.received[&key];
    assert_eq!(t.max_layer, Some(0), "a 180 px tile only ever gets the low layer: {t:?}");
    let st = large
        .wait_until(MEDIA, |s| s.received.get(&key).is_some_and(|t| t.layer.is_some_and(|l| l >= 1) && t.frames >= 30))
        .await
        .unwrap();
    assert!(st.received[&key].layer >= Some(1), "an uncapped subscriber gets more than the low layer");

    // Now the large subscriber's downlink shrinks to 300 kbit/s: it must step down to the low
    // layer, and the picture keeps moving.
    large.set_downlink_kbps(Some(300));
    let started = Instant::now();
    let st = large
        .wait_until(Duration::from_secs(25), |s| s.received.get(&key).is_some_and(|t| t.layer == Some(0)))
        .await
        .expect("stepped down to the low layer");
    let at_switch = st.received[&key].frames;
    eprintln!("stepped down after {:?}", started.elapsed());
    // Keeps receiving at the low layer: at least 2 s of 30 fps video in the next 3 s, never a
    // silence of more than a second.
    let mut last = (Instant::now(), at_switch);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let f = large.stats().received[&key].frames;
        if f > last.1 {
            last = (Instant::now(), f);
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let st = large.stats();
            panic!(
                "video froze after stepping down: {:?}, shaper {:?}, notices {:?}",
                st.received[&key],
                st.shaper,
                large.drain_notices()
            );
        }
    }
    let st = large.stats();
    let t = &st.received[&key];
    let got = t.frames - at_switch;
    assert!(got >= 60, "only {got} frames in 3 s after stepping down");
    assert_eq!(t.layer, Some(0));
    // And the picture is live again: no more delay than the link's own queue (300 ms) plus a
    // margin. A server that queued what the link could not carry (a pacer holding seconds of
    // the old layer) would deliver these frames seconds late and freeze on its losses.
    let latency = Duration::from_micros(t.last_latency_us.expect("frames carry send times"));
    assert!(latency < Duration::from_millis(500), "frames arrive {latency:?} late after stepping down: {t:?}");
}

async fn talking_events_follow_who_speaks(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hv, _) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let a = join(&r.owner, r.gid, auto()).await;
    a.publish_camera(0, PublishOptions::default()).await.unwrap();
    let bc = join(&hb, r.gid, auto()).await;
    bc.publish_camera(0, PublishOptions::default()).await.unwrap();
    let mut v = join(&hv, r.gid, auto()).await;
    wait_frames(&v, &bob, Kind::Audio, 20).await;
    let _ = v.drain_notices();

    a.set_speaking(true);
    let owner = r.owner_address.clone();
    v.wait_event(EVENT, |e| matches!(e, CallEvent::Talking { address, talking: true } if *address == owner))
        .await
        .unwrap();
    a.set_speaking(false);
    bc.set_speaking(true);
    v.wait_event(EVENT, |e| matches!(e, CallEvent::Talking { address, talking: true } if *address == bob))
        .await
        .unwrap();
    v.wait_event(EVENT, |e| matches!(e, CallEvent::Talking { address, talking: false } if *address == owner))
        .await
        .unwrap();
    v.wait_event(EVENT, |e| matches!(e, CallEvent::Speakers { order } if order.first() == Some(&bob))).await.unwrap();
    assert!(v.roster().get(&bob).is_some_and(|p| p.talking));
    assert!(v.roster().get(&owner).is_some_and(|p| !p.talking));
}

async fn admin_mutes_hangs_up_and_removes(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hc, cat) = member_with_pin(&s, &r, "cat@example.org", &r.publisher_pin).await;
    let mut admin = join(&r.owner, r.gid, auto()).await;
    let mut bc = join(&hb, r.gid, auto()).await;
    bc.publish_camera(0, PublishOptions::default()).await.unwrap();
    let mut cc = join(&hc, r.gid, auto()).await;
    cc.publish_camera(0, PublishOptions::default()).await.unwrap();
    wait_frames(&admin, &bob, Kind::Audio, 20).await;
    wait_frames(&cc, &bob, Kind::Audio, 20).await;

    // Not an admin: refused.
    let e = cc.admin(AdminAction::Mute, Some(&bob), None, true, false).await.expect_err("not admin");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));

    // Mute Bob's audio: everyone is told, Bob cannot lift it, and his audio stops reaching anyone
    // although his client keeps sending it.
    admin.admin(AdminAction::Mute, Some(&bob), None, true, false).await.unwrap();
    for c in [&mut admin, &mut bc, &mut cc] {
        let b2 = bob.clone();
        c.wait_event(EVENT, |e| matches!(e, CallEvent::Updated { address, admin_muted, .. } if *address == b2 && admin_muted.audio && !admin_muted.video))
            .await
            .unwrap();
    }
    let e = bc.mute(0, Some(false), None).await.expect_err("cannot unmute an admin mute");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = (frames(&cc.stats(), &bob, Kind::Audio), frames(&cc.stats(), &bob, Kind::Video));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = (frames(&cc.stats(), &bob, Kind::Audio), frames(&cc.stats(), &bob, Kind::Video));
    assert_eq!(after.0, before.0, "muted audio still arrives");
    assert!(after.1 >= before.1 + 15, "video continues: {before:?} → {after:?}");
    let sent = bc.stats().sent;
    assert!(
        sent.get(&(0, Kind::Audio)).is_some_and(|s| s.frames.iter().sum::<u64>() > 50),
        "Bob keeps sending: {sent:?}"
    );
    admin.admin(AdminAction::Unmute, Some(&bob), None, true, false).await.unwrap();
    let n = frames(&cc.stats(), &bob, Kind::Audio);
    wait_frames(&cc, &bob, Kind::Audio, n + 20).await;

    // Hang up Cat's camera: the stream ends for everyone, Cat stays in the call.
    admin.admin(AdminAction::Hangup, Some(&cat), Some(0), false, false).await.unwrap();
    let c2 = cat.clone();
    bc.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Unpublished { address, sid: 0, reason: StreamEndReason::HungUp } if *address == c2),
    )
    .await
    .unwrap();
    assert!(bc.roster().get(&cat).is_some_and(|p| p.streams.is_empty()));

    // Remove Bob: he is told why, the others see him go.
    admin.admin(AdminAction::Remove, Some(&bob), None, false, false).await.unwrap();
    let b2 = bob.clone();
    let owner = r.owner_address.clone();
    bc.wait_event(EVENT, |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Removed, by: Some(by) } if *address == b2 && *by == owner))
        .await
        .unwrap();
    let b3 = bob.clone();
    cc.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Removed, .. } if *address == b3),
    )
    .await
    .unwrap();
    assert!(!cc.roster().contains_key(&bob));
    // Mute everyone else's video.
    admin.admin(AdminAction::MuteAll, None, None, false, true).await.unwrap();
    let c3 = cat.clone();
    cc.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Updated { address, admin_muted, .. } if *address == c3 && admin_muted.video),
    )
    .await
    .unwrap();
}

async fn leaving_or_vanishing_updates_everyones_roster(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_RTC_PEER_TIMEOUT_SECS", "3")]).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hc, cat) = member_with_pin(&s, &r, "cat@example.org", &r.publisher_pin).await;
    let (hd, dan) = member_with_pin(&s, &r, "dan@example.org", &r.publisher_pin).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    let mut others = Vec::new();
    for h in [&hb, &hc, &hd] {
        // These clients do not recover (protocol.md §15.10): the test watches the server
        // take them out.
        let c = join(h, r.gid, CallOptions { recover: false, ..auto() }).await;
        c.publish_camera(0, PublishOptions::default()).await.unwrap();
        others.push(c);
    }
    for addr in [&bob, &cat, &dan] {
        wait_frames(&a, addr, Kind::Video, 10).await;
    }
    assert_eq!(a.roster().len(), 4);
    let mut it = others.into_iter();
    let (bc, cc, dc) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());

    // Bob leaves properly.
    let t = Instant::now();
    bc.leave().await.unwrap();
    let b2 = bob.clone();
    a.wait_event(
        Duration::from_secs(3),
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Left, .. } if *address == b2),
    )
    .await
    .unwrap();
    eprintln!("leave seen after {:?}", t.elapsed());

    // Cat's process dies: WebSocket and media gone at once.
    let t = Instant::now();
    cc.abort();
    let c2 = cat.clone();
    a.wait_event(
        Duration::from_secs(3),
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Lost, .. } if *address == c2),
    )
    .await
    .unwrap();
    eprintln!("crash seen after {:?}", t.elapsed());

    // Dan's media path vanishes while his WebSocket stays: the peer timeout (3 s here) removes him.
    let t = Instant::now();
    dc.freeze();
    let d2 = dan.clone();
    a.wait_event(
        Duration::from_secs(8),
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Lost, .. } if *address == d2),
    )
    .await
    .unwrap();
    eprintln!("vanished media seen after {:?}", t.elapsed());
    assert!(t.elapsed() >= Duration::from_secs(2), "removed before the timeout");
    assert_eq!(a.roster().keys().cloned().collect::<Vec<_>>(), vec![r.owner_address.clone()]);
}

/// A raw signaling session: frames straight over the WebSocket.
async fn raw(h: &Http) -> chorus_client::Connection {
    chorus_client::Connection::connect(h, None).await.expect("ws").0
}

async fn expect_error(c: &mut chorus_client::Connection, frame: ClientFrame) -> (ErrorCode, String) {
    let f = c.request(|rid| frame.with_rid(rid)).await.expect("answer");
    match f {
        ServerFrame::Error { code, message, .. } => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn bad_signaling_gets_errors_and_hurts_no_one(b: Backend) {
    // Frames up to 128 KiB, so an SDP over its own 64 KiB limit reaches the call layer.
    let s =
        Server::start_with(b, &[("CHORUS_RTC_CONNECT_TIMEOUT_SECS", "3"), ("CHORUS_MAX_FRAME_BYTES", "131072")]).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (_, hx) = s.login("stranger@example.org", "Stranger").await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    a.publish_camera(0, PublishOptions::default()).await.unwrap();

    let mut c = raw(&hb).await;
    let publish = |sdp: &str, rids: Vec<&str>| {
        ClientFrame::CallPublish(chorus_proto::call::PublishRequest {
            rid: None,
            sid: 0,
            audio: true,
            video: true,
            screen: false,
            rids: rids.into_iter().map(String::from).collect(),
            height: Some(720),
            muted: Default::default(),
            audio_mid: Some("0".into()),
            video_mid: Some("1".into()),
            sdp: sdp.into(),
        })
    };
    // Not in a call yet.
    assert_eq!(expect_error(&mut c, publish("v=0", vec![])).await.0, ErrorCode::NotFound);
    // No such group; a group one is not a member of.
    assert_eq!(
        expect_error(&mut c, ClientFrame::CallJoin { rid: None, gid: GroupId(999_999) }).await.0,
        ErrorCode::NotFound
    );
    let mut x = raw(&hx).await;
    assert_eq!(
        expect_error(&mut x, ClientFrame::CallJoin { rid: None, gid: GroupId(r.gid) }).await.0,
        ErrorCode::NotFound
    );
    // Unknown fields and garbage are bad requests, answered on the same connection.
    c.send_raw(r#"{"type":"call_join","gid":1000,"extra":1}"#).await.unwrap();
    let f = c.expect(EVENT, |f| matches!(f, ServerFrame::Error { .. })).await.unwrap();
    assert!(matches!(f, ServerFrame::Error { code: ErrorCode::BadRequest, .. }), "{f:?}");

    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let (code, msg) = expect_error(&mut c, publish("this is not SDP", vec![])).await;
    assert_eq!(code, ErrorCode::BadRequest, "{msg}");
    assert_eq!(expect_error(&mut c, publish("v=0", vec!["a", "b", "c", "d"])).await.0, ErrorCode::BadRequest);
    assert_eq!(expect_error(&mut c, publish("v=0", vec!["a", "a"])).await.0, ErrorCode::BadRequest);
    assert_eq!(expect_error(&mut c, publish("v=0", vec!["has space"])).await.0, ErrorCode::BadRequest);
    let big = "a".repeat(65 * 1024);
    assert_eq!(expect_error(&mut c, publish(&big, vec![])).await.0, ErrorCode::TooLarge);
    assert_eq!(
        expect_error(&mut c, ClientFrame::CallAnswer { rid: None, sdp: "v=0".into() }).await.0,
        ErrorCode::Conflict,
        "an answer with no offer out"
    );
    let sub = |address: &str, sid| ClientFrame::CallSubscribe {
        rid: None,
        address: address.into(),
        sid,
        audio: true,
        video: true,
        height: None,
    };
    assert_eq!(expect_error(&mut c, sub("nobody", 0)).await.0, ErrorCode::NotFound);
    assert_eq!(expect_error(&mut c, sub(&r.owner_address, 7)).await.0, ErrorCode::NotFound);
    assert_eq!(expect_error(&mut c, sub(&bob, 0)).await.0, ErrorCode::BadRequest, "ones own stream");
    let (code, _) = expect_error(
        &mut c,
        ClientFrame::CallAdmin {
            rid: None,
            action: AdminAction::Mute,
            address: Some(r.owner_address.clone()),
            sid: None,
            audio: false,
            video: false,
        },
    )
    .await;
    assert_eq!(code, ErrorCode::BadRequest);
    // The refused publishes left nothing behind.
    let owner = r.owner_address.clone();
    assert!(a.roster().get(&bob).is_some_and(|p| p.streams.is_empty()), "{:?}", a.roster());

    // Subscribe and never answer the offer: a handshake that vanishes. Bob is removed after the
    // connect timeout (3 s here); the owner's call goes on.
    let ok = c
        .request(|rid| ClientFrame::CallSubscribe {
            rid,
            address: owner.clone(),
            sid: 0,
            audio: true,
            video: true,
            height: None,
        })
        .await
        .unwrap();
    assert!(matches!(ok, ServerFrame::Ok { .. }), "{ok:?}");
    let b2 = bob.clone();
    a.wait_event(
        Duration::from_secs(10),
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Lost, .. } if *address == b2),
    )
    .await
    .unwrap();
    // The owner is still in the call and still sending (audio: with nobody watching, its video
    // layers are paused).
    let n = a.stats().sent.get(&(0, Kind::Audio)).map_or(0, |s| s.frames.iter().sum::<u64>());
    a.wait_until(EVENT, |s| s.sent.get(&(0, Kind::Audio)).is_some_and(|s| s.frames.iter().sum::<u64>() > n + 30))
        .await
        .unwrap();
    assert!(a.is_running() && a.roster().contains_key(&owner));
    let _ = a.drain_notices().into_iter().filter(|n| matches!(n, CallNotice::Ended(_))).count();
}

async fn joining_again_from_another_session_replaces_the_first(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    let mut first = join(&hb, r.gid, auto()).await;
    first.publish_camera(0, PublishOptions::default()).await.unwrap();
    wait_frames(&a, &bob, Kind::Video, 10).await;
    let second = join(&hb, r.gid, auto()).await;
    let b2 = bob.clone();
    first
        .wait_event(
            EVENT,
            |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Replaced, .. } if *address == b2),
        )
        .await
        .unwrap();
    second.publish_camera(0, PublishOptions::default()).await.unwrap();
    let b3 = bob.clone();
    a.wait_event(EVENT, |e| matches!(e, CallEvent::Joined { participant } if participant.address == b3)).await.unwrap();
    let n = frames(&a.stats(), &bob, Kind::Video);
    wait_frames(&a, &bob, Kind::Video, n + 30).await;
}

async fn group_changes_reach_the_call_and_duration_ends_it(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hc, cat) = member_with_pin(&s, &r, "cat@example.org", &r.publisher_pin).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    let mut bc = join(&hb, r.gid, auto()).await;
    bc.publish_camera(0, PublishOptions::default()).await.unwrap();
    let mut cc = join(&hc, r.gid, auto()).await;
    wait_frames(&a, &bob, Kind::Video, 10).await;

    // Bob loses the publish flag in the group: his stream ends at once and he cannot publish again.
    let flags = member::SEND | member::RECV | member::SUBSCRIBE | member::LIST;
    let _: serde_json::Value = r
        .owner
        .post(&format!("/v1/groups/{}/members", r.gid), &json!({"addresses": [bob], "flags": flags}))
        .await
        .unwrap();
    let b2 = bob.clone();
    a.wait_event(EVENT, |e| matches!(e, CallEvent::Unpublished { address, reason: StreamEndReason::PermissionRevoked, .. } if *address == b2))
        .await
        .unwrap();
    bc.wait_event(EVENT, |e| matches!(e, CallEvent::Updated { permissions, .. } if !permissions.publish))
        .await
        .unwrap();
    let e = bc.publish_camera(0, PublishOptions::default()).await.expect_err("publish after losing the right");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    let n = frames(&a.stats(), &bob, Kind::Video);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(frames(&a.stats(), &bob, Kind::Video), n, "no media from a revoked publisher");

    // Cat is removed from the group: she leaves the call, and everyone sees why.
    r.owner.delete(&format!("/v1/groups/{}/members/{cat}", r.gid)).await.unwrap();
    let c2 = cat.clone();
    cc.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::NotMember, .. } if *address == c2),
    )
    .await
    .unwrap();
    let c3 = cat.clone();
    a.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::NotMember, .. } if *address == c3),
    )
    .await
    .unwrap();

    // A call duration limit ends the participants' calls (a new call picks the setting up).
    drop((a, bc, cc));
    let _: Group = r.owner.patch(&format!("/v1/groups/{}", r.gid), &json!({"call_duration": 2})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    assert_eq!(a.joined().settings.max_duration_secs, Some(2));
    let t = Instant::now();
    let owner = r.owner_address.clone();
    a.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Duration, .. } if *address == owner),
    )
    .await
    .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1500), "ended after {:?}", t.elapsed());
}

async fn garbage_on_the_media_port_disturbs_no_one(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let a = join(&r.owner, r.gid, auto()).await;
    let bc = join(&hb, r.gid, auto()).await;
    bc.publish_camera(0, PublishOptions::default()).await.unwrap();
    wait_frames(&a, &bob, Kind::Video, 30).await;
    let before = a.stats().received[&TrackKey { publisher: bob.clone(), sid: 0, kind: Kind::Video }].clone();

    // Bounded junk from a few sockets on loopback: random bytes, RTP- and DTLS-looking headers,
    // STUN with an unknown or a malformed username, empty datagrams.
    let mut stun_unknown = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    stun_unknown.extend_from_slice(&[9; 12]);
    stun_unknown.extend_from_slice(&[0x00, 0x06, 0x00, 0x07]);
    stun_unknown.extend_from_slice(b"nope:xy\0");
    let mut stun_bad_len = stun_unknown.clone();
    stun_bad_len[3] = 0xff;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let sockets: Vec<std::net::UdpSocket> = (0..4).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for i in 0..20_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 1400) as usize;
        let mut junk: Vec<u8> = (0..len).map(|k| (seed >> (k % 56)) as u8).collect();
        match i % 6 {
            0 => junk = stun_unknown.clone(),
            1 => junk = stun_bad_len.clone(),
            2 if !junk.is_empty() => junk[0] = 0x80, // RTP version 2
            3 if !junk.is_empty() => junk[0] = 22,   // DTLS handshake
            4 => junk.clear(),
            _ => {}
        }
        let _ = sockets[i as usize % sockets.len()].send_to(&junk, s.media_udp);
        if i % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The call goes on: frames keep coming, without new loss.
    let key = TrackKey { publisher: bob.clone(), sid: 0, kind: Kind::Video };
    let st = a.wait_until(MEDIA, |s| s.received[&key].frames >= before.frames + 60).await.expect("media still flows");
    assert!(
        st.received[&key].lost <= before.lost + 2,
        "loss during the junk: {:?} → {:?}",
        before.lost,
        st.received[&key].lost
    );
    assert_eq!(st.subscribe, chorus_client::call::stats::LegState::Connected);
}

/// A publish offer as a browser makes it, without simulcast: Opus on mid 0, video on mid 1
/// preferring VP9 over VP8 (each with its rtx). It never connects: signaling only.
fn plain_offer() -> String {
    let fp = (0..32).map(|i| format!("{:02X}", i * 7 % 256)).collect::<Vec<_>>().join(":");
    let common = format!(
        "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Xq3b\r\na=ice-pwd:Vh1lJc0pTqz2rN8yUe4wKs6m\r\n\
         a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n"
    );
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         a=msid-semantic: WMS s\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{common}a=mid:0\r\na=sendonly\r\na=msid:s a0\r\na=rtcp-mux\r\n\
         a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1111 cname:plain\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 98 99 96 97\r\n{common}a=mid:1\r\na=sendonly\r\na=msid:s v0\r\n\
         a=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:98 VP9/90000\r\na=rtcp-fb:98 nack\r\na=rtcp-fb:98 nack pli\r\n\
         a=fmtp:98 profile-id=0\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\na=rtpmap:96 VP8/90000\r\n\
         a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
         a=ssrc-group:FID 2222 3333\r\na=ssrc:2222 cname:plain\r\na=ssrc:3333 cname:plain\r\n"
    )
}

fn plain_publish(rids: &[&str]) -> ClientFrame {
    ClientFrame::CallPublish(chorus_proto::call::PublishRequest {
        rid: None,
        sid: 0,
        audio: true,
        video: true,
        screen: false,
        rids: rids.iter().map(|r| r.to_string()).collect(),
        height: Some(720),
        muted: Default::default(),
        audio_mid: Some("0".into()),
        video_mid: Some("1".into()),
        sdp: plain_offer(),
    })
}

/// The payload types listed on the `m=` line of `kind` in `sdp`.
fn m_line_pts<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    let line = sdp.lines().find(|l| l.starts_with(&format!("m={kind} "))).unwrap_or_else(|| panic!("no {kind}: {sdp}"));
    line.split(' ').skip(3).collect()
}

/// §15.4: the one who leaves gets its own `left` (reason `left`), the last call frame, before the
/// `ok`; the others see it leave.
async fn leaving_tells_the_leaver_too(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    let mut c = raw(&hb).await;
    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    c.send(&ClientFrame::CallLeave { rid: Some("bye".into()) }).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let f = c.next(EVENT).await.expect("the answer to call_leave");
        let done = matches!(&f, ServerFrame::Ok { rid } if rid.as_deref() == Some("bye"));
        seen.push(f);
        if done {
            break;
        }
    }
    let left = seen.iter().position(|f| {
        matches!(f, ServerFrame::CallEvent { event: CallEvent::Left { address, reason: CallLeaveReason::Left, .. }, .. }
            if *address == bob)
    });
    assert!(left.is_some(), "no left for the leaver before its ok: {seen:?}");
    let b2 = bob.clone();
    a.wait_event(
        EVENT,
        |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::Left, .. } if *address == b2),
    )
    .await
    .unwrap();
    // Out of the call: nothing more comes, and a call frame is answered not_found.
    let (code, _) =
        expect_error(&mut c, ClientFrame::CallMute { rid: None, sid: 0, audio: Some(true), video: None }).await;
    assert_eq!(code, ErrorCode::NotFound);
    // And it may join again.
    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
}

/// `call_join` again from a session already in that call replaces its place cleanly: the others
/// see `left` with reason `replaced` (never `lost`) and `joined`; the session gets `call_joined`.
async fn joining_again_from_the_same_session_is_a_clean_replace(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    let mut c = raw(&hb).await;
    for _ in 0..2 {
        let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
        assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    }
    let b2 = bob.clone();
    let e = a.wait_event(EVENT, |e| matches!(e, CallEvent::Left { address, .. } if *address == b2)).await.unwrap();
    assert!(matches!(e, CallEvent::Left { reason: CallLeaveReason::Replaced, .. }), "{e:?}");
    let b3 = bob.clone();
    a.wait_event(EVENT, |e| matches!(e, CallEvent::Joined { participant } if participant.address == b3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.roster().contains_key(&bob), "{:?}", a.roster().keys());
    // Joining another call from a session in one leaves the first as `left`, not `lost`.
    let created: chorus_proto::rest::CreatedGroup =
        r.owner.post("/v1/groups", &json!({"name": "Other", "room": true})).await.unwrap();
    let _: Group = hb
        .post(&format!("/v1/groups/{}/join", created.group.gid), &json!({ "pin": created.pins[0].pin }))
        .await
        .unwrap();
    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: created.group.gid }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let b4 = bob.clone();
    let e = a.wait_event(EVENT, |e| matches!(e, CallEvent::Left { address, .. } if *address == b4)).await.unwrap();
    assert!(matches!(e, CallEvent::Left { reason: CallLeaveReason::Left, .. }), "{e:?}");
}

/// `rids` must name the layers the offer simulcasts: three claimed over an offer without
/// `a=simulcast` is refused (`bad_request`) and nothing is published; the same offer without the
/// claim is one layer.
async fn rids_are_checked_against_the_offer(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let a = join(&r.owner, r.gid, auto()).await;
    let mut c = raw(&hb).await;
    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let (code, msg) = expect_error(&mut c, plain_publish(&["q", "h", "f"])).await;
    assert_eq!(code, ErrorCode::BadRequest, "{msg}");
    assert!(msg.contains("simulcast"), "{msg}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.roster().get(&bob).is_some_and(|p| p.streams.is_empty()), "{:?}", a.roster());
    let f = c.request(|rid| plain_publish(&[]).with_rid(rid)).await.unwrap();
    match f {
        ServerFrame::CallPublished { stream, .. } => assert_eq!(stream.layers, 1),
        other => panic!("expected call_published, got {other:?}"),
    }
}

/// One codec per track: the publish answer keeps the first codec of the offer the server forwards
/// (VP9 here), the subscriber's offer lists only it, and `tracks` names it.
async fn subscribe_offer_lists_only_the_publishers_codec(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let mut p = raw(&hb).await;
    let joined = p.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let answer = match p.request(|rid| plain_publish(&[]).with_rid(rid)).await.unwrap() {
        ServerFrame::CallPublished { sdp, .. } => sdp,
        other => panic!("expected call_published, got {other:?}"),
    };
    assert_eq!(m_line_pts(&answer, "video"), vec!["98", "99"], "VP9 and its rtx only: {answer}");
    assert!(!answer.contains("VP8/90000"), "{answer}");
    assert_eq!(m_line_pts(&answer, "audio"), vec!["111"], "{answer}");

    let mut o = raw(&r.owner).await;
    let joined = o.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let ok = o
        .request(|rid| ClientFrame::CallSubscribe {
            rid,
            address: bob.clone(),
            sid: 0,
            audio: true,
            video: true,
            height: None,
        })
        .await
        .unwrap();
    assert!(matches!(ok, ServerFrame::Ok { .. }), "{ok:?}");
    let (sdp, tracks) = match o.expect(EVENT, |f| matches!(f, ServerFrame::CallOffer { .. })).await.unwrap() {
        ServerFrame::CallOffer { sdp, tracks, .. } => (sdp, tracks),
        _ => unreachable!(),
    };
    let codecs: Vec<(&str, &str)> = tracks.iter().map(|t| (t.mid.as_str(), t.codec.as_str())).collect();
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    assert!(tracks.iter().any(|t| t.codec == "opus") && tracks.iter().any(|t| t.codec == "VP9"), "{codecs:?}");
    let video_pts = m_line_pts(&sdp, "video");
    assert_eq!(video_pts.len(), 2, "one codec and its rtx: {sdp}");
    assert!(sdp.contains("VP9/90000"), "{sdp}");
    for other in ["VP8/90000", "H264/90000", "AV1/90000", "H265/90000"] {
        assert!(!sdp.contains(other), "{other} offered: {sdp}");
    }
    assert_eq!(m_line_pts(&sdp, "audio").len(), 1, "{sdp}");
}

/// Bob restarts ICE mid-call (`call_restart`: a new publish offer, a new subscribe offer, both
/// with new credentials). DTLS and media go on: for 8 s after it, longer than ICE takes to give
/// up on checks nobody answers, both keep receiving each other's audio and video without a gap
/// of a second, and neither connection of Bob's is ever reported disconnected.
async fn an_ice_restart_mid_call_keeps_media_flowing(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let a = join(&r.owner, r.gid, auto()).await;
    let mut bc = join(&hb, r.gid, auto()).await;
    a.publish_camera(0, PublishOptions::default()).await.unwrap();
    bc.publish_camera(0, PublishOptions::default()).await.unwrap();
    wait_frames(&a, &bob, Kind::Video, 30).await;
    wait_frames(&bc, &r.owner_address, Kind::Video, 30).await;
    let _ = bc.drain_notices();

    bc.restart_ice().await.expect("the restart is answered");
    let offered = bc.wait_for(EVENT, |n| matches!(n, CallNotice::Offer(_))).await;
    assert!(offered.is_ok(), "the subscribe connection is offered anew");
    let mut gaps = [Duration::ZERO; 4];
    let keys = [(&a, bob.as_str(), Kind::Video), (&a, bob.as_str(), Kind::Audio)];
    let back = [(&bc, r.owner_address.as_str(), Kind::Video), (&bc, r.owner_address.as_str(), Kind::Audio)];
    let mut last: Vec<(Instant, u64)> =
        keys.iter().chain(back.iter()).map(|(c, p, k)| (Instant::now(), frames(&c.stats(), p, *k))).collect();
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, (c, p, k)) in keys.iter().chain(back.iter()).enumerate() {
            let f = frames(&c.stats(), p, *k);
            if f > last[i].1 {
                last[i] = (Instant::now(), f);
            }
            gaps[i] = gaps[i].max(last[i].0.elapsed());
        }
    }
    eprintln!("longest gaps after the ICE restart (owner gets video, audio; Bob gets video, audio): {gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(1)), "{gaps:?}");
    let notices = bc.drain_notices();
    let down =
        notices.iter().find(|n| matches!(n, CallNotice::Leg { state: LegState::Disconnected | LegState::Closed, .. }));
    assert!(down.is_none(), "{down:?} in {notices:?}");
    assert!(bc.is_running() && a.roster().contains_key(&bob));
}

macro_rules! sqlite_only {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let _slot = super::common::call_slot();
                super::$name(super::Backend::Sqlite).await
            }
        }
    )*};
}

sqlite_only!(
    three_participants_each_receive_the_other_two,
    view_only_member_cannot_publish_and_nothing_of_it_reaches_anyone,
    member_without_subscribe_receives_nothing,
    subscriber_asking_small_gets_the_low_layer_and_capped_one_steps_down,
    talking_events_follow_who_speaks,
    admin_mutes_hangs_up_and_removes,
    leaving_or_vanishing_updates_everyones_roster,
    bad_signaling_gets_errors_and_hurts_no_one,
    joining_again_from_another_session_replaces_the_first,
    group_changes_reach_the_call_and_duration_ends_it,
    garbage_on_the_media_port_disturbs_no_one,
    leaving_tells_the_leaver_too,
    joining_again_from_the_same_session_is_a_clean_replace,
    rids_are_checked_against_the_offer,
    subscribe_offer_lists_only_the_publishers_codec,
    an_ice_restart_mid_call_keeps_media_flowing,
);
