//! WHIP, WHEP and the recording REST routes in a cluster (docs/deployment.md, "Cluster mode";
//! ARCHITECTURE.md, "Calls across nodes"): a request about a group's call may reach any node
//! behind the load balancer, and is answered by the node holding the call, so a publisher never
//! splits the call in two, the session's `Location` works on every node, and the SDP answers
//! carry the holding node's media address. Real `chorus serve` nodes on PostgreSQL + NATS;
//! plain HTTP requests as OBS or a `fetch()` page sends them.

mod common;

use std::time::Duration;

use chorus_client::{Connection, Http};
use chorus_proto::call::{CallEvent, CallLeaveReason};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::GroupId;
use common::call_slot;
use common::calls::{member_with_pin, room};
use common::cluster::{shared_nats, Cluster};
use common::live::{header, next_event, obs_offer, problem, req};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// The ids of the nodes holding a call, with its participants, as node `i` lists them.
async fn holders(c: &Cluster, i: usize) -> Vec<(String, i64)> {
    let list = c.admin_nodes(i).await;
    let list = list.as_array().expect("a node list").clone();
    list.iter()
        .filter(|n| n["calls"].as_i64().unwrap_or(0) > 0)
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["participants"].as_i64().unwrap_or(0)))
        .collect()
}

/// Waits until exactly one node holds a call, with `participants`; returns its index.
async fn one_host(c: &Cluster, participants: i64) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let h = holders(c, 0).await;
        if let [(id, p)] = &h[..] {
            if *p == participants {
                return id.trim_start_matches("node").parse().unwrap();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "not one node with {participants} in the call: {h:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The UDP port of node `i`'s media address, as `/admin/nodes` shows it.
async fn media_port(c: &Cluster, i: usize) -> String {
    let list = c.admin_nodes(0).await;
    let node = list.as_array().unwrap().iter().find(|n| n["id"] == format!("node{i}")).expect("the node").clone();
    node["media"].as_str().unwrap().rsplit(':').next().unwrap().to_string()
}

async fn recording(h: &Http, method: Method, gid: i64) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}/v1/groups/{gid}/call/recording", h.base()))
        .bearer_auth(h.token().unwrap())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_whep_and_recording_requests_on_any_node_reach_the_node_holding_the_call() {
    let _slot = call_slot();
    let c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let r = room(&c.nodes[0]).await;
    let gid = r.gid;
    let whip = format!("/v1/groups/{gid}/whip");
    // A viewer in the call through node0 places it.
    let (viewer, _) = member_with_pin(&c.nodes[0], &r, "viewer@example.org", &r.viewer_pin).await;
    let (mut watcher, _) = Connection::connect(&viewer, None).await.expect("ws");
    let joined = watcher.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let host = one_host(&c, 1).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != host).collect();
    let (a, b) = (&c.nodes[others[0]], &c.nodes[others[1]]);
    let k: Value = r.owner.post(&format!("/v1/groups/{gid}/stream_keys"), &json!({ "label": "OBS" })).await.unwrap();
    let (key_id, key) = (k["id"].as_i64().unwrap(), k["key"].as_str().unwrap().to_string());

    // WHIP POST to a node that does not hold the call: answered by the one that does.
    let p = req(a, Method::POST, &whip, Some(&key), Some("application/sdp"), None, &obs_offer("Obs1")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let location = header(&p, "location").to_string();
    assert!(location.starts_with(&format!("/v1/whip/node{host}.")), "the session's id names its node: {location}");
    let etag = header(&p, "etag").to_string();
    assert_eq!(header(&p, "access-control-allow-origin"), "*");
    let host_port = media_port(&c, host).await;
    let entry_port = media_port(&c, others[0]).await;
    assert!(p.body.contains(&format!(" {host_port} typ host")), "the holding node's candidates: {}", p.body);
    assert!(!p.body.contains(&format!(" {entry_port} typ host")), "not the entry node's: {}", p.body);
    let whip_address = match next_event(&mut watcher, |e| matches!(e, CallEvent::Published { .. })).await {
        CallEvent::Published { address, .. } => address,
        _ => unreachable!(),
    };
    assert!(whip_address.starts_with(&format!("key{key_id}~whip")), "{whip_address}");
    // One call, on one node, with both in it: not a second room on the entry node.
    one_host(&c, 2).await;
    // Any node's /admin/calls lists it, with the node holding it.
    let calls = c.admin(others[1], "/admin/calls").await;
    assert_eq!(
        calls,
        json!([{ "gid": gid, "participants": 2, "started_at": calls[0]["started_at"], "node": format!("node{host}") }])
    );

    // PATCH (trickle) and a bad PATCH through the third node: the host's answers.
    let t = "application/trickle-ice-sdpfrag";
    let frag = "a=ice-ufrag:Obs1\r\na=ice-pwd:clientpasswordclientpass\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n";
    problem(&req(b, Method::PATCH, &location, Some(&key), Some(t), Some("\"stale\""), frag).await, 412, "ETag");
    let trickle = req(b, Method::PATCH, &location, Some(&key), Some(t), Some(&etag), frag).await;
    assert_eq!(trickle.status, StatusCode::NO_CONTENT, "{}", trickle.body);

    // WHEP POST through a node that does not hold the call: the host's offer, its candidates.
    let whep = format!("/v1/groups/{gid}/whep");
    let w = req(b, Method::POST, &whep, viewer.token(), Some("application/sdp"), None, "v=0\r\n").await;
    assert_eq!(w.status, StatusCode::NOT_ACCEPTABLE, "{}", w.body);
    assert!(header(&w, "location").starts_with(&format!("/v1/whep/node{host}.")), "{:?}", w.headers);
    assert!(w.body.contains(&format!(" {host_port} typ host")), "{}", w.body);
    let whep_location = header(&w, "location").to_string();
    one_host(&c, 3).await;

    // Recording through the nodes that do not hold the call.
    let owner_a = c.on(others[0], &r.owner);
    let owner_b = c.on(others[1], &r.owner);
    let (status, rec) = recording(&owner_a, Method::POST, gid).await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    assert_eq!(rec["active"], true, "{rec}");
    let (status, rec) = recording(&owner_b, Method::GET, gid).await;
    assert_eq!((status, &rec["active"]), (StatusCode::OK, &json!(true)), "{rec}");
    assert_eq!(rec["by"], r.owner_address.as_str());
    let (status, rec) = recording(&owner_b, Method::DELETE, gid).await;
    assert_eq!((status, &rec["active"]), (StatusCode::OK, &json!(false)), "{rec}");

    // DELETE of both sessions through the nodes that did not make them.
    let d = req(b, Method::DELETE, &whep_location, viewer.token(), None, None, "").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let d = req(a, Method::DELETE, &location, Some(&key), None, None, "").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let left =
        next_event(&mut watcher, |e| matches!(e, CallEvent::Left { address, .. } if *address == whip_address)).await;
    assert!(matches!(left, CallEvent::Left { reason: CallLeaveReason::Lost | CallLeaveReason::Left, .. }), "{left:?}");
    problem(&req(b, Method::DELETE, &location, Some(&key), None, None, "").await, 404, "");

    // A key revoked through another node ends its stream on the host.
    let p = req(b, Method::POST, &whip, Some(&key), Some("application/sdp"), None, &obs_offer("Obs2")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let second = match next_event(&mut watcher, |e| matches!(e, CallEvent::Published { .. })).await {
        CallEvent::Published { address, .. } => address,
        _ => unreachable!(),
    };
    c.on(others[0], &r.owner).delete(&format!("/v1/groups/{gid}/stream_keys/{key_id}")).await.unwrap();
    next_event(&mut watcher, |e| matches!(e, CallEvent::Left { address, .. } if *address == second)).await;

    // Refused as the host would refuse it, and nothing placed for it: no token, a non-member.
    let lone = room(&c.nodes[1]).await;
    let lone_whip = format!("/v1/groups/{}/whip", lone.gid);
    problem(&req(a, Method::POST, &lone_whip, None, Some("application/sdp"), None, &obs_offer("X")).await, 401, "");
    problem(
        &req(a, Method::POST, &lone_whip, viewer.token(), Some("application/sdp"), None, &obs_offer("X")).await,
        404,
        "",
    );
    assert_eq!(holders(&c, 0).await.len(), 1, "only the first group's call is held anywhere");
}
