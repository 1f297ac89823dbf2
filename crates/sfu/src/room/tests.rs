use std::time::Duration;

use super::*;
use crate::test_util::at;
use RoomEventKind as E;
use TrackKind::{Audio, Video};

const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;
const N: u32 = 4;
const M: u32 = 9;
const NOBODY: u32 = 99;

fn id(publisher: u32, sid: Sid) -> StreamId<u32> {
    StreamId { publisher, sid }
}

/// A room with these participants joined at time 0, in this order, and the events drained.
fn room_with(settings: RoomSettings, people: &[(u32, Permissions)]) -> Room<u32> {
    let mut room = Room::new(settings);
    for &(who, permissions) in people {
        room.join(at(0), who, permissions).unwrap();
    }
    drain(&mut room);
    room
}

fn drain(room: &mut Room<u32>) -> Vec<RoomEvent<u32>> {
    std::iter::from_fn(|| room.poll_event()).collect()
}

/// The events `who` receives, in order.
fn seen_by(events: &[RoomEvent<u32>], who: u32) -> Vec<RoomEventKind<u32>> {
    events.iter().filter(|event| event.to.contains(&who)).map(|event| event.kind.clone()).collect()
}

fn ev(to: &[u32], kind: RoomEventKind<u32>) -> RoomEvent<u32> {
    RoomEvent { to: to.to_vec(), kind }
}

fn camera() -> Publish {
    Publish::camera(3, 720)
}

const CAMERA_720: StreamInfo = StreamInfo { kind: StreamKind::CAMERA, layers: 3, height: Some(720), muted: Mute::NONE };

type PublishCase = (&'static str, Permissions, RoomSettings, Publish, Result<StreamInfo, RoomError>);

#[test]
fn publish_follows_permissions_and_room_settings() {
    let all = RoomSettings::default();
    let member = Permissions::MEMBER;
    let camera_info = |layers, height| StreamInfo { layers, height, ..CAMERA_720 };
    let screen_info = StreamInfo { kind: StreamKind::SCREEN, layers: 1, height: Some(720), muted: Mute::NONE };
    let mic_info = StreamInfo { kind: StreamKind::MICROPHONE, layers: 1, height: None, muted: Mute::NONE };
    let kind = |audio, video, screen| StreamKind { audio, video, screen };
    #[rustfmt::skip]
    let cases: &[PublishCase] = &[
        ("member publishes a camera", member, all, camera(), Ok(CAMERA_720)),
        ("view-only is refused", Permissions::VIEW_ONLY, all, camera(), Err(RoomError::PublishNotPermitted)),
        ("admin rights without publish are refused", Permissions { publish: false, ..Permissions::ADMIN }, all, camera(), Err(RoomError::PublishNotPermitted)),
        ("height above the cap is clamped", member, all, Publish::camera(3, 1080), Ok(camera_info(3, Some(720)))),
        ("height below the cap is kept", member, all, Publish::camera(2, 360), Ok(camera_info(2, Some(360)))),
        ("no height given gets the cap", member, all, Publish { height: None, ..camera() }, Ok(camera_info(3, Some(720)))),
        ("no cap keeps the height", member, RoomSettings { max_height: None, ..all }, Publish::camera(3, 2160), Ok(camera_info(3, Some(2160)))),
        ("simulcast off grants one layer", member, RoomSettings { simulcast: false, ..all }, camera(), Ok(camera_info(1, Some(720)))),
        ("screen share allowed", member, all, Publish::screen(1080), Ok(screen_info)),
        ("screen share refused when the room disallows", member, RoomSettings { screen: false, ..all }, Publish::screen(1080), Err(RoomError::ScreenNotAllowed)),
        ("camera still fine without screens", member, RoomSettings { screen: false, ..all }, camera(), Ok(CAMERA_720)),
        ("video refused when the room disallows", member, RoomSettings { video: false, ..all }, camera(), Err(RoomError::VideoNotAllowed)),
        ("screen needs video allowed too", member, RoomSettings { video: false, ..all }, Publish::screen(720), Err(RoomError::VideoNotAllowed)),
        ("audio-only room takes a microphone", member, RoomSettings { video: false, ..all }, Publish::microphone(), Ok(mic_info)),
        ("audio refused when the room disallows", member, RoomSettings { audio: false, ..all }, Publish::microphone(), Err(RoomError::AudioNotAllowed)),
        ("camera with sound refused without audio", member, RoomSettings { audio: false, ..all }, camera(), Err(RoomError::AudioNotAllowed)),
        ("empty stream", member, all, Publish { kind: kind(false, false, false), ..camera() }, Err(RoomError::EmptyStream)),
        ("screen without video", member, all, Publish { kind: kind(true, false, true), ..camera() }, Err(RoomError::ScreenWithoutVideo)),
        ("zero layers", member, all, Publish::camera(0, 720), Err(RoomError::InvalidLayers)),
        ("too many layers", member, all, Publish::camera(5, 720), Err(RoomError::InvalidLayers)),
        ("four layers is the most", member, all, Publish::camera(4, 720), Ok(camera_info(4, Some(720)))),
        ("audio ignores layers and height", member, all, Publish { layers: 0, height: Some(4000), ..Publish::microphone() }, Ok(mic_info)),
        ("mute only of carried media", member, all, Publish { muted: Mute { audio: true, video: true }, ..Publish::microphone() }, Ok(StreamInfo { muted: Mute { audio: true, video: false }, ..mic_info })),
    ];
    for (name, permissions, settings, request, want) in cases {
        let mut room = room_with(*settings, &[(A, *permissions), (B, Permissions::MEMBER)]);
        assert_eq!(room.publish(A, 0, *request), *want, "{name}");
        let events = drain(&mut room);
        match want {
            Ok(info) => {
                assert_eq!(room.stream(id(A, 0)), Some(info), "{name}");
                let published = E::StreamPublished { stream: id(A, 0), info: *info };
                assert_eq!(events, [ev(&[A, B], published)], "{name}");
            }
            Err(_) => {
                assert_eq!(room.stream(id(A, 0)), None, "{name}");
                assert_eq!(events, [], "{name}");
            }
        }
    }
}

#[test]
fn stream_ids_are_per_participant_and_limited() {
    let mut room = room_with(RoomSettings { max_streams: 2, ..Default::default() }, &[(A, Permissions::MEMBER)]);
    assert_eq!(room.publish(NOBODY, 0, camera()), Err(RoomError::NotInRoom));
    assert_eq!(room.publish(A, 0, camera()), Ok(CAMERA_720));
    assert_eq!(room.publish(A, 0, Publish::screen(720)), Err(RoomError::StreamExists));
    assert!(room.publish(A, 7, Publish::screen(720)).is_ok());
    assert_eq!(room.publish(A, 8, Publish::screen(720)), Err(RoomError::TooManyStreams));
    assert_eq!(room.unpublish(A, 5), Err(RoomError::NoSuchStream));
    drain(&mut room);
    assert_eq!(room.unpublish(A, 7), Ok(()));
    assert_eq!(
        drain(&mut room),
        [ev(&[A], E::StreamUnpublished { stream: id(A, 7), reason: UnpublishReason::Unpublished })]
    );
    assert!(room.publish(A, 8, Publish::screen(720)).is_ok());
    let sids: Vec<Sid> = room.roster(A)[0].streams.iter().map(|(sid, _)| *sid).collect();
    assert_eq!(sids, [0, 8]);
}

#[test]
fn view_only_member_cannot_publish_and_nothing_of_it_is_forwarded() {
    let mut room = room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::VIEW_ONLY)]);
    assert_eq!(room.publish(B, 0, camera()), Err(RoomError::PublishNotPermitted));
    assert_eq!(room.subscribe(A, id(B, 0), Subscription::ALL), Err(RoomError::NoSuchStream));
    for kind in [Audio, Video] {
        assert!(!room.forward_allowed(B, 0, A, kind));
    }
    // The view-only member may still receive.
    room.publish(A, 0, camera()).unwrap();
    room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
    assert!(room.forward_allowed(A, 0, B, Audio) && room.forward_allowed(A, 0, B, Video));

    // A publisher demoted to view-only mid-call: its streams end, and its RTP is dropped.
    drain(&mut room);
    room.set_permissions(A, Permissions::VIEW_ONLY).unwrap();
    let stream = id(A, 0);
    assert_eq!(
        drain(&mut room),
        [
            // A still lists, so it hears who stopped receiving its stream.
            ev(&[A, B], E::SubscriptionRemoved { subscriber: B, stream, reason: UnsubscribeReason::StreamEnded }),
            ev(&[A, B], E::StreamUnpublished { stream, reason: UnpublishReason::PermissionRevoked }),
            ev(&[A, B], E::ParticipantUpdated { who: A, permissions: Permissions::VIEW_ONLY, admin_muted: Mute::NONE }),
        ]
    );
    assert!(!room.forward_allowed(A, 0, B, Audio) && !room.forward_allowed(A, 0, B, Video));
    assert_eq!(room.publish(A, 0, camera()), Err(RoomError::PublishNotPermitted));
}

#[test]
fn forward_allowed_needs_every_condition() {
    let no_subscribe = Permissions { subscribe: false, ..Permissions::MEMBER };
    let mut room = room_with(
        Default::default(),
        &[(A, Permissions::MEMBER), (B, Permissions::MEMBER), (C, no_subscribe), (M, Permissions::ADMIN)],
    );
    room.publish(A, 0, camera()).unwrap();
    room.publish(A, 1, Publish::screen(1080)).unwrap();
    room.subscribe(B, id(A, 0), Subscription { audio: true, video: false, wanted_height: None }).unwrap();
    room.subscribe(B, id(A, 1), Subscription::ALL).unwrap();
    #[rustfmt::skip]
    let cases = [
        ("subscribed audio", A, 0, B, Audio, true),
        ("video not subscribed", A, 0, B, Video, false),
        ("screen video", A, 1, B, Video, true),
        ("screen has no audio", A, 1, B, Audio, false),
        ("no such stream", A, 2, B, Video, false),
        ("not subscribed", A, 0, M, Audio, false),
        ("no subscribe permission", A, 0, C, Audio, false),
        ("publisher without streams", B, 0, A, Audio, false),
        ("own stream", A, 0, A, Audio, false),
        ("unknown subscriber", A, 0, NOBODY, Audio, false),
        ("unknown publisher", NOBODY, 0, B, Audio, false),
    ];
    for (name, publisher, sid, subscriber, kind, want) in cases {
        assert_eq!(room.forward_allowed(publisher, sid, subscriber, kind), want, "{name}");
    }

    let audio = |room: &Room<u32>| room.forward_allowed(A, 0, B, Audio);
    room.set_muted(A, 0, Audio, true).unwrap();
    assert!(!audio(&room), "owner muted");
    room.set_muted(A, 0, Audio, false).unwrap();
    assert!(audio(&room), "owner unmuted");
    room.admin_mute(M, A, Audio, true).unwrap();
    assert!(!audio(&room), "admin muted");
    assert_eq!(room.set_muted(A, 0, Audio, false), Err(RoomError::MutedByAdmin));
    assert!(!audio(&room), "owner cannot lift an admin mute");
    room.admin_mute(M, A, Audio, false).unwrap();
    assert!(audio(&room), "admin lifted the mute");
    room.unsubscribe(B, id(A, 0)).unwrap();
    assert!(!audio(&room), "unsubscribed");
    room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
    assert!(audio(&room), "subscribed again");
    room.set_permissions(B, Permissions { subscribe: false, ..Permissions::MEMBER }).unwrap();
    assert!(!audio(&room), "subscribe permission revoked");
    assert_eq!(room.subscription(B, id(A, 0)), None);
    assert_eq!(room.subscription(B, id(A, 1)), None);
}

#[test]
fn subscribe_rules() {
    let no_subscribe = Permissions { subscribe: false, ..Permissions::MEMBER };
    let mut room =
        room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::MEMBER), (C, no_subscribe)]);
    room.publish(A, 0, camera()).unwrap();
    room.publish(A, 1, Publish::screen(720)).unwrap();
    let audio_only = Subscription { audio: true, video: false, wanted_height: None };
    #[rustfmt::skip]
    let cases = [
        ("without subscribe permission", C, id(A, 0), Subscription::ALL, Err(RoomError::SubscribeNotPermitted)),
        ("not in the call", NOBODY, id(A, 0), Subscription::ALL, Err(RoomError::NotInRoom)),
        ("own stream", A, id(A, 0), Subscription::ALL, Err(RoomError::OwnStream)),
        ("no such sid", B, id(A, 5), Subscription::ALL, Err(RoomError::NoSuchStream)),
        ("no such publisher", B, id(NOBODY, 0), Subscription::ALL, Err(RoomError::NoSuchStream)),
        ("audio of a silent screen", B, id(A, 1), audio_only, Err(RoomError::NothingToReceive)),
        ("screen grants only video", B, id(A, 1), Subscription::ALL, Ok(Subscription { audio: false, ..Subscription::ALL })),
        ("camera audio only", B, id(A, 0), audio_only, Ok(audio_only)),
    ];
    for (name, subscriber, stream, wanted, want) in cases {
        drain(&mut room);
        assert_eq!(room.subscribe(subscriber, stream, wanted), want, "{name}");
        let events = drain(&mut room);
        match want {
            Ok(granted) => {
                assert_eq!(room.subscription(subscriber, stream), Some(&granted), "{name}");
                let added = E::SubscriptionAdded { subscriber, stream, subscription: granted };
                assert_eq!(events, [ev(&[A, subscriber], added)], "{name}");
            }
            Err(_) => assert_eq!(events, [], "{name}"),
        }
    }

    // Asking again for the same changes nothing; asking for more or another size updates.
    room.subscribe(B, id(A, 0), audio_only).unwrap();
    assert_eq!(drain(&mut room), []);
    let small = Subscription { wanted_height: Some(180), ..Subscription::ALL };
    room.subscribe(B, id(A, 0), small).unwrap();
    assert_eq!(
        drain(&mut room),
        [ev(&[A, B], E::SubscriptionUpdated { subscriber: B, stream: id(A, 0), subscription: small })]
    );
    let subscribers: Vec<(u32, Subscription)> = room.subscribers(id(A, 0)).map(|(who, s)| (who, *s)).collect();
    assert_eq!(subscribers, [(B, small)]);

    assert_eq!(room.unsubscribe(B, id(A, 0)), Ok(()));
    assert_eq!(
        drain(&mut room),
        [ev(
            &[A, B],
            E::SubscriptionRemoved { subscriber: B, stream: id(A, 0), reason: UnsubscribeReason::Unsubscribed }
        )]
    );
    assert_eq!(room.unsubscribe(B, id(A, 0)), Err(RoomError::NotSubscribed));
    assert_eq!(room.subscribers(id(A, 0)).count(), 0);
}

#[test]
fn members_without_list_hear_only_about_themselves() {
    let hidden = Permissions { list: false, ..Permissions::MEMBER };
    let mut room = Room::new(RoomSettings::default());
    room.join(at(0), A, Permissions::MEMBER).unwrap();
    room.join(at(0), N, hidden).unwrap();
    room.join(at(0), B, Permissions::VIEW_ONLY).unwrap();
    room.publish(A, 0, camera()).unwrap();
    room.publish(N, 0, camera()).unwrap();
    room.set_talking(A, true).unwrap();
    room.subscribe(N, id(A, 0), Subscription::ALL).unwrap();
    room.subscribe(A, id(N, 0), Subscription::ALL).unwrap();
    room.leave(B, LeaveReason::Left).unwrap();
    let events = drain(&mut room);

    let n_sub = E::SubscriptionAdded { subscriber: N, stream: id(A, 0), subscription: Subscription::ALL };
    let a_sub = E::SubscriptionAdded { subscriber: A, stream: id(N, 0), subscription: Subscription::ALL };
    assert_eq!(
        seen_by(&events, N),
        [
            E::ParticipantJoined { who: N, permissions: hidden },
            E::StreamPublished { stream: id(N, 0), info: CAMERA_720 },
            n_sub.clone(),
        ]
    );
    assert_eq!(
        seen_by(&events, A),
        [
            E::ParticipantJoined { who: A, permissions: Permissions::MEMBER },
            E::ParticipantJoined { who: N, permissions: hidden },
            E::ParticipantJoined { who: B, permissions: Permissions::VIEW_ONLY },
            E::StreamPublished { stream: id(A, 0), info: CAMERA_720 },
            E::StreamPublished { stream: id(N, 0), info: CAMERA_720 },
            E::Talking { who: A, talking: true },
            n_sub,
            a_sub,
            E::ParticipantLeft { who: B, reason: LeaveReason::Left },
        ]
    );
    let roster = |room: &Room<u32>, viewer| room.roster(viewer).into_iter().map(|view| view.who).collect::<Vec<_>>();
    assert_eq!(roster(&room, N), [N]);
    assert_eq!(roster(&room, A), [A, N]);
    assert_eq!(roster(&room, NOBODY), []);
    let me = &room.roster(N)[0];
    assert_eq!((me.permissions, me.streams.as_slice()), (hidden, &[(0, CAMERA_720)][..]));

    // Gaining list later shows the roster from then on.
    room.set_permissions(N, Permissions::MEMBER).unwrap();
    room.set_talking(A, false).unwrap();
    assert_eq!(seen_by(&drain(&mut room), N).last(), Some(&E::Talking { who: A, talking: false }));
    assert_eq!(roster(&room, N), [A, N]);
}

#[test]
fn admin_actions_need_the_matching_right() {
    type Action = fn(&mut Room<u32>) -> Result<(), RoomError>;
    let mute: Action = |room| room.admin_mute(M, A, Audio, true);
    let mute_all: Action = |room| room.admin_mute_all(M, Video, true);
    let hangup: Action = |room| room.admin_hangup(M, id(A, 0));
    let remove: Action = |room| room.admin_remove(M, A);
    let member = Permissions::MEMBER;
    let call_control = Permissions { call_control: true, ..member };
    let hangup_only = Permissions { hangup: true, ..member };
    let ok = Ok(());
    #[rustfmt::skip]
    let cases: &[(&str, Permissions, Action, Result<(), RoomError>)] = &[
        ("member mutes", member, mute, Err(RoomError::CallControlRequired)),
        ("member mutes all", member, mute_all, Err(RoomError::CallControlRequired)),
        ("member hangs up", member, hangup, Err(RoomError::HangupRequired)),
        ("member removes", member, remove, Err(RoomError::HangupRequired)),
        ("hang-up admin mutes", hangup_only, mute, Err(RoomError::CallControlRequired)),
        ("hang-up admin mutes all", hangup_only, mute_all, Err(RoomError::CallControlRequired)),
        ("hang-up admin hangs up", hangup_only, hangup, ok),
        ("hang-up admin removes", hangup_only, remove, ok),
        ("call-control admin mutes", call_control, mute, ok),
        ("call-control admin mutes all", call_control, mute_all, ok),
        ("call-control admin hangs up", call_control, hangup, Err(RoomError::HangupRequired)),
        ("call-control admin removes", call_control, remove, Err(RoomError::HangupRequired)),
    ];
    for (name, permissions, action, want) in cases {
        let mut room = room_with(Default::default(), &[(A, member), (B, member), (M, *permissions)]);
        room.publish(A, 0, camera()).unwrap();
        room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
        drain(&mut room);
        assert_eq!(action(&mut room), *want, "{name}");
        let events = drain(&mut room);
        if want.is_err() {
            assert_eq!(events, [], "{name}");
            assert!(room.forward_allowed(A, 0, B, Audio) && room.forward_allowed(A, 0, B, Video), "{name}");
        } else {
            assert!(!events.is_empty(), "{name}");
            assert!(!room.forward_allowed(A, 0, B, Audio) || !room.forward_allowed(A, 0, B, Video), "{name}");
        }
    }

    // Acting on someone not in the call, or as someone not in it.
    let mut room = room_with(Default::default(), &[(M, Permissions::ADMIN)]);
    assert_eq!(room.admin_mute(M, NOBODY, Audio, true), Err(RoomError::NoSuchParticipant));
    assert_eq!(room.admin_remove(M, NOBODY), Err(RoomError::NoSuchParticipant));
    assert_eq!(room.admin_hangup(M, id(NOBODY, 0)), Err(RoomError::NoSuchStream));
    assert_eq!(room.admin_mute(NOBODY, M, Audio, true), Err(RoomError::NotInRoom));
}

#[test]
fn admin_mutes_everyone_else_until_lifted() {
    let mut room = room_with(
        Default::default(),
        &[(M, Permissions::ADMIN), (A, Permissions::MEMBER), (B, Permissions::MEMBER), (C, Permissions::MEMBER)],
    );
    for who in [M, A, B] {
        room.publish(who, 0, camera()).unwrap();
        room.subscribe(C, id(who, 0), Subscription::ALL).unwrap();
    }
    drain(&mut room);
    room.admin_mute_all(M, Audio, true).unwrap();
    let muted = Mute { audio: true, video: false };
    let updated = |who| E::ParticipantUpdated { who, permissions: Permissions::MEMBER, admin_muted: muted };
    assert_eq!(
        drain(&mut room),
        [ev(&[M, A, B, C], updated(A)), ev(&[M, A, B, C], updated(B)), ev(&[M, A, B, C], updated(C))]
    );
    assert!(room.forward_allowed(M, 0, C, Audio), "the admin is not muted");
    for who in [A, B] {
        assert!(!room.forward_allowed(who, 0, C, Audio), "{who} audio");
        assert!(room.forward_allowed(who, 0, C, Video), "{who} video untouched");
        assert_eq!(room.set_muted(who, 0, Audio, false), Err(RoomError::MutedByAdmin));
        assert_eq!(room.roster(who).iter().find(|view| view.who == who).unwrap().admin_muted, muted);
    }
    // Muting again changes nothing; a new stream of a muted participant starts muted.
    room.admin_mute_all(M, Audio, true).unwrap();
    assert_eq!(drain(&mut room), []);
    room.publish(A, 1, Publish::microphone()).unwrap();
    room.subscribe(C, id(A, 1), Subscription::ALL).unwrap();
    assert!(!room.forward_allowed(A, 1, C, Audio));
    // The owner may still mute, just not unmute.
    assert_eq!(room.set_muted(A, 0, Audio, true), Ok(()));
    room.admin_mute_all(M, Audio, false).unwrap();
    assert!(room.forward_allowed(B, 0, C, Audio) && room.forward_allowed(A, 1, C, Audio));
    assert!(!room.forward_allowed(A, 0, C, Audio), "the owner's own mute stays");
    room.set_muted(A, 0, Audio, false).unwrap();
    assert!(room.forward_allowed(A, 0, C, Audio));
}

#[test]
fn owner_mute_rules_and_events() {
    let mut room = room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::MEMBER)]);
    room.publish(A, 0, Publish::screen(720)).unwrap();
    drain(&mut room);
    assert_eq!(room.set_muted(A, 0, Audio, true), Err(RoomError::NoSuchMedia));
    assert_eq!(room.set_muted(A, 1, Video, true), Err(RoomError::NoSuchStream));
    assert_eq!(room.set_muted(B, 0, Video, true), Err(RoomError::NoSuchStream), "only the owner");
    assert_eq!(room.set_muted(A, 0, Video, true), Ok(()));
    assert_eq!(room.set_muted(A, 0, Video, true), Ok(()));
    let muted = Mute { audio: false, video: true };
    assert_eq!(drain(&mut room), [ev(&[A, B], E::StreamMuted { stream: id(A, 0), muted })]);
    assert_eq!(room.stream(id(A, 0)).unwrap().muted, muted);
}

#[test]
fn hangup_ends_one_stream_and_its_subscriptions() {
    let mut room =
        room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::MEMBER), (M, Permissions::ADMIN)]);
    room.publish(A, 0, camera()).unwrap();
    room.publish(A, 1, Publish::screen(720)).unwrap();
    room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
    room.subscribe(B, id(A, 1), Subscription::ALL).unwrap();
    drain(&mut room);
    room.admin_hangup(M, id(A, 1)).unwrap();
    let screen = id(A, 1);
    assert_eq!(
        drain(&mut room),
        [
            ev(
                &[A, B],
                E::SubscriptionRemoved { subscriber: B, stream: screen, reason: UnsubscribeReason::StreamEnded }
            ),
            ev(&[A, B, M], E::StreamUnpublished { stream: screen, reason: UnpublishReason::HungUp { by: M } }),
        ]
    );
    assert_eq!(room.stream(screen), None);
    assert!(!room.forward_allowed(A, 1, B, Video));
    assert!(room.forward_allowed(A, 0, B, Video), "the camera goes on");
    assert_eq!(room.admin_hangup(M, screen), Err(RoomError::NoSuchStream));
}

#[test]
fn removed_participant_is_told_why_and_may_rejoin() {
    let mut room =
        room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::MEMBER), (M, Permissions::ADMIN)]);
    room.publish(A, 0, camera()).unwrap();
    room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
    drain(&mut room);
    room.admin_remove(M, A).unwrap();
    let events = drain(&mut room);
    let left = E::ParticipantLeft { who: A, reason: LeaveReason::Removed { by: M } };
    assert_eq!(seen_by(&events, A), std::slice::from_ref(&left), "the removed one hears only the end");
    assert_eq!(events.last(), Some(&ev(&[A, B, M], left)));
    assert_eq!(
        seen_by(&events, B)[..2],
        [
            E::SubscriptionRemoved { subscriber: B, stream: id(A, 0), reason: UnsubscribeReason::StreamEnded },
            E::StreamUnpublished { stream: id(A, 0), reason: UnpublishReason::OwnerLeft },
        ]
    );
    assert!(!room.contains(A));
    assert_eq!(room.len(), 2);
    assert!(!room.forward_allowed(A, 0, B, Audio));
    assert_eq!(room.publish(A, 0, camera()), Err(RoomError::NotInRoom));
    room.join(at(1000), A, Permissions::MEMBER).unwrap();
    assert!(room.publish(A, 0, camera()).is_ok());
}

#[test]
fn leaving_ends_subscriptions_both_ways_and_tells_the_others() {
    let mut room =
        room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::MEMBER), (C, Permissions::MEMBER)]);
    room.publish(A, 0, camera()).unwrap();
    room.publish(B, 0, camera()).unwrap();
    room.subscribe(A, id(B, 0), Subscription::ALL).unwrap();
    room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
    room.subscribe(C, id(A, 0), Subscription::ALL).unwrap();
    drain(&mut room);
    room.leave(A, LeaveReason::Left).unwrap();
    let (a, b) = (id(A, 0), id(B, 0));
    assert_eq!(
        drain(&mut room),
        [
            ev(&[B], E::SubscriptionRemoved { subscriber: A, stream: b, reason: UnsubscribeReason::SubscriberLeft }),
            ev(&[B], E::SubscriptionRemoved { subscriber: B, stream: a, reason: UnsubscribeReason::StreamEnded }),
            ev(&[C], E::SubscriptionRemoved { subscriber: C, stream: a, reason: UnsubscribeReason::StreamEnded }),
            ev(&[B, C], E::StreamUnpublished { stream: a, reason: UnpublishReason::OwnerLeft }),
            ev(&[A, B, C], E::ParticipantLeft { who: A, reason: LeaveReason::Left }),
        ]
    );
    assert_eq!(room.subscribers(b).count(), 0);
    assert_eq!(room.subscription(B, a), None);
    assert_eq!(room.subscription(C, a), None);
    assert!(!room.forward_allowed(A, 0, B, Audio) && !room.forward_allowed(B, 0, A, Audio));
    assert_eq!(room.leave(A, LeaveReason::Left), Err(RoomError::NotInRoom));
    assert_eq!(room.roster(B).len(), 2);
}

#[test]
fn rejoining_starts_from_nothing() {
    let mut room = room_with(Default::default(), &[(A, Permissions::MEMBER), (M, Permissions::ADMIN)]);
    assert_eq!(room.join(at(0), A, Permissions::MEMBER), Err(RoomError::AlreadyJoined));
    room.publish(A, 0, camera()).unwrap();
    room.publish(M, 0, camera()).unwrap();
    room.subscribe(A, id(M, 0), Subscription::ALL).unwrap();
    room.admin_mute(M, A, Video, true).unwrap();
    room.set_talking(A, true).unwrap();
    room.leave(A, LeaveReason::Lost).unwrap();
    drain(&mut room);

    room.join(at(5000), A, Permissions::VIEW_ONLY).unwrap();
    assert_eq!(drain(&mut room), [ev(&[M, A], E::ParticipantJoined { who: A, permissions: Permissions::VIEW_ONLY })]);
    let view = room.roster(A).into_iter().find(|view| view.who == A).unwrap();
    assert_eq!(
        view,
        ParticipantView {
            who: A,
            permissions: Permissions::VIEW_ONLY,
            admin_muted: Mute::NONE,
            talking: false,
            streams: vec![]
        }
    );
    assert_eq!(room.subscription(A, id(M, 0)), None);
    assert!(!room.forward_allowed(M, 0, A, Video));
    assert_eq!(room.permissions(A), Some(Permissions::VIEW_ONLY));
}

#[test]
fn talking_is_reported_on_change_only() {
    let mut room = room_with(Default::default(), &[(A, Permissions::MEMBER), (B, Permissions::VIEW_ONLY)]);
    assert_eq!(room.set_talking(NOBODY, true), Err(RoomError::NotInRoom));
    room.set_talking(A, true).unwrap();
    room.set_talking(A, true).unwrap();
    room.set_talking(A, false).unwrap();
    assert_eq!(
        drain(&mut room),
        [ev(&[A, B], E::Talking { who: A, talking: true }), ev(&[A, B], E::Talking { who: A, talking: false })]
    );
}

#[test]
fn call_duration_is_enforced_per_participant_with_time_driven_by_hand() {
    let minute = Duration::from_secs(60);
    let mut room = Room::new(RoomSettings { max_duration: Some(minute), ..Default::default() });
    assert_eq!(room.poll_timeout(), None);
    room.join(at(0), A, Permissions::MEMBER).unwrap();
    room.join(at(30_000), B, Permissions::MEMBER).unwrap();
    room.publish(A, 0, camera()).unwrap();
    room.subscribe(B, id(A, 0), Subscription::ALL).unwrap();
    drain(&mut room);
    assert_eq!(room.poll_timeout(), Some(at(60_000)));

    room.handle_timeout(at(59_999));
    assert_eq!(drain(&mut room), []);
    assert_eq!(room.len(), 2);

    room.handle_timeout(at(60_000));
    let events = drain(&mut room);
    assert_eq!(events.last(), Some(&ev(&[A, B], E::ParticipantLeft { who: A, reason: LeaveReason::DurationExceeded })));
    assert_eq!(seen_by(&events, A).len(), 1, "A hears only that its time is up");
    assert_eq!(room.subscription(B, id(A, 0)), None);
    assert!(!room.contains(A) && room.contains(B));
    assert_eq!(room.poll_timeout(), Some(at(90_000)));

    // A rejoins and gets a fresh minute.
    room.join(at(70_000), A, Permissions::MEMBER).unwrap();
    assert_eq!(room.poll_timeout(), Some(at(90_000)));
    room.handle_timeout(at(100_000));
    let left: Vec<u32> = drain(&mut room)
        .into_iter()
        .filter_map(|event| match event.kind {
            E::ParticipantLeft { who, reason: LeaveReason::DurationExceeded } => Some(who),
            _ => None,
        })
        .collect();
    assert_eq!(left, [B]);
    assert_eq!(room.poll_timeout(), Some(at(130_000)));
    room.handle_timeout(at(200_000));
    assert!(room.is_empty());
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn without_a_duration_limit_nobody_times_out() {
    let mut room = room_with(Default::default(), &[(A, Permissions::MEMBER)]);
    assert_eq!(room.poll_timeout(), None);
    room.handle_timeout(at(24 * 3_600_000));
    assert!(room.contains(A));
    assert_eq!(drain(&mut room), []);
}
