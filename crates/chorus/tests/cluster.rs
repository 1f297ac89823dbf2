//! Cluster mode: real `chorus serve` nodes on one PostgreSQL database, joined by NATS
//! (docs/deployment.md). Users on different nodes chat, receive receipts, typing, presence and
//! group events; receivers hop between nodes during a 1,000-message storm and get every
//! message once, in order (one node hears NATS 50 ms late); a logout or a deleted user on one
//! node ends the sessions on another; `/admin/nodes` lists every node; a WebSocket ticket of
//! one node opens a session on another; NATS missing at start stops the start, and NATS lost
//! while running costs no message.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chorus_client::{Connection, Http};
use chorus_proto::flags::presence;
use chorus_proto::rest::{CreatedGroup, Group};
use chorus_proto::ws::{ClientFrame, Cursor, Message, ServerFrame};
use chorus_proto::{GroupId, Seq};
use common::cluster::{shared_nats, Cluster, DelayProxy, OwnNats};
use common::{Backend, Store, WAIT};
use serde_json::json;

fn is_msg(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::Message(_))
}

fn text(f: &ServerFrame) -> Option<&str> {
    match f {
        ServerFrame::Message(m) => m.text.as_deref(),
        _ => None,
    }
}

fn presence_of(f: &ServerFrame, who: &str, value: u8) -> bool {
    matches!(f, ServerFrame::Presence { from, presence, .. } if from == who && *presence == value)
}

async fn healthz(base: &str) -> u16 {
    match reqwest::get(format!("{base}/healthz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn wait_health(base: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while healthz(base).await != want {
        assert!(tokio::time::Instant::now() < deadline, "{base}/healthz never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_three_nodes_chat_with_receipts_typing_presence_and_groups() {
    let c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (a, ha) = c.nodes[0].login("a@example.org", "A").await;
    let (b, hb) = c.nodes[1].login("b@example.org", "B").await;
    let (cu, hc) = c.nodes[2].login("c@example.org", "C").await;
    let (a_addr, b_addr, c_addr) = (a.user.address.clone(), b.user.address.clone(), cu.user.address.clone());

    // 1:1, A on node0 and B on node1. Stored while B is offline: B gets it at connect.
    let (mut ca, _) = c.nodes[0].connect(&ha).await;
    let r = ca.send_text(Some(&b_addr), None, "a-1", "before you came").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
    let (mut cb, hs) = c.nodes[1].connect(&hb).await;
    assert_eq!(hs.backlog.iter().map(|m| m.text.as_deref()).collect::<Vec<_>>(), [Some("before you came")]);
    // Presence both ways: node1 announces B to A on node0; B learns A is online on node0.
    ca.expect(WAIT, |f| presence_of(f, &b_addr, presence::ONLINE)).await.expect("A sees B come online");
    cb.expect(WAIT, |f| presence_of(f, &a_addr, presence::ONLINE)).await.expect("B is told A is online");

    // Live delivery, delivered and read receipts, typing: each crosses nodes.
    let ServerFrame::Sent { seq, .. } = ca.send_text(Some(&b_addr), None, "a-2", "live").await.unwrap() else {
        panic!("not sent")
    };
    let m = cb.expect(WAIT, is_msg).await.expect("B gets A's message from node0");
    assert_eq!(text(&m), Some("live"));
    cb.ack().await.unwrap();
    let r = ca.expect(WAIT, |f| matches!(f, ServerFrame::Receipt { status: 2, .. })).await.expect("delivered");
    assert!(matches!(&r, ServerFrame::Receipt { by, seq: s, .. } if *by == b_addr && *s == seq), "{r:?}");
    let read = cb.request(|rid| ClientFrame::Read { rid, peer: Some(a_addr.clone()), gid: None, seq }).await.unwrap();
    assert!(matches!(read, ServerFrame::Ok { .. }), "{read:?}");
    ca.expect(WAIT, |f| matches!(f, ServerFrame::Receipt { status: 3, .. })).await.expect("read receipt");
    cb.send(&ClientFrame::Typing { peer: Some(a_addr.clone()), gid: None, on: true }).await.unwrap();
    ca.expect(WAIT, |f| presence_of(f, &b_addr, presence::TYPING)).await.expect("A sees B typing");

    // A group made on node0, whose policy node0 caches (A sends alone first); B joins through
    // node1 and C through node2. node0 must drop its cached policy, or B and C would not
    // receive A's next message.
    let g: CreatedGroup = ha.post("/v1/groups", &json!({"name": "Room", "room": true})).await.unwrap();
    let gid = g.group.gid.get();
    assert!(matches!(ca.send_text(None, Some(gid), "g-0", "alone").await.unwrap(), ServerFrame::Sent { .. }));
    let join = format!("/v1/groups/{gid}/join");
    c.on(1, &hb).post::<Group>(&join, &json!({"pin": g.pins[0].pin})).await.unwrap();
    ca.expect(WAIT, |f| matches!(f, ServerFrame::Group { gid: g, .. } if g.get() == gid))
        .await
        .expect("A gets the group event of B's join on node1");
    c.on(2, &hc).post::<Group>(&join, &json!({"pin": g.pins[0].pin})).await.unwrap();
    let (mut cc, _) = c.nodes[2].connect(&hc).await;
    assert!(matches!(ca.send_text(None, Some(gid), "g-1", "hello all").await.unwrap(), ServerFrame::Sent { .. }));
    for (who, conn) in [("B", &mut cb), ("C", &mut cc)] {
        let m = conn.expect(WAIT, |f| text(f) == Some("hello all")).await;
        assert!(m.is_ok(), "{who} did not get the group message from node0: {m:?}");
    }
    assert!(matches!(cc.send_text(None, Some(gid), "g-2", "from node2").await.unwrap(), ServerFrame::Sent { .. }));
    for (who, conn) in [("A", &mut ca), ("B", &mut cb)] {
        let m = conn.expect(WAIT, |f| text(f) == Some("from node2")).await;
        assert!(m.is_ok(), "{who} did not get C's group message: {m:?}");
    }
    cc.send(&ClientFrame::Typing { peer: None, gid: Some(GroupId(gid)), on: true }).await.unwrap();
    for conn in [&mut ca, &mut cb] {
        conn.expect(WAIT, |f| matches!(f, ServerFrame::Presence { from, gid: Some(g), presence: presence::TYPING, .. } if *from == c_addr && g.get() == gid))
            .await
            .expect("typing in the group crosses nodes");
    }

    // C leaves: A (node0) hears C is offline once the grace period (1 s) is over.
    cc.close().await;
    ca.expect(Duration::from_secs(8), |f| presence_of(f, &c_addr, presence::OFFLINE))
        .await
        .expect("A sees C go offline");
}

/// A member reading a group: connects to `nodes[start]`, and after every `hop` messages (its
/// resume's backlog included) drops the connection and resumes from its cursor on the next
/// node. Returns the group's messages in the order received, and how many connections it
/// opened while `sending` was still set.
async fn hop_and_receive(
    bases: &[String],
    token: &str,
    gid: i64,
    (total, start, hop): (usize, usize, usize),
    sending: &AtomicBool,
) -> (Vec<Message>, usize) {
    let mut got: Vec<Message> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut node = start;
    let mut mid_stream = 0;
    while got.len() < total {
        let http = Http::new(&bases[node]).with_token(token);
        if sending.load(Ordering::Acquire) {
            mid_stream += 1;
        }
        let until = got.len() + hop;
        let (mut conn, hs) = Connection::connect(&http, cursor.clone()).await.expect("connect");
        if cursor.is_some() {
            assert!(hs.resumed, "resume refused: {:?}", hs.reason);
        }
        got.extend(hs.backlog.into_iter().filter(|m| m.gid.map(|g| g.get()) == Some(gid)));
        while got.len() < until.min(total) {
            match tokio::time::timeout(Duration::from_secs(15), conn.recv()).await {
                Ok(Ok(ServerFrame::Message(m))) if m.gid.map(|g| g.get()) == Some(gid) => got.push(m),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break, // closed by the server (e.g. 4000): resume elsewhere
                Err(_) => panic!("no message for 15 s after {} of {total}", got.len()),
            }
        }
        cursor = Some(conn.cursor());
        conn.abort();
        node = (node + 1) % bases.len();
    }
    (got, mid_stream)
}

/// Sends `n` messages to the group through `base`, pipelined, and waits for every `sent`.
async fn send_all(base: &str, token: &str, gid: i64, tag: &str, n: usize) -> Vec<String> {
    let http = Http::new(base).with_token(token);
    let (mut conn, _) = Connection::connect(&http, None).await.expect("connect");
    let texts: Vec<String> = (0..n).map(|k| format!("{tag}-{k}")).collect();
    for (k, t) in texts.iter().enumerate() {
        let frame = ClientFrame::Send {
            rid: Some(format!("{k}")),
            id: t.clone(),
            peer: None,
            gid: Some(GroupId(gid)),
            text: Some(t.clone()),
            data: None,
            file: None,
            mtype: None,
        };
        conn.send(&frame).await.unwrap();
    }
    let mut sent = 0;
    while sent < n {
        match conn.next(Duration::from_secs(15)).await.expect("sent answers") {
            ServerFrame::Sent { .. } => sent += 1,
            ServerFrame::Error { code, message, .. } => panic!("{tag}: {code:?} {message}"),
            _ => {}
        }
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_three_nodes_reach_receivers_hopping_between_nodes_once_and_in_order() {
    let fast = [
        ("CHORUS_SENDS_PER_SECOND", "5000"),
        ("CHORUS_SEND_BURST", "5000"),
        ("CHORUS_SESSION_FRAMES_PER_SECOND", "20000"),
        ("CHORUS_SESSION_FRAME_BURST", "20000"),
    ];
    // node2 hears NATS (and is heard) 50 ms late: its batches reach node0 and node1 after
    // batches they committed later, which they must still hand out in position order.
    let nats = shared_nats();
    let upstream = nats.trim_start_matches("nats://").parse().expect("CHORUS_TEST_NATS is nats://ip:port");
    let slow = DelayProxy::start(upstream, Duration::from_millis(50)).await;
    let c = Cluster::start_via(&[nats.clone(), nats, slow.url()], &fast).await;
    c.wait_joined().await;
    let mut senders = Vec::new();
    for i in 0..3 {
        let (_, h) = c.nodes[i].login(&format!("s{i}@example.org"), &format!("S{i}")).await;
        senders.push(h);
    }
    let mut receivers = Vec::new();
    for i in 0..2 {
        let (_, h) = c.nodes[i].login(&format!("r{i}@example.org"), &format!("R{i}")).await;
        receivers.push(h);
    }
    let g: CreatedGroup = senders[0].post("/v1/groups", &json!({"name": "Storm", "room": true})).await.unwrap();
    let gid = g.group.gid.get();
    for (i, h) in senders.iter().skip(1).chain(receivers.iter()).enumerate() {
        let on = c.on(i % 3, h);
        on.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": g.pins[0].pin})).await.unwrap();
    }
    let bases: Vec<String> = c.nodes.iter().map(|n| n.base.clone()).collect();
    let tokens: Vec<String> = receivers.iter().map(|h| h.token().unwrap().to_string()).collect();
    let started = std::time::Instant::now();
    let sending = AtomicBool::new(true);
    let sends = async {
        let (x, y, z) = tokio::join!(
            send_all(&bases[0], senders[0].token().unwrap(), gid, "n0", 334),
            send_all(&bases[1], senders[1].token().unwrap(), gid, "n1", 333),
            send_all(&bases[2], senders[2].token().unwrap(), gid, "n2", 333),
        );
        sending.store(false, Ordering::Release);
        [x, y, z].concat()
    };
    let (sent, (r0, hops0), (r1, hops1)) = tokio::join!(
        sends,
        hop_and_receive(&bases, &tokens[0], gid, (1000, 0, 40), &sending),
        hop_and_receive(&bases, &tokens[1], gid, (1000, 1, 70), &sending),
    );
    eprintln!(
        "1,000 messages from 3 nodes, receivers hopping ({hops0} and {hops1} connections while sending): {:?}",
        started.elapsed()
    );
    let want: HashSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(want.len(), 1000);
    for (who, got, hops) in [("R0", r0, hops0), ("R1", r1, hops1)] {
        assert!(hops >= 3, "{who} connected only {hops} times while the messages were being sent");
        assert_eq!(got.len(), 1000, "{who} got {} messages", got.len());
        let texts: HashSet<&str> = got.iter().filter_map(|m| m.text.as_deref()).collect();
        assert_eq!(texts, want, "{who} did not get exactly the messages sent");
        for w in got.windows(2) {
            assert!(
                w[0].seq < w[1].seq && w[0].pos < w[1].pos,
                "{who}: {:?} then {:?}",
                (w[0].seq, w[0].pos),
                (w[1].seq, w[1].pos)
            );
        }
        assert_eq!((got[0].seq, got[999].seq), (Seq(1), Seq(1000)), "{who}: the group's seqs run 1..=1000");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_deluser_on_one_node_end_sessions_on_another_and_admin_lists_the_nodes() {
    let c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (u, hu) = c.nodes[0].login("u@example.org", "U").await;
    let (v, hv) = c.nodes[1].login("v@example.org", "V").await;
    let (mut cu, _) = c.nodes[2].connect(&c.on(2, &hu)).await;
    let (mut cv, _) = c.nodes[1].connect(&hv).await;

    // Every node lists the three, with the sessions each holds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = c.admin_nodes(1).await;
        let nodes = list.as_array().unwrap();
        let ids: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["node1", "node0", "node2"], "{list}");
        for n in nodes {
            let i: usize = n["id"].as_str().unwrap()[4..].parse().unwrap();
            assert_eq!(n["address"], json!(c.nodes[i].base), "{list}");
            assert_eq!(n["store"], "postgresql");
            let age = chrono_ms() - n["last_heartbeat"].as_i64().unwrap();
            assert!((0..5000).contains(&age), "heard {age} ms ago: {list}");
        }
        let sessions: Vec<i64> = nodes.iter().map(|n| n["sessions"].as_i64().unwrap()).collect();
        if sessions == [1, 0, 1] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "sessions per node: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // U logs out through node0; U's session on node2 ends (4001, after an `unauthorized` frame).
    c.on(0, &hu).post::<serde_json::Value>("/v1/auth/logout", &json!({})).await.unwrap();
    let bye = cu.expect(WAIT, |f| matches!(f, ServerFrame::Error { .. })).await.expect("the unauthorized frame");
    assert!(matches!(&bye, ServerFrame::Error { code, .. } if code.as_str() == "unauthorized"), "{bye:?}");
    let closed = cu.next(WAIT).await.expect_err("the session ends");
    assert!(closed.to_string().contains("4001"), "{closed}");
    // V's session (another user, node1) goes on.
    let r = cv.send_text(Some(&u.user.address), None, "v-1", "still here").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
    // An address node1 resolved a moment ago (its cache keeps one 5 s) stops resolving there
    // as soon as node0 deactivates the user.
    let (x, _) = c.nodes[2].login("x@example.org", "X").await;
    let r = cv.send_text(Some(&x.user.address), None, "v-2", "to x").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
    let r = c.nodes[0]
        .backend(
            json!({"op": "userset", "token": common::ADMIN_TOKEN, "user": {"address": x.user.address, "active": 0}}),
        )
        .await;
    assert_eq!(r["result"], json!(true), "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = cv.send_text(Some(&x.user.address), None, "v-3", "to x, deactivated").await.unwrap();
    assert!(matches!(r, ServerFrame::Error { .. }), "node1 still resolves a deactivated address: {r:?}");
    // Deleting V through node0's /backend ends V's session on node1 the same way.
    let r = c.nodes[0]
        .backend(json!({"op": "deluser", "token": common::ADMIN_TOKEN, "user": {"address": v.user.address}}))
        .await;
    assert_eq!(r, json!({"op": "deluser", "result": true}));
    cv.expect(WAIT, |f| matches!(f, ServerFrame::Error { .. })).await.expect("the unauthorized frame");
    let closed = cv.next(WAIT).await.expect_err("the session ends");
    assert!(closed.to_string().contains("4001"), "{closed}");
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_needs_postgresql_and_a_reachable_nats() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{closed}");
    let pg = Store::new(Backend::Postgres).await;
    let err = pg.start_fails(&[("CHORUS_NATS", &url)]);
    assert!(err.contains(&format!("cannot connect to NATS at {url}")), "{err}");
    let sqlite = Store::new(Backend::Sqlite).await;
    let err = sqlite.start_fails(&[("CHORUS_NATS", &shared_nats())]);
    assert!(err.contains("cluster mode") && err.contains("needs a PostgreSQL database"), "{err}");
    let err = pg.start_fails(&[("CHORUS_NATS", &shared_nats()), ("CHORUS_NATS_PREFIX", "a.b")]);
    assert!(err.contains("nats_prefix must be"), "{err}");
    let err = pg.start_fails(&[("CHORUS_NATS", &shared_nats()), ("CHORUS_NODE_ID", "no spaces")]);
    assert!(err.contains("node_id must be"), "{err}");
    let err = pg.start_fails(&[("CHORUS_NATS", &shared_nats()), ("CHORUS_NODE_HEARTBEAT_SECS", "0")]);
    assert!(err.contains("node_heartbeat_secs must be 1 to 60"), "{err}");
    // The URL is not repeated in the error: it may hold a password.
    let err = pg.start_fails(&[("CHORUS_NATS", "http://user:s3cret@127.0.0.1:4222")]);
    assert!(err.contains("nats must be a nats:// URL") && !err.contains("s3cret"), "{err}");
}

/// A client that resumes on the same node whenever the server closes its connection.
struct Resuming {
    http: Http,
    conn: Option<Connection>,
    backlog: Vec<ServerFrame>,
    reconnects: usize,
}

impl Resuming {
    async fn new(http: Http) -> Resuming {
        let (conn, _) = Connection::connect(&http, None).await.expect("connect");
        Resuming { http, conn: Some(conn), backlog: Vec::new(), reconnects: 0 }
    }

    /// Waits for a message with `want` as text, live or in a resume's backlog.
    async fn message(&mut self, want: &str, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.backlog.iter().position(|f| text(f) == Some(want)) {
                self.backlog.remove(i);
                return Ok(());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!("no {want:?} within {timeout:?}"));
            }
            let conn = self.conn.as_mut().expect("connected");
            match tokio::time::timeout(left, conn.recv()).await {
                Err(_) => return Err(format!("no {want:?} within {timeout:?}")),
                Ok(Ok(f)) => self.backlog.push(f),
                Ok(Err(e)) => {
                    // Only "reconnect and resume" is expected here.
                    assert!(e.to_string().contains("4000"), "closed otherwise: {e}");
                    let cursor = conn.cursor();
                    self.conn.take().unwrap().abort();
                    let (conn, hs) = Connection::connect(&self.http, Some(cursor)).await.expect("reconnect");
                    assert!(hs.resumed, "{:?}", hs.reason);
                    self.reconnects += 1;
                    self.backlog.extend(hs.backlog.into_iter().map(ServerFrame::Message));
                    self.conn = Some(conn);
                }
            }
        }
    }

    async fn send_to(&mut self, peer: &str, id: &str, t: &str) {
        loop {
            let conn = self.conn.as_mut().expect("connected");
            match conn.send_text(Some(peer), None, id, t).await {
                Ok(ServerFrame::Sent { .. }) => return,
                Ok(other) => panic!("{other:?}"),
                // Closed for a resync just now: the same id again is stored once.
                Err(_) => {
                    let (conn, _) = Connection::connect(&self.http, None).await.expect("reconnect");
                    self.conn = Some(conn);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_lost_while_running_makes_the_node_unhealthy_and_loses_no_message() {
    let mut nats = OwnNats::start();
    let c = Cluster::start(2, &nats.url(), &[]).await;
    c.wait_joined().await;
    let (_, ha) = c.nodes[0].login("a@example.org", "A").await;
    let (b, hb) = c.nodes[1].login("b@example.org", "B").await;
    let (local, hl) = c.nodes[0].login("l@example.org", "L").await;
    let (b_addr, l_addr) = (b.user.address.clone(), local.user.address.clone());
    let mut ca = Resuming::new(ha.clone()).await;
    let mut cb = Resuming::new(hb.clone()).await;
    let mut cl = Resuming::new(hl.clone()).await;
    ca.send_to(&b_addr, "a-1", "before").await;
    cb.message("before", WAIT).await.expect("cross-node delivery with NATS up");

    nats.kill();
    wait_health(&c.nodes[0].base, 503).await;
    wait_health(&c.nodes[1].base, 503).await;
    // The node keeps serving its own sessions.
    ca.send_to(&l_addr, "a-2", "local while NATS is down").await;
    cl.message("local while NATS is down", WAIT).await.expect("local delivery without NATS");
    // Stored, though B's node cannot hear of it now.
    ca.send_to(&b_addr, "a-3", "during the outage").await;

    nats.restart();
    wait_health(&c.nodes[0].base, 200).await;
    wait_health(&c.nodes[1].base, 200).await;
    // B's session is told to resume (4000) and gets what it missed, from the store.
    cb.message("during the outage", Duration::from_secs(10)).await.expect("B resumes and loses nothing");
    // And live delivery across nodes works again.
    ca.send_to(&b_addr, "a-4", "after").await;
    cb.message("after", Duration::from_secs(10)).await.expect("cross-node delivery after NATS is back");
    // node1 ended B's session when its NATS connection came back (it was already queued by then).
    assert!(cb.reconnects >= 1, "B's session was not told to resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_killed_node_are_announced_offline_by_another() {
    let mut c = Cluster::start(3, &shared_nats(), &[("CHORUS_PRESENCE_GRACE_SECS", "1")]).await;
    c.wait_joined().await;
    let (a, ha) = c.nodes[0].login("a@example.org", "A").await;
    let (b, hb) = c.nodes[1].login("b@example.org", "B").await;
    let a_addr = a.user.address.clone();
    let (mut ca, _) = c.nodes[0].connect(&ha).await;
    let r = ca.send_text(Some(&b.user.address), None, "a-1", "hello").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
    let (mut cb, _) = c.nodes[1].connect(&hb).await;
    cb.expect(WAIT, |f| presence_of(f, &a_addr, presence::ONLINE)).await.expect("B is told A is online");

    // node0 dies with A's only session: no node holds A's last session to announce the going,
    // so the lowest live node does, three heartbeats and the grace period later.
    c.kill(0);
    let killed = tokio::time::Instant::now();
    cb.expect(Duration::from_secs(10), |f| presence_of(f, &a_addr, presence::OFFLINE))
        .await
        .expect("B is told A is offline");
    let took = killed.elapsed();
    assert!(took >= Duration::from_secs(3), "offline before the node could be known gone: {took:?}");
    // Once: node2 is alive but not the lowest id.
    assert!(cb.expect(common::QUIET, |f| presence_of(f, &a_addr, presence::OFFLINE)).await.is_err(), "announced twice");
}

/// A WebSocket ticket (`POST /v1/ws/ticket`) issued by one node opens a session on any node,
/// once: no load balancer stickiness needed. The internal route that redeems it for another
/// node answers no client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_one_node_opens_a_websocket_on_another_once() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMsg;
    let c = Cluster::start(3, &shared_nats(), &[]).await;
    c.wait_joined().await;
    let (u, _) = c.nodes[0].login("u@example.org", "U").await;
    let issue = || async {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/ws/ticket", c.nodes[0].base))
            .bearer_auth(&u.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let t: serde_json::Value = r.json().await.unwrap();
        t["ticket"].as_str().unwrap().to_string()
    };
    let ws_url = |i: usize, ticket: &str| format!("{}/v1/ws?ticket={ticket}", c.nodes[i].base.replace("http", "ws"));
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    let t1 = issue().await;
    assert!(t1.starts_with("node0."), "a ticket names its node: {t1}");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(1, &t1)).await.expect("node0's ticket opens a session on node1");
    ws.send(WsMsg::text(r#"{"type":"hello"}"#)).await.unwrap();
    let first = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let welcome: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"]["address"], u.user.address);
    // Used: not again, on any node (node0 itself included).
    for i in 0..3 {
        assert_eq!(status(tokio_tungstenite::connect_async(ws_url(i, &t1)).await), 401, "node{i}");
    }
    // A ticket used on the node that issued it, as on one node.
    let t2 = issue().await;
    assert_eq!(status(tokio_tungstenite::connect_async(ws_url(0, &t2)).await), 101);
    // A made-up ticket naming a node, and the internal route asked by a client.
    assert_eq!(status(tokio_tungstenite::connect_async(ws_url(2, "node0.made-up")).await), 401);
    let internal = reqwest::Client::new()
        .post(format!("{}/internal/ws-ticket", c.nodes[0].base))
        .body(issue().await)
        .send()
        .await
        .unwrap();
    assert_eq!(internal.status(), 404);
}
