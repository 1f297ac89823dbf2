//! Chorus media forwarding core: the decisions an SFU makes per packet, with no I/O.
//!
//! This crate never touches a socket, never reads a clock, never spawns a task and knows nothing
//! of WebRTC libraries. It is plain state machines fed with plain values, so every decision can be
//! tested by driving time by hand, faster than real time.
//!
//! # The model
//!
//! For one published track (a camera with up to three simulcast layers, or a microphone) and one
//! subscriber of it, the server's media loop does this:
//!
//! 1. **Packets in.** For every RTP packet the publisher sends, on any layer, it builds a
//!    [`PacketInfo`] from the header (SSRC, sequence number, timestamp, marker, payload length),
//!    the codec payload descriptor (keyframe or not) and its own SSRC-to-[`Layer`] map.
//! 2. **Decisions out.** It calls [`Forwarder::on_packet`] on each subscriber's forwarder of that
//!    track and gets a [`Decision`]: [`Decision::Forward`] with the SSRC, sequence number and
//!    timestamp to write over the header before sending the unchanged payload, or
//!    [`Decision::Drop`] with a reason. Nothing is allocated per packet.
//! 3. **Layer choice.** When the subscriber's bandwidth estimate, its preferred video size or the
//!    publisher's active layers change, it asks a [`select::LayerSelector`] for the target layer
//!    and passes it to [`Forwarder::set_target`]; [`select::allocate`] first splits each
//!    subscriber's estimate over the tracks it receives, [`select::available_bps`] decides what a
//!    track keeps when short, [`Meter`] measures each layer's bitrate
//!    ([`select::layer_infos`]) and [`select::LayerPresence`] leaves out layers the publisher
//!    does not send. The forwarder switches at the next keyframe of
//!    that layer ([`switch`]) and rewrites numbers so the subscriber sees one continuous stream
//!    ([`rewrite`]).
//! 4. **Keyframe requests.** It drains [`Forwarder::poll_keyframe_request`] and sends a PLI to the
//!    publisher for every layer the track's [`switch::KeyframeThrottle`] allows.
//! 5. **Talk detection.** It feeds each audio packet's RFC 6464 level to a
//!    [`talk::TalkDetector`], calls [`talk::TalkDetector::handle_timeout`] now and then, and turns
//!    the [`talk::TalkEvent`]s it polls into signaling events.
//!
//! # Rooms
//!
//! Above the per-packet machinery sits the call of one group, a [`Room`]: who is in it and with
//! which [`Permissions`] (publish, subscribe, list, and the admin rights call control and
//! hang-up, resolved by the server from the group's policy), the room's [`RoomSettings`] (audio,
//! video, screen allowed, maximum height and duration), the streams each participant publishes,
//! identified as in Mesibo by ([`participant`](StreamId::publisher), [`Sid`]) with `0` the camera,
//! and who subscribes to which. The server's signaling layer calls one method per request
//! ([`Room::join`], [`Room::publish`], [`Room::subscribe`], [`Room::set_muted`],
//! [`Room::admin_mute`], [`Room::leave`], ...), answers with the `Result` ([`RoomError`] when
//! refused), and drains [`Room::poll_event`]: each [`RoomEvent`] names the participants who
//! should receive it, so roster events reach only those with the list permission. It calls
//! [`Room::handle_timeout`] when [`Room::poll_timeout`] passes, which ends the call of those over
//! the room's maximum duration.
//!
//! The media loop asks [`Room::forward_allowed`] before it forwards media of a stream to a
//! subscriber: RTP from a member who may not publish, of a muted track, or to a member who may not
//! subscribe or did not subscribe is dropped there, whatever signaling said. It is a couple of hash
//! lookups and allocates nothing.
//!
//! # Time
//!
//! Time is an argument: every method that depends on it takes `now: Instant`, and the crate never
//! calls `Instant::now()`. Callers pass the packet's receive time or the loop's current time; a
//! `now` earlier than one seen before is treated as no time passing. Durations in configuration
//! are [`std::time::Duration`]s.
//!
//! # Out of scope
//!
//! Parsing and writing RTP/RTCP, SRTP, ICE, DTLS, SDP, delay-based bandwidth estimation (str0m's
//! TWCC/GCC; [`downlink`] only chooses between it, a client's REMB and a loss-based climb for
//! clients that send neither), NACK/RTX caches, pacing, and sockets all belong to the server's media
//! loop around this crate. SVC (VP9/AV1 spatial layers in one stream) and temporal layers are not
//! handled yet; such streams forward as a single layer.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod downlink;
pub mod forwarder;
pub mod meter;
pub mod packet;
pub mod rewrite;
pub mod room;
pub mod select;
pub mod switch;
pub mod talk;

pub use codec::{is_keyframe_start, Codec};
pub use forwarder::{Decision, DropReason, Forwarder, ForwarderConfig};
pub use meter::{nominal_bps, Meter};
pub use packet::{Layer, PacketInfo, TrackKind};
pub use room::{
    LeaveReason, Mute, ParticipantView, Permissions, Publish, Room, RoomError, RoomEvent, RoomEventKind, RoomSettings,
    Sid, StreamId, StreamInfo, StreamKind, Subscription, UnpublishReason, UnsubscribeReason,
};

#[cfg(test)]
mod test_util;
