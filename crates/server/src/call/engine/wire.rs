//! Wire conversion: the room's events into the frames sessions receive, and the room's errors
//! into wire error codes.

use std::time::Instant;

use chorus_proto::call::{
    CallEvent, CallLeaveReason, CallMute, CallParticipant, CallStream, MediaKind as WireKind, StreamEndReason,
};
use chorus_proto::ws::ServerFrame;
use chorus_proto::ErrorCode;
use chorus_sfu::{LeaveReason, Mute, RoomError, RoomEvent, RoomEventKind, StreamInfo, TrackKind, UnpublishReason};

use super::state::Peer;
use super::{Engine, Output};
use crate::bus::FrameText;
use crate::error::ApiError;

pub(super) fn room_error(e: RoomError) -> ApiError {
    use RoomError::*;
    let code = match e {
        PublishNotPermitted
        | SubscribeNotPermitted
        | CallControlRequired
        | HangupRequired
        | AudioNotAllowed
        | VideoNotAllowed
        | ScreenNotAllowed
        | MutedByAdmin
        | ListNotPermitted => ErrorCode::Forbidden,
        NoSuchParticipant | NoSuchStream | NotSubscribed | NotInRoom => ErrorCode::NotFound,
        StreamExists | AlreadyJoined => ErrorCode::Conflict,
        TooManyStreams => ErrorCode::LimitExceeded,
        EmptyStream | ScreenWithoutVideo | InvalidLayers | NoSuchMedia | OwnStream | NothingToReceive => {
            ErrorCode::BadRequest
        }
        NotLive | NotAudience | NotOnStageAsGuest => ErrorCode::Conflict,
    };
    ApiError::new(code, e.to_string())
}

pub(super) fn error_frame(rid: Option<String>, e: &ApiError) -> ServerFrame {
    ServerFrame::Error { rid, id: None, code: e.code, message: e.message.clone(), status: None }
}

pub(super) fn wire_mute(m: Mute) -> CallMute {
    CallMute { audio: m.audio, video: m.video }
}

pub(super) fn wire_stream(sid: u32, s: &StreamInfo) -> CallStream {
    CallStream {
        sid,
        audio: s.kind.audio,
        video: s.kind.video,
        screen: s.kind.screen,
        layers: s.layers,
        height: s.height,
        muted: wire_mute(s.muted),
    }
}

pub(super) fn wire_kind(k: TrackKind) -> WireKind {
    match k {
        TrackKind::Audio => WireKind::Audio,
        TrackKind::Video => WireKind::Video,
    }
}

/// A frame as the text every recipient writes (shared bytes: see [`crate::bus::frame_text`]).
pub(super) fn frame_json(frame: &ServerFrame) -> FrameText {
    crate::bus::frame_text(frame)
}

fn event_json(gid: i64, event: &CallEvent) -> FrameText {
    frame_json(&ServerFrame::CallEvent { gid: chorus_proto::GroupId(gid), event: event.clone() })
}

/// Queues a frame for `p`'s session, unless it fell behind (see [`super::Input::Slow`]).
pub(super) fn deliver(p: &Peer, json: &FrameText, out: &mut std::collections::VecDeque<Output>) {
    if !p.slow {
        out.push_back(Output::Frame { to: p.sink, json: json.clone(), last_slot: false });
    }
}

impl Engine {
    pub(super) fn roster(&self, viewer: i64) -> Vec<CallParticipant> {
        self.room
            .roster(viewer)
            .into_iter()
            .filter_map(|v| {
                let p = self.peers.get(&v.who)?;
                Some(CallParticipant {
                    address: p.address.clone(),
                    name: p.name.clone(),
                    permissions: crate::call::wire_permissions(v.permissions),
                    admin_muted: wire_mute(v.admin_muted),
                    talking: v.talking,
                    streams: v.streams.iter().map(|(sid, s)| wire_stream(*sid, s)).collect(),
                })
            })
            .collect()
    }

    /// Sends `event` to the sessions of `to`.
    pub(super) fn send(&mut self, to: &[i64], event: &CallEvent) {
        let json = event_json(self.cfg.gid, event);
        for uid in to {
            if let Some(p) = self.peers.get(uid) {
                deliver(p, &json, &mut self.out);
            }
        }
    }

    /// Takes out the participants that fell behind on their events.
    fn drop_slow(&mut self) {
        for uid in std::mem::take(&mut self.slow) {
            tracing::info!(gid = self.cfg.gid, uid, "participant fell behind on call events: taken out of the call");
            self.leave_reasons.insert(uid, CallLeaveReason::Slow);
            if self.room.leave(uid, LeaveReason::Lost).is_err() {
                self.leave_reasons.remove(&uid);
                self.remove_peer(uid, CallLeaveReason::Slow);
            }
        }
    }

    /// Drains the room's events: keeps the media state in step and tells who should hear.
    pub(super) fn room_events(&mut self, now: Instant) {
        loop {
            // Sessions that fell behind (on events queued since the last round) leave first.
            self.drop_slow();
            let Some(RoomEvent { to, kind }) = self.room.poll_event() else { break };
            let mut only_publisher = None;
            let event = match kind {
                // Coming on stage is joining, for those who did not see the audience member.
                RoomEventKind::ParticipantJoined { who, .. } | RoomEventKind::StageEntered { who, .. } => self
                    .roster(who)
                    .into_iter()
                    .find(|p| self.by_address.get(&p.address) == Some(&who))
                    .map(|participant| CallEvent::Joined { participant }),
                RoomEventKind::ParticipantUpdated { who, permissions, admin_muted } => {
                    self.peers.get(&who).map(|p| CallEvent::Updated {
                        address: p.address.clone(),
                        permissions: crate::call::wire_permissions(permissions),
                        admin_muted: wire_mute(admin_muted),
                    })
                }
                RoomEventKind::Talking { who, talking } => {
                    self.peers.get(&who).map(|p| CallEvent::Talking { address: p.address.clone(), talking })
                }
                RoomEventKind::ParticipantLeft { who, reason } => {
                    let (reason, by) = match (self.leave_reasons.remove(&who), reason) {
                        (Some(r), _) => (r, None),
                        (None, LeaveReason::Left) => (CallLeaveReason::Left, None),
                        (None, LeaveReason::Lost) => (CallLeaveReason::Lost, None),
                        (None, LeaveReason::Removed { by }) => {
                            (CallLeaveReason::Removed, self.peers.get(&by).map(|p| p.address.clone()))
                        }
                        (None, LeaveReason::DurationExceeded) => (CallLeaveReason::Duration, None),
                    };
                    tracing::debug!(gid = self.cfg.gid, uid = who, ?reason, "participant left");
                    let ev = self.peers.get(&who).map(|p| CallEvent::Left { address: p.address.clone(), reason, by });
                    if let Some(ev) = &ev {
                        self.send(&to, ev);
                        // The one that fell behind hears it in the slot kept for it.
                        if let Some(p) = self.peers.get(&who).filter(|p| p.slow) {
                            let json = event_json(self.cfg.gid, ev);
                            self.out.push_back(Output::Frame { to: p.sink, json, last_slot: true });
                        }
                    }
                    self.remove_peer(who, reason);
                    continue;
                }
                RoomEventKind::StreamPublished { stream, info } => self.peers.get(&stream.publisher).map(|p| {
                    CallEvent::Published { address: p.address.clone(), stream: wire_stream(stream.sid, &info) }
                }),
                RoomEventKind::StreamMuted { stream, muted } => self
                    .peers
                    .get(&stream.publisher)
                    .map(|p| CallEvent::Muted { address: p.address.clone(), sid: stream.sid, muted: wire_mute(muted) }),
                RoomEventKind::StreamUnpublished { stream, reason } => {
                    let reason = match reason {
                        UnpublishReason::Unpublished => StreamEndReason::Unpublished,
                        UnpublishReason::HungUp { .. } => StreamEndReason::HungUp,
                        UnpublishReason::OwnerLeft => StreamEndReason::OwnerLeft,
                        UnpublishReason::PermissionRevoked => StreamEndReason::PermissionRevoked,
                    };
                    if let Some(p) = self.peers.get_mut(&stream.publisher) {
                        p.tracks.retain(|t| t.sid != stream.sid);
                        p.ssrcs.clear();
                    }
                    self.peers.get(&stream.publisher).map(|p| CallEvent::Unpublished {
                        address: p.address.clone(),
                        sid: stream.sid,
                        reason,
                    })
                }
                RoomEventKind::SubscriptionAdded { subscriber, stream, subscription }
                | RoomEventKind::SubscriptionUpdated { subscriber, stream, subscription } => {
                    let added = self.subscribe_media(now, subscriber, stream, subscription);
                    if added {
                        self.negotiate(now, subscriber);
                    }
                    only_publisher = Some(stream.publisher);
                    self.peers.get(&subscriber).map(|p| CallEvent::Subscriber {
                        address: p.address.clone(),
                        sid: stream.sid,
                        joined: true,
                    })
                }
                RoomEventKind::StageLeft { who } => self.peers.get(&who).map(|p| CallEvent::Left {
                    address: p.address.clone(),
                    reason: CallLeaveReason::OffStage,
                    by: None,
                }),
                RoomEventKind::HandRaised { who, raised } => self.peers.get(&who).map(|p| CallEvent::Hand {
                    address: p.address.clone(),
                    name: p.name.clone(),
                    raised,
                }),
                RoomEventKind::AudienceCount { count } => Some(CallEvent::Audience { count: count as u32 }),
                RoomEventKind::SubscriptionRemoved { subscriber, stream, .. } => {
                    self.unsubscribe_media(subscriber, stream);
                    self.negotiate(now, subscriber);
                    only_publisher = Some(stream.publisher);
                    self.peers.get(&subscriber).map(|p| CallEvent::Subscriber {
                        address: p.address.clone(),
                        sid: stream.sid,
                        joined: false,
                    })
                }
            };
            let Some(event) = event else { continue };
            match only_publisher {
                Some(p) if to.contains(&p) => self.send(&[p], &event),
                Some(_) => {}
                None => self.send(&to, &event),
            }
        }
    }
}
