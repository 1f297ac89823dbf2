//! Group calls over ICE-TCP against the real `chorus serve`: clients that join with
//! `Transport::Tcp` open no UDP socket at all; each of their peer connections runs over one TCP
//! connection to the server's passive TCP candidate (RFC 4571 framing).

mod common;

use std::time::Duration;

use chorus_client::call::stats::{CallStats, Kind, TrackKey};
use chorus_client::call::{CallOptions, Leg, LegState, PublishOptions, Transport};
use common::calls::{frames, join, member_with_pin, room, wait_frames};
use common::{Backend, Server};

fn over(transport: Transport) -> CallOptions {
    CallOptions { subscribe_all: true, transport, ..Default::default() }
}

/// The owner joins over UDP, Bob and Cat over ICE-TCP only; everyone receives everyone else.
async fn udp_and_tcp_participants_each_receive_the_other_two(b: Backend) {
    let s = Server::start(b).await;
    let r = room(&s).await;
    let (hb, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (hc, _) = member_with_pin(&s, &r, "cat@example.org", &r.publisher_pin).await;
    let mut calls = Vec::new();
    for (h, transport) in [(&r.owner, Transport::Udp), (&hb, Transport::Tcp), (&hc, Transport::Tcp)] {
        let c = join(h, r.gid, over(transport)).await;
        c.publish_camera(0, PublishOptions::default()).await.expect("publish");
        calls.push((c, transport));
    }
    let addresses: Vec<String> = calls.iter().map(|(c, _)| c.address().to_string()).collect();
    for (c, _) in &calls {
        for other in addresses.iter().filter(|a| *a != c.address()) {
            let st = wait_frames(c, other, Kind::Video, 30).await;
            let v = &st.received[&TrackKey { publisher: other.clone(), sid: 0, kind: Kind::Video }];
            assert!(v.keyframes >= 1, "video starts at a keyframe: {v:?}");
            let st = wait_frames(c, other, Kind::Audio, 50).await;
            let a = &st.received[&TrackKey { publisher: other.clone(), sid: 0, kind: Kind::Audio }];
            assert!(a.last_latency_us.is_some_and(|l| l < 500_000), "loopback latency: {:?}", a.last_latency_us);
        }
    }

    // Both legs of every client are connected, the TCP clients' over TCP to the server's TCP
    // port (not its UDP one, which the UDP client talks to).
    let udp = calls[0].0.stats();
    assert_eq!(udp.transport, Transport::Udp);
    let udp_remote = udp.publish_path.and_then(|p| p.remote).expect("the UDP client sent to the server");
    for (c, transport) in &calls[1..] {
        assert_eq!(*transport, Transport::Tcp);
        let st = c.stats();
        assert_eq!(st.transport, Transport::Tcp);
        assert_eq!((st.publish, st.subscribe), (LegState::Connected, LegState::Connected), "{st:#?}");
        for (leg, path) in [(Leg::Publish, st.publish_path), (Leg::Subscribe, st.subscribe_path)] {
            let path = path.unwrap_or_else(|| panic!("{leg:?} path of {}: {st:#?}", c.address()));
            assert_eq!(path.transport, Transport::Tcp, "{leg:?}: {path:?}");
            let remote = path.remote.expect("sent to the server");
            assert_eq!(remote.ip(), udp_remote.ip());
            assert_ne!(remote.port(), udp_remote.port(), "{leg:?} goes to the TCP port: {path:?}");
            assert_eq!(c.local_addr(leg), path.local);
            assert_ne!(path.local.port(), 0);
        }
        assert_ne!(c.local_addr(Leg::Publish), c.local_addr(Leg::Subscribe), "one TCP connection per leg");
    }

    // Steady: in one more second, roughly a second of everyone's media reached everyone.
    let before: Vec<CallStats> = calls.iter().map(|(c, _)| c.stats()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for ((c, _), before) in calls.iter().zip(&before) {
        let now = c.stats();
        for other in addresses.iter().filter(|a| *a != c.address()) {
            let audio = frames(&now, other, Kind::Audio) - frames(before, other, Kind::Audio);
            let video = frames(&now, other, Kind::Video) - frames(before, other, Kind::Video);
            assert!((35..=65).contains(&audio), "{} got {audio} audio frames from {other} in 1 s", c.address());
            assert!((15..=40).contains(&video), "{} got {video} video frames from {other} in 1 s", c.address());
        }
    }
    for (c, _) in calls {
        c.leave().await.expect("leave");
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

sqlite_only!(udp_and_tcp_participants_each_receive_the_other_two);
