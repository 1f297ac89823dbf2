//! 1:1 calls between users whose WebSockets are on different nodes of a cluster
//! (docs/protocol.md §17, ARCHITECTURE.md "Cluster invariants"): the call lives on the caller's
//! node; the callee's node routes their answer, decline and hang-up there over NATS, and their
//! media join reaches the call's room as a leg; one call per user holds across nodes; a node's
//! death ends the calls its sessions carried (`lost`). Real `chorus serve` nodes on PostgreSQL +
//! NATS, real WebRTC (str0m on both ends) over loopback UDP.

mod common;

use std::time::{Duration, Instant};

use chorus_client::call::stats::Kind;
use chorus_client::call::{Call, CallNotice, CallOptions, PublishOptions};
use chorus_client::direct::DirectRefusal;
use chorus_client::Connection;
use chorus_proto::call::{CallEvent, CallLeaveReason};
use chorus_proto::direct::{room_of, DirectCallStatus, DirectCallUpdate};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::{CallId, ErrorCode, GroupId};
use common::calls::wait_frames;
use common::cluster::{shared_nats, Cluster};
use common::WAIT;

struct User {
    address: String,
    http: chorus_client::Http,
}

/// Logs a user in on node `i` and opens a session there.
async fn on_node(c: &Cluster, i: usize, email: &str, name: &str) -> (User, Connection) {
    let (sess, http) = c.nodes[i].login(email, name).await;
    let (conn, _) = c.nodes[i].connect(&http).await;
    (User { address: sess.user.address, http }, conn)
}

/// The next `call_status` of `call` on `conn` whose status `want` accepts.
async fn status(conn: &mut Connection, call: CallId, want: impl Fn(DirectCallStatus) -> bool) -> DirectCallUpdate {
    conn.call_status(call, WAIT, want).await.unwrap_or_else(|e| panic!("no call_status of {call}: {e:#}"))
}

/// The `call_status` of `call` that ends it, as a joined call's notice.
async fn ended(call: &mut Call, id: CallId, within: Duration) -> DirectCallUpdate {
    match call.wait_for(within, |n| matches!(n, CallNotice::Status(u) if u.call == id && u.status.ended())).await {
        Ok(CallNotice::Status(u)) => u,
        other => panic!("{} was not told call {id} ended: {other:?}", call.address()),
    }
}

fn refusal(e: anyhow::Error) -> DirectRefusal {
    e.downcast::<DirectRefusal>().unwrap_or_else(|e| panic!("expected a refusal, got {e:#}"))
}

/// Sends `call_join` for a 1:1 call's room and returns the answer.
async fn try_join(conn: &mut Connection, call: CallId) -> ServerFrame {
    conn.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(room_of(call)) }).await.expect("an answer")
}

fn assert_not_found(f: ServerFrame, what: &str) {
    assert!(matches!(f, ServerFrame::Error { code: ErrorCode::NotFound, .. }), "{what}: expected not_found, got {f:?}");
}

fn opts() -> CallOptions {
    CallOptions { subscribe_all: true, ..Default::default() }
}

fn one_layer() -> PublishOptions {
    PublishOptions { layers: 1, height: 360, ..Default::default() }
}

/// Both publish their camera and microphone; returns once each got `frames` video and audio
/// frames from the other.
async fn media_both_ways(a: &Call, b: &Call, frames: u64) {
    a.publish_camera(0, one_layer()).await.expect("publish");
    b.publish_camera(0, one_layer()).await.expect("publish");
    for (to, from) in [(a, b), (b, a)] {
        wait_frames(to, from.address(), Kind::Video, frames).await;
        wait_frames(to, from.address(), Kind::Audio, frames).await;
    }
}

/// The store's rows about 1:1 calls: `call_nodes` rows of call rooms (negative gids) and
/// `direct_busy` rows, each as (id or uid, node), sorted.
async fn rows(c: &Cluster) -> (Vec<(i64, String)>, Vec<(i64, String)>) {
    use sqlx::Connection as _;
    let mut db = sqlx::PgConnection::connect(&c.store.url()).await.expect("connect to PostgreSQL");
    let calls = sqlx::query_as("SELECT -gid, node FROM call_nodes WHERE gid < 0 ORDER BY gid DESC")
        .fetch_all(&mut db)
        .await
        .expect("read call_nodes");
    let users = sqlx::query_as("SELECT uid, node FROM direct_busy ORDER BY uid")
        .fetch_all(&mut db)
        .await
        .expect("read direct_busy");
    (calls, users)
}

/// Waits (at most 5 s) until the store holds no row about 1:1 calls.
async fn no_rows_left(c: &Cluster, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = rows(c).await;
        if r.0.is_empty() && r.1.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "rows left {after}: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The media address node `i` announces (`/admin/nodes`).
async fn media_of(c: &Cluster, i: usize) -> String {
    let list = c.admin_nodes(i).await;
    let me = format!("node{i}");
    let node = list.as_array().unwrap().iter().find(|n| n["id"] == me.as_str()).cloned();
    node.and_then(|n| n["media"].as_str().map(str::to_string)).unwrap_or_else(|| panic!("no media of {me}: {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_node0_answered_on_node1_carries_media_and_ends_from_node1_with_busy_on_node2() {
    let _slot = common::call_slot();
    let c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (alice, mut a) = on_node(&c, 0, "alice@example.org", "Alice").await;
    let (bob, mut b) = on_node(&c, 1, "bob@example.org", "Bob").await;
    let (_carol, mut cc) = on_node(&c, 2, "carol@example.org", "Carol").await;

    // Bob has sessions on the two other nodes too.
    let mut b_on0 = c.nodes[0].connect(&bob.http).await.0;
    let mut b_on2 = c.nodes[2].connect(&bob.http).await.0;

    // Alice (node0) calls Bob (node1): it rings on his session there.
    let call = a.dial(&bob.address, true).await.expect("dial");
    assert!(call.get() > 0 && call.get() < 1 << 53, "an id JavaScript reads exactly: {call}");
    assert_eq!(status(&mut a, call, |_| true).await.status, DirectCallStatus::Ringing);
    let inc = b.incoming_call(WAIT).await.expect("Bob's session on node1 rings");
    assert_eq!((inc.call, inc.from.as_str(), inc.video), (call, alice.address.as_str(), true));

    // Bob's other sessions, on the call's node and on node2, ring too.
    for (name, conn) in [("node0", &mut b_on0), ("node2", &mut b_on2)] {
        let inc = conn.incoming_call(WAIT).await.unwrap_or_else(|e| panic!("Bob's session on {name}: {e:#}"));
        assert_eq!(inc.call, call);
    }

    // Carol (node2) knows the id: node0 refuses her through node2.
    for frame in [ClientFrame::CallAccept { rid: None, call }, ClientFrame::CallHangup { rid: None, call }] {
        assert_not_found(cc.request(|rid| frame.with_rid(rid)).await.unwrap(), "Carol touching the call");
    }
    // Nobody joins before the answer, from either node.
    assert_not_found(try_join(&mut b, call).await, "Bob joining before his answer");
    assert_not_found(try_join(&mut a, call).await, "Alice joining before the answer");

    // Bob answers on node1: node0 hears it, and both are told.
    let answered_at = Instant::now();
    b.accept_call(call).await.expect("Bob answers through node1");
    assert_eq!(status(&mut a, call, |s| s != DirectCallStatus::Ringing).await.status, DirectCallStatus::Answered);
    assert_eq!(status(&mut b, call, |s| s != DirectCallStatus::Ringing).await.status, DirectCallStatus::Answered);
    let again = b.accept_call(call).await.map_err(refusal).unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict, "answered once only, node0's refusal carried back");
    // The store says where the call is, and that both are in it, on node0.
    let (calls, users) = rows(&c).await;
    assert_eq!(calls, vec![(call.get(), "node0".to_string())]);
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(users.iter().all(|(_, node)| node == "node0"), "{users:?}");

    // Carol (node2) calls either of them: busy, though neither is on her node.
    for peer in [&bob.address, &alice.address] {
        let busy = cc.dial(peer, false).await.expect("dial");
        let u = status(&mut cc, busy, |_| true).await;
        assert_eq!((u.status, u.code), (DirectCallStatus::Busy, DirectCallStatus::Busy.mesibo()), "calling {peer}");
    }
    assert_not_found(try_join(&mut cc, call).await, "Carol joining their room");
    // Only the session that answered joins for Bob: not his others, on any node.
    assert_not_found(try_join(&mut b_on0, call).await, "Bob's session on the call's node");
    assert_not_found(try_join(&mut b_on2, call).await, "Bob's session on node2");

    // Both join the call's room through their own node; Bob's media go to node0.
    let ca = Call::join_direct(a, call, opts()).await.expect("Alice joins on node0");
    let cb = Call::join_direct(b, call, opts()).await.expect("Bob joins through node1");
    assert_eq!(cb.joined().gid, room_of(call));
    media_both_ways(&ca, &cb, 30).await;
    println!("media both ways {:?} after the answer", answered_at.elapsed());
    let node0 = media_of(&c, 0).await;
    let remote = cb.stats().publish_path.and_then(|p| p.remote).map(|a| a.to_string());
    assert_eq!(remote.as_deref(), Some(node0.as_str()), "Bob's media go to the call's node");
    assert_eq!(cb.roster().len(), 2, "the two of them: {:?}", cb.roster().keys());

    // Bob hangs up on node1: both are told, by Bob, and the room closes under both.
    let (mut ca, mut cb) = (ca, cb);
    cb.hangup(call).await.expect("Bob hangs up through node1");
    for cl in [&mut ca, &mut cb] {
        let u = ended(cl, call, WAIT).await;
        assert_eq!((u.status, u.by.as_deref()), (DirectCallStatus::Ended, Some(bob.address.as_str())));
        let me = cl.address().to_string();
        let left = cl.wait_event(WAIT, |e| matches!(e, CallEvent::Left { address, .. } if *address == me)).await;
        assert!(matches!(left, Ok(CallEvent::Left { reason: CallLeaveReason::NotMember, .. })), "{left:?}");
    }

    // Both are free again, everywhere: Alice calls Bob anew, and Bob declines from node1.
    let mut a = c.nodes[0].connect(&alice.http).await.0;
    let mut b = c.nodes[1].connect(&bob.http).await.0;
    let second = a.dial(&bob.address, false).await.expect("dial again");
    assert_ne!(second, call);
    assert_eq!(b.incoming_call(WAIT).await.expect("rings again").call, second);
    b.decline_call(second).await.expect("Bob declines through node1");
    for conn in [&mut a, &mut b] {
        let u = status(conn, second, |s| s.ended()).await;
        assert_eq!((u.status, u.code), (DirectCallStatus::Declined, 0x43));
    }
    // Declined is over: the id is unknown everywhere, and nothing is left in the store (nor of
    // Carol's busy calls).
    let late = b.accept_call(second).await.map_err(refusal).unwrap_err();
    assert_eq!(late.code, ErrorCode::NotFound);
    no_rows_left(&c, "after the calls ended").await;
    drop((ca, cb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_ends_the_calls_its_sessions_carried_lost_on_the_other_side() {
    let _slot = common::call_slot();
    let mut c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (alice, mut a) = on_node(&c, 0, "alice@example.org", "Alice").await;
    let (bob, mut b) = on_node(&c, 1, "bob@example.org", "Bob").await;
    let (carol, mut cc) = on_node(&c, 2, "carol@example.org", "Carol").await;

    // Alice (node0) and Bob (node1) in a call with media; then node1, Bob's, is killed.
    let call = a.dial(&bob.address, true).await.expect("dial");
    b.incoming_call(WAIT).await.expect("rings");
    b.accept_call(call).await.expect("answer");
    status(&mut a, call, |s| s == DirectCallStatus::Answered).await;
    let mut ca = Call::join_direct(a, call, opts()).await.expect("Alice joins");
    let cb = Call::join_direct(b, call, opts()).await.expect("Bob joins through node1");
    media_both_ways(&ca, &cb, 20).await;
    let killed = Instant::now();
    c.kill(1);
    let u = ended(&mut ca, call, Duration::from_secs(10)).await;
    println!("the caller told lost {:?} after the callee's node died", killed.elapsed());
    assert_eq!((u.status, u.by.as_deref()), (DirectCallStatus::Lost, Some(bob.address.as_str())));
    no_rows_left(&c, "after the callee's node died").await;

    // Alice is free again: she calls Carol (node2), who answers, and Erin (node0) calls Dan
    // (node2), who lets it ring; then node0, theirs and the calls', is killed: Carol and Dan
    // are told their calls are lost, by node2 (the node left that speaks for the cluster).
    let mut a = c.nodes[0].connect(&alice.http).await.0;
    let (_erin, mut e) = on_node(&c, 0, "erin@example.org", "Erin").await;
    let (dan, mut d) = on_node(&c, 2, "dan@example.org", "Dan").await;
    let second = a.dial(&carol.address, false).await.expect("dial Carol");
    assert_eq!(cc.incoming_call(WAIT).await.expect("Carol rings").call, second);
    cc.accept_call(second).await.expect("Carol answers through node2");
    status(&mut a, second, |s| s == DirectCallStatus::Answered).await;
    status(&mut cc, second, |s| s == DirectCallStatus::Answered).await;
    let ringing = e.dial(&dan.address, true).await.expect("Erin dials Dan");
    assert_eq!(d.incoming_call(WAIT).await.expect("Dan rings").call, ringing);
    let killed = Instant::now();
    c.kill(0);
    let u = cc.call_status(second, Duration::from_secs(10), |s| s.ended()).await.expect("Carol told");
    println!("the callee told lost {:?} after the call's node died", killed.elapsed());
    assert_eq!((u.status, u.call), (DirectCallStatus::Lost, second));
    let u = d.call_status(ringing, Duration::from_secs(10), |s| s.ended()).await.expect("Dan told");
    assert_eq!((u.status, u.video, u.to.as_str()), (DirectCallStatus::Lost, true, dan.address.as_str()));
    // The calls went with their node: node2 answers for them no more, and the dead node's rows
    // are gone.
    let late = cc.hangup_call(second).await.map_err(refusal).unwrap_err();
    assert_eq!(late.code, ErrorCode::NotFound);
    let late = d.accept_call(ringing).await.map_err(refusal).unwrap_err();
    assert_eq!(late.code, ErrorCode::NotFound);
    no_rows_left(&c, "after the call's node died").await;
    drop((a, e, ca, cb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_ends_the_calls_its_sessions_carried_at_once_and_leaves_no_rows() {
    let _slot = common::call_slot();
    let mut c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (_alice, mut a) = on_node(&c, 0, "alice@example.org", "Alice").await;
    let (bob, mut b) = on_node(&c, 1, "bob@example.org", "Bob").await;
    let (carol, mut cc) = on_node(&c, 2, "carol@example.org", "Carol").await;

    // Alice (node0) and Bob (node1) in a call; Bob's node drains: Alice is told at once, by Bob.
    let call = a.dial(&bob.address, false).await.expect("dial");
    b.incoming_call(WAIT).await.expect("rings");
    b.accept_call(call).await.expect("answer");
    status(&mut a, call, |s| s == DirectCallStatus::Answered).await;
    let drained = Instant::now();
    assert!(c.terminate(1).success());
    let u = a.call_status(call, Duration::from_millis(2500), |s| s.ended()).await.expect("Alice told at once");
    println!("the caller told lost {:?} after the callee's node got SIGTERM", drained.elapsed());
    assert_eq!((u.status, u.by.as_deref()), (DirectCallStatus::Lost, Some(bob.address.as_str())));
    no_rows_left(&c, "after the callee's node drained").await;

    // Alice calls Carol (node2), who answers; Alice's node, the call's, drains: Carol is told
    // at once, and the drained node's rows are gone.
    let second = a.dial(&carol.address, false).await.expect("dial Carol");
    cc.incoming_call(WAIT).await.expect("Carol rings");
    cc.accept_call(second).await.expect("Carol answers through node2");
    status(&mut cc, second, |s| s == DirectCallStatus::Answered).await;
    let drained = Instant::now();
    assert!(c.terminate(0).success());
    let u = cc.call_status(second, Duration::from_millis(2500), |s| s.ended()).await.expect("Carol told at once");
    println!("the callee told lost {:?} after the call's node got SIGTERM", drained.elapsed());
    assert_eq!(u.status, DirectCallStatus::Lost);
    no_rows_left(&c, "after the call's node drained").await;
}
