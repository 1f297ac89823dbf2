//! Group-call signaling: the bodies of the `call_*` WebSocket frames.
//!
//! A call is the call of one group. A session joins it with `call_join`, then uses two WebRTC
//! peer connections, each negotiated in one direction only so offers never cross:
//!
//! * the **publish** connection carries what the client sends. The client offers it, with each
//!   `call_publish` (and `call_unpublish`), and the server answers in the reply.
//! * the **subscribe** connection carries what the client receives. The server offers it
//!   (`call_offer`) whenever the client's subscriptions change, and the client answers with
//!   `call_answer`. Each offer lists which media line carries which participant's stream.
//!
//! The server is ICE-lite: its candidates are in every SDP it sends, and the client needs no
//! trickle. Participants are named by their public address; streams by (address, [`sid`]).
//! docs/protocol.md is the reference.
//!
//! [`sid`]: CallStream::sid

use serde::{Deserialize, Serialize};

/// What a participant may do in the call, resolved from the group's policy and the member's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallPermissions {
    /// May publish streams.
    pub publish: bool,
    /// May receive streams.
    pub subscribe: bool,
    /// May see the roster.
    pub list: bool,
    /// May mute others and everyone (admin with call control).
    pub call_control: bool,
    /// May hang up others' streams and remove them from the call (admin with hang-up).
    pub hangup: bool,
}

/// The call settings of the group, as enforced by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallSettings {
    /// Audio may be published.
    pub audio: bool,
    /// Video may be published.
    pub video: bool,
    /// Screens may be shared.
    pub screen: bool,
    /// Video may be sent as simulcast layers.
    pub simulcast: bool,
    /// Tallest video forwarded, in pixels (`null`: no cap).
    pub max_height: Option<u32>,
    /// Seconds one participant may stay in the call (`null`: no limit).
    pub max_duration_secs: Option<u64>,
    /// Streams one participant may publish at once.
    pub max_streams: u32,
    /// Live mode: members who may publish are on stage, the others are the audience, which is
    /// not announced one by one (docs/protocol.md, "Live mode").
    #[serde(default)]
    pub live: bool,
}

/// Which media of a stream are muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallMute {
    /// Audio muted.
    pub audio: bool,
    /// Video muted.
    pub video: bool,
}

/// A published stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallStream {
    /// The stream's id within its participant: `0` the camera, `1..` screens and more.
    pub sid: u32,
    /// Carries audio.
    pub audio: bool,
    /// Carries video.
    pub video: bool,
    /// The video is a shared screen.
    pub screen: bool,
    /// Simulcast layers of the video, as granted.
    pub layers: u8,
    /// Height of the tallest layer as granted (clamped to the room's cap).
    pub height: Option<u32>,
    /// What its owner muted.
    pub muted: CallMute,
}

/// One participant as the roster shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallParticipant {
    /// Public address.
    pub address: String,
    /// Display name.
    pub name: String,
    /// What they may do.
    pub permissions: CallPermissions,
    /// Media an admin muted on all their streams.
    pub admin_muted: CallMute,
    /// Talking now.
    pub talking: bool,
    /// Their streams.
    pub streams: Vec<CallStream>,
}

/// What a client asks to publish (`call_publish`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// The server takes an absent field and `null` alike for every Option here.
#[cfg_attr(feature = "ts", ts(optional_fields = nullable))]
pub struct PublishRequest {
    /// Request id, echoed.
    #[serde(default)]
    pub rid: Option<String>,
    /// The stream's id: `0` the camera, `1..` screens and more (at most 63).
    pub sid: u32,
    /// The stream has audio.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
    pub audio: bool,
    /// The stream has video.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
    pub video: bool,
    /// The video is a shared screen.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
    pub screen: bool,
    /// Simulcast RIDs of the video, lowest resolution first (e.g. `["q","h","f"]`); empty for a
    /// single layer.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
    pub rids: Vec<String>,
    /// Height of the tallest layer in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    /// Media that start muted.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
    pub muted: CallMute,
    /// The media line (mid) of the publish offer that carries the audio.
    #[serde(default)]
    pub audio_mid: Option<String>,
    /// The media line (mid) of the publish offer that carries the video.
    #[serde(default)]
    pub video_mid: Option<String>,
    /// The publish connection's SDP offer, including this stream's media lines.
    pub sdp: String,
}

/// One media line of the subscribe connection (`call_offer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallTrack {
    /// The media line's mid.
    pub mid: String,
    /// Whose stream.
    pub publisher: String,
    /// Which of their streams.
    pub sid: u32,
    /// `audio` or `video`.
    pub kind: MediaKind,
    /// The codec the line carries, its SDP name: `opus`, `VP8`, `VP9`, `H264` or `AV1` (the
    /// one the publisher sends; the line's SDP lists no other).
    #[serde(default)]
    pub codec: String,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// An admin action (`call_admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum AdminAction {
    /// Mute (`audio`/`video` say which) the target on all its streams. Needs call control.
    Mute,
    /// Lift an admin mute of the target. Needs call control.
    Unmute,
    /// Mute everyone else. Needs call control.
    MuteAll,
    /// Lift the admin mute of everyone. Needs call control.
    UnmuteAll,
    /// End the target's stream `sid`. Needs hang-up.
    Hangup,
    /// Remove the target from the call. Needs hang-up.
    Remove,
    /// Live mode: bring the target, an audience member, on stage (it may publish for this
    /// call). Needs call control.
    Stage,
    /// Live mode: send the target, brought on stage, back to the audience (its streams end).
    /// Needs call control.
    Unstage,
}

/// Why a participant left (Mesibo's hangup reasons where they exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CallLeaveReason {
    /// They left.
    Left,
    /// Their connection was lost or timed out.
    Lost,
    /// An admin removed them.
    Removed,
    /// They reached the call's maximum duration.
    Duration,
    /// They joined again from another session.
    Replaced,
    /// They lost their place in the group (removed, or the group was deleted).
    NotMember,
    /// Their session fell too far behind on call events (it stopped reading its WebSocket) and
    /// was taken out of the call; it may join again.
    Slow,
    /// Live mode: they went back to the audience (sent to the others only; they are still in
    /// the call and hear `updated`). Remove them from the roster as if they had left.
    OffStage,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum StreamEndReason {
    /// Its owner stopped it.
    Unpublished,
    /// An admin hung it up.
    HungUp,
    /// Its owner left.
    OwnerLeft,
    /// Its owner lost the publish permission.
    PermissionRevoked,
}

/// Something that happened in the call (`call_event`), tagged by `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CallEvent {
    /// Someone joined (sent to those with the list permission).
    Joined {
        /// Who.
        participant: CallParticipant,
    },
    /// Someone's permissions or admin mute changed.
    Updated {
        /// Who.
        address: String,
        /// What they may do now.
        permissions: CallPermissions,
        /// What an admin muted.
        admin_muted: CallMute,
    },
    /// Someone left. Sent to the one who left too, with the reason; after it the session is out
    /// of the call.
    Left {
        /// Who.
        address: String,
        /// Why.
        reason: CallLeaveReason,
        /// The admin who removed them, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "ts", ts(optional))]
        by: Option<String>,
    },
    /// Someone published a stream: subscribe to it to receive it.
    Published {
        /// Whose.
        address: String,
        /// The stream.
        stream: CallStream,
    },
    /// A stream's owner muted or unmuted it.
    Muted {
        /// Whose.
        address: String,
        /// Which stream.
        sid: u32,
        /// The owner's mute state now.
        muted: CallMute,
    },
    /// A stream ended.
    Unpublished {
        /// Whose.
        address: String,
        /// Which stream.
        sid: u32,
        /// Why.
        reason: StreamEndReason,
    },
    /// Someone started or stopped talking.
    Talking {
        /// Who.
        address: String,
        /// Talking now.
        talking: bool,
    },
    /// The active-speaker order changed: most recent speaker first.
    Speakers {
        /// Addresses.
        order: Vec<String>,
    },
    /// Someone started or stopped receiving one of your streams (Mesibo's "subscriber").
    Subscriber {
        /// Who receives.
        address: String,
        /// Which of your streams.
        sid: u32,
        /// Started (`true`) or stopped.
        joined: bool,
    },
    /// Which simulcast layers of your stream anyone receives, lowest first: pause the others to
    /// save your uplink and CPU.
    Layers {
        /// Which of your streams.
        sid: u32,
        /// One flag per layer.
        active: Vec<bool>,
    },
    /// The video layer you receive of a stream changed (after a size request or as your
    /// bandwidth estimate moved); `null` when paused for lack of bandwidth.
    Layer {
        /// Whose stream.
        address: String,
        /// Which stream.
        sid: u32,
        /// Layer index, `0` the lowest.
        layer: Option<u8>,
    },
    /// The call's recording started or stopped (sent to everyone in the call).
    Recording {
        /// The recording state now.
        recording: CallRecording,
    },
    /// Live mode: how many are in the audience (sent to everyone when it changed, at most once a
    /// second).
    Audience {
        /// Audience members in the call.
        count: u32,
    },
    /// Live mode: an audience member raised or lowered a hand (sent to the admins with call
    /// control, and to the member).
    Hand {
        /// Who.
        address: String,
        /// Their display name (the audience is not in the roster).
        name: String,
        /// Raised (`true`) or lowered.
        raised: bool,
    },
}

/// One audience member in a `call_audience` page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallAudienceMember {
    /// Public address.
    pub address: String,
    /// Display name.
    pub name: String,
    /// Has a hand raised.
    pub hand: bool,
}

/// Whether a call is being recorded, by whom and since when (`call_recording`, the
/// `recording` call event, `call_joined`, and `/v1/groups/{gid}/call/recording`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub struct CallRecording {
    /// The call is being recorded.
    pub active: bool,
    /// Who started the recording (their address), while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When the recording started, ms since the epoch, while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Why it stopped (in the event that says it stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RecordingStopReason>,
}

/// Start or stop the call's recording (`call_record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum RecordAction {
    /// Start recording (nothing changes if it already records).
    Start,
    /// Stop recording (`conflict` when it does not record).
    Stop,
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum RecordingStopReason {
    /// An admin stopped it.
    Stopped,
    /// It reached `recording_max_secs`.
    DurationLimit,
    /// A file reached `recording_max_bytes`.
    SizeLimit,
    /// Writing a file failed (disk full, storage gone): the files stop where they were.
    StorageFailed,
}
