//! Attacks on the call service against the real `chorus serve`, and what the server now does
//! about them (issue 18):
//!
//! * a participant that never reads its WebSocket while another churns `call_join`: the server's
//!   memory stays flat, the silent one is dropped from the call (`left`, reason `slow`) and can
//!   join again;
//! * a publisher that publishes and unpublishes over and over: its subscribers' connections do not
//!   grow a media line per round (unused lines are reused), and media still flows;
//! * ICE-TCP: connections that never complete a STUN binding, too many from one address or in
//!   all, too many to one peer connection, and connections outliving their peer connection.

mod common;

use chorus_proto::GroupId;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_client::call::stats::Kind;
use chorus_client::call::{Call, CallNotice, CallOptions, PublishOptions};
use chorus_client::{Connection, Http};
use chorus_proto::call::{CallEvent, CallLeaveReason};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use common::calls::{audio_publish, frames, join, member_with_pin, room, wait_frames};
use common::{Backend, Server};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const EVENT: Duration = Duration::from_secs(10);

/// The server's resident memory, KiB (`VmRSS` of `/proc/<pid>/status`).
fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("server status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

/// A WebSocket session whose client reads only when the test says so, over a socket with a small
/// receive buffer: the server's writes to it back up after a few KiB.
type Sluggish = WebSocketStream<TcpStream>;

async fn sluggish(s: &Server, h: &Http) -> Sluggish {
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().expect("base is http://ip:port");
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/v1/ws?token={}", h.token().expect("token"));
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("websocket");
    send(&mut ws, &ClientFrame::Hello { resume: None }).await;
    read_until(&mut ws, |f| matches!(f, ServerFrame::Synced { .. })).await;
    ws
}

async fn send(ws: &mut Sluggish, frame: &ClientFrame) {
    ws.send(Message::Text(serde_json::to_string(frame).unwrap().into())).await.expect("send");
}

/// Reads frames until one matches; returns it and how many frames were read.
async fn read_until(ws: &mut Sluggish, mut pred: impl FnMut(&ServerFrame) -> bool) -> (ServerFrame, usize) {
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.expect("a frame within 30 s");
        let Some(Ok(Message::Text(t))) = m else {
            match m {
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        };
        read += 1;
        let f: ServerFrame = serde_json::from_str(&t).expect("a server frame");
        if pred(&f) {
            return (f, read);
        }
    }
}

/// Sends `n` call requests made by `make` (numbered from `from`), many in flight at once, and
/// checks every answer is `ok`.
async fn repeat_requests(c: &mut Connection, from: usize, n: usize, make: impl Fn(usize) -> ClientFrame) {
    const IN_FLIGHT: usize = 48;
    let (mut sent, mut answered) = (0, 0);
    while answered < n {
        while sent < n && sent - answered < IN_FLIGHT {
            c.send(&make(from + sent)).await.expect("send");
            sent += 1;
        }
        match c.recv().await.expect("a frame") {
            ServerFrame::Ok { .. } => answered += 1,
            ServerFrame::Error { code, message, .. } => panic!("request refused: {code:?} {message}"),
            _ => {}
        }
    }
}

/// What the watching participant saw while the attack ran.
#[derive(Default, Debug)]
struct Watched {
    slow_left: Option<CallLeaveReason>,
    frames: u64,
    own_left: bool,
}

/// Bob never reads his WebSocket; Mallory mutes and unmutes her microphone over and over, each a
/// `muted` event for everyone in the call. Before, every event for Bob waited in an unbounded
/// queue (the review saw 13 → 82 MiB in 100,000 `call_join`s, two events each; here the old
/// server grew 5.6 MiB per 32,000 mutes, without end); now Bob's queue is bounded, he is dropped
/// from the call with reason `slow` once it is full (after what his socket buffers took), the
/// server's memory stays flat from then on, and Bob can join again once he reads.
async fn a_participant_that_stops_reading_is_dropped_and_memory_stays_flat(b: Backend) {
    let _slot = common::call_slot();
    // Mallory's publish connection never connects: give it all the time the test takes. Her
    // frames are not slowed down by the read budgets: the queue bound is what is tested here
    // (tests/abuse.rs covers the budgets).
    let s = Server::start_with(
        b,
        &[
            ("CHORUS_RTC_CONNECT_TIMEOUT_SECS", "600"),
            ("CHORUS_SESSION_FRAMES_PER_SECOND", "1000000"),
            ("CHORUS_SESSION_FRAME_BURST", "1000000"),
            ("CHORUS_SESSION_CALL_FRAMES_PER_SECOND", "1000000"),
            ("CHORUS_SESSION_CALL_FRAME_BURST", "1000000"),
        ],
    )
    .await;
    let r = room(&s).await;
    let (hb, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hm, _) = member_with_pin(&s, &r, "mallory@example.org", &r.publisher_pin).await;

    // The owner watches the call and reads everything.
    let (mut owner, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = owner.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let owner_address = joined_address(&joined);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let bob2 = bob.clone();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dropped2 = dropped.clone();
    let watcher = tokio::spawn(async move {
        let mut w = Watched::default();
        loop {
            tokio::select! {
                f = owner.recv() => {
                    w.frames += 1;
                    if let ServerFrame::CallEvent { event: CallEvent::Left { address, reason, .. }, .. } =
                        f.expect("the owner's session stays up")
                    {
                        if address == bob2 {
                            w.slow_left = Some(reason);
                            dropped2.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        w.own_left |= address == owner_address;
                    }
                }
                _ = &mut stop_rx => return (w, owner),
            }
        }
    });

    // Bob joins, then stops reading.
    let mut bob_ws = sluggish(&s, &hb).await;
    send(&mut bob_ws, &ClientFrame::CallJoin { rid: Some("b1".into()), gid: GroupId(r.gid) }).await;
    read_until(&mut bob_ws, |f| matches!(f, ServerFrame::CallJoined { .. })).await;

    // Mallory publishes a microphone (the connection never comes up; signaling is enough).
    let (mut mallory, _) = Connection::connect(&hm, None).await.expect("ws");
    let joined = mallory.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let published = mallory.request(audio_publish).await.unwrap();
    assert!(matches!(published, ServerFrame::CallPublished { .. }), "{published:?}");
    let mute = |i: usize| ClientFrame::CallMute {
        rid: Some(i.to_string()),
        sid: 0,
        audio: Some(i.is_multiple_of(2)),
        video: None,
    };

    // Until Bob is dropped: his socket buffers take a few MiB first (~22,000 events here).
    const STEP: usize = 4_000;
    let started = Instant::now();
    let mut sent = 0;
    let mut samples = Vec::new();
    while !dropped.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            sent < 100_000,
            "Bob was never dropped from the call; server RSS (KiB) every {STEP} mutes: {samples:?}"
        );
        repeat_requests(&mut mallory, sent, STEP, mute).await;
        sent += STEP;
        samples.push(rss_kib(&s));
    }
    eprintln!("Bob dropped after {sent} mutes ({:?}); server RSS (KiB) every {STEP}: {samples:?}", started.elapsed());
    // From then on, 32,000 more events (the old server: +5.6 MiB) leave the memory as it was.
    let warm = rss_kib(&s);
    let mut samples = vec![warm];
    for _ in 0..4 {
        repeat_requests(&mut mallory, sent, 8_000, mute).await;
        sent += 8_000;
        let _ = mallory.drain(Duration::ZERO).await;
        samples.push(rss_kib(&s));
    }
    let grown = samples.last().unwrap().saturating_sub(warm);
    eprintln!("{sent} mutes in {:?}; server RSS (KiB) then and every 8,000 more: {samples:?}", started.elapsed());
    assert!(grown < 2 * 1024, "server RSS grew {grown} KiB over 32,000 more mutes: {samples:?}");

    let _ = stop_tx.send(());
    let (w, mut owner) = watcher.await.unwrap();
    eprintln!("the owner read {} frames", w.frames);
    assert_eq!(w.slow_left, Some(CallLeaveReason::Slow), "Bob was dropped from the call as slow: {w:?}");
    assert!(!w.own_left, "the owner, who reads, stayed in the call");

    // Bob reads again: what was queued, ending with his own `left` (reason `slow`); then he joins
    // again and the others see him come back.
    let (_, read) = read_until(&mut bob_ws, |f| {
        matches!(f, ServerFrame::CallEvent { event: CallEvent::Left { address, reason: CallLeaveReason::Slow, .. }, .. } if *address == bob)
    })
    .await;
    eprintln!("Bob read {read} frames before his own `left`");
    send(&mut bob_ws, &ClientFrame::CallJoin { rid: Some("b2".into()), gid: GroupId(r.gid) }).await;
    let (again, _) = read_until(&mut bob_ws, |f| {
        matches!(f, ServerFrame::CallJoined { rid: Some(r), .. } | ServerFrame::Error { rid: Some(r), .. } if r == "b2")
    })
    .await;
    assert!(matches!(again, ServerFrame::CallJoined { .. }), "Bob joins again: {again:?}");
    let bob3 = bob.clone();
    owner
        .expect(EVENT, |f| {
            matches!(f, ServerFrame::CallEvent { event: CallEvent::Joined { participant }, .. } if participant.address == bob3)
        })
        .await
        .expect("the owner sees Bob join again");
}

fn joined_address(f: &ServerFrame) -> String {
    match f {
        ServerFrame::CallJoined { address, .. } => address.clone(),
        other => panic!("not call_joined: {other:?}"),
    }
}

/// Mallory publishes her camera and takes it down again, 30 times (unpublishing, or leaving
/// and joining again every fifth round: each publish grows her own offer, which the frame size
/// limit caps); the owner subscribes to each. Before, every round added two media lines to the
/// owner's subscribe connection for good: its SDP and the server's state grew without end, and
/// after 13 rounds the owner's answer outgrew the 64 KiB frame limit and its session was closed.
/// Now unused lines are reused, and the camera published last still reaches the owner over them.
async fn publish_churn_does_not_grow_a_subscribers_connection(b: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hm, mallory) = member_with_pin(&s, &r, "mallory@example.org", &r.publisher_pin).await;
    let mut owner = join(&r.owner, r.gid, CallOptions { subscribe_all: true, ..Default::default() }).await;
    let mut m = join(&hm, r.gid, CallOptions::default()).await;
    let mut mids = BTreeSet::new();
    const ROUNDS: usize = 30;
    for round in 0..=ROUNDS {
        m.publish_camera(0, PublishOptions { layers: 1, ..Default::default() })
            .await
            .unwrap_or_else(|e| panic!("round {round}: publish: {e}"));
        let who = mallory.clone();
        let offer = owner
            .wait_for(
                EVENT,
                |n| matches!(n, CallNotice::Offer(t) if t.iter().filter(|t| t.publisher == who).count() == 2),
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: no offer with Mallory's camera: {e}"));
        let CallNotice::Offer(tracks) = offer else { unreachable!() };
        mids.extend(tracks.into_iter().map(|t| t.mid));
        if round == ROUNDS {
            break;
        }
        if round % 5 == 4 {
            let conn = m.leave().await.expect("leave");
            m = Call::join(conn, r.gid, CallOptions::default()).await.expect("join again");
        } else {
            m.unpublish(0).await.expect("unpublish");
        }
        let who = mallory.clone();
        owner
            .wait_for(EVENT, |n| matches!(n, CallNotice::Offer(t) if !t.iter().any(|t| t.publisher == who)))
            .await
            .unwrap_or_else(|e| panic!("round {round}: no offer without Mallory's camera: {e}"));
    }
    eprintln!("{} distinct media lines offered to the owner over {ROUNDS} rounds: {mids:?}", mids.len());
    // Two in use and at most 8 unused (then reused), against 2 per round before.
    assert!(mids.len() <= 12, "the owner's subscribe connection grew to {} media lines", mids.len());
    // The camera published last reaches the owner over reused lines.
    let n = frames(&owner.stats(), &mallory, Kind::Video);
    wait_frames(&owner, &mallory, Kind::Video, n + 30).await;
    let n = frames(&owner.stats(), &mallory, Kind::Audio);
    wait_frames(&owner, &mallory, Kind::Audio, n + 50).await;
}

/// An RFC 4571-framed STUN binding request with USERNAME `username`.
fn framed_binding_request(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut p = vec![0x00, 0x01];
    p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    p.extend_from_slice(&[7; 12]); // transaction id
    p.extend_from_slice(&attrs);
    let mut framed = (p.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&p);
    framed
}

/// Opens a TCP connection to `to` from local address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.expect("TCP connect")
}

/// Whether the server closed `c` within `within` (end of stream or reset); anything it sends
/// (a STUN answer) is read past.
async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 2048];
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// ICE-TCP. A stranger's connections that never complete a STUN binding: at most 8 pending per
/// address, `rtc_tcp_max_connections` in all, each closed after the 5 s handshake deadline. A
/// participant's connections to its own peer connection: at most 4 kept (a newer one closes the
/// oldest), all closed when the peer connection ends.
async fn ice_tcp_connections_are_capped_and_closed(b: Backend) {
    let _slot = common::call_slot();
    let s = Server::start_with(b, &[("CHORUS_RTC_TCP_MAX_CONNECTIONS", "12")]).await;
    let tcp = s.media_tcp.expect("ICE-TCP is on");
    let r = room(&s).await;

    // A stranger opens 10 connections from 127.0.0.1 and sends nothing: 8 are held, the 9th and
    // 10th are closed at once.
    let t0 = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(tcp_from("127.0.0.1", tcp).await);
    }
    let mut held = Vec::new();
    for (i, mut c) in idle.into_iter().enumerate() {
        let closed = closed_within(&mut c, Duration::from_millis(300)).await;
        assert_eq!(closed, i >= 8, "connection {i} from one address: closed {closed}");
        if !closed {
            held.push(c);
        }
    }
    // From a second address, 8 more would be allowed, but only 4 fit under the cap of 12.
    let mut more = Vec::new();
    for _ in 0..6 {
        more.push(tcp_from("127.0.0.2", tcp).await);
    }
    for (i, mut c) in more.into_iter().enumerate() {
        let closed = closed_within(&mut c, Duration::from_millis(300)).await;
        assert_eq!(closed, i >= 4, "connection {i} from a second address: closed {closed}");
        if !closed {
            held.push(c);
        }
    }
    // The handshake deadline closes all 12 (5 s after they opened).
    for (i, c) in held.iter_mut().enumerate() {
        assert!(closed_within(c, Duration::from_secs(8)).await, "idle connection {i} was never closed");
    }
    let t = t0.elapsed();
    assert!(t >= Duration::from_secs(4) && t < Duration::from_secs(9), "idle connections closed after {t:?}");

    // The owner publishes (a raw offer): the server's answer names its publish leg's ICE ufrag.
    let (mut c, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = c.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert!(matches!(joined, ServerFrame::CallJoined { .. }), "{joined:?}");
    let published = c.request(audio_publish).await.unwrap();
    let ServerFrame::CallPublished { sdp, .. } = published else { panic!("publish refused: {published:?}") };
    let ufrag = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("the answer has an ICE ufrag")
        .trim()
        .to_string();

    // Ten connections to that leg, each with a binding request: the newest 4 stay.
    let mut legs = Vec::new();
    for _ in 0..10 {
        let mut conn = tcp_from("127.0.0.1", tcp).await;
        conn.write_all(&framed_binding_request(&format!("{ufrag}:Clnt"))).await.unwrap();
        // One at a time, so the server attaches them in this order.
        tokio::time::sleep(Duration::from_millis(30)).await;
        legs.push(conn);
    }
    for (i, conn) in legs.iter_mut().enumerate() {
        let closed = closed_within(conn, Duration::from_millis(300)).await;
        assert_eq!(closed, i < 6, "connection {i} to the leg: closed {closed}");
    }
    let mut kept = legs.split_off(6);
    // They end with the leg.
    let ok = c.request(|rid| ClientFrame::CallLeave { rid }).await.unwrap();
    assert!(matches!(ok, ServerFrame::Ok { .. }), "{ok:?}");
    for (i, conn) in kept.iter_mut().enumerate() {
        assert!(closed_within(conn, Duration::from_secs(2)).await, "connection {i} outlived its leg");
    }
    // A binding request for a leg that is gone is not held either.
    let mut late = tcp_from("127.0.0.1", tcp).await;
    late.write_all(&framed_binding_request(&format!("{ufrag}:Clnt"))).await.unwrap();
    assert!(closed_within(&mut late, Duration::from_secs(2)).await, "a connection to no leg was held");
}

/// An offer that made the WebRTC library panic (found by fuzz/sdp: one payload type bound to
/// codecs in two bundled media lines; here the camera's line keeps VP9 as payload type 100
/// after the server narrows it to one codec, and the other line binds 100 too). Before, the room task died with it: every participant
/// lost the call. Now the offer is refused with `bad_request`, its sender is taken out of the
/// call (`left`, reason `lost`) and may join again, and the others stay in the call.
async fn an_offer_that_panics_the_webrtc_library_is_refused_and_the_call_goes_on(b: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (mut bob, _) = Connection::connect(&hb, None).await.expect("ws");
    let joined = bob.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    joined_address(&joined);
    let (mut owner, _) = Connection::connect(&r.owner, None).await.expect("ws");
    let joined = owner.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    let owner_address = joined_address(&joined);

    let sdp = include_str!("../../../fuzz/seeds/sdp/pt-two-codecs-in-bundle.sdp").to_string();
    let refused = owner
        .request(|rid| {
            ClientFrame::CallPublish(chorus_proto::call::PublishRequest {
                rid,
                sid: 0,
                audio: false,
                video: true,
                screen: false,
                rids: vec![],
                height: None,
                muted: Default::default(),
                audio_mid: None,
                video_mid: Some("1".into()),
                sdp,
            })
        })
        .await
        .unwrap();
    let ServerFrame::Error { code, .. } = &refused else { panic!("the offer was not refused: {refused:?}") };
    assert_eq!(*code, chorus_proto::ErrorCode::BadRequest, "{refused:?}");

    // Bob, still in the call, sees the owner leave with reason lost.
    let deadline = Instant::now() + EVENT;
    loop {
        let f = tokio::time::timeout_at(deadline.into(), bob.recv()).await.expect("bob sees the owner leave").unwrap();
        if let ServerFrame::CallEvent { event: CallEvent::Left { address, reason, .. }, .. } = f {
            assert_eq!(address, owner_address);
            assert_eq!(reason, CallLeaveReason::Lost);
            break;
        }
    }
    // The owner joins again and publishes a good offer; Bob is told.
    let joined = owner.request(|rid| ClientFrame::CallJoin { rid, gid: GroupId(r.gid) }).await.unwrap();
    assert_eq!(joined_address(&joined), owner_address);
    let published = owner.request(audio_publish).await.unwrap();
    assert!(matches!(published, ServerFrame::CallPublished { .. }), "{published:?}");
    let deadline = Instant::now() + EVENT;
    loop {
        let f = tokio::time::timeout_at(deadline.into(), bob.recv()).await.expect("bob sees the stream").unwrap();
        if let ServerFrame::CallEvent { event: CallEvent::Published { address, .. }, .. } = &f {
            if *address == owner_address {
                break;
            }
        }
    }
}

macro_rules! sqlite_only {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(super::Backend::Sqlite).await }
        }
    )*};
}

sqlite_only!(
    a_participant_that_stops_reading_is_dropped_and_memory_stays_flat,
    publish_churn_does_not_grow_a_subscribers_connection,
    ice_tcp_connections_are_capped_and_closed,
    an_offer_that_panics_the_webrtc_library_is_refused_and_the_call_goes_on,
);
