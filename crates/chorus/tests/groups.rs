//! Groups, members, permissions and pins over the real REST API.

mod common;

use chorus_proto::flags::{admin, member};
use chorus_proto::rest::{CreatedGroup, Group, Member, Pin};
use chorus_proto::GroupId;
use common::{Backend, Server};
use serde_json::json;

async fn room_with_two_pins_and_their_rights(b: Backend) {
    let s = Server::start(b).await;
    let (owner, ho) = s.login("owner@example.org", "Owner").await;
    let (_, hp) = s.login("pub@example.org", "Publisher").await;
    let (_, hv) = s.login("view@example.org", "Viewer").await;
    let room: CreatedGroup =
        ho.post("/v1/groups", &json!({"name": "Standup", "room": true, "video_resolution": 3})).await.unwrap();
    let gid = room.group.gid;
    assert!(gid >= GroupId(1000));
    assert_eq!(room.group.owner, owner.user.address);
    assert_eq!(room.group.video_resolution, 3);
    let own = room.group.membership.unwrap();
    assert_eq!(own.admin_flags & admin::OWNER, admin::OWNER);
    assert_eq!(room.pins.len(), 2);
    let (ppin, vpin) = (&room.pins[0], &room.pins[1]);
    for p in [ppin, vpin] {
        assert!(p.pin.len() >= 8 && p.pin.bytes().all(|c| c.is_ascii_digit()), "pin {}", p.pin);
    }
    assert_ne!(ppin.pin, vpin.pin);
    assert_eq!((ppin.label.as_str(), vpin.label.as_str()), ("publisher", "viewer"));

    // Non-members cannot see the group.
    let e = hp.get::<Group>(&format!("/v1/groups/{gid}")).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));

    let g: Group = hp.post(&format!("/v1/groups/{gid}/join"), &json!({"pin": ppin.pin})).await.unwrap();
    let m = g.membership.unwrap();
    assert_eq!(m.flags, member::ALL, "publisher pin: send, receive, publish, subscribe, list");
    assert_eq!(m.admin_flags, 0);
    let g: Group = hv.post(&format!("/v1/groups/{gid}/join"), &json!({"pin": vpin.pin})).await.unwrap();
    let m = g.membership.unwrap();
    assert_eq!(m.flags & member::PUBLISH, 0, "view-only pin cannot publish");
    assert_ne!(m.flags & member::SUBSCRIBE, 0);
    assert_ne!(m.flags & member::LIST, 0);

    // Joining again with the view-only pin never takes rights away.
    let g: Group = hp.post(&format!("/v1/groups/{gid}/join"), &json!({"pin": vpin.pin})).await.unwrap();
    assert_eq!(g.membership.unwrap().flags, member::ALL);

    let members: Vec<Member> = hv.get(&format!("/v1/groups/{gid}/members")).await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| !m.address.contains('@')), "members never see emails");

    // "My rooms" lists it for each of them.
    for h in [&ho, &hp, &hv] {
        let mine: Vec<Group> = h.get("/v1/groups").await.unwrap();
        assert_eq!(mine.iter().map(|g| g.gid).collect::<Vec<_>>(), vec![gid]);
    }
}

async fn wrong_pins_are_refused_and_rate_limited(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_PIN_FAILURES_PER_USER", "3")]).await;
    let (_, ho) = s.login("o@example.org", "O").await;
    let (_, hx) = s.login("x@example.org", "X").await;
    let (_, hy) = s.login("y@example.org", "Y").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let good = &room.pins[0].pin;
    for bad in ["00000000", "abc", ""] {
        let e = hx.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": bad})).await.unwrap_err();
        assert_eq!((e.status, e.code()), (403, Some("pin_invalid")), "pin {bad:?}");
    }
    // Limit reached: even the right pin is refused for this user now.
    let e = hx.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": good})).await.unwrap_err();
    assert_eq!((e.status, e.code()), (429, Some("rate_limited")));
    // Another user is not affected; a pin of one group does not open another.
    let other: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Other", "room": true})).await.unwrap();
    let e = hy.post::<Group>(&format!("/v1/groups/{}/join", other.group.gid), &json!({"pin": good})).await.unwrap_err();
    assert_eq!(e.code(), Some("pin_invalid"));
    hy.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": good})).await.unwrap();
    // Per IP too.
    let s2 = Server::start_with(b, &[("CHORUS_PIN_FAILURES_PER_IP", "2")]).await;
    let (_, a) = s2.login("a@example.org", "A").await;
    let (_, c) = s2.login("c@example.org", "C").await;
    let r: CreatedGroup = a.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let path = format!("/v1/groups/{}/join", r.group.gid);
    for _ in 0..2 {
        c.post::<Group>(&path, &json!({"pin": "11111111"})).await.unwrap_err();
    }
    let e = a.post::<Group>(&path, &json!({"pin": "11111111"})).await.unwrap_err();
    assert_eq!(e.code(), Some("rate_limited"), "same IP, other user");
}

async fn admins_manage_pins_and_members(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = s.login("o@example.org", "O").await;
    let (m1, h1) = s.login("m1@example.org", "M1").await;
    let (_, h2) = s.login("m2@example.org", "M2").await;
    let (_, h3) = s.login("m3@example.org", "M3").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let pins: Vec<Pin> = ho.get(&format!("/v1/groups/{gid}/pins")).await.unwrap();
    assert_eq!(pins, room.pins);

    // A limited, expiring pin.
    let once: Pin = ho
        .post(
            &format!("/v1/groups/{gid}/pins"),
            &json!({"flags": member::SEND | member::RECV, "uses": 1, "expires_in": 60, "label": "guest"}),
        )
        .await
        .unwrap();
    assert_eq!(once.uses_left, Some(1));
    assert!(once.expires_at.is_some());
    h1.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": once.pin})).await.unwrap();
    let e = h2.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": once.pin})).await.unwrap_err();
    assert_eq!(e.code(), Some("pin_invalid"), "used up");

    // Members without admin rights cannot list, create or revoke pins, nor add members.
    let e = h1.get::<Vec<Pin>>(&format!("/v1/groups/{gid}/pins")).await.unwrap_err();
    assert_eq!((e.status, e.code()), (403, Some("forbidden")));
    let e = h1.post::<Pin>(&format!("/v1/groups/{gid}/pins"), &json!({"flags": 31})).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    let e = h1.delete(&format!("/v1/groups/{gid}/pins/{}", room.pins[0].pin)).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));

    // Revoke: the pin stops working.
    ho.delete(&format!("/v1/groups/{gid}/pins/{}", room.pins[1].pin)).await.unwrap();
    let e = h3.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": room.pins[1].pin})).await.unwrap_err();
    assert_eq!(e.code(), Some("pin_invalid"));
    let e = ho.delete(&format!("/v1/groups/{gid}/pins/{}", room.pins[1].pin)).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));

    // Make m1 an admin who may add members but not remove admins.
    ho.post::<serde_json::Value>(&format!("/v1/groups/{gid}/members"), &json!({"addresses": [m1.user.address], "flags": member::ALL | member::ADMIN, "admin_flags": admin::ADD_MEMBER})).await.unwrap();
    let me2: chorus_proto::ws::SessionUser = h2.get("/v1/me").await.unwrap();
    h1.post::<serde_json::Value>(
        &format!("/v1/groups/{gid}/members"),
        &json!({"addresses": [me2.address], "flags": member::SEND | member::RECV}),
    )
    .await
    .unwrap();
    let members: Vec<Member> = h2.get(&format!("/v1/groups/{gid}/members")).await.unwrap();
    assert!(members.iter().any(|m| m.address == me2.address && m.flags == member::SEND | member::RECV));
    // m1 cannot grant admin, nor strip the owner, nor remove members.
    let owner_addr = room.group.owner.clone();
    let e = h1
        .post::<serde_json::Value>(
            &format!("/v1/groups/{gid}/members"),
            &json!({"addresses": [me2.address], "flags": member::ADMIN | member::ALL}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    let e = h1
        .post::<serde_json::Value>(
            &format!("/v1/groups/{gid}/members"),
            &json!({"addresses": [owner_addr], "flags": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    let e = h1.delete(&format!("/v1/groups/{gid}/members/{}", me2.address)).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    // All-or-nothing: one unknown address adds nobody.
    let me3: chorus_proto::ws::SessionUser = h3.get("/v1/me").await.unwrap();
    let e = ho
        .post::<serde_json::Value>(
            &format!("/v1/groups/{gid}/members"),
            &json!({"addresses": [me3.address, "nobody-here"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
    assert!(h3.get::<Group>(&format!("/v1/groups/{gid}")).await.is_err(), "m3 was not added");
    // Leave; the owner cannot leave; owner removes m2; owner deletes the group.
    h1.post::<serde_json::Value>(&format!("/v1/groups/{gid}/leave"), &json!({})).await.unwrap();
    assert!(h1.get::<Group>(&format!("/v1/groups/{gid}")).await.is_err());
    let e = ho.post::<serde_json::Value>(&format!("/v1/groups/{gid}/leave"), &json!({})).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    ho.delete(&format!("/v1/groups/{gid}/members/{}", me2.address)).await.unwrap();
    ho.delete(&format!("/v1/groups/{gid}")).await.unwrap();
    assert_eq!(ho.get::<Group>(&format!("/v1/groups/{gid}")).await.unwrap_err().code(), Some("not_found"));
}

async fn settings_are_validated(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_MAX_GROUP_MEMBERS", "2")]).await;
    let (_, ho) = s.login("o@example.org", "O").await;
    let bad = [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "ok", "flags": 0x4000_0000u32}),
        json!({"name": "ok", "video_resolution": 7}),
        json!({"name": "ok", "call_duration": 999999999}),
        json!({"name": "ok", "bogus": 1}),
        json!({"name": 5}),
        json!({"name": "ok", "live": "yes"}),
    ];
    for body in bad {
        let e = ho.post::<CreatedGroup>("/v1/groups", &body).await.unwrap_err();
        assert_eq!((e.status, e.code()), (400, Some("bad_request")), "{body}");
    }
    assert!(ho.get::<Vec<Group>>("/v1/groups").await.unwrap().is_empty(), "nothing half-created");
    let g: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Ok", "room": true})).await.unwrap();
    let gid = g.group.gid;
    let up: Group = ho
        .patch(&format!("/v1/groups/{gid}"), &json!({"name": "Renamed", "call_flags": 0x7, "call_duration": 3600}))
        .await
        .unwrap();
    assert_eq!((up.name.as_str(), up.call_flags, up.call_duration), ("Renamed", 0x7, 3600));
    // Live mode is a setting like the others: off by default, stored, and left alone by changes
    // that do not name it.
    assert!(!g.group.live && !up.live);
    let up: Group = ho.patch(&format!("/v1/groups/{gid}"), &json!({"live": true})).await.unwrap();
    assert!(up.live);
    let up: Group = ho.patch(&format!("/v1/groups/{gid}"), &json!({"name": "Stage"})).await.unwrap();
    assert!(up.live && ho.get::<Group>(&format!("/v1/groups/{gid}")).await.unwrap().live);
    let live: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Show", "live": true})).await.unwrap();
    assert!(live.group.live);
    let e = ho.get::<Group>("/v1/groups/notanumber").await.unwrap_err();
    assert_eq!((e.status, e.code()), (400, Some("bad_request")));
    let e = ho.post::<Pin>(&format!("/v1/groups/{gid}/pins"), &json!({"flags": 0x40000})).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"));
    let e = ho.post::<Pin>(&format!("/v1/groups/{gid}/pins"), &json!({"flags": 3, "uses": 0})).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"));
    // Group size limit.
    let (_, h1) = s.login("a@example.org", "A").await;
    let (_, h2) = s.login("b@example.org", "B").await;
    h1.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": g.pins[0].pin})).await.unwrap();
    let e = h2.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": g.pins[0].pin})).await.unwrap_err();
    assert_eq!((e.status, e.code()), (422, Some("limit_exceeded")));
    // Wrong method gets the JSON error shape.
    let r = reqwest::Client::new().put(format!("{}/v1/groups", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "method_not_allowed");
}

both_backends!(
    room_with_two_pins_and_their_rights,
    wrong_pins_are_refused_and_rate_limited,
    admins_manage_pins_and_members,
    settings_are_validated
);

/// Members hear about changes to their groups over the WebSocket.
async fn members_hear_group_events(b: Backend) {
    use chorus_proto::ws::{GroupEvent, ServerFrame};
    let s = Server::start(b).await;
    let (_, ho) = s.login("o@example.org", "O").await;
    let (m, hm) = s.login("m@example.org", "M").await;
    let (_, hx) = s.login("x@example.org", "X").await;
    let (mut co, _) = s.connect(&ho).await;
    let (mut cm, _) = s.connect(&hm).await;
    let (mut cx, _) = s.connect(&hx).await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let event = |f: &ServerFrame| matches!(f, ServerFrame::Group { .. });
    let wait = common::WAIT;
    hm.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": room.pins[0].pin})).await.unwrap();
    let f = co.expect(wait, event).await.unwrap();
    assert!(
        matches!(&f, ServerFrame::Group { gid: g, event: GroupEvent::MembersAdded, members } if *g == gid && *members == vec![m.user.address.clone()]),
        "{f:?}"
    );
    ho.patch::<Group>(&format!("/v1/groups/{gid}"), &json!({"name": "Renamed"})).await.unwrap();
    for c in [&mut co, &mut cm] {
        let f = c.expect(wait, |f| matches!(f, ServerFrame::Group { event: GroupEvent::Updated, .. })).await.unwrap();
        assert!(matches!(f, ServerFrame::Group { gid: g, .. } if g == gid));
    }
    ho.delete(&format!("/v1/groups/{gid}/members/{}", m.user.address)).await.unwrap();
    let f =
        cm.expect(wait, |f| matches!(f, ServerFrame::Group { event: GroupEvent::MembersRemoved, .. })).await.unwrap();
    assert!(
        matches!(&f, ServerFrame::Group { members, .. } if *members == vec![m.user.address.clone()]),
        "the removed member is told"
    );
    ho.delete(&format!("/v1/groups/{gid}")).await.unwrap();
    let f = co.expect(wait, |f| matches!(f, ServerFrame::Group { event: GroupEvent::Deleted, .. })).await.unwrap();
    assert!(matches!(f, ServerFrame::Group { gid: g, .. } if g == gid));
    // Outsiders hear nothing; the removed member hears nothing after removal.
    assert!(cx.drain(common::QUIET).await.iter().all(|f| !event(f)));
    assert!(cm
        .drain(common::QUIET)
        .await
        .iter()
        .all(|f| !matches!(f, ServerFrame::Group { event: GroupEvent::Deleted, .. })));
}

both_backends!(members_hear_group_events);
