//! Call-test helpers: a room with its two pins, members joined by pin, calls joined by the Rust
//! client, and frame counts read from its statistics.

use std::time::Duration;

use chorus_client::call::stats::{CallStats, Kind, TrackKey};
use chorus_client::call::{Call, CallOptions};
use chorus_client::Http;
use chorus_proto::rest::{CreatedGroup, Group};
use chorus_proto::ws::ClientFrame;
use serde_json::json;

use super::Server;

/// Generous: media needs ICE, DTLS and a keyframe before the first frame counts.
pub const MEDIA: Duration = Duration::from_secs(20);

/// A room made by its owner.
pub struct Room {
    pub gid: i64,
    pub owner: Http,
    pub owner_address: String,
    pub publisher_pin: String,
    pub viewer_pin: String,
}

/// The owner (`owner@example.org`) logs in and creates a room.
pub async fn room(s: &Server) -> Room {
    let (sess, owner) = s.login("owner@example.org", "Owner").await;
    let created: CreatedGroup = owner.post("/v1/groups", &json!({"name": "Call", "room": true})).await.unwrap();
    Room {
        gid: created.group.gid.get(),
        owner,
        owner_address: sess.user.address,
        publisher_pin: created.pins[0].pin.clone(),
        viewer_pin: created.pins[1].pin.clone(),
    }
}

/// Logs a user in and makes them a member with `pin`; returns their client and address.
pub async fn member_with_pin(s: &Server, r: &Room, email: &str, pin: &str) -> (Http, String) {
    let (sess, h) = s.login(email, email.split('@').next().unwrap()).await;
    let _: Group = h.post(&format!("/v1/groups/{}/join", r.gid), &json!({ "pin": pin })).await.unwrap();
    (h, sess.user.address)
}

/// Opens a session and joins the group's call.
pub async fn join(h: &Http, gid: i64, options: CallOptions) -> Call {
    let (conn, _) = chorus_client::Connection::connect(h, None).await.expect("ws");
    Call::join(conn, gid, options).await.expect("join the call")
}

/// Frames of `publisher`'s camera stream (sid 0) of `kind` received so far.
pub fn frames(s: &CallStats, publisher: &str, kind: Kind) -> u64 {
    s.received.get(&TrackKey { publisher: publisher.to_string(), sid: 0, kind }).map_or(0, |t| t.frames)
}

/// Waits until `c` has received `at_least` frames of `kind` from `publisher`.
pub async fn wait_frames(c: &Call, publisher: &str, kind: Kind, at_least: u64) -> CallStats {
    c.wait_until(MEDIA, |s| frames(s, publisher, kind) >= at_least)
        .await
        .unwrap_or_else(|e| panic!("{} never got {at_least} {kind:?} frames from {publisher}: {e}", c.address()))
}

/// A publish offer for one Opus track on media line `0`, enough for the server to make the leg.
pub fn audio_offer() -> String {
    let fingerprint: Vec<String> = (0..32).map(|i| format!("{:02X}", i * 7 % 256)).collect();
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Clnt",
        "a=ice-pwd:clientpasswordclientpass",
        &format!("a=fingerprint:sha-256 {}", fingerprint.join(":")),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=ssrc:11223344 cname:test",
        "",
    ]
    .join("\r\n")
}

/// `call_publish` of sid 0 carrying the microphone of [`audio_offer`].
pub fn audio_publish(rid: Option<String>) -> ClientFrame {
    ClientFrame::CallPublish(chorus_proto::call::PublishRequest {
        rid,
        sid: 0,
        audio: true,
        video: false,
        screen: false,
        rids: vec![],
        height: None,
        muted: Default::default(),
        audio_mid: Some("0".into()),
        video_mid: None,
        sdp: audio_offer(),
    })
}
