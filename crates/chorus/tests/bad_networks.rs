//! Calls over bad networks: a client inside a network namespace of the test's own reaches the
//! real `chorus serve` (in the host's namespace) only across an emulated link (`common::link`:
//! two TUN devices and a userspace emulator with loss, jitter, a rate cap and outages) that
//! carries all its traffic, UDP media and WebSocket alike. The other participant stays on the
//! host, on an unimpaired path.
//!
//! Needs root: without it (or without network namespaces or /dev/net/tun) every test fails with
//! a message that says so. Media do not touch the store, so these run on SQLite only. Figures are
//! printed (`--nocapture`) and kept in bench/RESULTS.md, "Bad networks".

mod common;

use std::time::{Duration, Instant};

use chorus_client::call::stats::{CallStats, Kind, TrackKey};
use chorus_client::call::{Call, CallNotice, CallOptions, Leg, PublishOptions};
use chorus_client::{Connection, Http};
use chorus_proto::ws::ServerFrame;
use common::calls::{frames, member_with_pin, room, Room, MEDIA};
use common::link::{Conditions, Dir, Link, NsRuntime};
use common::{Backend, Server, Store};

/// The server listening on the host side of `link`.
async fn server(link: &Link) -> Server {
    let mut store = Store::new(Backend::Sqlite).await;
    store.listen = link.host_ip();
    Server::start_on(store, &[]).await
}

/// Joins `gid`'s call from inside the namespace (WebSocket and UDP there), bound to the link's
/// client address.
async fn join_inside(rt: &NsRuntime, link: &Link, h: &Http, gid: i64) -> Call {
    let (h, bind) = (h.clone(), link.client_ip());
    rt.run(async move {
        let (conn, _) = Connection::connect(&h, None).await.expect("ws from the namespace");
        Call::join(conn, gid, CallOptions { bind, ..Default::default() }).await.expect("join from the namespace")
    })
    .await
}

/// Joins from the host, bound to the link's host address (the server's own: loopback, unimpaired).
async fn join_host(link: &Link, h: &Http, gid: i64, subscribe_all: bool) -> Call {
    let (conn, _) = Connection::connect(h, None).await.expect("ws");
    let options = CallOptions { bind: link.host_ip(), subscribe_all, ..Default::default() };
    Call::join(conn, gid, options).await.expect("join")
}

fn key(publisher: &str, kind: Kind) -> TrackKey {
    TrackKey { publisher: publisher.to_string(), sid: 0, kind }
}

/// What a watch saw of one track.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    frames: u64,
    lost: u64,
    nacks: u64,
    keyframes: u64,
    /// Longest time without a new frame.
    longest_gap: Duration,
}

/// Samples `call`'s counters of `keys` every 20 ms for `span`: what arrived meanwhile and the
/// longest stretch without a new frame of each.
async fn watch(call: &Call, keys: &[TrackKey], span: Duration) -> Vec<Seen> {
    let get = |s: &CallStats, k: &TrackKey| s.received.get(k).cloned().unwrap_or_default();
    let start = call.stats();
    let begun = Instant::now();
    let mut last: Vec<(Instant, u64)> = keys.iter().map(|k| (begun, get(&start, k).frames)).collect();
    let mut gaps = vec![Duration::ZERO; keys.len()];
    while begun.elapsed() < span {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = call.stats();
        let now = Instant::now();
        for (i, k) in keys.iter().enumerate() {
            let f = get(&s, k).frames;
            if f > last[i].1 {
                last[i] = (now, f);
            }
            gaps[i] = gaps[i].max(now - last[i].0);
        }
    }
    let end = call.stats();
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let (a, b) = (get(&start, k), get(&end, k));
            Seen {
                frames: b.frames - a.frames,
                lost: b.lost - a.lost,
                nacks: b.nacks - a.nacks,
                keyframes: b.keyframes - a.keyframes,
                longest_gap: gaps[i],
            }
        })
        .collect()
}

/// Waits until `call` receives a new frame of `k` (after the count in `since`); how long it took.
async fn next_frame(call: &Call, k: &TrackKey, since: u64, within: Duration) -> Duration {
    let t = Instant::now();
    call.wait_until(within, |s| s.received.get(k).is_some_and(|t| t.frames > since))
        .await
        .unwrap_or_else(|e| panic!("no {:?} frame from {} within {within:?}: {e}", k.kind, k.publisher));
    t.elapsed()
}

/// The owner publishes on the host; a member inside the namespace subscribes to it (and, with
/// `publish`, publishes too, and the owner subscribes back).
struct Scene {
    _slot: common::CallSlot,
    link: Link,
    rt: NsRuntime,
    s: Server,
    r: Room,
    owner: Call,
    inside: Call,
    inside_address: String,
    inside_http: Http,
}

async fn scene(link: Link, publish: bool) -> Scene {
    scene_with(link, publish, false).await
}

/// [`scene`], with the owner subscribing by itself to every stream published (as an app does),
/// so that it receives the client again after the client joined anew.
async fn scene_with(link: Link, publish: bool, owner_subscribes_all: bool) -> Scene {
    let slot = common::call_slot();
    let rt = link.runtime();
    let s = server(&link).await;
    let r = room(&s).await;
    let (hi, inside_address) = member_with_pin(&s, &r, "inside@example.org", &r.publisher_pin).await;
    let owner = join_host(&link, &r.owner, r.gid, owner_subscribes_all).await;
    owner.publish_camera(0, PublishOptions::default()).await.unwrap();
    let inside = join_inside(&rt, &link, &hi, r.gid).await;
    inside.subscribe(&r.owner_address, 0, true, true, None).await.unwrap();
    if publish {
        inside.publish_camera(0, PublishOptions::default()).await.unwrap();
        if !owner_subscribes_all {
            owner.subscribe(&inside_address, 0, true, true, None).await.unwrap();
        }
    }
    Scene { _slot: slot, link, rt, s, r, owner, inside, inside_address, inside_http: hi }
}

/// 5 % loss and 50 ± 20 ms of delay each way (jitter that reorders, as netem's does): the video
/// keeps playing, retransmissions (NACK/RTX) and keyframe requests (PLI) make up for the losses,
/// and under 1 % of the frames stay lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_jittery_link_keeps_video_playing() {
    let link = Link::new();
    link.set_both(Conditions {
        loss: 0.05,
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(20),
        ..Default::default()
    });
    let sc = scene(link, false).await;
    let (video, audio) = (key(&sc.r.owner_address, Kind::Video), key(&sc.r.owner_address, Kind::Audio));
    // Joined, connected and playing through the bad link.
    sc.inside
        .wait_until(MEDIA, |s| frames(s, &sc.r.owner_address, Kind::Video) >= 60)
        .await
        .expect("video through a lossy, jittery link");

    let span = Duration::from_secs(15);
    let seen = watch(&sc.inside, &[video.clone(), audio.clone()], span).await;
    let (v, a) = (seen[0], seen[1]);
    let down = sc.link.counters(Dir::Down);
    let (sent, lost_pkts) = (
        down.packets.load(std::sync::atomic::Ordering::Relaxed),
        down.dropped_loss.load(std::sync::atomic::Ordering::Relaxed),
    );
    let ratio = v.lost as f64 / (v.frames + v.lost).max(1) as f64;
    eprintln!(
        "lossy link, {span:?}: video {} frames, {} lost ({:.2} %), {} NACKs, {} keyframes, longest freeze {:?}; \
         audio {} frames, longest gap {:?}; link down: {lost_pkts} of {sent} packets dropped; layer {:?}",
        v.frames,
        v.lost,
        ratio * 100.0,
        v.nacks,
        v.keyframes,
        v.longest_gap,
        a.frames,
        a.longest_gap,
        sc.inside.stats().received[&video].layer,
    );
    assert!(lost_pkts > 0, "the link lost nothing: the test did not test loss");
    assert!(v.nacks > 0, "losses were never NACKed");
    // 30 fps: at least 80 % of the frames of the span arrived, the picture never froze for a
    // second, and after retransmission under 1 % of the frames stayed lost.
    assert!(v.frames as f64 >= span.as_secs_f64() * 30.0 * 0.8, "video stuttered: {v:?}");
    assert!(v.longest_gap < Duration::from_secs(1), "video froze: {v:?}");
    assert!(ratio < 0.01, "{:.2} % of the frames lost after recovery: {v:?}", ratio * 100.0);
    assert!(a.longest_gap < Duration::from_secs(1), "audio stopped: {a:?}");
}

/// The subscriber's downlink shrinks to 300 kbit/s (a 300 ms bottleneck queue, 20 ms away): the
/// server steps it down to the low layer within 20 s and the audio never stops (at least 80 % of
/// its frames arrive, never a gap of a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_link_steps_down_and_audio_never_stops() {
    let link = Link::new();
    let base = Conditions { delay: Duration::from_millis(20), ..Default::default() };
    link.set_both(base);
    let sc = scene(link, false).await;
    let (video, audio) = (key(&sc.r.owner_address, Kind::Video), key(&sc.r.owner_address, Kind::Audio));
    sc.inside
        .wait_until(MEDIA, |s| {
            s.received.get(&video).is_some_and(|t| t.layer.is_some_and(|l| l >= 1) && t.frames >= 30)
        })
        .await
        .expect("an uncapped subscriber gets more than the low layer");

    sc.link.set(Dir::Down, Conditions { rate_kbps: Some(300), ..base });
    let capped = Instant::now();
    // Audio is watched from the moment of the cap, through the step down and after it.
    let keys = [audio.clone(), video.clone()];
    let watcher = watch(&sc.inside, &keys, Duration::from_secs(20));
    let step = async {
        sc.inside
            .wait_until(Duration::from_secs(20), |s| s.received.get(&video).is_some_and(|t| t.layer == Some(0)))
            .await
            .expect("stepped down to the low layer within 20 s of the cap");
        capped.elapsed()
    };
    let (seen, stepped) = tokio::join!(watcher, step);
    let (a, v) = (seen[0], seen[1]);
    let st = sc.inside.stats();
    let t = &st.received[&video];
    let queue_drops = sc.link.counters(Dir::Down).dropped_queue.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "capped to 300 kbit/s: stepped down after {stepped:?}; over 20 s audio {} frames, longest gap {:?}; \
         video {} frames, longest freeze {:?}, layer now {:?}; {queue_drops} packets dropped by the queue",
        a.frames, a.longest_gap, v.frames, v.longest_gap, t.layer
    );
    assert_eq!(t.layer, Some(0), "still on the low layer at the end: {t:?}");
    // 50 audio frames a second: at least 80 % arrive, and never a silence a listener would
    // take for a dropped call.
    assert!(a.frames >= 20 * 50 * 8 / 10, "audio thinned out: {a:?}");
    assert!(a.longest_gap < Duration::from_secs(1), "audio stopped: {a:?}");
    // Not asserted: that the video keeps moving. In some runs it pauses for seconds after the
    // step down although the low layer and audio fit the link (the estimate sinks below half
    // the low layer and nothing raises it soon; see bench/RESULTS.md, "Bad networks").
}

/// The namespaced client's UDP ports change under a live call (a NAT rebinding: its sockets are
/// replaced and the old ones closed, its peer connections unaware): the server follows the new
/// addresses, media flows both ways again within a few seconds and keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_changing_address_keeps_its_call() {
    let link = Link::new();
    link.set_both(Conditions { delay: Duration::from_millis(10), ..Default::default() });
    let sc = scene(link, true).await;
    let from_owner = key(&sc.r.owner_address, Kind::Video);
    let from_inside = key(&sc.inside_address, Kind::Video);
    sc.inside.wait_until(MEDIA, |s| frames(s, &sc.r.owner_address, Kind::Video) >= 30).await.unwrap();
    sc.owner.wait_until(MEDIA, |s| frames(s, &sc.inside_address, Kind::Video) >= 30).await.unwrap();

    let before = [sc.inside.local_addr(Leg::Publish), sc.inside.local_addr(Leg::Subscribe)];
    let got_in = sc.inside.stats().received[&from_owner].frames;
    let got_out = sc.owner.stats().received[&from_inside].frames;
    let now = sc.inside.rebind_udp().await.expect("rebind");
    assert!(now[0] != before[0] && now[1] != before[1], "new ports: {before:?} -> {now:?}");
    // The old sockets are closed: anything that still arrives came through the new ones.
    let (down, up) = tokio::join!(
        next_frame(&sc.inside, &from_owner, got_in + 5, Duration::from_secs(15)),
        next_frame(&sc.owner, &from_inside, got_out + 5, Duration::from_secs(15)),
    );
    eprintln!("address change: media to the client again after {down:?}, from it after {up:?}");
    // And it keeps flowing: no freeze in the next 5 s, either way.
    let (i, o) = tokio::join!(
        watch(&sc.inside, std::slice::from_ref(&from_owner), Duration::from_secs(5)),
        watch(&sc.owner, std::slice::from_ref(&from_inside), Duration::from_secs(5)),
    );
    eprintln!("after the change: to the client {:?}, from it {:?}", i[0], o[0]);
    // Before the server followed moved peers, media to the client stopped for 15 s (str0m kept
    // sending to the old address until that pair expired). Now: the old address must be silent
    // for 2 s and a check from the new one answered (the client checks every ~3 s), then a
    // keyframe.
    let limit = Duration::from_secs(5);
    assert!(down < limit && up < limit, "slow to recover: {down:?} / {up:?}");
    assert!(i[0].longest_gap < Duration::from_secs(1) && o[0].longest_gap < Duration::from_secs(1));
    assert!(sc.inside.ended().is_none() && sc.owner.roster().contains_key(&sc.inside_address));
}

/// Cuts the namespaced client's network for `down`, both ways, while the owner and the client
/// each send 5 messages; then brings it back at `T`. Returns when the client's media reached the owner
/// (audio) and the owner's reached the client (audio and video) again, with how long after `T`,
/// and checks that every message arrived, in order.
async fn outage(sc: &Scene, down: Duration) -> [Duration; 3] {
    let (audio_in, video_in) = (key(&sc.r.owner_address, Kind::Audio), key(&sc.r.owner_address, Kind::Video));
    let audio_out = key(&sc.inside_address, Kind::Audio);
    sc.inside.wait_until(MEDIA, |s| frames(s, &sc.r.owner_address, Kind::Video) >= 30).await.unwrap();
    sc.owner.wait_until(MEDIA, |s| frames(s, &sc.inside_address, Kind::Video) >= 30).await.unwrap();
    let gid = sc.r.gid;
    // Messaging on separate connections of both (a call's own connection drops chat frames).
    let mut owner_msg = sc.s.connect(&sc.r.owner).await.0;
    let hi = sc.inside_http.clone();
    let mut inside_msg = sc.rt.run(async move { Connection::connect(&hi, None).await.expect("ws").0 }).await;

    sc.link.set_down(true);
    let cut = Instant::now();
    // During the outage: the owner says 5 things (acknowledged by the server at once), and the
    // client inside says 5 (its sends wait in TCP for the network).
    for i in 0..5 {
        let r = owner_msg.send_text(None, Some(gid), &format!("o-{i}"), &format!("from the owner {i}")).await.unwrap();
        assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
    }
    let inside_side = sc.rt.spawn(async move {
        // In the outage's last 4 s: a send waits up to 10 s for its answer.
        tokio::time::sleep(down.saturating_sub(Duration::from_secs(4))).await;
        for i in 0..5 {
            let r = inside_msg.send_text(None, Some(gid), &format!("i-{i}"), &format!("from inside {i}")).await;
            assert!(matches!(r, Ok(ServerFrame::Sent { .. })), "{r:?}");
        }
        // Then everything the owner sent reaches it, in order.
        let mut ids = Vec::new();
        while ids.len() < 5 {
            match inside_msg.next(Duration::from_secs(15)).await {
                Ok(ServerFrame::Message(m)) if m.id.starts_with("o-") => ids.push(m.id),
                Ok(_) => {}
                Err(e) => panic!("the owner's messages did not arrive inside: got {ids:?}: {e:#}"),
            }
        }
        ids
    });
    tokio::time::sleep(down.saturating_sub(cut.elapsed())).await;
    let count = |c: &Call, k: &TrackKey| c.stats().received.get(k).map_or(0, |t| t.frames);
    let (a_in, v_in, a_out) =
        (count(&sc.inside, &audio_in), count(&sc.inside, &video_in), count(&sc.owner, &audio_out));
    sc.link.set_down(false);
    let within = Duration::from_secs(20);
    let (audio_down, video_down, audio_up) = tokio::join!(
        next_frame(&sc.inside, &audio_in, a_in, within),
        next_frame(&sc.inside, &video_in, v_in, within),
        next_frame(&sc.owner, &audio_out, a_out, within),
    );
    let ids = tokio::time::timeout(Duration::from_secs(30), inside_side).await.expect("messages in time").unwrap();
    assert_eq!(ids, (0..5).map(|i| format!("o-{i}")).collect::<Vec<_>>(), "the owner's messages, inside");
    let mut from_inside = Vec::new();
    while from_inside.len() < 5 {
        match owner_msg.next(Duration::from_secs(15)).await {
            Ok(ServerFrame::Message(m)) if m.id.starts_with("i-") => from_inside.push(m.id),
            Ok(_) => {}
            Err(e) => panic!("the messages from inside did not arrive: got {from_inside:?}: {e:#}"),
        }
    }
    assert_eq!(from_inside, (0..5).map(|i| format!("i-{i}")).collect::<Vec<_>>(), "the messages from inside");
    [audio_down, video_down, audio_up]
}

/// The namespaced client's network is gone for 5 s, both ways, then back: the call recovers by
/// itself — within 3 s of the network's return the client hears and sees the owner again and the
/// owner hears the client — and the messages sent during the outage, to it and by it, all arrive
/// in order. (The client does not need an ICE restart for 5 s: str0m's consent checks and the
/// server's 10 s peer timeout both outlast it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_second_outage_recovers_call_and_messages() {
    let link = Link::new();
    link.set_both(Conditions { delay: Duration::from_millis(10), ..Default::default() });
    let sc = scene(link, true).await;
    let [audio_down, video_down, audio_up] = outage(&sc, Duration::from_secs(5)).await;
    eprintln!(
        "5 s outage: after the network's return, audio to the client in {audio_down:?}, video to it in \
         {video_down:?}, audio from it in {audio_up:?}"
    );
    let limit = Duration::from_secs(3);
    assert!(
        audio_down < limit && video_down < limit && audio_up < limit,
        "media took {audio_down:?} / {video_down:?} / {audio_up:?} to return"
    );
    let video_in = key(&sc.r.owner_address, Kind::Video);
    let audio_out = key(&sc.inside_address, Kind::Audio);
    let (i, o) = tokio::join!(
        watch(&sc.inside, std::slice::from_ref(&video_in), Duration::from_secs(3)),
        watch(&sc.owner, std::slice::from_ref(&audio_out), Duration::from_secs(3)),
    );
    assert!(i[0].longest_gap < Duration::from_secs(1) && o[0].longest_gap < Duration::from_secs(1), "{i:?} {o:?}");
    assert!(sc.inside.ended().is_none() && sc.owner.roster().contains_key(&sc.inside_address));
}

/// The client's *video* reaches the owner again after the outage too, within 3 s of its audio.
/// While the client's layers are all missing the owner's forwarder pauses, the owner's subscribe
/// leg carries audio only, and its TWCC estimate (str0m's GCC) sinks to what it sees, ~100 kbit/s,
/// under what the low layer needs; nothing raised it again (30 s observed, one run in two) until
/// the server restarted a starved estimator (`chorus_sfu::downlink`), whose probes measure the
/// link at once. See bench/RESULTS.md, "Bad networks".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_second_outage_the_clients_video_returns_to_others() {
    let link = Link::new();
    link.set_both(Conditions { delay: Duration::from_millis(10), ..Default::default() });
    let sc = scene(link, true).await;
    let video_out = key(&sc.inside_address, Kind::Video);
    let _ = outage(&sc, Duration::from_secs(5)).await;
    let got = sc.owner.stats().received.get(&video_out).map_or(0, |t| t.frames);
    let took = next_frame(&sc.owner, &video_out, got, Duration::from_secs(30)).await;
    eprintln!("video from the client {took:?} after its audio returned");
    assert!(took < Duration::from_secs(3), "the client's video came back {took:?} after its audio");
}

/// The network is gone for 12 s, past the server's peer timeout (10 s): the server takes the
/// client out (`left`, reason `lost`), and once the network is back the client joins again by
/// itself, publishes its camera again and subscribes again to the owner's: media flows both ways
/// again, and the messages of the outage arrive. (An ICE restart is tried first, after 2 s of
/// disconnection; its `call_restart` waits in the WebSocket and is answered `not_found` once the
/// server has taken the client out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_second_outage_the_client_joins_again_by_itself() {
    let link = Link::new();
    link.set_both(Conditions { delay: Duration::from_millis(10), ..Default::default() });
    let mut sc = scene_with(link, true, true).await;
    let video_out = key(&sc.inside_address, Kind::Video);
    let [audio_down, video_down, audio_up] = outage(&sc, Duration::from_secs(12)).await;
    let got = sc.owner.stats().received.get(&video_out).map_or(0, |t| t.frames);
    let video_up = next_frame(&sc.owner, &video_out, got, Duration::from_secs(10)).await;
    eprintln!(
        "12 s outage: after the network's return, audio to the client in {audio_down:?}, video to it in \
         {video_down:?}, audio from it in {audio_up:?}, its video {video_up:?} after that"
    );
    let notices = sc.inside.drain_notices();
    assert!(notices.iter().any(|n| matches!(n, CallNotice::Rejoined)), "the client joined again: {notices:?}");
    // The rejoin starts when `left` reaches the client: the server's TCP retransmission
    // backoff on the WebSocket delivers it ~3 s after the network's return (measured 3.2 s).
    let limit = Duration::from_secs(6);
    assert!(
        audio_down < limit && video_down < limit && audio_up < limit,
        "media took {audio_down:?} / {video_down:?} / {audio_up:?} to return"
    );
    // Slower than after 5 s (1.6–2.3 s): the owner's downlink estimate sank to ~100 kbit/s in
    // 12 s of receiving nothing, and the starved-estimator restart (`chorus_sfu::downlink`)
    // needs ~1 s plus its probe's climb. bench/RESULTS.md, "Bad networks".
    assert!(video_up < Duration::from_secs(5), "the client's video came back {video_up:?} after its audio");
    assert!(sc.inside.ended().is_none() && sc.owner.roster().contains_key(&sc.inside_address));
    let (video_in, audio_out) = (key(&sc.r.owner_address, Kind::Video), key(&sc.inside_address, Kind::Audio));
    let (i, o) = tokio::join!(
        watch(&sc.inside, std::slice::from_ref(&video_in), Duration::from_secs(3)),
        watch(&sc.owner, std::slice::from_ref(&audio_out), Duration::from_secs(3)),
    );
    assert!(i[0].longest_gap < Duration::from_secs(1) && o[0].longest_gap < Duration::from_secs(1), "{i:?} {o:?}");
}
