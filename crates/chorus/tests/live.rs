//! WHIP ingest and WHEP playback (issue 12, items 3 and 4) against the real `chorus serve`: the
//! HTTP exchanges (RFC 9725 and the WHEP draft's counter-offer form), stream keys, and every
//! bad-input answer. Media through these sessions is proven with Chromium in
//! e2e/tests/whip-whep.test.mjs.

mod common;

use std::time::Duration;

use chorus_client::{Connection, Http};
use chorus_proto::call::{CallEvent, CallLeaveReason};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::GroupId;
use common::calls::{audio_publish, member_with_pin, room, Room};
use common::live::{header, next_event, obs_offer, problem, req};
use common::{Backend, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn stream_key(r: &Room, label: &str) -> (i64, String) {
    let k: serde_json::Value =
        r.owner.post(&format!("/v1/groups/{}/stream_keys", r.gid), &json!({ "label": label })).await.unwrap();
    (k["id"].as_i64().unwrap(), k["key"].as_str().unwrap().to_string())
}

/// Joins the group's call over a WebSocket; returns the connection and the `call_joined`.
async fn watch(h: &Http, gid: i64) -> (Connection, ServerFrame) {
    let (mut c, _) = Connection::connect(h, None).await.expect("ws");
    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    (c, joined)
}

/// OBS's path: an admin makes a stream key; a WHIP POST with it publishes H.264 + Opus, which
/// appears in the call as a camera; trickle, ICE restart (new ETag), If-Match rules; DELETE ends
/// it for everyone; a revoked key is refused.
async fn whip_with_a_stream_key(backend: Backend) {
    let s = Server::start(backend).await;
    let r = room(&s).await;
    let whip = format!("/v1/groups/{}/whip", r.gid);
    let (viewer, _) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let (mut watcher, _) = watch(&viewer, r.gid).await;

    // OPTIONS: CORS and Accept-Post.
    let o = req(&s, Method::OPTIONS, &whip, None, None, None, "").await;
    assert_eq!(o.status, StatusCode::NO_CONTENT);
    assert_eq!(header(&o, "accept-post"), "application/sdp");
    assert_eq!(header(&o, "access-control-allow-origin"), "*");
    assert!(header(&o, "access-control-allow-headers").contains("If-Match"));

    let (key_id, key) = stream_key(&r, "OBS studio").await;
    let listed: serde_json::Value = r.owner.get(&format!("/v1/groups/{}/stream_keys", r.gid)).await.unwrap();
    assert_eq!(listed[0]["label"], "OBS studio");
    assert!(listed[0].get("key").is_none(), "a listed key never shows the secret: {listed}");

    let p = req(&s, Method::POST, &whip, Some(&key), Some("application/sdp"), None, &obs_offer("Obs1")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert_eq!(header(&p, "content-type"), "application/sdp");
    let location = header(&p, "location").to_string();
    assert!(location.starts_with("/v1/whip/") && location.len() > 30, "{location}");
    let etag = header(&p, "etag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 4, "{etag}");
    assert!(p.body.contains("a=rtpmap:96 H264/90000") && p.body.contains("a=recvonly"), "{}", p.body);
    assert!(p.body.contains("opus/48000"), "{}", p.body);
    assert_eq!(header(&p, "accept-patch"), "application/trickle-ice-sdpfrag");

    // The viewer sees a new participant publishing a camera with audio and video.
    let whip_address = match next_event(&mut watcher, |e| matches!(e, CallEvent::Published { .. })).await {
        CallEvent::Published { address, stream } => {
            assert!(stream.audio && stream.video && !stream.screen && stream.sid == 0, "{stream:?}");
            address
        }
        _ => unreachable!(),
    };
    assert!(whip_address.contains("~whip"), "{whip_address}");

    // PATCH: the If-Match rules, then trickle (204) and an ICE restart (200, new ETag).
    let frag = "a=ice-ufrag:Obs1\r\na=ice-pwd:clientpasswordclientpass\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n";
    let t = "application/trickle-ice-sdpfrag";
    problem(&req(&s, Method::PATCH, &location, Some(&key), Some(t), None, frag).await, 428, "If-Match");
    problem(&req(&s, Method::PATCH, &location, Some(&key), Some(t), Some("\"stale\""), frag).await, 412, "ETag");
    problem(&req(&s, Method::PATCH, &location, Some(&key), Some("application/sdp"), Some(&etag), frag).await, 415, "");
    problem(&req(&s, Method::PATCH, &location, Some("sk_wrong"), Some(t), Some(&etag), frag).await, 401, "");
    let trickle = req(&s, Method::PATCH, &location, Some(&key), Some(t), Some(&etag), frag).await;
    assert_eq!(trickle.status, StatusCode::NO_CONTENT, "{}", trickle.body);
    let restart_frag = frag.replace("Obs1", "Obs2").replace("clientpasswordclientpass", "newpasswordnewpassword12");
    let restart = req(&s, Method::PATCH, &location, Some(&key), Some(t), Some("*"), &restart_frag).await;
    assert_eq!(restart.status, StatusCode::OK, "{}", restart.body);
    assert_eq!(header(&restart, "content-type"), t);
    let new_etag = header(&restart, "etag").to_string();
    assert_ne!(new_etag, etag, "an ICE restart makes a new ETag");
    let new_ufrag = new_etag.trim_matches('"');
    assert!(restart.body.contains(&format!("a=ice-ufrag:{new_ufrag}")), "{}", restart.body);
    assert!(restart.body.contains("a=candidate:"), "the server's candidates: {}", restart.body);
    // The old ETag is stale now.
    problem(&req(&s, Method::PATCH, &location, Some(&key), Some(t), Some(&etag), frag).await, 412, "ETag");

    // DELETE ends the stream for viewers; the session is gone.
    problem(&req(&s, Method::DELETE, &location, Some("sk_wrong"), None, None, "").await, 401, "");
    let d = req(&s, Method::DELETE, &location, Some(&key), None, None, "").await;
    assert_eq!(d.status, StatusCode::OK);
    let left =
        next_event(&mut watcher, |e| matches!(e, CallEvent::Left { address, .. } if *address == whip_address)).await;
    assert!(matches!(left, CallEvent::Left { reason: CallLeaveReason::Lost | CallLeaveReason::Left, .. }), "{left:?}");
    problem(&req(&s, Method::DELETE, &location, Some(&key), None, None, "").await, 404, "");

    // A new POST with the key publishes again; revoking the key ends that stream and refuses the key.
    let p = req(&s, Method::POST, &whip, Some(&key), Some("application/sdp"), None, &obs_offer("Obs3")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let second = match next_event(&mut watcher, |e| matches!(e, CallEvent::Published { .. })).await {
        CallEvent::Published { address, .. } => address,
        _ => unreachable!(),
    };
    r.owner.delete(&format!("/v1/groups/{}/stream_keys/{key_id}", r.gid)).await.unwrap();
    next_event(&mut watcher, |e| matches!(e, CallEvent::Left { address, .. } if *address == second)).await;
    let again = req(&s, Method::POST, &whip, Some(&key), Some("application/sdp"), None, &obs_offer("Obs4")).await;
    problem(&again, 401, "revoked");
}

/// Every bad input of a WHIP/WHEP POST gets its documented code.
async fn bad_input_codes(backend: Backend) {
    let s = Server::start(backend).await;
    let r = room(&s).await;
    let whip = format!("/v1/groups/{}/whip", r.gid);
    let whep = format!("/v1/groups/{}/whep", r.gid);
    let owner = r.owner.token().unwrap().to_string();
    let (viewer, _) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let viewer_token = viewer.token().unwrap().to_string();
    let sdp = "application/sdp";
    let offer = obs_offer("Bad1");

    // Content type, credentials, rights.
    let w = req(&s, Method::POST, &whip, Some(&owner), Some("application/json"), None, &offer).await;
    problem(&w, 415, "application/sdp");
    assert_eq!(header(&w, "accept-post"), sdp);
    problem(&req(&s, Method::POST, &whip, None, Some(sdp), None, &offer).await, 401, "Bearer");
    problem(&req(&s, Method::POST, &whip, Some("not-a-token"), Some(sdp), None, &offer).await, 401, "not valid");
    problem(&req(&s, Method::POST, &whip, Some("sk_nosuchkey"), Some(sdp), None, &offer).await, 401, "not valid");
    problem(&req(&s, Method::POST, &whip, Some(&viewer_token), Some(sdp), None, &offer).await, 403, "publish");
    // A key of another group is no key here.
    let other: serde_json::Value = r.owner.post("/v1/groups", &json!({"name": "Other"})).await.unwrap();
    let other_gid = other["group"]["gid"].as_i64().unwrap();
    let k: serde_json::Value =
        r.owner.post(&format!("/v1/groups/{other_gid}/stream_keys"), &json!({"label": "x"})).await.unwrap();
    let other_key = k["key"].as_str().unwrap();
    problem(&req(&s, Method::POST, &whip, Some(other_key), Some(sdp), None, &offer).await, 401, "not valid");
    // Only an admin with call control makes keys.
    let refused =
        viewer.post::<serde_json::Value>(&format!("/v1/groups/{}/stream_keys", r.gid), &json!({"label": "x"})).await;
    assert_eq!(refused.unwrap_err().code(), Some("forbidden"));

    // SDP: unparsable 400; two video tracks, no common codec, receive-only 422.
    problem(&req(&s, Method::POST, &whip, Some(&owner), Some(sdp), None, "hello").await, 400, "cannot be parsed");
    let two_video = format!(
        "{offer}m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sendonly\r\na=rtcp-mux\r\n\
         a=rtpmap:97 VP8/90000\r\n"
    )
    .replace("BUNDLE 0 1", "BUNDLE 0 1 2");
    problem(&req(&s, Method::POST, &whip, Some(&owner), Some(sdp), None, &two_video).await, 422, "at most one video");
    let h265 = offer.replace("H264/90000", "H265/90000");
    problem(&req(&s, Method::POST, &whip, Some(&owner), Some(sdp), None, &h265).await, 422, "no common codec");
    let recv = offer.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=recvonly");
    problem(&req(&s, Method::POST, &whip, Some(&owner), Some(sdp), None, &recv).await, 422, "recvonly");

    // WHEP: HEAD says what it is; 415; nothing live → 409 + Retry-After.
    let h = req(&s, Method::HEAD, &whep, None, None, None, "").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), sdp);
    problem(&req(&s, Method::POST, &whep, Some(&viewer_token), Some("text/plain"), None, "x").await, 415, "");
    problem(&req(&s, Method::POST, &whep, None, Some(sdp), None, "x").await, 401, "");
    let idle = req(&s, Method::POST, &whep, Some(&viewer_token), Some(sdp), None, "x").await;
    problem(&idle, 409, "nothing is live");
    assert!(header(&idle, "retry-after").parse::<u64>().unwrap() > 0);
    // A member who may chat but not subscribe is refused; a stranger finds no group.
    let (chat_only, chat_address) = {
        let (sess, h) = s.login("chat@example.org", "Chat").await;
        (h, sess.user.address)
    };
    let _: serde_json::Value = r
        .owner
        .post(&format!("/v1/groups/{}/members", r.gid), &json!({"addresses": [chat_address], "flags": 0x3}))
        .await
        .unwrap();
    problem(&req(&s, Method::POST, &whep, chat_only.token(), Some(sdp), None, "x").await, 403, "watch");
    problem(&req(&s, Method::POST, &whip, chat_only.token(), Some(sdp), None, &offer).await, 403, "publish");
    let (_, stranger) = s.login("stranger@example.org", "Stranger").await;
    problem(&req(&s, Method::POST, &whep, stranger.token(), Some(sdp), None, "x").await, 404, "no such group");
    // A stream key publishes; it does not watch.
    let (_, key) = stream_key(&r, "cam").await;
    problem(&req(&s, Method::POST, &whep, Some(&key), Some(sdp), None, "x").await, 401, "");

    // Sessions that do not exist, or belong to someone else.
    problem(&req(&s, Method::DELETE, "/v1/whip/nosuchsession", Some(&owner), None, None, "").await, 404, "");
    let p = req(&s, Method::POST, &whip, Some(&owner), Some(sdp), None, &offer).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let location = header(&p, "location").to_string();
    problem(&req(&s, Method::DELETE, &location, Some(&viewer_token), None, None, "").await, 401, "");
    // A WHIP session is no WHEP session.
    let whep_location = location.replace("/whip/", "/whep/");
    problem(&req(&s, Method::DELETE, &whep_location, Some(&owner), None, None, "").await, 404, "");

    // WHEP with the owner's WHIP stream live: 406 with the server's offer of it, and Location.
    let w = req(&s, Method::POST, &whep, Some(&viewer_token), Some(sdp), None, "v=0\r\n").await;
    assert_eq!(w.status, StatusCode::NOT_ACCEPTABLE, "{}", w.body);
    assert_eq!(header(&w, "content-type"), sdp);
    assert!(header(&w, "location").starts_with("/v1/whep/"));
    assert!(w.body.contains("m=video") && w.body.contains("H264/90000") && w.body.contains("a=sendonly"), "{}", w.body);
    let wl = header(&w, "location").to_string();
    // An answer that is not SDP is refused, and the session stays.
    problem(&req(&s, Method::PATCH, &wl, Some(&viewer_token), Some(sdp), None, "nonsense").await, 400, "");
    let d = req(&s, Method::DELETE, &wl, Some(&viewer_token), None, None, "").await;
    assert_eq!(d.status, StatusCode::OK);
}

/// POST, PATCH and DELETE are rate-limited per client IP (429 with Retry-After).
async fn requests_are_rate_limited(backend: Backend) {
    let s = Server::start_with(backend, &[("CHORUS_LIVE_REQUESTS_PER_MINUTE", "3")]).await;
    let r = room(&s).await;
    let whip = format!("/v1/groups/{}/whip", r.gid);
    let owner = r.owner.token().unwrap().to_string();
    for _ in 0..3 {
        let x = req(&s, Method::POST, &whip, Some(&owner), Some("text/plain"), None, "x").await;
        assert_eq!(x.status.as_u16(), 415);
    }
    let limited = req(&s, Method::DELETE, "/v1/whip/x", Some(&owner), None, None, "").await;
    problem(&limited, 429, "too many");
    assert!(header(&limited, "retry-after").parse::<u64>().unwrap() > 0);
    // Preflights are not counted.
    let o = req(&s, Method::OPTIONS, &whip, None, None, None, "").await;
    assert_eq!(o.status, StatusCode::NO_CONTENT);
}

/// A WHIP participant acting for a user leaves when the user loses the right: the refresh of
/// the call's members keeps it while the right holds.
async fn whip_follows_its_user(backend: Backend) {
    let s = Server::start(backend).await;
    let r = room(&s).await;
    let (bob, bob_address) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (viewer, _) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let (mut watcher, _) = watch(&viewer, r.gid).await;
    let whip = format!("/v1/groups/{}/whip", r.gid);
    let p = req(&s, Method::POST, &whip, bob.token(), Some("application/sdp"), None, &obs_offer("Bob1")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let addr = match next_event(&mut watcher, |e| matches!(e, CallEvent::Published { .. })).await {
        CallEvent::Published { address, .. } => address,
        _ => unreachable!(),
    };
    assert!(addr.starts_with(&format!("{bob_address}~whip")), "{addr}");
    // Another member's change refreshes the call: the WHIP participant stays.
    let (mut mallory, _) = Connection::connect(&viewer, None).await.unwrap();
    let _ = mallory.request(audio_publish).await;
    let (_carol, _) = member_with_pin(&s, &r, "carol@example.org", &r.viewer_pin).await;
    let stray = watcher.drain(Duration::from_millis(800)).await;
    assert!(
        !stray.iter().any(
            |f| matches!(f, ServerFrame::CallEvent { event: CallEvent::Left { address, .. }, .. } if *address == addr)
        ),
        "{stray:?}"
    );
    // Bob is removed from the group: his WHIP stream leaves the call.
    r.owner.delete(&format!("/v1/groups/{}/members/{bob_address}", r.gid)).await.unwrap();
    next_event(&mut watcher, |e| matches!(e, CallEvent::Left { address, .. } if *address == addr)).await;
}

/// Public viewing: with the group's `public_viewing` on, a WHEP player needs no token (its
/// session's URL is its key); off, a POST without a token is 401 again and the public viewers
/// already watching leave the call.
async fn public_viewing_needs_no_account(backend: Backend) {
    let s = Server::start(backend).await;
    let r = room(&s).await;
    let (viewer, _) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let (mut watcher, _) = watch(&viewer, r.gid).await;
    let owner = r.owner.token().unwrap().to_string();
    let sdp = "application/sdp";
    let p =
        req(&s, Method::POST, &format!("/v1/groups/{}/whip", r.gid), Some(&owner), Some(sdp), None, &obs_offer("Pub1"))
            .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let whep = format!("/v1/groups/{}/whep", r.gid);
    problem(&req(&s, Method::POST, &whep, None, Some(sdp), None, "v=0\r\n").await, 401, "Bearer");

    let g: chorus_proto::rest::Group =
        r.owner.patch(&format!("/v1/groups/{}", r.gid), &json!({"public_viewing": true})).await.unwrap();
    assert!(g.public_viewing);
    let w = req(&s, Method::POST, &whep, None, Some(sdp), None, "v=0\r\n").await;
    assert_eq!(w.status, StatusCode::NOT_ACCEPTABLE, "{}", w.body);
    assert!(w.body.contains("m=video") && w.body.contains("a=sendonly"), "{}", w.body);
    let location = header(&w, "location").to_string();
    let public = match next_event(
        &mut watcher,
        |e| matches!(e, CallEvent::Joined { participant } if participant.address.starts_with("public~whep")),
    )
    .await
    {
        CallEvent::Joined { participant } => participant,
        _ => unreachable!(),
    };
    assert_eq!(public.name, "Viewer");
    assert!(!public.permissions.publish && public.permissions.subscribe, "{public:?}");
    // Its session answers to its URL alone; a bad answer is refused as for anyone.
    problem(&req(&s, Method::PATCH, &location, None, Some(sdp), None, "nonsense").await, 400, "");
    // WHIP still needs a token.
    problem(
        &req(&s, Method::POST, &format!("/v1/groups/{}/whip", r.gid), None, Some(sdp), None, &obs_offer("Pub2")).await,
        401,
        "",
    );

    // A second public viewer, then public viewing goes off: both leave, and no one new gets in.
    let w2 = req(&s, Method::POST, &whep, None, Some(sdp), None, "v=0\r\n").await;
    assert_eq!(w2.status, StatusCode::NOT_ACCEPTABLE, "{}", w2.body);
    let _: chorus_proto::rest::Group =
        r.owner.patch(&format!("/v1/groups/{}", r.gid), &json!({"public_viewing": false})).await.unwrap();
    let mut gone = std::collections::BTreeSet::new();
    while gone.len() < 2 {
        if let CallEvent::Left { address, .. } = next_event(
            &mut watcher,
            |e| matches!(e, CallEvent::Left { address, reason: CallLeaveReason::NotMember, .. } if address.starts_with("public~whep")),
        )
        .await
        {
            gone.insert(address);
        }
    }
    problem(&req(&s, Method::POST, &whep, None, Some(sdp), None, "v=0\r\n").await, 401, "");
    // The member's own session is untouched.
    let mine = req(&s, Method::POST, &whep, viewer.token(), Some(sdp), None, "v=0\r\n").await;
    assert_eq!(mine.status, StatusCode::NOT_ACCEPTABLE, "{}", mine.body);
}

both_backends!(
    whip_with_a_stream_key,
    bad_input_codes,
    requests_are_rate_limited,
    whip_follows_its_user,
    public_viewing_needs_no_account
);

/// With the TURN relay on, a WHIP answer names it in `Link` headers (RFC 9725 §4.6), one per
/// URL, with the same REST API credentials `call_joined` carries, so OBS can use the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_answers_carry_the_turn_servers() {
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            ("CHORUS_TURN_UDP_PORT", "0"),
            ("CHORUS_TURN_TCP_PORT", "0"),
            ("CHORUS_TURN_SECRET", "live-test-turn-secret-0123"),
        ],
    )
    .await;
    let r = room(&s).await;
    let (_, key) = stream_key(&r, "OBS").await;
    let whip = format!("/v1/groups/{}/whip", r.gid);
    let p = req(&s, Method::POST, &whip, Some(&key), Some("application/sdp"), None, &obs_offer("Obs1")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let links: Vec<&str> = p.headers.get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(links.len(), 2, "{links:?}");
    for (l, transport) in links.iter().zip(["udp", "tcp"]) {
        assert!(l.starts_with("<turn:127.0.0.1:") && l.contains(&format!("?transport={transport}>")), "{l}");
        assert!(l.contains("rel=\"ice-server\"") && l.contains("credential-type=\"password\""), "{l}");
        let username = l.split("username=\"").nth(1).and_then(|r| r.split('"').next()).expect("a username");
        let expiry: u64 = username.split(':').next().unwrap().parse().expect("<expiry>:<id>");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(expiry > now + 3500, "{l}");
        assert!(l.contains("credential=\"") && !l.contains("credential=\"\""), "{l}");
    }
    // Without TURN, no Link header.
    let plain = Server::start(Backend::Sqlite).await;
    let r = room(&plain).await;
    let (_, key) = stream_key(&r, "OBS").await;
    let p = req(
        &plain,
        Method::POST,
        &format!("/v1/groups/{}/whip", r.gid),
        Some(&key),
        Some("application/sdp"),
        None,
        &obs_offer("Obs2"),
    )
    .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert!(p.headers.get("link").is_none());
}
