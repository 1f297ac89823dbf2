//! Live mode: stage and audience, hands, counts and pages.

use super::*;
use crate::test_util::at;
use RoomEventKind as E;

const HOST: u32 = 1;
const GUEST_HOST: u32 = 2;
const V1: u32 = 11;
const V2: u32 = 12;
const V3: u32 = 13;

fn live() -> RoomSettings {
    RoomSettings { live: true, ..RoomSettings::default() }
}

fn drain(room: &mut Room<u32>) -> Vec<RoomEvent<u32>> {
    std::iter::from_fn(|| room.poll_event()).collect()
}

fn seen_by(events: &[RoomEvent<u32>], who: u32) -> Vec<RoomEventKind<u32>> {
    events.iter().filter(|event| event.to.contains(&who)).map(|event| event.kind.clone()).collect()
}

fn roster(room: &Room<u32>, viewer: u32) -> Vec<u32> {
    room.roster(viewer).into_iter().map(|view| view.who).collect()
}

/// A live room: the host (admin) and a stage member, then three viewers, at time 0.
fn live_room() -> Room<u32> {
    let mut room = Room::new(live());
    room.join(at(0), HOST, Permissions::ADMIN).unwrap();
    room.join(at(0), GUEST_HOST, Permissions::MEMBER).unwrap();
    for v in [V1, V2, V3] {
        room.join(at(0), v, Permissions::VIEW_ONLY).unwrap();
    }
    room
}

#[test]
fn the_audience_is_not_announced_and_sees_the_stage() {
    let mut room = live_room();
    room.publish(HOST, 0, Publish::camera(3, 720)).unwrap();
    room.subscribe(V1, StreamId { publisher: HOST, sid: 0 }, Subscription::ALL).unwrap();
    room.leave(V2, LeaveReason::Left).unwrap();
    let events = drain(&mut room);

    // The stage hears of the stage only: no viewer joining, watching or leaving.
    let host_saw = seen_by(&events, HOST);
    assert!(
        host_saw.iter().all(|e| !matches!(
            e,
            E::ParticipantJoined { who: V1 | V2 | V3, .. }
                | E::ParticipantLeft { who: V1 | V2 | V3, .. }
                | E::SubscriptionAdded { .. }
        )),
        "{host_saw:?}"
    );
    // A viewer hears of itself and of the stage (the roster when it joined, then events), not of
    // the other viewers.
    let v1_saw = seen_by(&events, V1);
    assert!(v1_saw.contains(&E::ParticipantJoined { who: V1, permissions: Permissions::VIEW_ONLY }));
    assert!(v1_saw.iter().any(|e| matches!(e, E::StreamPublished { .. })));
    assert!(!v1_saw.iter().any(|e| matches!(e, E::ParticipantJoined { who: V2 | V3, .. } | E::ParticipantLeft { .. })));
    assert_eq!(roster(&room, HOST), [HOST, GUEST_HOST]);
    assert_eq!(roster(&room, V1), [HOST, GUEST_HOST, V1]);

    // Not live: the same people are all announced (the rule above is live mode's).
    let mut conf = Room::new(RoomSettings::default());
    conf.join(at(0), HOST, Permissions::ADMIN).unwrap();
    conf.join(at(0), V1, Permissions::VIEW_ONLY).unwrap();
    assert_eq!(roster(&conf, HOST), [HOST, V1]);
    assert_eq!(conf.audience_count(), 0);
    assert_eq!(conf.raise_hand(V1, true), Err(RoomError::NotLive));
}

#[test]
fn the_count_is_told_to_everyone_at_most_once_a_second() {
    let mut room = live_room();
    drain(&mut room);
    assert_eq!(room.audience_count(), 3);
    assert_eq!(room.poll_timeout(), Some(at(0)), "the first count is due at once");
    room.handle_timeout(at(0));
    let events = drain(&mut room);
    assert_eq!(events, [RoomEvent { to: vec![HOST, GUEST_HOST, V1, V2, V3], kind: E::AudienceCount { count: 3 } }]);
    assert_eq!(room.poll_timeout(), None, "nothing changed");

    // Changes within the second are told together, a second after the last count.
    room.join(at(200), 20, Permissions::VIEW_ONLY).unwrap();
    room.join(at(300), 21, Permissions::VIEW_ONLY).unwrap();
    room.leave(V1, LeaveReason::Lost).unwrap();
    drain(&mut room);
    assert_eq!(room.poll_timeout(), Some(at(1000)));
    room.handle_timeout(at(500));
    assert_eq!(drain(&mut room), []);
    room.handle_timeout(at(1000));
    assert_eq!(seen_by(&drain(&mut room), V2), [E::AudienceCount { count: 4 }]);

    // Back to where it was told: nothing to tell.
    room.join(at(1100), 22, Permissions::VIEW_ONLY).unwrap();
    room.leave(22, LeaveReason::Left).unwrap();
    drain(&mut room);
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn hands_reach_the_hosts_and_a_host_brings_a_viewer_on_stage_and_back() {
    let mut room = live_room();
    room.publish(HOST, 0, Publish::camera(3, 720)).unwrap();
    room.subscribe(V2, StreamId { publisher: HOST, sid: 0 }, Subscription::ALL).unwrap();
    drain(&mut room);

    assert_eq!(room.raise_hand(HOST, true), Err(RoomError::NotAudience));
    room.raise_hand(V1, true).unwrap();
    let events = drain(&mut room);
    assert_eq!(events, [RoomEvent { to: vec![HOST, V1], kind: E::HandRaised { who: V1, raised: true } }]);
    let page = room.audience_page(HOST, 0, 10, true).unwrap();
    assert_eq!(page.entries, [AudienceEntry { who: V1, hand: true }]);

    // Only an admin with call control brings someone on stage, and only from the audience.
    assert_eq!(room.set_stage(GUEST_HOST, V1, true), Err(RoomError::CallControlRequired));
    assert_eq!(room.set_stage(HOST, GUEST_HOST, true), Err(RoomError::NotAudience));
    assert_eq!(room.set_stage(HOST, GUEST_HOST, false), Err(RoomError::NotOnStageAsGuest));
    room.set_stage(HOST, V1, true).unwrap();
    let events = drain(&mut room);
    let on_stage = Permissions { publish: true, ..Permissions::VIEW_ONLY };
    assert!(seen_by(&events, HOST).contains(&E::HandRaised { who: V1, raised: false }));
    assert!(seen_by(&events, HOST).contains(&E::StageEntered { who: V1, permissions: on_stage }));
    assert!(seen_by(&events, V2).contains(&E::StageEntered { who: V1, permissions: on_stage }));
    assert_eq!(
        seen_by(&events, V1).last(),
        Some(&E::ParticipantUpdated { who: V1, permissions: on_stage, admin_muted: Mute::NONE })
    );
    assert_eq!(roster(&room, V2), [HOST, GUEST_HOST, V1, V2]);
    assert_eq!(room.audience_count(), 2);

    // On stage it publishes to everyone, and the group's re-resolved rights do not take it away.
    room.set_permissions(V1, Permissions::VIEW_ONLY).unwrap();
    room.publish(V1, 0, Publish::camera(1, 360)).unwrap();
    room.subscribe(V2, StreamId { publisher: V1, sid: 0 }, Subscription::ALL).unwrap();
    assert!(room.forward_allowed(V1, 0, V2, TrackKind::Video));
    drain(&mut room);

    // Sent back: its stream ends for everyone at once, then it leaves the stage.
    room.set_stage(HOST, V1, false).unwrap();
    assert!(!room.forward_allowed(V1, 0, V2, TrackKind::Video));
    let events = drain(&mut room);
    let v2_saw = seen_by(&events, V2);
    let ended = v2_saw.iter().position(|e| matches!(e, E::StreamUnpublished { stream, .. } if stream.publisher == V1));
    let left = v2_saw.iter().position(|e| *e == E::StageLeft { who: V1 });
    assert!(ended.is_some() && left.is_some() && ended < left, "{v2_saw:?}");
    assert_eq!(room.publish(V1, 0, Publish::camera(1, 360)), Err(RoomError::PublishNotPermitted));
    assert_eq!(roster(&room, HOST), [HOST, GUEST_HOST]);
    assert_eq!(room.audience_count(), 3);
}

#[test]
fn a_viewer_that_leaves_with_a_hand_up_lowers_it() {
    let mut room = live_room();
    room.raise_hand(V3, true).unwrap();
    drain(&mut room);
    room.leave(V3, LeaveReason::Lost).unwrap();
    assert!(seen_by(&drain(&mut room), HOST).contains(&E::HandRaised { who: V3, raised: false }));
    assert_eq!(room.audience_page(HOST, 0, 10, true).unwrap().entries, []);
}

#[test]
fn the_audience_pages_in_join_order_for_those_who_list() {
    let mut room = Room::new(live());
    room.join(at(0), HOST, Permissions::ADMIN).unwrap();
    for v in 100..350 {
        room.join(at(0), v, Permissions::VIEW_ONLY).unwrap();
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = room.audience_page(HOST, after, 100, false).unwrap();
        assert_eq!(page.count, 250);
        seen.extend(page.entries.iter().map(|e| e.who));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (100..350).collect::<Vec<_>>());
    let hidden = Permissions { list: false, ..Permissions::VIEW_ONLY };
    room.join(at(0), 999, hidden).unwrap();
    assert_eq!(room.audience_page(999, 0, 10, false), Err(RoomError::ListNotPermitted));
}

#[test]
fn an_audience_members_media_reaches_nobody() {
    let mut room = live_room();
    assert_eq!(room.publish(V1, 0, Publish::camera(1, 360)), Err(RoomError::PublishNotPermitted));
    assert!(!room.forward_allowed(V1, 0, HOST, TrackKind::Audio));
}
