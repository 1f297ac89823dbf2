//! Security of groups (issue 18), each attack performed against a real `chorus serve`:
//! admin rights cannot be escalated through any grant path, wrong pins are counted before they
//! are checked (per user, per network, per group), and what one account can make the server
//! hold is bounded (groups, memberships, paged lists).

mod common;

use std::collections::HashSet;

use chorus_client::{ApiFailure, Http};
use chorus_proto::flags::{admin, member};
use chorus_proto::rest::{CreatedGroup, Group, Member, Pin};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::GroupId;
use common::{Backend, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

/// Every admin flag, named for failure messages.
const ADMIN_FLAGS: [(u32, &str); 13] = [
    (admin::MODIFY, "MODIFY"),
    (admin::ADD_MEMBER, "ADD_MEMBER"),
    (admin::REMOVE_MEMBER, "REMOVE_MEMBER"),
    (admin::ADD_ADMIN, "ADD_ADMIN"),
    (admin::REMOVE_ADMIN, "REMOVE_ADMIN"),
    (admin::REMOVE_OWNER, "REMOVE_OWNER"),
    (admin::DELETE_GROUP, "DELETE_GROUP"),
    (admin::CALL_CONTROL, "CALL_CONTROL"),
    (admin::HANGUP, "HANGUP"),
    (admin::OWNER, "OWNER"),
    (admin::ADD_PIN, "ADD_PIN"),
    (admin::REMOVE_PIN, "REMOVE_PIN"),
    (admin::LIST_PIN, "LIST_PIN"),
];

/// Every admin right an owner can give an admin short of the owner-level ones.
const NON_OWNER: u32 = admin::ALL & !admin::OWNER_LEVEL;

/// A user made through `/backend` (no login code needed); returns (address, client).
async fn user(s: &Server, address: &str) -> (String, Http) {
    let r = s
        .backend(json!({"op": "useradd", "token": ADMIN_TOKEN,
                        "user": {"address": address, "name": address, "token": {"appid": "t"}}}))
        .await;
    assert_eq!(r["result"], json!(true), "{r}");
    (address.to_string(), s.http().with_token(r["user"]["token"].as_str().expect("token")))
}

/// Sets `address`'s member and admin flags as `by` (an add or an edit).
async fn grant(by: &Http, gid: i64, address: &str, flags: u32, admin_flags: u32) -> Result<(), ApiFailure> {
    by.post::<Value>(
        &format!("/v1/groups/{gid}/members"),
        &json!({"addresses": [address], "flags": flags, "admin_flags": admin_flags}),
    )
    .await
    .map(|_| ())
}

/// `address`'s stored membership, read by a member who may list.
async fn stored(reader: &Http, gid: i64, address: &str) -> Option<Member> {
    let members: Vec<Member> = reader.get(&format!("/v1/groups/{gid}/members?limit=500")).await.expect("members");
    members.into_iter().find(|m| m.address == address)
}

/// Joins through the Mesibo conferencing API (`/api op=joingroup`).
async fn api_join(s: &Server, token: &str, gid: i64, pin: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/api", s.base))
        .json(&json!({"op": "joingroup", "token": token, "gid": gid, "pin": pin}))
        .send()
        .await
        .expect("POST /api")
        .json()
        .await
        .expect("JSON")
}

#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(r: Result<T, ApiFailure>, ctx: &str) {
    let e = r.expect_err(ctx);
    assert_eq!((e.status, e.code()), (403, Some("forbidden")), "{ctx}: {}", e.body);
}

#[derive(Debug, Clone, Copy)]
enum GrantPath {
    /// `POST /v1/groups/{gid}/members` with a new member.
    MemberAdd,
    /// The same with an existing member.
    MemberEdit,
    /// `POST /v1/groups/{gid}/pins`.
    PinCreate,
}

/// Every admin flag × every user grant path: an admin who lacks the right is refused, an admin
/// who holds it may pass it on unless it is owner-level, the owner may grant anything but
/// ownership; a refused grant stores nothing. (There is no pin-edit route: a pin's rights are
/// fixed at creation.)
async fn no_one_grants_an_admin_right_they_do_not_hold(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = user(&s, "owner").await;
    let (xa, hx) = user(&s, "x").await;
    let (ta, _) = user(&s, "t").await;
    let g: CreatedGroup = ho.post("/v1/groups", &json!({"name": "G"})).await.unwrap();
    let gid = g.group.gid;
    let pins_path = format!("/v1/groups/{gid}/pins");
    for path in [GrantPath::MemberAdd, GrantPath::MemberEdit, GrantPath::PinCreate] {
        for (f, name) in ADMIN_FLAGS {
            // (who, the actor's admin rights or None for the owner, allowed)
            let mut cases = vec![("an admin without it", Some(NON_OWNER & !f), false)];
            if f != admin::OWNER {
                cases.push(("an admin holding it", Some(NON_OWNER | f), f & admin::OWNER_LEVEL == 0));
            }
            cases.push(("the owner", None, f != admin::OWNER));
            for (who, rights, allowed) in cases {
                let ctx = format!("{path:?}: {who} grants {name}");
                match path {
                    GrantPath::MemberAdd => {
                        if stored(&ho, gid.get(), &ta).await.is_some() {
                            ho.delete(&format!("/v1/groups/{gid}/members/{ta}")).await.unwrap();
                        }
                    }
                    GrantPath::MemberEdit => grant(&ho, gid.get(), &ta, member::ALL, 0).await.unwrap(),
                    GrantPath::PinCreate => {}
                }
                let actor = match rights {
                    Some(r) => {
                        grant(&ho, gid.get(), &xa, member::ALL | member::ADMIN, r).await.unwrap();
                        &hx
                    }
                    None => &ho,
                };
                let flags = member::ALL | member::ADMIN;
                let (result, granted) = match path {
                    GrantPath::MemberAdd | GrantPath::MemberEdit => {
                        let r = grant(actor, gid.get(), &ta, flags, f).await;
                        let m = stored(&ho, gid.get(), &ta).await;
                        (r, m.is_some_and(|m| m.flags & member::ADMIN != 0 && m.admin_flags & f != 0))
                    }
                    GrantPath::PinCreate => {
                        let r = actor.post::<Pin>(&pins_path, &json!({"flags": flags, "admin_flags": f})).await;
                        let pins: Vec<Pin> = ho.get(&pins_path).await.unwrap();
                        let granted = pins.iter().any(|p| p.admin_flags & f != 0);
                        for p in pins.iter().filter(|p| p.admin_flags != 0) {
                            ho.delete(&format!("{pins_path}/{}", p.pin)).await.unwrap();
                        }
                        (r.map(|_| ()), granted)
                    }
                };
                if allowed {
                    result.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert!(granted, "{ctx}: stored");
                } else {
                    assert_forbidden(result, &ctx);
                    assert!(!granted, "{ctx}: nothing stored");
                }
            }
        }
    }
}

/// The finding's chain: an admin with only "add member" + "add admin" made an account with
/// every admin right, which removed the owner and deleted the group. The same through a pin.
async fn the_reported_escalation_chain_fails(b: Backend) {
    let s = Server::start(b).await;
    let (oa, ho) = user(&s, "owner").await;
    let (xa, hx) = user(&s, "x").await;
    let (ya, hy) = user(&s, "y").await;
    let (za, hz) = user(&s, "z").await;
    let (wa, hw) = user(&s, "w").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let gid = room.group.gid;
    grant(&ho, gid.get(), &xa, member::ALL | member::ADMIN, admin::ADD_MEMBER | admin::ADD_ADMIN).await.unwrap();
    grant(&ho, gid.get(), &ya, member::ALL | member::ADMIN, admin::ADD_PIN | admin::ADD_ADMIN).await.unwrap();

    // Step 1 of the chain, directly: every admin right but ownership.
    assert_forbidden(grant(&hx, gid.get(), &za, member::ALL | member::ADMIN, admin::ALL).await, "x grants ALL");
    assert!(stored(&ho, gid.get(), &za).await.is_none(), "z was not added");
    // Through a pin.
    let r = hy
        .post::<Pin>(
            &format!("/v1/groups/{gid}/pins"),
            &json!({"flags": member::ALL | member::ADMIN, "admin_flags": admin::ALL}),
        )
        .await;
    assert_forbidden(r, "y makes an ALL pin");
    // Steps 2 and 3 by z: not a member, so nothing.
    assert!(hz.delete(&format!("/v1/groups/{gid}/members/{oa}")).await.is_err());
    assert!(hz.delete(&format!("/v1/groups/{gid}")).await.is_err());

    // What x may do: pass on exactly its own rights. Still no way to the owner or the group.
    grant(&hx, gid.get(), &za, member::ALL | member::ADMIN, admin::ADD_MEMBER | admin::ADD_ADMIN).await.unwrap();
    assert_forbidden(hz.delete(&format!("/v1/groups/{gid}/members/{oa}")).await, "z removes the owner");
    assert_forbidden(hz.delete(&format!("/v1/groups/{gid}")).await, "z deletes the group");
    assert_forbidden(
        grant(&hz, gid.get(), &wa, member::ALL | member::ADMIN, admin::ALL).await,
        "z passes on more than it got",
    );
    // Nor can z raise itself.
    assert_forbidden(grant(&hz, gid.get(), &za, member::ALL | member::ADMIN, admin::ALL).await, "z raises itself");
    // y's pin with y's own rights works, and gives no more.
    let pin: Pin = hy
        .post(
            &format!("/v1/groups/{gid}/pins"),
            &json!({"flags": member::ALL | member::ADMIN, "admin_flags": admin::ADD_PIN | admin::ADD_ADMIN}),
        )
        .await
        .unwrap();
    hw.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": pin.pin})).await.unwrap();
    assert_forbidden(hw.delete(&format!("/v1/groups/{gid}/members/{oa}")).await, "w removes the owner");
    assert_forbidden(hw.delete(&format!("/v1/groups/{gid}")).await, "w deletes the group");
    // The Mesibo conferencing API does not open another way: delgroup is the owner's only.
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api", s.base))
        .json(&json!({"op": "delgroup", "token": hz.token().unwrap(), "gid": gid}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((r["result"].as_str(), r["error"].as_str()), (Some("FAIL"), Some("BADGROUP")), "{r}");

    // The owner and the group are still there.
    let g: Group = ho.get(&format!("/v1/groups/{gid}")).await.unwrap();
    assert_ne!(g.membership.unwrap().admin_flags & admin::OWNER, 0);
    assert_eq!(g.owner, oa);
}

/// The `/api` grant path is a pin join: a pin grants its admin part only as far as its
/// creator still may when it is used (a demoted admin's pins lose what the admin lost).
/// Owner-level rights pass through the owner's pins.
async fn pins_grant_no_more_than_their_creator_still_may(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = user(&s, "owner").await;
    let (xa, hx) = user(&s, "x").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let pins_path = format!("/v1/groups/{gid}/pins");
    let base = admin::ADD_PIN | admin::ADD_ADMIN;
    for (f, name) in ADMIN_FLAGS.iter().copied().filter(|(f, _)| f & admin::OWNER_LEVEL == 0) {
        grant(&ho, gid.get(), &xa, member::ALL | member::ADMIN, base | f).await.unwrap();
        let pin: Pin =
            hx.post(&pins_path, &json!({"flags": member::ALL | member::ADMIN, "admin_flags": f})).await.unwrap();
        let (a1, h1) = user(&s, &format!("early-{name}")).await;
        let r = api_join(&s, h1.token().unwrap(), gid.get(), &pin.pin).await;
        assert_eq!(r["result"], json!("OK"), "{name}: {r}");
        let m = stored(&ho, gid.get(), &a1).await.expect("joined");
        assert_ne!(m.admin_flags & f, 0, "{name}: granted while x holds it");

        grant(&ho, gid.get(), &xa, member::ALL | member::ADMIN, base & !f).await.unwrap();
        let (a2, h2) = user(&s, &format!("late-{name}")).await;
        let r = api_join(&s, h2.token().unwrap(), gid.get(), &pin.pin).await;
        assert_eq!(r["result"], json!("OK"), "{name}: {r}");
        let m = stored(&ho, gid.get(), &a2).await.expect("joined");
        assert_eq!(m.admin_flags & f, 0, "{name}: x no longer holds it, so the pin no longer grants it");
        assert_eq!(m.flags & member::ALL, member::ALL, "{name}: member rights still granted");
        if f == admin::ADD_ADMIN {
            assert_eq!((m.flags & member::ADMIN, m.admin_flags), (0, 0), "x may no longer make admins at all");
        }
        ho.delete(&format!("{pins_path}/{}", pin.pin)).await.unwrap();
    }
    // The owner's pins carry owner-level rights.
    for (f, name) in [(admin::REMOVE_OWNER, "REMOVE_OWNER"), (admin::DELETE_GROUP, "DELETE_GROUP")] {
        let pin: Pin =
            ho.post(&pins_path, &json!({"flags": member::ALL | member::ADMIN, "admin_flags": f})).await.unwrap();
        let (a, h) = user(&s, &format!("owner-pin-{name}")).await;
        assert_eq!(api_join(&s, h.token().unwrap(), gid.get(), &pin.pin).await["result"], json!("OK"));
        assert_ne!(stored(&ho, gid.get(), &a).await.unwrap().admin_flags & f, 0, "{name}");
    }
    // A pin whose creator left the group grants no admin rights.
    grant(&ho, gid.get(), &xa, member::ALL | member::ADMIN, base | admin::MODIFY).await.unwrap();
    let pin: Pin = hx
        .post(&pins_path, &json!({"flags": member::ALL | member::ADMIN, "admin_flags": admin::MODIFY}))
        .await
        .unwrap();
    ho.delete(&format!("/v1/groups/{gid}/members/{xa}")).await.unwrap();
    let (a, h) = user(&s, "after-x-left").await;
    assert_eq!(api_join(&s, h.token().unwrap(), gid.get(), &pin.pin).await["result"], json!("OK"));
    let m = stored(&ho, gid.get(), &a).await.unwrap();
    assert_eq!((m.flags & member::ADMIN, m.admin_flags), (0, 0));
}

/// The backend (admin token) may grant every admin right but ownership, owner-level ones too.
async fn the_backend_may_grant_any_admin_right(b: Backend) {
    let s = Server::start(b).await;
    let (ta, ht) = user(&s, "t").await;
    let r =
        s.backend(json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "B", "m": ta, "admin": 1}})).await;
    assert_eq!(r["result"], json!(true), "{r}");
    let gid = r["group"]["gid"].as_i64().unwrap();
    let m = stored(&ht, gid, &ta).await.unwrap();
    assert_eq!((m.flags & member::ADMIN, m.admin_flags), (member::ADMIN, admin::ALL));
    // Real rights: t may delete the group.
    ht.delete(&format!("/v1/groups/{gid}")).await.unwrap();
}

both_backends!(
    no_one_grants_an_admin_right_they_do_not_hold,
    the_reported_escalation_chain_fails,
    pins_grant_no_more_than_their_creator_still_may,
    the_backend_may_grant_any_admin_right
);

// ---------------------------------------------------------------- wrong pins

/// Fires `n` joins with wrong pins at once; returns how many got each error code.
async fn wrong_burst(h: &Http, gid: i64, n: usize) -> (usize, usize) {
    let path = format!("/v1/groups/{gid}/join");
    let tries = (0..n).map(|i| {
        let (h, path) = (h.clone(), path.clone());
        tokio::spawn(async move { h.post::<Group>(&path, &json!({"pin": format!("{:08}", 10_000_000 + i)})).await })
    });
    let (mut invalid, mut limited) = (0, 0);
    for r in futures_util::future::join_all(tries).await {
        match r.unwrap().map_err(|e| e.code()) {
            Err(Some("pin_invalid")) => invalid += 1,
            Err(Some("rate_limited")) => limited += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (invalid, limited)
}

/// A concurrent burst of 200 wrong joins from one user: exactly the limit (10) is checked,
/// the rest is refused unchecked. Right pins are not counted.
async fn a_burst_of_wrong_pins_passes_only_the_limit(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = user(&s, "owner").await;
    let (_, hx) = user(&s, "x").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let path = format!("/v1/groups/{gid}/join");
    // Right pins never use up the budget.
    for _ in 0..15 {
        hx.post::<Group>(&path, &json!({"pin": room.pins[0].pin})).await.unwrap();
    }
    let (invalid, limited) = wrong_burst(&hx, gid.get(), 200).await;
    assert_eq!((invalid, limited), (10, 190), "pin_failures_per_user is 10");
    let e = hx.post::<Group>(&path, &json!({"pin": room.pins[0].pin})).await.unwrap_err();
    assert_eq!((e.status, e.code()), (429, Some("rate_limited")));
}

/// Wrong pins against one group are capped whoever tries them: several users' bursts together
/// get only `pin_failures_per_group` checked; other groups are not affected.
async fn wrong_pins_are_capped_per_group(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_PIN_FAILURES_PER_GROUP", "12")]).await;
    let (_, ho) = user(&s, "owner").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let other: CreatedGroup = ho.post("/v1/groups", &json!({"name": "O", "room": true})).await.unwrap();
    let mut attackers = Vec::new();
    for i in 0..4 {
        attackers.push(user(&s, &format!("a{i}")).await.1);
    }
    let bursts = attackers.iter().map(|h| wrong_burst(h, room.group.gid.get(), 10));
    let results = futures_util::future::join_all(bursts).await;
    let invalid: usize = results.iter().map(|r| r.0).sum();
    let limited: usize = results.iter().map(|r| r.1).sum();
    assert_eq!((invalid, limited), (12, 28), "4 users x 10 wrong pins, group cap 12: {results:?}");
    // The room's pin joins are locked for the window (the documented trade-off)...
    let (_, hn) = user(&s, "newcomer").await;
    let e = hn.post::<Group>(&format!("/v1/groups/{}/join", room.group.gid), &json!({"pin": room.pins[0].pin})).await;
    assert_eq!(e.unwrap_err().code(), Some("rate_limited"));
    // ...but not another group's.
    hn.post::<Group>(&format!("/v1/groups/{}/join", other.group.gid), &json!({"pin": other.pins[0].pin}))
        .await
        .unwrap();
}

/// Behind a trusted proxy, IPv6 clients are limited per /64: fresh addresses from one network
/// share one budget; another network has its own.
async fn ipv6_clients_are_limited_per_64(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_TRUST_FORWARDED_FOR", "true"), ("CHORUS_PIN_FAILURES_PER_IP", "3")]).await;
    let (_, ho) = user(&s, "owner").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "R", "room": true})).await.unwrap();
    let url = format!("{}/v1/groups/{}/join", s.base, room.group.gid);
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(user(&s, &format!("v6-{i}")).await.1.token().unwrap().to_string());
    }
    let join = |token: String, from: &'static str| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("x-forwarded-for", format!("203.0.113.9, {from}"))
                .json(&json!({"pin": "99999999"}))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            v["error"]["code"].as_str().unwrap_or_default().to_string()
        }
    };
    // A different user and a different address each time: only the network is shared.
    for (i, from) in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aaaa::3"].into_iter().enumerate() {
        assert_eq!(join(tokens[i].clone(), from).await, "pin_invalid", "{from}");
    }
    assert_eq!(join(tokens[3].clone(), "2001:db8:1:2:ffff:ffff:ffff:ffff").await, "rate_limited");
    assert_eq!(join(tokens[4].clone(), "2001:db8:1:3::1").await, "pin_invalid", "another /64");
    assert_eq!(join(tokens[5].clone(), "198.51.100.7").await, "pin_invalid", "IPv4 as before");
}

both_backends!(
    a_burst_of_wrong_pins_passes_only_the_limit,
    wrong_pins_are_capped_per_group,
    ipv6_clients_are_limited_per_64
);

// ---------------------------------------------------------------- quotas and paging

/// One account cannot make groups without end: creating past `max_groups_per_user`, also in a
/// concurrent burst and through `/api setgroup`, is refused with `limit_exceeded`.
async fn groups_per_user_are_capped(b: Backend) {
    let s =
        Server::start_with(b, &[("CHORUS_MAX_GROUPS_PER_USER", "5"), ("CHORUS_MAX_MEMBERSHIPS_PER_USER", "8")]).await;
    let (ua, hu) = user(&s, "u").await;
    let creates = (0..30).map(|i| {
        let hu = hu.clone();
        tokio::spawn(async move {
            hu.post::<CreatedGroup>("/v1/groups", &json!({"name": format!("g{i}"), "room": true})).await
        })
    });
    let mut made = 0;
    for r in futures_util::future::join_all(creates).await {
        match r.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert_eq!((e.status, e.code()), (422, Some("limit_exceeded")), "{}", e.body),
        }
    }
    assert_eq!(made, 5, "a concurrent burst makes exactly max_groups_per_user groups");
    let mine: Vec<Group> = hu.get("/v1/groups").await.unwrap();
    assert_eq!(mine.len(), 5);
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api", s.base))
        .json(&json!({"op": "setgroup", "token": hu.token().unwrap(), "name": "via api"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], json!("FAIL"), "{r}");
    assert_eq!(r["error"], json!("BADGROUP"), "{r}");
    // Deleting one makes room for one.
    hu.delete(&format!("/v1/groups/{}", mine[0].gid)).await.unwrap();
    hu.post::<CreatedGroup>("/v1/groups", &json!({"name": "again"})).await.unwrap();
    hu.delete(&format!("/v1/groups/{}", mine[1].gid)).await.unwrap();

    // Memberships: u is in 4 groups; 4 more are allowed, however u gets there.
    let (_, hv) = user(&s, "v").await;
    let mut theirs = Vec::new();
    for i in 0..5 {
        theirs.push(
            hv.post::<CreatedGroup>("/v1/groups", &json!({"name": format!("v{i}"), "room": true})).await.unwrap(),
        );
    }
    for g in &theirs[..2] {
        hu.post::<Group>(&format!("/v1/groups/{}/join", g.group.gid), &json!({"pin": g.pins[0].pin})).await.unwrap();
    }
    for g in &theirs[2..4] {
        grant(&hv, g.group.gid.get(), &ua, member::ALL, 0).await.unwrap();
    }
    let e = hu
        .post::<Group>(&format!("/v1/groups/{}/join", theirs[4].group.gid), &json!({"pin": theirs[4].pins[0].pin}))
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code()), (422, Some("limit_exceeded")));
    let e = grant(&hv, (theirs[4].group.gid).get(), &ua, member::ALL, 0).await.unwrap_err();
    assert_eq!((e.status, e.code()), (422, Some("limit_exceeded")));
    assert!(stored(&hv, (theirs[4].group.gid).get(), &ua).await.is_none(), "nothing half-added");
    let e = hu.post::<CreatedGroup>("/v1/groups", &json!({"name": "one more"})).await.unwrap_err();
    assert_eq!(e.code(), Some("limit_exceeded"), "creating counts as a membership too");
    // The backend may add past it.
    let r = s
        .backend(json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": theirs[4].group.gid}, "members": {"m": [ua]}}))
        .await;
    assert_eq!(r["result"], json!(true), "{r}");
    assert!(stored(&hv, (theirs[4].group.gid).get(), &ua).await.is_some());
}

/// `GET /v1/groups` answers in pages with a `Link: <…>; rel="next"` header; following the
/// links yields every group exactly once, newest first. `/api op=rooms` lists them all.
async fn group_lists_are_paged(b: Backend) {
    // More groups than one user may create in an hour by default.
    let s = Server::start_with(b, &[("CHORUS_GROUPS_CREATED_PER_HOUR", "0")]).await;
    let (ua, hu) = user(&s, "u").await;
    let n = 130;
    for i in 0..n {
        hu.post::<CreatedGroup>("/v1/groups", &json!({"name": format!("room {i}"), "room": true})).await.unwrap();
    }
    let client = reqwest::Client::new();
    let get = |path: String| {
        let (client, base, token) = (client.clone(), s.base.clone(), hu.token().unwrap().to_string());
        async move {
            let r = client.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            let link = r.headers().get("link").map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            (status, link, body)
        }
    };
    let next_of = |link: &str| -> String {
        let (target, rel) = link.split_once(">; ").expect("<url>; rel");
        assert_eq!(rel, "rel=\"next\"");
        target.trim_start_matches('<').to_string()
    };
    // Old clients (no paging parameters) get the newest 100 and a next link.
    let (status, link, first) = get("/v1/groups".into()).await;
    assert_eq!(status, 200);
    let first = first.as_array().unwrap().clone();
    assert_eq!(first.len(), 100);
    assert_eq!(first[0]["name"], json!(format!("room {}", n - 1)), "newest first");
    let (_, link2, second) = get(next_of(&link.expect("a next link"))).await;
    let second = second.as_array().unwrap().clone();
    assert_eq!(second.len(), 30);
    assert!(link2.is_none(), "the last page has no next link");
    let gids: HashSet<i64> = first.iter().chain(&second).map(|g| g["gid"].as_i64().unwrap()).collect();
    assert_eq!(gids.len(), n, "each group once");
    // Small pages, followed to the end.
    let (mut path, mut seen, mut pages) = (Some("/v1/groups?limit=40".to_string()), Vec::new(), 0);
    while let Some(p) = path {
        let (_, link, body) = get(p).await;
        let page = body.as_array().unwrap();
        assert!(page.len() <= 40);
        seen.extend(page.iter().map(|g| g["gid"].as_i64().unwrap()));
        path = link.map(|l| next_of(&l));
        pages += 1;
    }
    assert_eq!((pages, seen.len(), seen.iter().collect::<HashSet<_>>().len()), (4, n, n));
    // Bad paging input is a clear error.
    for bad in ["/v1/groups?after=nonsense", "/v1/groups?after=1.x", "/v1/groups?page=2", "/v1/groups?limit=-1"] {
        let (status, _, body) = get(bad.into()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
    let (_, _, one) = get("/v1/groups?limit=0".into()).await;
    assert_eq!(one.as_array().unwrap().len(), 1, "limit is clamped to at least 1");

    // The Mesibo rooms list: every room, in one answer.
    let r: Value = client
        .post(format!("{}/api", s.base))
        .json(&json!({"op": "rooms", "token": hu.token().unwrap()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["count"], json!(n), "{}", r["error"]);
    let rooms = r["rooms"].as_array().unwrap();
    assert!(rooms.iter().all(|r| r["pin"].is_string() && r["spin"].is_string()), "owner sees both pins");
    assert_eq!(rooms[0]["gid"], first[0]["gid"], "most recently joined first");

    // Members are paged the same way.
    let gid = first[0]["gid"].as_i64().unwrap();
    let mut addresses = vec![ua.clone()];
    for i in 0..11 {
        let (a, _) = user(&s, &format!("m{i:02}")).await;
        addresses.push(a);
    }
    grant(&hu, gid, &addresses[1], member::ALL, 0).await.unwrap();
    hu.post::<Value>(&format!("/v1/groups/{gid}/members"), &json!({"addresses": addresses[2..]})).await.unwrap();
    let (mut path, mut listed) = (Some(format!("/v1/groups/{gid}/members?limit=5")), Vec::new());
    let mut pages = 0;
    while let Some(p) = path {
        let (status, link, body) = get(p).await;
        assert_eq!(status, 200);
        listed.extend(body.as_array().unwrap().iter().map(|m| m["address"].as_str().unwrap().to_string()));
        path = link.map(|l| next_of(&l));
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, addresses, "join order, then address");
}

/// What one account may create per hour is bounded (issue 17, item 3): groups (also as Mesibo
/// rooms), pins, members added and calls started past their hourly quota are refused with
/// `rate_limited` (429; `/api`: `RATELIMIT`) and change nothing; refused requests do not use up
/// the quota, other users keep theirs, and the backend is not counted.
async fn hourly_quotas_bound_what_a_user_creates(b: Backend) {
    let s = Server::start_with(
        b,
        &[
            ("CHORUS_GROUPS_CREATED_PER_HOUR", "3"),
            ("CHORUS_PINS_CREATED_PER_HOUR", "2"),
            ("CHORUS_MEMBERS_ADDED_PER_HOUR", "3"),
            ("CHORUS_CALLS_STARTED_PER_HOUR", "2"),
        ],
    )
    .await;
    let (ua, hu) = user(&s, "u").await;
    let (va, hv) = user(&s, "v").await;
    let quota_refused = |e: ApiFailure, setting: &str| {
        assert_eq!((e.status, e.code()), (429, Some("rate_limited")), "{}", e.body);
        assert!(e.body.contains(setting), "the message names the setting: {}", e.body);
    };

    // Groups: a refused create (no name) does not count; the fourth in the hour is refused,
    // through /v1 and through /api setgroup, and nothing is created.
    let e = hu.post::<CreatedGroup>("/v1/groups", &json!({"room": true})).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"));
    let mut mine = Vec::new();
    for i in 0..2 {
        mine.push(hu.post::<CreatedGroup>("/v1/groups", &json!({"name": format!("g{i}")})).await.unwrap());
    }
    let api = |body: Value| {
        let base = s.base.clone();
        async move {
            reqwest::Client::new().post(format!("{base}/api")).json(&body).send().await.unwrap().json::<Value>().await
        }
    };
    let r = api(json!({"op": "setgroup", "token": hu.token().unwrap(), "name": "room"})).await.unwrap();
    let room = r["gid"].as_i64().unwrap_or_else(|| panic!("a room: {r}"));
    let r = api(json!({"op": "setgroup", "token": hu.token().unwrap(), "name": "one more"})).await.unwrap();
    assert_eq!((&r["result"], &r["error"]), (&json!("FAIL"), &json!("RATELIMIT")), "{r}");
    quota_refused(
        hu.post::<CreatedGroup>("/v1/groups", &json!({"name": "one more"})).await.unwrap_err(),
        "groups_created_per_hour",
    );
    assert_eq!(hu.get::<Vec<Group>>("/v1/groups").await.unwrap().len(), 3, "nothing made past the quota");
    // Another user has their own quota; the backend is not counted.
    hv.post::<CreatedGroup>("/v1/groups", &json!({"name": "v's"})).await.unwrap();
    for i in 0..5 {
        let r = s.backend(json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": format!("b{i}")}})).await;
        assert_eq!(r["result"], json!(true), "{r}");
    }

    // Pins: two per hour, whichever group; a refused pin (bad flags) does not count.
    let gid = mine[0].group.gid.get();
    let pins = format!("/v1/groups/{gid}/pins");
    let e = hu.post::<Pin>(&pins, &json!({"flags": 0x4000_0000u32})).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "{}", e.body);
    hu.post::<Pin>(&pins, &json!({"flags": member::ALL})).await.unwrap();
    hu.post::<Pin>(&format!("/v1/groups/{}/pins", mine[1].group.gid), &json!({"flags": member::ALL})).await.unwrap();
    quota_refused(hu.post::<Pin>(&pins, &json!({"flags": member::ALL})).await.unwrap_err(), "pins_created_per_hour");
    assert_eq!(hu.get::<Vec<Pin>>(&pins).await.unwrap().len(), 1);

    // Members: three new members per hour. Re-adding a member (a flags edit) is not an addition;
    // a request that would pass the quota adds none of its addresses.
    let mut others = Vec::new();
    for i in 0..4 {
        others.push(user(&s, &format!("m{i}")).await.0);
    }
    hu.post::<Value>(&format!("/v1/groups/{gid}/members"), &json!({"addresses": others[..2]})).await.unwrap();
    grant(&hu, gid, &others[0], member::SEND, 0).await.unwrap();
    let e =
        hu.post::<Value>(&format!("/v1/groups/{gid}/members"), &json!({"addresses": others[2..]})).await.unwrap_err();
    quota_refused(e, "members_added_per_hour");
    assert!(stored(&hu, gid, &others[2]).await.is_none() && stored(&hu, gid, &others[3]).await.is_none());
    grant(&hu, gid, &others[2], member::ALL, 0).await.unwrap();
    quota_refused(grant(&hu, gid, &others[3], member::ALL, 0).await.unwrap_err(), "members_added_per_hour");
    assert!(stored(&hu, gid, &others[3]).await.is_none());
    grant(&hu, gid, &va, member::ALL, 0).await.unwrap_err(); // still over
    let r = s
        .backend(json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "gid": gid, "delete": 0,
                        "m": others[3], "cs": 1, "cr": 1}))
        .await;
    assert_eq!(r["result"], json!(true), "the backend adds past a user's quota: {r}");

    // Calls: two started per hour. Joining a call in progress starts nothing.
    let conn = || async { chorus_client::Connection::connect(&hu, None).await.expect("session").0 };
    let (mut c1, mut c2, mut c3) = (conn().await, conn().await, conn().await);
    assert!(matches!(join(&mut c1, mine[0].group.gid.get()).await, ServerFrame::CallJoined { .. }));
    assert!(matches!(join(&mut c2, mine[1].group.gid.get()).await, ServerFrame::CallJoined { .. }));
    match join(&mut c3, room).await {
        ServerFrame::Error { code, message, .. } => {
            assert_eq!(code, chorus_proto::ErrorCode::RateLimited);
            assert!(message.contains("calls_started_per_hour"), "{message}");
        }
        other => panic!("a third call started: {other:?}"),
    }
    assert!(matches!(join(&mut c3, mine[0].group.gid.get()).await, ServerFrame::CallJoined { .. }));
    let dial = c3.request(|rid| ClientFrame::CallDial { rid, peer: va.clone(), video: false }).await.unwrap();
    assert!(matches!(dial, ServerFrame::Error { code: chorus_proto::ErrorCode::RateLimited, .. }), "{dial:?}");
    // v's quota is v's own.
    let (mut cv, _) = chorus_client::Connection::connect(&hv, None).await.unwrap();
    let dial = cv.request(|rid| ClientFrame::CallDial { rid, peer: ua.clone(), video: false }).await.unwrap();
    assert!(matches!(dial, ServerFrame::CallDialing { .. }), "{dial:?}");
}

/// Sends `call_join` for `gid` and returns the answer.
async fn join(c: &mut chorus_client::Connection, gid: i64) -> ServerFrame {
    c.request(move |rid| ClientFrame::CallJoin { rid, gid: GroupId(gid) }).await.expect("an answer")
}

both_backends!(groups_per_user_are_capped, group_lists_are_paged, hourly_quotas_bound_what_a_user_creates);
