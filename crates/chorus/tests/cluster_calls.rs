//! Calls across the nodes of a cluster (docs/deployment.md, ARCHITECTURE.md "Calls across
//! nodes"): a group's call is held by one node, participants whose WebSocket is on another node
//! reach it over NATS and send their media straight to it; when that node is killed, the
//! participants are told and join again on a live node by themselves (the Rust client rejoins
//! on `left`/`lost` as the SDK does). Real `chorus serve` nodes on PostgreSQL + NATS, real
//! WebRTC (str0m on both ends) over loopback UDP.

mod common;

use std::time::{Duration, Instant};

use chorus_client::call::stats::Kind;
use chorus_client::call::{Call, CallError, CallNotice, CallOptions, PublishOptions};
use chorus_client::Http;
use chorus_proto::ws::ServerFrame;
use common::call_slot;
use common::calls::{frames, join, member_with_pin, room, wait_frames, Room};
use common::cluster::{shared_nats, Cluster};
use common::WAIT;
use serde_json::Value;

fn auto() -> CallOptions {
    CallOptions { subscribe_all: true, ..Default::default() }
}

/// The node the list says holds a call with `participants`, and the others' call counts.
fn host(list: &[Value], participants: i64) -> Option<String> {
    let hosts: Vec<&Value> = list.iter().filter(|n| n["calls"].as_i64() == Some(1)).collect();
    let idle = list.iter().filter(|n| n["calls"].as_i64() == Some(0)).count();
    match hosts[..] {
        [h] if idle == list.len() - 1 && h["participants"].as_i64() == Some(participants) => {
            h["id"].as_str().map(str::to_string)
        }
        _ => None,
    }
}

/// Waits until each of `calls` has received at least `more` frames of audio and video from
/// every other one, beyond what it had in `before`.
async fn everyone_hears_everyone(calls: &[Call], more: u64) {
    let addresses: Vec<String> = calls.iter().map(|c| c.address().to_string()).collect();
    for c in calls {
        let before = c.stats();
        for other in addresses.iter().filter(|a| *a != c.address()) {
            let v = frames(&before, other, Kind::Video) + more;
            let a = frames(&before, other, Kind::Audio) + more;
            wait_frames(c, other, Kind::Video, v).await;
            wait_frames(c, other, Kind::Audio, a).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_on_three_nodes_get_everyones_media_through_the_one_node_holding_the_call() {
    let _slot = call_slot();
    let c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    // The owner on node0, Bob on node1, Cat on node2: each logs in, joins and calls through
    // their own node.
    let r = room(&c.nodes[0]).await;
    let (hb, _) = member_with_pin(&c.nodes[1], &r, "bob@example.org", &r.publisher_pin).await;
    let (hc, _) = member_with_pin(&c.nodes[2], &r, "cat@example.org", &r.publisher_pin).await;
    // A non-member is refused before anything is placed.
    let (_, hx) = c.nodes[2].login("dan@example.org", "Dan").await;
    let (conn, _) = chorus_client::Connection::connect(&hx, None).await.expect("ws");
    match Call::join(conn, r.gid, auto()).await {
        Err(CallError::Refused { code, .. }) => assert_eq!(code, chorus_proto::ErrorCode::NotFound),
        other => panic!("a non-member joined: {:?}", other.map(|c| c.address().to_string())),
    }
    let mut calls = Vec::new();
    for h in [&r.owner, &hb, &hc] {
        let call = join(h, r.gid, auto()).await;
        let granted = call.publish_camera(0, PublishOptions::default()).await.expect("publish");
        assert_eq!(granted.layers, 3, "simulcast is granted through the routed signaling");
        calls.push(call);
    }
    everyone_hears_everyone(&calls, 30).await;
    for call in &calls {
        assert_eq!(call.roster().len(), 3, "{} sees {:?}", call.address(), call.roster().keys());
    }

    // One node holds the call, with the three; every node announces a media address of its own,
    // and each participant's media goes to the host's (its legs' remote address).
    let list = c.wait_nodes(1, "one node holding a call of 3", |l| host(l, 3).is_some()).await;
    let nodes = list.as_array().unwrap();
    let host_id = host(nodes, 3).unwrap();
    let media: Vec<&str> = nodes.iter().map(|n| n["media"].as_str().unwrap()).collect();
    assert!(media.iter().all(|m| m.parse::<std::net::SocketAddr>().is_ok()), "{list}");
    assert_eq!(media.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{list}");
    let host_media = nodes.iter().find(|n| n["id"] == host_id.as_str()).unwrap()["media"].as_str().unwrap();
    for call in &calls {
        let st = call.stats();
        for path in [st.publish_path, st.subscribe_path] {
            let remote = path.and_then(|p| p.remote).map(|a| a.to_string());
            assert_eq!(remote.as_deref(), Some(host_media), "{} sends its media to the host", call.address());
        }
    }

    // Bob (node1) leaves: the others see him go, and the host lets his leg go.
    let bob = calls.remove(1);
    let bob_address = bob.address().to_string();
    bob.leave().await.expect("leave");
    for call in &mut calls {
        call.wait_event(
            WAIT,
            |e| matches!(e, chorus_proto::call::CallEvent::Left { address, .. } if *address == bob_address),
        )
        .await
        .expect("Bob's departure reaches the others");
    }
    c.wait_nodes(0, "the call down to 2", |l| host(l, 2).is_some()).await;
    everyone_hears_everyone(&calls, 20).await;
}

/// The owner (WebSocket on node1) and Cat (node2) in a call, publishing and hearing each other.
/// The call is placed on the least-loaded node, ties to the lowest id: node0, where neither is
/// connected. Returns the room, Cat's client and address, and the two calls.
async fn a_call_on_node0(c: &Cluster) -> (Room, Http, String, Vec<Call>) {
    let r = room(&c.nodes[1]).await;
    let (hc, cat_address) = member_with_pin(&c.nodes[2], &r, "cat@example.org", &r.publisher_pin).await;
    let mut calls = Vec::new();
    for h in [&r.owner, &hc] {
        let call = join(h, r.gid, auto()).await;
        call.publish_camera(0, PublishOptions::default()).await.expect("publish");
        calls.push(call);
    }
    everyone_hears_everyone(&calls, 30).await;
    let list = c.wait_nodes(1, "the call on one node", |l| host(l, 2).is_some()).await;
    assert_eq!(host(list.as_array().unwrap(), 2).as_deref(), Some("node0"), "{list}");
    (r, hc, cat_address, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_holding_a_call_brings_its_participants_back_on_another_within_10_s() {
    let _slot = call_slot();
    let mut c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (r, hc, cat_address, mut calls) = a_call_on_node0(&c).await;
    // Chat beside the call, to check nothing is lost around the crash.
    let (mut owner_chat, _) = c.nodes[1].connect(&r.owner).await;
    let (mut cat_chat, _) = c.nodes[2].connect(&hc).await;

    let killed = Instant::now();
    c.kill(0);
    // Each is told it lost the call, joins again by itself, and media flows again, all within
    // 10 s of the crash (three missed 1 s heartbeats, then the rejoin and ICE/DTLS).
    for call in &mut calls {
        call.wait_for(Duration::from_secs(10), |n| matches!(n, CallNotice::Rejoined))
            .await
            .unwrap_or_else(|e| panic!("{} did not rejoin: {e}", call.address()));
    }
    let sent = owner_chat.send_text(None, Some(r.gid), "after-crash", "still here").await.unwrap();
    assert!(matches!(sent, ServerFrame::Sent { .. }), "{sent:?}");
    everyone_hears_everyone(&calls, 10).await;
    let back = killed.elapsed();
    println!("media back {back:?} after the crash");
    assert!(back < Duration::from_secs(10), "media back {back:?} after the crash");
    let m = cat_chat.expect(WAIT, |f| matches!(f, ServerFrame::Message(_))).await.expect("Cat gets the message");
    assert!(matches!(&m, ServerFrame::Message(m) if m.text.as_deref() == Some("still here")), "{m:?}");
    // The call lives on a live node now, with both, and neither left the roster for good.
    let list = c.wait_nodes(1, "the call on a live node", |l| host(l, 2).is_some()).await;
    assert_ne!(host(list.as_array().unwrap(), 2).as_deref(), Some("node0"));
    for call in &calls {
        assert_eq!(call.roster().len(), 2, "{} sees {:?}", call.address(), call.roster().keys());
    }
    assert!(calls[0].roster().contains_key(&cat_address));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_by_sigterm_hands_its_call_and_its_sessions_to_the_other_nodes() {
    let _slot = call_slot();
    let mut c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    // Dan chats on node0, which holds the call.
    let (_, hd) = c.nodes[0].login("dan@example.org", "Dan").await;
    let (mut dan, _) = c.nodes[0].connect(&hd).await;
    let (_r, _hc, _, mut calls) = a_call_on_node0(&c).await;

    // SIGTERM: node0 exits cleanly, and its session ends with 4000 (reconnect and resume).
    let drained = Instant::now();
    let status = c.terminate(0);
    assert!(status.success(), "node0 exited with {status}");
    let closed = loop {
        match dan.next(WAIT).await {
            Ok(_) => continue, // presence and the like, before the close
            Err(e) => break e,
        }
    };
    assert!(closed.to_string().contains("4000"), "{closed}");
    // The call moves at once, sooner than a node can be found gone by its heartbeats (3 s).
    for call in &mut calls {
        call.wait_for(Duration::from_millis(2500).saturating_sub(drained.elapsed()), |n| {
            matches!(n, CallNotice::Rejoined)
        })
        .await
        .unwrap_or_else(|e| panic!("{} did not rejoin within 2.5 s of SIGTERM: {e}", call.address()));
    }
    println!("rejoined {:?} after SIGTERM", drained.elapsed());
    everyone_hears_everyone(&calls, 10).await;
    let moved = drained.elapsed();
    println!("media back {moved:?} after SIGTERM");
    assert!(moved < Duration::from_secs(6), "media back {moved:?} after SIGTERM");
    let list = c.wait_nodes(1, "the call on a live node", |l| host(l, 2).is_some()).await;
    assert_ne!(host(list.as_array().unwrap(), 2).as_deref(), Some("node0"));
    assert_eq!(list.as_array().unwrap().len(), 2, "node0 left the list at once: {list}");
}
