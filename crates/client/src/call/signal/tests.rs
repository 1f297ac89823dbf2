//! The signalling machine driven by hand: frames in, outputs checked, no socket, no task, no
//! sleep. The str0m peer connections (the client's two and a stand-in for the server's) are
//! built at one fixed instant and never advanced: signalling needs no clock, only their SDP.

use std::time::Instant;

use chorus_proto::call::{CallLeaveReason, CallMute, CallSettings, MediaKind, StreamEndReason};
use chorus_proto::GroupId;
use str0m::media::MediaKind as RtcKind;

use super::*;
use crate::call::install_crypto;

const ME: &str = "me";

fn everything() -> CallPermissions {
    CallPermissions { publish: true, subscribe: true, list: true, call_control: false, hangup: false }
}

fn stream(sid: u32) -> CallStream {
    CallStream {
        sid,
        audio: true,
        video: true,
        screen: false,
        layers: 3,
        height: Some(720),
        muted: CallMute::default(),
    }
}

fn participant(address: &str, streams: Vec<CallStream>) -> CallParticipant {
    CallParticipant {
        address: address.into(),
        name: address.into(),
        permissions: everything(),
        admin_muted: CallMute::default(),
        talking: false,
        streams,
    }
}

fn joined(others: Vec<CallParticipant>) -> Joined {
    let mut participants = vec![participant(ME, vec![])];
    participants.extend(others);
    Joined {
        gid: 1000,
        address: ME.into(),
        permissions: everything(),
        settings: CallSettings {
            audio: true,
            video: true,
            screen: true,
            simulcast: true,
            max_height: None,
            max_duration_secs: None,
            max_streams: 4,
            live: false,
        },
        participants,
        recording: None,
        audience: None,
    }
}

/// A client's two peer connections and a server stand-in, all at one instant.
struct Peers {
    rtcs: Rtcs,
    server: Rtc,
}

const SERVER: &str = "127.0.0.1:3478";
const CLIENT: &str = "127.0.0.1:40000";

/// Built at `t0`; the client's publish connection announces [`CLIENT`] as the driver would.
fn peers_at(t0: Instant) -> Peers {
    install_crypto();
    let mut server = Rtc::builder().set_ice_lite(true).build(t0);
    server.add_local_candidate(str0m::Candidate::host(SERVER.parse().unwrap(), "udp").unwrap());
    let mut publish = Rtc::builder().build(t0);
    publish.add_local_candidate(str0m::Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    Peers { rtcs: Rtcs { publish, subscribe: Rtc::builder().build(t0) }, server }
}

fn peers() -> Peers {
    peers_at(Instant::now())
}

fn drain(sig: &mut Signalling) -> Vec<Output> {
    std::iter::from_fn(|| sig.poll_output()).collect()
}

/// Drains, answering every send as sent (the driver's half of the contract), and returns the
/// outputs with the frames sent.
fn run(sig: &mut Signalling, rtcs: &mut Rtcs) -> Vec<Output> {
    let mut all = Vec::new();
    while let Some(out) = sig.poll_output() {
        if let Output::Send { rid, .. } = &out {
            sig.handle_input(Input::Sent { rid: rid.clone(), result: Ok(()) }, rtcs);
        }
        all.push(out);
    }
    all
}

fn frames(outs: &[Output]) -> Vec<(&str, &ClientFrame)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { rid, frame } => Some((rid.as_str(), frame)),
            _ => None,
        })
        .collect()
}

fn frame(sig: &mut Signalling, rtcs: &mut Rtcs, f: ServerFrame) -> Vec<Output> {
    sig.handle_input(Input::Frame(Box::new(f)), rtcs);
    run(sig, rtcs)
}

fn event(e: CallEvent) -> ServerFrame {
    ServerFrame::CallEvent { gid: GroupId(1000), event: e }
}

fn ok(rid: &str) -> ServerFrame {
    ServerFrame::Ok { rid: Some(rid.into()) }
}

fn error(rid: &str, code: ErrorCode) -> ServerFrame {
    ServerFrame::Error { rid: Some(rid.into()), id: None, code, message: "no".into(), status: None }
}

fn command(sig: &mut Signalling, rtcs: &mut Rtcs, ticket: u64, c: Command) -> Vec<Output> {
    sig.handle_input(Input::Command(Ticket(ticket), c), rtcs);
    run(sig, rtcs)
}

fn replied(outs: &[Output], ticket: u64) -> Option<&Result<(), CallError>> {
    outs.iter().find_map(|o| match o {
        Output::Replied(Ticket(t), r) if *t == ticket => Some(r),
        _ => None,
    })
}

/// Publishes stream `sid` and lets the server stand-in answer; returns the publish's rid.
fn replied_publish(outs: &[Output], ticket: u64) -> Option<&Result<CallStream, CallError>> {
    outs.iter().find_map(|o| match o {
        Output::Published(Ticket(t), r) if *t == ticket => Some(r),
        _ => None,
    })
}

fn subscribe_bob() -> Command {
    Command::Subscribe { address: "bob".into(), sid: 0, audio: true, video: true, height: None }
}

fn publish(sig: &mut Signalling, p: &mut Peers, ticket: u64, sid: u32, granted: CallStream) -> Vec<Output> {
    let outs = command(sig, &mut p.rtcs, ticket, Command::Publish { sid, opts: PublishOptions::default() });
    let [(rid, ClientFrame::CallPublish(req))] = frames(&outs)[..] else { panic!("one call_publish: {outs:?}") };
    let offer = SdpOffer::from_sdp_string(&req.sdp).unwrap();
    let answer = p.server.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
    let rid = rid.to_string();
    frame(sig, &mut p.rtcs, ServerFrame::CallPublished { rid: Some(rid), stream: granted, sdp: answer })
}

#[test]
fn request_ids_continue_the_connections_and_auto_subscriptions_start_at_join() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![participant("bob", vec![stream(0)])]), true, Some(360), true, 41);
    let outs = run(&mut sig, &mut p.rtcs);
    let sent = frames(&outs);
    assert_eq!(sent.len(), 1, "{outs:?}");
    let (rid, f) = sent[0];
    assert_eq!(rid, "42");
    assert!(
        matches!(
            f,
            ClientFrame::CallSubscribe { rid: Some(r), address, sid: 0, audio: true, video: true, height: Some(360) }
                if r == "42" && address == "bob"
        ),
        "{f:?}"
    );
    assert_eq!(sig.next_rid(), 42);
}

#[test]
fn without_subscribe_all_or_the_permission_nothing_is_subscribed() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![participant("bob", vec![stream(0)])]), false, None, true, 0);
    assert!(frames(&run(&mut sig, &mut p.rtcs)).is_empty());
    let mut j = joined(vec![participant("bob", vec![stream(0)])]);
    j.permissions.subscribe = false;
    let mut sig = Signalling::new(&j, true, None, true, 0);
    assert!(frames(&run(&mut sig, &mut p.rtcs)).is_empty());
}

#[test]
fn new_streams_of_others_are_subscribed_once_and_the_view_follows_first() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), true, None, true, 0);
    assert!(drain(&mut sig).is_empty());
    let outs = frame(&mut sig, &mut p.rtcs, event(CallEvent::Joined { participant: participant("bob", vec![]) }));
    assert!(matches!(&outs[0], Output::View(ViewChange::Participant(b)) if b.address == "bob"), "{outs:?}");
    assert!(frames(&outs).is_empty());

    let published = CallEvent::Published { address: "bob".into(), stream: stream(1) };
    let outs = frame(&mut sig, &mut p.rtcs, event(published.clone()));
    // The view changes before the notice that announces it, and the subscription follows.
    assert!(matches!(&outs[0], Output::View(ViewChange::Participant(b)) if b.streams == vec![stream(1)]));
    assert!(matches!(&outs[1], Output::Notice(CallNotice::Event(e)) if *e == published));
    assert!(matches!(frames(&outs)[..], [(_, ClientFrame::CallSubscribe { sid: 1, .. })]), "{outs:?}");

    // The same stream again (an update): already subscribed.
    let outs = frame(&mut sig, &mut p.rtcs, event(published));
    assert!(frames(&outs).is_empty(), "{outs:?}");
    // Own streams are never subscribed.
    let own = CallEvent::Published { address: ME.into(), stream: stream(0) };
    assert!(frames(&frame(&mut sig, &mut p.rtcs, event(own))).is_empty());
}

#[test]
fn a_refused_auto_subscription_is_a_notice_and_is_forgotten() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![participant("bob", vec![stream(0)])]), true, None, true, 0);
    let outs = run(&mut sig, &mut p.rtcs);
    let rid = frames(&outs)[0].0.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, error(&rid, ErrorCode::Forbidden));
    assert!(matches!(&outs[..], [Output::Notice(CallNotice::Error { code: ErrorCode::Forbidden, .. })]), "{outs:?}");
    // Forgotten: turning automatic subscription on again asks again.
    sig.handle_input(Input::SubscribeAll(true), &mut p.rtcs);
    assert_eq!(frames(&run(&mut sig, &mut p.rtcs)).len(), 1);
}

#[test]
fn a_request_that_was_never_sent_waits_for_nothing() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let c = Command::Subscribe { address: "bob".into(), sid: 0, audio: true, video: true, height: None };
    sig.handle_input(Input::Command(Ticket(1), c), &mut p.rtcs);
    let Some(Output::Send { rid, .. }) = sig.poll_output() else { panic!("a send") };
    sig.handle_input(Input::Sent { rid: rid.clone(), result: Err(anyhow!("socket gone")) }, &mut p.rtcs);
    let outs = drain(&mut sig);
    assert!(matches!(replied(&outs, 1), Some(Err(CallError::Other(_)))), "{outs:?}");
    // A late reply to it finds nothing waiting.
    assert!(frame(&mut sig, &mut p.rtcs, ok(&rid)).is_empty());
}

#[test]
fn set_height_keeps_the_subscriptions_audio_and_video_choice() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let c = Command::Subscribe { address: "bob".into(), sid: 0, audio: true, video: false, height: None };
    let outs = command(&mut sig, &mut p.rtcs, 1, c);
    let rid = frames(&outs)[0].0.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, ok(&rid));
    assert!(matches!(replied(&outs, 1), Some(Ok(()))));
    let outs =
        command(&mut sig, &mut p.rtcs, 2, Command::SetHeight { address: "bob".into(), sid: 0, height: Some(180) });
    assert!(
        matches!(
            frames(&outs)[..],
            [(_, ClientFrame::CallSubscribe { audio: true, video: false, height: Some(180), .. })]
        ),
        "{outs:?}"
    );
}

#[test]
fn publish_negotiates_with_the_server_and_starts_the_granted_layers() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let outs = command(&mut sig, &mut p.rtcs, 1, Command::Publish { sid: 0, opts: PublishOptions::default() });
    let [(_, ClientFrame::CallPublish(req))] = frames(&outs)[..] else { panic!("{outs:?}") };
    assert_eq!(req.rids, vec!["q", "h", "f"]);
    assert!(req.sdp.contains("a=simulcast:send q;h;f"), "{}", req.sdp);
    assert!(req.audio_mid.is_some() && req.video_mid.is_some());

    // One negotiation at a time.
    let outs = command(&mut sig, &mut p.rtcs, 2, Command::Publish { sid: 1, opts: PublishOptions::default() });
    assert!(matches!(&outs[..], [Output::Published(Ticket(2), Err(CallError::Other(_)))]), "{outs:?}");

    // The server answers the first, granting two layers of at most 360 lines.
    let rid = req.rid.clone().unwrap();
    let offer = SdpOffer::from_sdp_string(&req.sdp).unwrap();
    let answer = p.server.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
    let granted = CallStream { layers: 2, height: Some(360), ..stream(0) };
    let outs =
        frame(&mut sig, &mut p.rtcs, ServerFrame::CallPublished { rid: Some(rid), stream: granted, sdp: answer });
    assert!(matches!(&outs[0], Output::Negotiated { leg: Leg::Publish, .. }), "{outs:?}");
    let Output::StartSending { sid: 0, layers, .. } = &outs[1] else { panic!("{outs:?}") };
    assert_eq!(layers.iter().map(|l| l.height).collect::<Vec<_>>(), vec![180, 360]);
    assert!(matches!(&outs[2], Output::View(ViewChange::Participant(me)) if me.streams == vec![granted]));
    assert!(matches!(&outs[3], Output::Published(Ticket(1), Ok(s)) if *s == granted));
    let own = &sig.streams()[&0];
    assert!(own.audio.is_some() && own.video.is_some() && own.simulcast);
}

#[test]
fn a_refused_publish_rolls_back_and_another_may_follow() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let outs = command(&mut sig, &mut p.rtcs, 1, Command::Publish { sid: 0, opts: PublishOptions::default() });
    let rid = frames(&outs)[0].0.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, error(&rid, ErrorCode::Forbidden));
    assert!(
        matches!(&outs[..], [Output::Published(Ticket(1), Err(e))] if e.code() == Some(ErrorCode::Forbidden)),
        "{outs:?}"
    );
    assert!(sig.streams().is_empty());
    let outs = publish(&mut sig, &mut p, 2, 0, stream(0));
    assert!(matches!(outs.last(), Some(Output::Published(Ticket(2), Ok(_)))), "{outs:?}");
}

#[test]
fn unpublish_stops_the_stream_only_once_the_request_left() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    publish(&mut sig, &mut p, 1, 0, stream(0));

    // Not sent: the stream stays.
    sig.handle_input(Input::Command(Ticket(2), Command::Unpublish { sid: 0 }), &mut p.rtcs);
    let Some(Output::Send { rid, frame: ClientFrame::CallUnpublish { sdp: Some(_), .. } }) = sig.poll_output() else {
        panic!("an unpublish with an offer")
    };
    sig.handle_input(Input::Sent { rid, result: Err(anyhow!("gone")) }, &mut p.rtcs);
    let outs = drain(&mut sig);
    assert!(matches!(replied(&outs, 2), Some(Err(_))) && sig.streams().contains_key(&0), "{outs:?}");

    // Sent: the stream stops at once; the server's answer completes it.
    let outs = command(&mut sig, &mut p.rtcs, 3, Command::Unpublish { sid: 0 });
    assert!(matches!(outs.last(), Some(Output::StopSending(0))), "{outs:?}");
    assert!(sig.streams().is_empty());
    let rid = frames(&outs)[0].0.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, ServerFrame::CallSdp { rid: Some(rid), sdp: None });
    assert!(matches!(&outs[..], [Output::ForgetSent(0), Output::Replied(Ticket(3), Ok(()))]), "{outs:?}");
    // Not published any more.
    let outs = command(&mut sig, &mut p.rtcs, 4, Command::Unpublish { sid: 0 });
    assert!(matches!(replied(&outs, 4), Some(Err(_))));
}

#[test]
fn own_mutes_apply_on_ok_and_an_unmuted_video_restarts_with_a_keyframe() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    publish(&mut sig, &mut p, 1, 0, stream(0));
    let outs = command(&mut sig, &mut p.rtcs, 2, Command::Mute { sid: 0, audio: Some(true), video: Some(true) });
    assert_eq!(sig.streams()[&0].stream.muted, CallMute::default(), "not before the server agrees");
    let rid = frames(&outs)[0].0.to_string();
    frame(&mut sig, &mut p.rtcs, ok(&rid));
    assert_eq!(sig.streams()[&0].stream.muted, CallMute { audio: true, video: true });

    let outs = command(&mut sig, &mut p.rtcs, 3, Command::Mute { sid: 0, audio: None, video: Some(false) });
    let rid = frames(&outs)[0].0.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, ok(&rid));
    assert!(matches!(&outs[..], [Output::Keyframe(0), Output::Replied(Ticket(3), Ok(()))]), "{outs:?}");
    assert_eq!(sig.streams()[&0].stream.muted, CallMute { audio: true, video: false });
}

#[test]
fn the_servers_offer_is_answered_and_its_tracks_mapped() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let mut api = p.server.sdp_api();
    let a = api.add_media(RtcKind::Audio, Direction::SendOnly, Some("bob-0".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    let track =
        CallTrack { mid: a.to_string(), publisher: "bob".into(), sid: 0, kind: MediaKind::Audio, codec: "opus".into() };
    let outs = frame(
        &mut sig,
        &mut p.rtcs,
        ServerFrame::CallOffer { gid: GroupId(1000), sdp: offer.to_sdp_string(), tracks: vec![track.clone()] },
    );
    let [(_, ClientFrame::CallAnswer { sdp, .. })] = frames(&outs)[..] else { panic!("{outs:?}") };
    p.server.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(sdp).unwrap()).unwrap();
    assert!(matches!(&outs[1], Output::Negotiated { leg: Leg::Subscribe, .. }));
    assert!(matches!(&outs[2], Output::Notice(CallNotice::Offer(t)) if *t == vec![track.clone()]));
    assert_eq!(sig.track(&a), Some(&track));

    // An offer the client cannot use is reported, not answered.
    let outs = frame(
        &mut sig,
        &mut p.rtcs,
        ServerFrame::CallOffer { gid: GroupId(1000), sdp: "nonsense".into(), tracks: vec![] },
    );
    assert!(matches!(&outs[..], [Output::Notice(CallNotice::Error { code: ErrorCode::BadRequest, .. })]));
}

#[test]
fn layer_events_reach_own_sources_and_received_tracks() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    publish(&mut sig, &mut p, 1, 0, stream(0));
    let outs = frame(&mut sig, &mut p.rtcs, event(CallEvent::Layers { sid: 0, active: vec![true, false, false] }));
    assert!(matches!(&outs[0], Output::LayersActive { sid: 0, active } if *active == vec![true, false, false]));
    // Not own: nothing to change.
    let outs = frame(&mut sig, &mut p.rtcs, event(CallEvent::Layers { sid: 7, active: vec![true] }));
    assert!(matches!(&outs[..], [Output::Notice(_)]), "{outs:?}");
    // The server took own stream away: stop sending it.
    let gone = CallEvent::Unpublished { address: ME.into(), sid: 0, reason: StreamEndReason::HungUp };
    let outs = frame(&mut sig, &mut p.rtcs, event(gone));
    assert!(outs.iter().any(|o| matches!(o, Output::StopSending(0))) && sig.streams().is_empty(), "{outs:?}");
}

#[test]
fn leave_ends_the_call_once_answered_and_fails_what_still_waits() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let waiting = Command::Unsubscribe { address: "bob".into(), sid: 0 };
    command(&mut sig, &mut p.rtcs, 1, waiting);
    let outs = command(&mut sig, &mut p.rtcs, 2, Command::Leave);
    let [(rid, ClientFrame::CallLeave { .. })] = frames(&outs)[..] else { panic!("{outs:?}") };
    let rid = rid.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, ok(&rid));
    assert!(matches!(&outs[0], Output::Ended(why) if why == "left"), "{outs:?}");
    assert!(matches!(replied(&outs, 1), Some(Err(CallError::Other(_)))));
    assert!(matches!(replied(&outs, 2), Some(Ok(()))));
    assert!(matches!(outs.last(), Some(Output::Stop)));
    // Ended: every later request is refused at once, nothing is sent.
    let outs = command(&mut sig, &mut p.rtcs, 3, Command::Publish { sid: 0, opts: PublishOptions::default() });
    assert!(matches!(&outs[..], [Output::Published(Ticket(3), Err(_))]), "{outs:?}");
}

#[test]
fn a_leave_that_cannot_be_sent_stops_without_ending() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    sig.handle_input(Input::Command(Ticket(1), Command::Leave), &mut p.rtcs);
    let Some(Output::Send { rid, .. }) = sig.poll_output() else { panic!("a send") };
    sig.handle_input(Input::Sent { rid, result: Err(anyhow!("gone")) }, &mut p.rtcs);
    let outs = drain(&mut sig);
    assert!(matches!(&outs[..], [Output::Replied(Ticket(1), Err(_)), Output::Stop]), "{outs:?}");
}

#[test]
fn being_removed_or_losing_the_websocket_ends_the_call() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let removed = CallEvent::Left { address: ME.into(), reason: CallLeaveReason::Removed, by: Some("admin".into()) };
    let outs = frame(&mut sig, &mut p.rtcs, event(removed));
    assert!(matches!(&outs[0], Output::View(ViewChange::Gone(a)) if a == ME), "{outs:?}");
    assert!(matches!(&outs[1], Output::Notice(CallNotice::Event(_))));
    assert!(matches!(&outs[2], Output::Ended(why) if why == "left the call: Removed"), "{outs:?}");

    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    sig.handle_input(Input::Closed("websocket: closed".into()), &mut p.rtcs);
    let outs = drain(&mut sig);
    assert!(matches!(&outs[..], [Output::Ended(w), Output::Stop] if w == "websocket: closed"), "{outs:?}");
}

#[test]
fn losing_the_call_with_recovery_on_asks_to_join_again_and_keeps_what_to_restore() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![participant("bob", vec![stream(0)])]), false, None, true, 0);
    run(&mut sig, &mut p.rtcs);
    let outs = publish(&mut sig, &mut p, 1, 0, stream(0));
    assert!(matches!(replied_publish(&outs, 1), Some(Ok(_))), "{outs:?}");
    let outs = command(&mut sig, &mut p.rtcs, 2, subscribe_bob());
    let [(rid, _)] = frames(&outs)[..] else { panic!("{outs:?}") };
    frame(&mut sig, &mut p.rtcs, ok(rid));
    // A request still waiting when the call is lost fails; nothing ends.
    let outs = command(&mut sig, &mut p.rtcs, 3, Command::Mute { sid: 0, audio: Some(true), video: None });
    assert_eq!(frames(&outs).len(), 1);
    let lost = CallEvent::Left { address: ME.into(), reason: CallLeaveReason::Lost, by: None };
    let outs = frame(&mut sig, &mut p.rtcs, event(lost));
    assert!(outs.iter().any(|o| matches!(o, Output::Rejoin)), "{outs:?}");
    assert!(!outs.iter().any(|o| matches!(o, Output::Ended(_) | Output::Stop)), "{outs:?}");
    assert!(matches!(replied(&outs, 3), Some(Err(_))), "{outs:?}");
    assert_eq!(sig.streams().keys().copied().collect::<Vec<_>>(), vec![0], "the stream to publish again");
    assert!(sig.subscriptions().contains_key(&("bob".to_string(), 0)), "the subscription to make again");

    // Without recovery, or removed by an admin, the call ends as before.
    let mut sig = Signalling::new(&joined(vec![]), false, None, false, 0);
    let lost = CallEvent::Left { address: ME.into(), reason: CallLeaveReason::Lost, by: None };
    let outs = frame(&mut sig, &mut p.rtcs, event(lost));
    assert!(outs.iter().any(|o| matches!(o, Output::Ended(_))), "{outs:?}");
}

#[test]
fn an_ice_restart_offers_new_credentials_on_a_negotiated_publish_leg_only() {
    let mut p = peers();
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    // Nothing published: no publish connection to offer on.
    let outs = command(&mut sig, &mut p.rtcs, 1, Command::RestartIce);
    let [(rid, ClientFrame::CallRestart { sdp: None, .. })] = frames(&outs)[..] else { panic!("{outs:?}") };
    let outs = frame(&mut sig, &mut p.rtcs, ServerFrame::CallSdp { rid: Some(rid.to_string()), sdp: None });
    assert!(matches!(replied(&outs, 1), Some(Ok(()))), "{outs:?}");

    let outs = publish(&mut sig, &mut p, 2, 0, stream(0));
    assert!(matches!(replied_publish(&outs, 2), Some(Ok(_))), "{outs:?}");
    let ufrag = |sdp: &str| sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().to_string();
    let before = p.rtcs.publish.direct_api().local_ice_credentials().ufrag;
    let outs = command(&mut sig, &mut p.rtcs, 3, Command::RestartIce);
    let [(rid, ClientFrame::CallRestart { sdp: Some(offer), .. })] = frames(&outs)[..] else { panic!("{outs:?}") };
    assert_ne!(ufrag(offer), before, "new credentials in the offer");
    // A second one while the first is out is refused, not queued.
    let outs2 = command(&mut sig, &mut p.rtcs, 4, Command::RestartIce);
    assert!(matches!(replied(&outs2, 4), Some(Err(_))), "{outs2:?}");
    let answer = p.server.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer).unwrap()).unwrap();
    let rid = rid.to_string();
    let outs = frame(&mut sig, &mut p.rtcs, ServerFrame::CallSdp { rid: Some(rid), sdp: Some(answer.to_sdp_string()) });
    assert!(matches!(replied(&outs, 3), Some(Ok(()))), "{outs:?}");
    assert!(outs.iter().any(|o| matches!(o, Output::Negotiated { leg: Leg::Publish, .. })), "{outs:?}");
    assert_ne!(p.rtcs.publish.direct_api().local_ice_credentials().ufrag, before);
}

/// Moves what one Rtc transmits into the other; `true` once it reported `Connected`.
fn pump(from: &mut Rtc, to: &mut Rtc, now: Instant) -> bool {
    let mut connected = false;
    loop {
        match from.poll_output().unwrap() {
            str0m::Output::Timeout(_) => return connected,
            str0m::Output::Transmit(t) => {
                let contents = t.contents.as_ref().try_into().unwrap();
                let r = str0m::net::Receive { proto: t.proto, source: t.source, destination: t.destination, contents };
                to.handle_input(str0m::Input::Receive(now, r)).unwrap();
            }
            str0m::Output::Event(str0m::Event::Connected) => connected = true,
            str0m::Output::Event(_) => {}
        }
    }
}

/// What the machine negotiated is usable: with the packets passed by hand and the clock
/// advanced by hand, ICE and DTLS complete between the client's publish connection and the
/// server stand-in within a simulated second.
#[test]
fn the_negotiated_publish_connection_comes_up_in_simulated_time() {
    let t0 = Instant::now();
    let mut p = peers_at(t0);
    let mut sig = Signalling::new(&joined(vec![]), false, None, true, 0);
    let outs = publish(&mut sig, &mut p, 1, 0, stream(0));
    assert!(matches!(outs.last(), Some(Output::Published(Ticket(1), Ok(_)))), "{outs:?}");
    let (mut client_up, mut server_up) = (false, false);
    let mut now = t0;
    for _ in 0..100 {
        client_up |= pump(&mut p.rtcs.publish, &mut p.server, now);
        server_up |= pump(&mut p.server, &mut p.rtcs.publish, now);
        if client_up && server_up {
            break;
        }
        now += std::time::Duration::from_millis(10);
        p.rtcs.publish.handle_input(str0m::Input::Timeout(now)).unwrap();
        p.server.handle_input(str0m::Input::Timeout(now)).unwrap();
    }
    assert!(client_up && server_up, "connected: client {client_up}, server {server_up}");
}
