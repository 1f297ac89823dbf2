//! Pins bind (issue 10): the permissions a member got from a pin (or from `/backend` member flags)
//! are what the server enforces, whatever the group's mode, for every way a room can be made:
//! `/api setgroup`, `/backend groupadd` + pins, `/v1` `POST /groups` with and without `room`, and
//! `/v1` `createGroup({flags: 0})` + two `addPin`s as the Mesibo bundle sends them.
//!
//! Before this, rooms made with group flags 0 let every member publish: a member who joined with
//! the viewer pin published and everyone received their camera, while `joingroup` said
//! `publish: 0`. Here a viewer's `call_publish` is refused `forbidden`, nothing of it reaches
//! anyone, `joingroup`'s `publish` says what the call allows, a publisher-pin member publishes,
//! and the send/receive flags of a pin hold for messages.

mod common;

use std::time::Duration;

use chorus_client::call::stats::{CallStats, Kind};
use chorus_client::call::{CallOptions, PublishOptions};
use chorus_client::Http;
use chorus_proto::call::{CallEvent, StreamEndReason};
use chorus_proto::flags::{group, member, status};
use chorus_proto::rest::{CreatedGroup, Group, HistoryPage, LoginSession, Pin};
use chorus_proto::ws::{Message, ServerFrame};
use chorus_proto::ErrorCode;
use common::calls::{frames, join, wait_frames};
use common::{Backend, Server, ADMIN_TOKEN, QUIET};
use serde_json::{json, Value};

const EVENT: Duration = Duration::from_secs(10);

/// The publisher pin's flags (Mesibo's `SEND|RECV|PUBL|SUBS|LIST`).
const PUBLISHER: u32 = member::ALL;
/// The view-only pin's flags (`SEND|RECV|SUBS|LIST`).
const VIEWER: u32 = member::SEND | member::RECV | member::SUBSCRIBE | member::LIST;

/// The ways a room can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `/api` `op=setgroup` (the conferencing demo backend): group flags 0, pin and spin.
    Api,
    /// `/backend` `groupadd` with the owner as an admin member (flags 0), then the owner adds the
    /// two pins.
    Backend,
    /// `/v1` `POST /groups` with `room: true`: Chorus's default policy and the two pins.
    V1Room,
    /// `/v1` `POST /groups` without `room`, then the owner adds the two pins.
    V1Plain,
    /// What the Mesibo bundle sends for `createGroup({flags: 0, callFlags})` + two `addPin`s.
    MesiboJs,
}

const PATHS: [Path; 5] = [Path::Api, Path::Backend, Path::V1Room, Path::V1Plain, Path::MesiboJs];

struct Room {
    path: Path,
    gid: i64,
    owner: Http,
    publisher_pin: String,
    viewer_pin: String,
}

async fn user(s: &Server, email: &str) -> (LoginSession, Http) {
    s.login(email, email.split('@').next().unwrap()).await
}

/// `/api` by POST with a JSON body.
async fn api(s: &Server, v: Value) -> Value {
    let r = reqwest::Client::new().post(format!("{}/api", s.base)).json(&v).send().await.expect("POST /api");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

/// Adds a pin as the room's owner would through `/v1` (the SDK's `addPin` sends `{flags}` only).
async fn add_pin(owner: &Http, gid: i64, flags: u32, label: Option<&str>) -> String {
    let mut body = json!({ "flags": flags });
    if let Some(l) = label {
        body["label"] = json!(l);
    }
    let p: Pin = owner.post(&format!("/v1/groups/{gid}/pins"), &body).await.expect("owner adds a pin");
    assert_eq!(p.flags, flags);
    p.pin
}

/// Makes a room by `path`; the owner is `owner-<tag>@example.org`.
async fn make_room(s: &Server, path: Path, tag: &str) -> Room {
    let (sess, owner) = user(s, &format!("owner-{tag}@example.org")).await;
    let owner_address = sess.user.address.clone();
    let (gid, publisher_pin, viewer_pin, flags) = match path {
        Path::Api => {
            let r = api(s, json!({"op": "setgroup", "token": sess.token, "name": format!("Api {tag}")})).await;
            assert_eq!(r["result"], json!("OK"), "{r}");
            assert_eq!(r["publish"], json!(1), "the creator publishes: {r}");
            let gid = r["gid"].as_i64().unwrap();
            (gid, r["pin"].as_str().unwrap().to_string(), r["spin"].as_str().unwrap().to_string(), 0)
        }
        Path::Backend => {
            let r = s
                .backend(json!({"op": "groupadd", "token": ADMIN_TOKEN,
                                "group": {"name": format!("Backend {tag}"), "flag": 0, "m": owner_address, "admin": 1}}))
                .await;
            assert_eq!(r["result"], json!(true), "{r}");
            let gid = r["group"]["gid"].as_i64().unwrap();
            let p = add_pin(&owner, gid, PUBLISHER, Some("publisher")).await;
            let v = add_pin(&owner, gid, VIEWER, Some("viewer")).await;
            (gid, p, v, 0)
        }
        Path::V1Room => {
            let c: CreatedGroup =
                owner.post("/v1/groups", &json!({"name": format!("Room {tag}"), "room": true})).await.unwrap();
            assert_eq!((c.pins[0].flags, c.pins[1].flags), (PUBLISHER, VIEWER));
            (c.group.gid.get(), c.pins[0].pin.clone(), c.pins[1].pin.clone(), group::ALL_SELECTED)
        }
        Path::V1Plain => {
            let c: CreatedGroup = owner.post("/v1/groups", &json!({"name": format!("Plain {tag}")})).await.unwrap();
            assert!(c.pins.is_empty());
            let p = add_pin(&owner, c.group.gid.get(), PUBLISHER, None).await;
            let v = add_pin(&owner, c.group.gid.get(), VIEWER, None).await;
            (c.group.gid.get(), p, v, group::ALL_SELECTED)
        }
        Path::MesiboJs => {
            // MESIBO_CALLFLAG_SCREEN|TALKING|VALID|AUDIO|VIDEO, as the conferencing app creates rooms.
            let c: CreatedGroup = owner
                .post("/v1/groups", &json!({"name": format!("Mesibo {tag}"), "flags": 0, "call_flags": 0x8107}))
                .await
                .unwrap();
            let p = add_pin(&owner, c.group.gid.get(), PUBLISHER, None).await;
            let v = add_pin(&owner, c.group.gid.get(), VIEWER, None).await;
            (c.group.gid.get(), p, v, 0)
        }
    };
    let g: Group = owner.get(&format!("/v1/groups/{gid}")).await.unwrap();
    assert_eq!(g.flags, flags, "{path:?} makes groups with flags {flags:#x}");
    Room { path, gid, owner, publisher_pin, viewer_pin }
}

/// Logs `email` in and joins `r` with `pin` the way its path's app would (`/api joingroup` for
/// `/api` rooms, `/v1 …/join` otherwise); then asks `/api joingroup` again, whose `publish` must
/// be `publish` whatever the path. Returns the member's client and address.
async fn join_with(s: &Server, r: &Room, email: &str, pin: &str, publish: bool) -> (Http, String) {
    let (sess, h) = user(s, email).await;
    if r.path != Path::Api {
        let g: Group = h.post(&format!("/v1/groups/{}/join", r.gid), &json!({ "pin": pin })).await.unwrap();
        assert_eq!(g.membership.map(|m| m.flags), Some(if publish { PUBLISHER } else { VIEWER }));
    }
    let j = api(s, json!({"op": "joingroup", "token": sess.token, "gid": r.gid, "pin": pin})).await;
    assert_eq!(j["result"], json!("OK"), "{:?}: {j}", r.path);
    assert_eq!(j["publish"], json!(i32::from(publish)), "{:?}: joingroup's publish is the truth: {j}", r.path);
    (h, sess.user.address)
}

fn received_from(s: &CallStats, publisher: &str) -> u64 {
    s.received.iter().filter(|(k, _)| k.publisher == publisher).map(|(_, t)| t.frames).sum()
}

fn auto() -> CallOptions {
    CallOptions { subscribe_all: true, ..Default::default() }
}

/// In a call of `r`: the publisher-pin member publishes and is received; the viewer-pin member is
/// told it may not publish, its `call_publish` (camera, and audio only) is refused `forbidden`,
/// it receives the publisher, and nothing of it reaches anyone.
async fn viewer_cannot_publish_publisher_can(s: &Server, r: &Room, tag: &str) -> (Http, String) {
    let (hp, publisher) = join_with(s, r, &format!("pub-{tag}@example.org"), &r.publisher_pin, true).await;
    let (hv, viewer) = join_with(s, r, &format!("view-{tag}@example.org"), &r.viewer_pin, false).await;
    let owner = join(&r.owner, r.gid, auto()).await;
    let pc = join(&hp, r.gid, auto()).await;
    assert!(pc.permissions().publish, "{:?}: the publisher pin publishes", r.path);
    pc.publish_camera(0, PublishOptions::default()).await.expect("the publisher-pin member publishes");
    let vc = join(&hv, r.gid, auto()).await;
    let p = vc.permissions();
    assert!(!p.publish && p.subscribe && p.list, "{:?}: viewer permissions {p:?}", r.path);
    let e = vc.publish_camera(0, PublishOptions::default()).await.expect_err("viewer publishes the camera");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{:?}: {e}", r.path);
    let e = vc.publish_camera(1, PublishOptions { video: false, ..Default::default() }).await.expect_err("audio");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{:?}: {e}", r.path);
    // Everyone receives the publisher; the viewer too.
    wait_frames(&owner, &publisher, Kind::Video, 20).await;
    wait_frames(&vc, &publisher, Kind::Video, 20).await;
    // Nothing from the viewer reaches anyone, and it never got to send.
    tokio::time::sleep(QUIET).await;
    for c in [&owner, &pc] {
        let st = c.stats();
        assert_eq!(received_from(&st, &viewer), 0, "{:?}: {} received the viewer: {st:#?}", r.path, c.address());
        assert!(c.roster().get(&viewer).is_some_and(|p| p.streams.is_empty()), "{:?}", r.path);
    }
    assert!(vc.stats().sent.values().all(|s| s.frames.iter().sum::<u64>() == 0), "{:?}: the viewer sent", r.path);
    for c in [owner, pc, vc] {
        c.leave().await.expect("leave");
    }
    (hp, publisher)
}

async fn every_path_every_pin_in_calls(b: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(b).await;
    for (i, path) in PATHS.into_iter().enumerate() {
        let r = make_room(&s, path, &format!("c{i}")).await;
        viewer_cannot_publish_publisher_can(&s, &r, &format!("c{i}")).await;
    }
}

/// A permission change mid-call takes effect on the media path in a flags-0 group: `/backend`
/// `groupeditmembers canpub=0` ends the member's stream and stops its media; a viewer who joins
/// again with the publisher pin may publish at once.
async fn mid_call_changes_bind_in_a_flags_0_group(b: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(b).await;
    let r = make_room(&s, Path::Backend, "m").await;
    let (hp, publisher) = join_with(&s, &r, "pub-m@example.org", &r.publisher_pin, true).await;
    let (hv, viewer) = join_with(&s, &r, "view-m@example.org", &r.viewer_pin, false).await;
    let mut owner = join(&r.owner, r.gid, auto()).await;
    let mut pc = join(&hp, r.gid, auto()).await;
    pc.publish_camera(0, PublishOptions::default()).await.expect("publish");
    wait_frames(&owner, &publisher, Kind::Video, 20).await;

    let e = s
        .backend(json!({"op": "groupeditmembers", "token": ADMIN_TOKEN,
                        "group": {"gid": r.gid, "m": publisher, "canpub": 0, "delete": 0}}))
        .await;
    assert_eq!(e["result"], json!(true), "{e}");
    let p2 = publisher.clone();
    owner
        .wait_event(EVENT, |e| matches!(e, CallEvent::Unpublished { address, reason: StreamEndReason::PermissionRevoked, .. } if *address == p2))
        .await
        .expect("the stream ends for the others");
    pc.wait_event(EVENT, |e| matches!(e, CallEvent::Updated { permissions, .. } if !permissions.publish))
        .await
        .expect("the member is told");
    let e = pc.publish_camera(0, PublishOptions::default()).await.expect_err("publish after canpub=0");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = frames(&owner.stats(), &publisher, Kind::Video);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(frames(&owner.stats(), &publisher, Kind::Video), n, "media from a member without publish");

    // The viewer joins again with the publisher pin: it may publish now, in the same call.
    let mut vc = join(&hv, r.gid, auto()).await;
    assert!(!vc.permissions().publish);
    let _: Group = hv.post(&format!("/v1/groups/{}/join", r.gid), &json!({"pin": r.publisher_pin})).await.unwrap();
    vc.wait_event(EVENT, |e| matches!(e, CallEvent::Updated { permissions, .. } if permissions.publish))
        .await
        .expect("the viewer is told it may publish");
    vc.publish_camera(0, PublishOptions::default()).await.expect("publish after the publisher pin");
    wait_frames(&owner, &viewer, Kind::Video, 20).await;
}

fn texts(frames: &[ServerFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| if let ServerFrame::Message(Message { text, .. }) = f { text.clone() } else { None })
        .collect()
}

/// For every path: a pin's send and receive flags bind for messages. The viewer pin (send and
/// receive) talks and listens; a receive-only pin cannot send (`forbidden`, `NOT_MEMBER`); a
/// send-only pin sends but receives nothing and may not read the history.
async fn every_path_send_and_receive_flags_bind(b: Backend) {
    let s = Server::start(b).await;
    for (i, path) in PATHS.into_iter().enumerate() {
        let tag = format!("m{i}");
        let r = make_room(&s, path, &tag).await;
        let listen_pin = add_pin(&r.owner, r.gid, member::RECV | member::SUBSCRIBE | member::LIST, None).await;
        let talk_pin = add_pin(&r.owner, r.gid, member::SEND, None).await;
        let (hv, _) = join_with(&s, &r, &format!("view-{tag}@example.org"), &r.viewer_pin, false).await;
        let (_, hl) = user(&s, &format!("listen-{tag}@example.org")).await;
        let (_, ht) = user(&s, &format!("talk-{tag}@example.org")).await;
        for (h, pin) in [(&hl, &listen_pin), (&ht, &talk_pin)] {
            let _: Group = h.post(&format!("/v1/groups/{}/join", r.gid), &json!({ "pin": pin })).await.unwrap();
        }
        let (mut co, _) = s.connect(&r.owner).await;
        let (mut cv, _) = s.connect(&hv).await;
        let (mut cl, _) = s.connect(&hl).await;
        let (mut ct, _) = s.connect(&ht).await;

        let ok = |f: &ServerFrame| matches!(f, ServerFrame::Sent { .. });
        assert!(ok(&co.send_text(None, Some(r.gid), "o", "owner").await.unwrap()), "{path:?}");
        assert!(ok(&cv.send_text(None, Some(r.gid), "v", "viewer").await.unwrap()), "{path:?}");
        match cl.send_text(None, Some(r.gid), "l", "listener").await.unwrap() {
            ServerFrame::Error { code, status: st, .. } => {
                assert_eq!((code, st), (ErrorCode::Forbidden, Some(status::NOT_MEMBER)), "{path:?}")
            }
            other => panic!("{path:?}: a receive-only member sent: {other:?}"),
        }
        assert!(ok(&ct.send_text(None, Some(r.gid), "t", "talker").await.unwrap()), "{path:?}");

        assert_eq!(texts(&co.drain(QUIET).await), ["viewer", "talker"], "{path:?}: the owner");
        assert_eq!(texts(&cv.drain(QUIET).await), ["owner", "talker"], "{path:?}: the viewer");
        assert_eq!(texts(&cl.drain(QUIET).await), ["owner", "viewer", "talker"], "{path:?}: the listener");
        assert!(texts(&ct.drain(QUIET).await).is_empty(), "{path:?}: a send-only member received");
        let e = ht.get::<HistoryPage>(&format!("/v1/groups/{}/messages", r.gid)).await.unwrap_err();
        assert_eq!(e.code(), Some("forbidden"), "{path:?}: {e:?}");
        let h: HistoryPage = hl.get(&format!("/v1/groups/{}/messages", r.gid)).await.unwrap();
        assert_eq!(h.messages.len(), 3, "{path:?}");
    }
}

both_backends!(
    every_path_every_pin_in_calls,
    mid_call_changes_bind_in_a_flags_0_group,
    every_path_send_and_receive_flags_bind,
);
