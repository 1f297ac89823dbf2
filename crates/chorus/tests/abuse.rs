//! Bounded under abuse (issue 17, item 3), against the real `chorus serve`: many connections
//! that each misbehave in one way (never say `hello`, stall in the middle of a frame, flood
//! typing, flood call signaling, flood garbage, never read what the server sends them) while
//! two well-behaved users keep messaging in the same group. Checks: the well-behaved ones get
//! every message, in order, within their normal latency (bounded against a baseline measured
//! first); the server's RSS stays bounded; the misbehaving connections are cut off by the
//! documented limits (hello timeout, close 4000, `rate_limited`, …) and the server is back near
//! its baseline memory once they are gone.
//!
//! `CHORUS_ABUSE_CONNECTIONS` (default 240) sets how many misbehave, spread over the kinds;
//! the issue's long form is 1000 (`CHORUS_ABUSE_CONNECTIONS=1000 cargo test -p chorus --test
//! abuse -- --nocapture`); `CHORUS_ABUSE_KINDS` (e.g. `CallFlood,Garbage`) runs only some kinds.
//! Two more tests check the typing bound and that the read budgets pace a fast client without
//! refusing anything.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Connection, Http};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::GroupId;
use common::{Backend, Server, ADMIN_TOKEN};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The server's resident memory, KiB.
fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("server status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

/// The server's CPU time so far (user + system), in clock ticks (1/100 s).
fn cpu_ticks(s: &Server) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.pid())).expect("server stat");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Opens the WebSocket and never sends `hello`.
    NoHello,
    /// Says `hello`, then sends the first bytes of a large frame and stalls.
    HalfFrame,
    /// Sends `typing` without pause, to its group and to many unknown peers.
    TypingFlood,
    /// Joins the group's call and sends call requests without pause (bad publishes, subscribes).
    CallFlood,
    /// Sends unparsable frames without pause.
    Garbage,
    /// Says `hello`, then never reads (its socket's buffers are small) while messages arrive.
    NeverReads,
}

const KINDS: [Kind; 6] =
    [Kind::NoHello, Kind::HalfFrame, Kind::TypingFlood, Kind::CallFlood, Kind::Garbage, Kind::NeverReads];

async fn raw_ws(addr: SocketAddr, token: &str, small_buffer: bool) -> WebSocketStream<TcpStream> {
    let sock = TcpSocket::new_v4().unwrap();
    if small_buffer {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    let stream = sock.connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/v1/ws?token={token}");
    tokio_tungstenite::client_async(url, stream).await.expect("websocket").0
}

fn text(f: &ClientFrame) -> Message {
    Message::Text(serde_json::to_string(f).unwrap().into())
}

/// Runs one misbehaving connection until `stop`; returns how it ended (for the summary).
async fn misbehave(
    kind: Kind,
    addr: SocketAddr,
    token: String,
    gid: i64,
    stop: Instant,
    connected: Arc<AtomicUsize>,
) -> &'static str {
    let mut ws = raw_ws(addr, &token, kind == Kind::NeverReads).await;
    connected.fetch_add(1, Ordering::Relaxed);
    if kind == Kind::NoHello {
        // The server closes it after 10 s (1008); read until then.
        return match tokio::time::timeout_at(stop.into(), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) | Ok(Some(Ok(Message::Close(_)))) => "closed",
            Ok(_) => "dropped",
            Err(_) => "still open",
        };
    }
    if ws.send(text(&ClientFrame::Hello { resume: None })).await.is_err() {
        return "refused";
    }
    match kind {
        Kind::HalfFrame => {
            // A masked text frame announcing 60,000 bytes, of which 100 come.
            let mut head = vec![0x81u8, 0xFE];
            head.extend_from_slice(&60_000u16.to_be_bytes());
            head.extend_from_slice(&[1, 2, 3, 4]);
            head.extend_from_slice(&[b'x'; 100]);
            let _ = ws.get_mut().write_all(&head).await;
            tokio::time::sleep_until(stop.into()).await;
            "stalled"
        }
        Kind::NeverReads => {
            tokio::time::sleep_until(stop.into()).await;
            "never read"
        }
        _ => {
            let (mut sink, mut stream) = ws.split();
            // Reads whatever comes (answers, errors) so the flood is limited by the server alone.
            let reader = tokio::spawn(async move {
                let mut closed = None;
                while let Some(m) = stream.next().await {
                    if let Ok(Message::Close(Some(c))) = m {
                        closed = Some(u16::from(c.code));
                    }
                }
                closed
            });
            if kind == Kind::CallFlood {
                let _ = sink.send(text(&ClientFrame::CallJoin { rid: Some("j".into()), gid: GroupId(gid) })).await;
            }
            let mut i = 0u64;
            while Instant::now() < stop {
                let frame = match kind {
                    Kind::TypingFlood if i.is_multiple_of(2) => {
                        text(&ClientFrame::Typing { peer: None, gid: Some(GroupId(gid)), on: true })
                    }
                    Kind::TypingFlood => {
                        text(&ClientFrame::Typing { peer: Some(format!("nobody-{i}")), gid: None, on: true })
                    }
                    Kind::CallFlood => Message::Text(
                        format!(r#"{{"type":"call_subscribe","rid":"s{i}","address":"nobody","sid":{}}}"#, i % 64)
                            .into(),
                    ),
                    _ => Message::Text(format!("{{not json {i}").into()),
                };
                // The server reads a flood at its own pace (the read budgets): a send can wait
                // behind what the socket buffers hold. The flood ends at `stop` all the same; a
                // send still waiting then is given up, not waited for (draining what the buffers
                // hold at the budget's pace takes minutes).
                match tokio::time::timeout_at(stop.into(), sink.send(frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
                i += 1;
                if i.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            match tokio::time::timeout(Duration::from_secs(5), reader).await {
                Ok(Ok(Some(4000))) => "closed 4000",
                _ => "flooded",
            }
        }
    }
}

/// Alice sends a message every `every` until `until`; Bob receives them. Returns Bob's
/// latencies (send to receipt), ms, and asserts that all arrived, in order.
async fn well_behaved(alice: &mut Connection, bob: &mut Connection, gid: i64, every: Duration, n: usize) -> Vec<u64> {
    let mut sent_at = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let mut next = 0usize;
    let mut tick = tokio::time::interval(every);
    let deadline = Instant::now() + every * n as u32 + Duration::from_secs(30);
    while latencies.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} messages reached bob", latencies.len());
        tokio::select! {
            _ = tick.tick(), if next < n => {
                let id = format!("m{next}-{}", rand_suffix());
                alice.send(&ClientFrame::Send {
                    rid: None, id, peer: None, gid: Some(GroupId(gid)), text: Some(format!("{next}")),
                    data: None, file: None, mtype: None,
                }).await.expect("alice sends");
                sent_at.push(Instant::now());
                next += 1;
            }
            f = bob.next(Duration::from_secs(30)) => {
                if let ServerFrame::Message(m) = f.expect("bob's session lives") {
                    let k: usize = m.text.as_deref().unwrap_or("").parse().expect("a number");
                    assert_eq!(k, latencies.len(), "in order, none lost or doubled");
                    latencies.push(sent_at[k].elapsed().as_millis() as u64);
                }
            }
            f = alice.next(Duration::from_secs(30)) => {
                if let ServerFrame::Error { code, message, .. } = f.expect("alice's session lives") {
                    panic!("alice's send refused: {code:?} {message}");
                }
            }
        }
    }
    let _ = bob.ack().await;
    latencies
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn p(latencies: &[u64], q: f64) -> u64 {
    let mut v = latencies.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_connections_leave_the_server_bounded_and_others_served() {
    let total: usize =
        std::env::var("CHORUS_ABUSE_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(240).max(KINDS.len());
    let users = total.div_ceil(16) + 2;
    let s = Server::start_with(
        Backend::Sqlite,
        &[("CHORUS_MAX_SESSIONS_PER_USER", "16"), ("CHORUS_SESSION_WRITE_TIMEOUT_SECS", "5")],
    )
    .await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let mut tokens = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..users {
        let a = format!("u{i:04}");
        let r = s
            .backend(json!({"op": "useradd", "token": ADMIN_TOKEN,
                            "user": {"address": a, "name": a, "token": {"appid": "t"}}}))
            .await;
        tokens.push(r["user"]["token"].as_str().expect("token").to_string());
        addresses.push(a);
    }
    let r = s
        .backend(json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "Busy", "m": addresses.join(",")}}))
        .await;
    let gid = r["group"]["gid"].as_i64().unwrap_or_else(|| panic!("{r}"));
    let http = |t: &str| Http::new(s.base.clone()).with_token(t.to_string());
    let (mut alice, _) = Connection::connect(&http(&tokens[0]), None).await.unwrap();
    let (mut bob, _) = Connection::connect(&http(&tokens[1]), None).await.unwrap();

    // Baseline: 60 messages, one every 50 ms.
    let every = Duration::from_millis(50);
    let base = well_behaved(&mut alice, &mut bob, gid, every, 60).await;
    let rss_before = rss_kib(&s);

    // The abuse: every kind from sessions of users 2.., 16 sessions a user at most.
    let abuse_for = Duration::from_secs(15);
    let (cpu_before, started) = (cpu_ticks(&s), Instant::now());
    let stop = started + abuse_for;
    // The misbehaving clients get their own runtime, so the well-behaved ones do not queue
    // behind a thousand busy tasks of the test itself: what is measured is the server.
    let abusers = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut tasks = Vec::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let kinds: Vec<Kind> = match std::env::var("CHORUS_ABUSE_KINDS") {
        Ok(names) => KINDS.iter().copied().filter(|k| names.split(',').any(|n| n == format!("{k:?}"))).collect(),
        Err(_) => KINDS.to_vec(),
    };
    for i in 0..total {
        let kind = kinds[i % kinds.len()];
        let token = tokens[2 + i / 16].clone();
        tasks.push((kind, abusers.spawn(misbehave(kind, addr, token, gid, stop, connected.clone()))));
    }
    // Measured once every connection is open (or after 8 s), then 1 s into the abuse.
    let open_by = Instant::now() + Duration::from_secs(8);
    while connected.load(Ordering::Relaxed) < total && Instant::now() < open_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = well_behaved(&mut alice, &mut bob, gid, every, 200).await;
    let mut rss_peak = rss_kib(&s);
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_peak = rss_peak.max(rss_kib(&s));
    }
    let cpu_share = (cpu_ticks(&s) - cpu_before) as f64 / 100.0 / started.elapsed().as_secs_f64();
    // Every connection gets the same 20 s to end, waited for together: one by one, a kind that
    // hangs cost 20 s per connection (a CI run once waited 15 min, while Alice's idle session was
    // closed under her and the failure named her instead of the hung kind).
    let mut ends: std::collections::BTreeMap<String, usize> = Default::default();
    let waits = tasks.into_iter().map(|(kind, t)| async move {
        let how = tokio::time::timeout(Duration::from_secs(20), t).await.map(|r| r.unwrap()).unwrap_or("hung");
        format!("{kind:?}: {how}")
    });
    for end in futures_util::future::join_all(waits).await {
        *ends.entry(end).or_default() += 1;
    }
    abusers.shutdown_background();
    // Once they are gone (the stalled ones by the silence check or their close), memory returns.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = well_behaved(&mut alice, &mut bob, gid, every, 40).await;
    let rss_after = rss_kib(&s);

    println!(
        "{total} misbehaving connections for {abuse_for:?}: latency p50/p99 baseline {}/{} ms, under abuse {}/{} ms, \
         after {}/{} ms; server RSS {} MiB before, peak {} MiB, after {} MiB; server CPU under abuse {cpu_share:.2} \
         cores; ends {ends:?}",
        p(&base, 0.5),
        p(&base, 0.99),
        p(&during, 0.5),
        p(&during, 0.99),
        p(&after, 0.5),
        p(&after, 0.99),
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024,
    );
    // Served within normal latency: the p99 under abuse stays within a second of the baseline's
    // (debug build on a shared 2-core machine; the release figures are in bench/RESULTS.md).
    assert!(p(&during, 0.99) <= p(&base, 0.99) + 1000, "well-behaved clients were slowed down");
    // Memory: what the abusers cost is bounded by the per-connection limits: 64 KiB of a
    // half frame, 1 MiB of a queue, a few KiB of session state, each.
    let per_connection_kib = (rss_peak.saturating_sub(rss_before)) / total as u64;
    assert!(per_connection_kib < 1024, "{per_connection_kib} KiB per misbehaving connection");
    assert!(!ends.keys().any(|k| k.ends_with("hung")), "{ends:?}");
    if kinds.contains(&Kind::NoHello) {
        assert!(!ends.contains_key("NoHello: still open"), "the hello timeout closes them: {ends:?}");
    }
}

/// A session announces typing in at most 256 conversations per 2 s: one more is refused with
/// `rate_limited` (before any lookup), and once the 2 s have passed typing goes through again.
#[tokio::test]
async fn typing_is_bounded_per_session() {
    let s = Server::start(Backend::Sqlite).await;
    let r = s
        .backend(json!({"op": "useradd", "token": ADMIN_TOKEN,
                        "user": {"address": "typist", "name": "T", "token": {"appid": "t"}}}))
        .await;
    let h = Http::new(s.base.clone()).with_token(r["user"]["token"].as_str().expect("token").to_string());
    let mut gids = Vec::new();
    for i in 0..258 {
        let r = s
            .backend(json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": format!("g{i}"), "m": "typist"}}))
            .await;
        gids.push(r["group"]["gid"].as_i64().unwrap_or_else(|| panic!("{r}")));
    }
    let (mut c, _) = Connection::connect(&h, None).await.unwrap();
    let typing = |gid: i64| ClientFrame::Typing { peer: None, gid: Some(GroupId(gid)), on: true };
    for gid in &gids[..256] {
        c.send(&typing(*gid)).await.unwrap();
    }
    assert!(matches!(c.request(|rid| ClientFrame::Ping { rid }).await.unwrap(), ServerFrame::Pong { .. }));
    let refused =
        |frames: Vec<ServerFrame>| frames.into_iter().filter(|f| matches!(f, ServerFrame::Error { .. })).count();
    assert_eq!(refused(c.drain(Duration::from_millis(200)).await), 0, "256 conversations are allowed");
    c.send(&typing(gids[256])).await.unwrap();
    match c.next(Duration::from_secs(10)).await.unwrap() {
        ServerFrame::Error { code, rid: None, .. } => assert_eq!(code, chorus_proto::ErrorCode::RateLimited),
        other => panic!("the 257th conversation was not refused: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.send(&typing(gids[257])).await.unwrap();
    assert!(matches!(c.request(|rid| ClientFrame::Ping { rid }).await.unwrap(), ServerFrame::Pong { .. }));
    assert_eq!(refused(c.drain(Duration::from_millis(200)).await), 0, "typing goes through again after 2 s");
}

/// Reads until `n` requests were answered (pongs, or the `not_found` of a call frame outside a call).
async fn answered(c: &mut Connection, n: usize) {
    let mut got = 0;
    while got < n {
        match c.next(Duration::from_secs(30)).await.expect("answers keep coming") {
            ServerFrame::Pong { .. } => got += 1,
            ServerFrame::Error { rid: Some(_), code, .. } => {
                assert_eq!(code, chorus_proto::ErrorCode::NotFound, "not in a call; never rate_limited");
                got += 1;
            }
            _ => {}
        }
    }
}

/// The read budgets slow a fast client down and refuse nothing: 600 pipelined pings (budget
/// 100 a second after a burst of 400) are all answered, the last about 2 s after the first;
/// 250 call frames (10 a second after 200) all answered, the last about 5 s later.
#[tokio::test]
async fn fast_clients_are_read_more_slowly_never_refused() {
    let s = Server::start(Backend::Sqlite).await;
    let r = s
        .backend(json!({"op": "useradd", "token": ADMIN_TOKEN,
                        "user": {"address": "fast", "name": "F", "token": {"appid": "t"}}}))
        .await;
    let h = Http::new(s.base.clone()).with_token(r["user"]["token"].as_str().expect("token").to_string());
    let (mut c, _) = Connection::connect(&h, None).await.unwrap();
    let t0 = Instant::now();
    for i in 0..600 {
        c.send(&ClientFrame::Ping { rid: Some(format!("p{i}")) }).await.unwrap();
    }
    answered(&mut c, 600).await;
    let pings = t0.elapsed();
    assert!(pings >= Duration::from_millis(1500), "600 frames read in {pings:?}: no budget");
    assert!(pings < Duration::from_secs(10), "{pings:?}");

    tokio::time::sleep(Duration::from_secs(4)).await; // the frame budget fills again
    let t0 = Instant::now();
    for i in 0..250 {
        c.send(&ClientFrame::CallMute { rid: Some(format!("m{i}")), sid: 0, audio: Some(true), video: None })
            .await
            .unwrap();
    }
    answered(&mut c, 250).await;
    let mutes = t0.elapsed();
    assert!(mutes >= Duration::from_secs(4), "250 call frames read in {mutes:?}: no call budget");
    assert!(mutes < Duration::from_secs(15), "{mutes:?}");
    println!("600 pings answered in {pings:?}, 250 call frames in {mutes:?}");
}
