//! The call client against a tiny fake server in the test: a WebSocket that speaks just enough
//! of the protocol and two ICE-lite str0m peers. It checks that the client's publish offer
//! works (simulcast rids, Opus with audio level, trailers) and that media the "server" sends
//! on the subscribe connection is mapped to its publisher and counted.

use chorus_proto::{Pos, UserId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_client::call::media::{self, Trailer};
use chorus_client::call::{Call, CallOptions, Kind, PublishOptions};
use chorus_client::{Connection, Http};
use chorus_proto::call::{CallPermissions, CallSettings, CallStream, CallTrack, MediaKind};
use chorus_proto::ws::{ClientFrame, ServerFrame, SessionUser};
use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpListener, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

/// What the fake server saw on the publish connection: frames per (kind, rid).
type Seen = BTreeMap<(String, String), (u64, Option<i8>)>;

async fn fake_server(listener: TcpListener, seen: tokio::sync::mpsc::UnboundedSender<Seen>) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = udp.local_addr().unwrap();
    let mk = || {
        let mut r = Rtc::builder().set_ice_lite(true).build(Instant::now());
        r.add_local_candidate(Candidate::host(local, "udp").unwrap());
        r
    };
    let (mut publ, mut subs) = (mk(), mk());
    let send = |f: &ServerFrame| Message::Text(serde_json::to_string(f).unwrap().into());
    let user = SessionUser { uid: UserId(1), address: "me".into(), name: "Me".into() };
    let mut counts: Seen = BTreeMap::new();
    let mut sub_pending: Option<SdpPendingOffer> = None;
    let mut sub_mids: Option<(Mid, Mid)> = None;
    let mut frame = 0u32;
    let mut next_media = Instant::now();
    let mut buf = vec![0u8; 2048];
    loop {
        // Drive both peers.
        let mut timeout = Instant::now() + Duration::from_millis(20);
        for rtc in [&mut publ, &mut subs] {
            loop {
                match rtc.poll_output().unwrap() {
                    Output::Timeout(t) => {
                        timeout = timeout.min(t);
                        break;
                    }
                    Output::Transmit(t) => drop(udp.try_send_to(&t.contents, t.destination)),
                    Output::Event(Event::MediaData(d)) => {
                        let kind = if d.params.spec().codec == Codec::Opus { "audio" } else { "video" };
                        assert!(Trailer::find(&d.data).is_some(), "frames carry the trailer");
                        let e =
                            counts.entry((kind.into(), d.rid.map(|r| r.to_string()).unwrap_or_default())).or_default();
                        e.0 += 1;
                        e.1 = d.ext_vals.audio_level.or(e.1);
                        let _ = seen.send(counts.clone());
                    }
                    Output::Event(_) => {}
                }
            }
        }
        // Send media to the subscriber once its connection is up.
        if let Some((a, v)) = sub_mids.filter(|_| subs.is_connected() && Instant::now() >= next_media) {
            next_media = Instant::now() + Duration::from_millis(33);
            let now_us = media::now_us();
            let t = Trailer { layer: 1, frame, sent_us: now_us };
            let vf = media::vp8_frame(frame % 30 < 1, 640, 360, t, 1500);
            let af = media::opus_frame(Trailer { layer: 0, ..t });
            for (mid, codec, data, time) in [
                (v, Codec::Vp8, vf, MediaTime::new(frame as u64 * 3000, Frequency::NINETY_KHZ)),
                (a, Codec::Opus, af, MediaTime::new(frame as u64 * 960, Frequency::FORTY_EIGHT_KHZ)),
            ] {
                let w = subs.writer(mid).unwrap();
                let pt = w.payload_params().find(|p| p.spec().codec == codec).unwrap().pt();
                w.write(pt, Instant::now(), time, data).unwrap();
            }
            frame += 1;
            continue;
        }
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(Message::Text(t))) = m else { return };
                let f: ClientFrame = serde_json::from_str(&t).unwrap();
                match f {
                    ClientFrame::Hello { .. } => {
                        ws.send(send(&ServerFrame::Welcome { session: "s".into(), user: user.clone(), epoch: "e".into(), resumed: false, reason: None })).await.unwrap();
                        ws.send(send(&ServerFrame::Synced { pos: Pos(0), count: 0, complete: true })).await.unwrap();
                    }
                    ClientFrame::CallJoin { rid, gid } => {
                        let permissions = CallPermissions { publish: true, subscribe: true, list: true, ..Default::default() };
                        let settings = CallSettings { audio: true, video: true, screen: true, simulcast: true, max_height: None, max_duration_secs: None, max_streams: 4, live: false };
                        ws.send(send(&ServerFrame::CallJoined { rid, gid, address: "me".into(), permissions, settings, participants: vec![], ice_servers: vec![], recording: None, audience: None })).await.unwrap();
                        // Offer the subscribe connection with one publisher's audio and video.
                        let mut api = subs.sdp_api();
                        let a = api.add_media(str0m::media::MediaKind::Audio, Direction::SendOnly, None, None, None);
                        let v = api.add_media(str0m::media::MediaKind::Video, Direction::SendOnly, None, None, None);
                        let (offer, pending) = api.apply().unwrap();
                        sub_pending = Some(pending);
                        sub_mids = Some((a, v));
                        let tracks = vec![
                            CallTrack { mid: a.to_string(), publisher: "alice".into(), sid: 0, kind: MediaKind::Audio, codec: "opus".into() },
                            CallTrack { mid: v.to_string(), publisher: "alice".into(), sid: 0, kind: MediaKind::Video, codec: "VP8".into() },
                        ];
                        ws.send(send(&ServerFrame::CallOffer { gid: chorus_proto::GroupId(1000), sdp: offer.to_sdp_string(), tracks })).await.unwrap();
                    }
                    ClientFrame::CallAnswer { sdp, .. } => {
                        let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                        subs.sdp_api().accept_answer(sub_pending.take().unwrap(), answer).unwrap();
                    }
                    ClientFrame::CallPublish(req) => {
                        assert_eq!(req.rids, vec!["q", "h", "f"]);
                        let offer = SdpOffer::from_sdp_string(&req.sdp).unwrap();
                        let answer = publ.sdp_api().accept_offer(offer).unwrap();
                        // Grant two layers, as a room capped at 360p would.
                        let stream = CallStream { sid: req.sid, audio: true, video: true, screen: false, layers: 2, height: Some(360), muted: req.muted };
                        ws.send(send(&ServerFrame::CallPublished { rid: req.rid, stream, sdp: answer.to_sdp_string() })).await.unwrap();
                    }
                    ClientFrame::CallLeave { rid } => {
                        ws.send(send(&ServerFrame::Ok { rid })).await.unwrap();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            r = udp.recv_from(&mut buf) => {
                let (n, source): (usize, SocketAddr) = r.unwrap();
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                if publ.accepts(&input) {
                    publ.handle_input(input).unwrap();
                } else if subs.accepts(&input) {
                    subs.handle_input(input).unwrap();
                }
            }
            _ = tokio::time::sleep_until(timeout.into()) => {
                let now = Instant::now();
                publ.handle_input(Input::Timeout(now)).unwrap();
                subs.handle_input(Input::Timeout(now)).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn publishes_and_receives_through_a_fake_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(fake_server(listener, seen_tx));

    let http = Http::new(base).with_token("t");
    let (conn, _) = Connection::connect(&http, None).await.unwrap();
    let call = Call::join(conn, 1000, CallOptions::default()).await.unwrap();
    let granted = call.publish_camera(0, PublishOptions::default()).await.unwrap();
    assert_eq!(granted.layers, 2);
    call.set_speaking(true);

    // The "server" receives audio (with a level) and video on q and h, never f.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = Seen::new();
    while last.get(&("video".into(), "h".into())).is_none_or(|c| c.0 < 20)
        || last.get(&("audio".into(), String::new())).is_none_or(|c| c.0 < 20)
    {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(s)) => last = s,
            _ => panic!("publish media did not arrive: {last:?}, stats {:#?}", call.stats()),
        }
    }
    assert!(last.get(&("video".into(), "q".into())).is_some_and(|c| c.0 > 0), "{last:?}");
    assert!(!last.contains_key(&("video".into(), "f".into())), "the ungranted layer stays silent: {last:?}");
    let level = last[&("audio".to_string(), String::new())].1;
    assert_eq!(level, Some(-20), "speaking level");

    // And what it sends on the subscribe connection is counted per publisher.
    let stats = call
        .wait_until(Duration::from_secs(10), |s| {
            s.track("alice", 0, Kind::Video).is_some_and(|t| t.frames >= 20)
                && s.track("alice", 0, Kind::Audio).is_some_and(|t| t.frames >= 20)
        })
        .await
        .unwrap();
    let v = stats.track("alice", 0, Kind::Video).unwrap();
    assert_eq!(v.layer, Some(1));
    assert_eq!(v.lost, 0);
    assert!(v.max_latency_us < 1_000_000, "{v:?}");
    assert!(v.keyframes >= 1);
    assert_eq!(stats.publishers_with_audio_and_video(), vec!["alice".to_string()]);
    assert!(stats.sent[&(0, Kind::Video)].frames.len() == 2, "two layers written: {:?}", stats.sent);

    call.leave().await.unwrap();
}
