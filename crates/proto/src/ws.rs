//! WebSocket frames: JSON text frames, tagged by `"type"`.
//!
//! One WebSocket per client session carries messaging (and, later, call
//! signaling). The conversation on connect is:
//!
//! 1. client → `hello` (optionally with a resume [`Cursor`]);
//! 2. server → `welcome` (who you are, the store's epoch, whether it resumed);
//! 3. server → the backlog as `message` frames, then `synced`;
//! 4. from then on, live frames in both directions.
//!
//! Every client frame may carry `rid` (request id); replies to it echo it.
//! docs/protocol.md is the full reference.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::{
    AdminAction, CallAudienceMember, CallEvent, CallParticipant, CallPermissions, CallRecording, CallSettings,
    CallStream, CallTrack, PublishRequest, RecordAction,
};
use crate::direct::DirectCallUpdate;
use crate::error::ErrorCode;
use crate::ids::{CallId, GroupId, MessageId, Pos, Seq, UserId};

/// A position in the user's message stream, to resume from after a reconnect.
///
/// `pos` is the highest `pos` of any `message` frame the client has processed.
/// `epoch` names the store that issued it; a cursor from another store (or a
/// reset one) cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Cursor {
    /// Store epoch from `welcome`.
    pub epoch: String,
    /// Last processed stream position.
    pub pos: Pos,
}

/// A file attached to a message. Files are uploaded out of band; the message
/// carries the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Every Option here is left out when None: `name?: string` in TypeScript.
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub struct FileRef {
    /// Where to download the file. For a stored file (`upload`) the server sets it to
    /// `/v1/files/{upload}/content` (a client may leave it out).
    #[serde(default)]
    pub url: String,
    /// A finished upload of the sender's (`/v1/uploads`) this message carries: the server
    /// checks it and fills `name`, `mime` and `size` from it; the conversation's members may
    /// then read the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// Path of a thumbnail, if the sender's app has one (shown as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    /// File name shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Mesibo file type (image 1, video 2, audio 3, other 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filetype: Option<u32>,
}

/// A file in a group's media library (`GET /v1/groups/{gid}/media`, and the `group_media`
/// frame). Metadata comes from the container (chorus-probe); a file it cannot read (not media,
/// corrupt, cut short) has no duration, dimensions or codecs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Every Option here is left out when None.
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub struct MediaEntry {
    /// The file's id (also its id under `/v1/files/{id}`).
    pub id: String,
    /// The group.
    pub gid: GroupId,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, from the bytes (an MP4 or WebM without video is `audio/…`).
    #[serde(rename = "type")]
    pub mime: String,
    /// Duration in ms (audio and video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Width in pixels (video and images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Video codec, ffmpeg's short name (`h264`, `vp8`, `vp9`, `av1`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    /// Audio codec (`aac`, `opus`, `vorbis`, `mp3`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Path of a JPEG thumbnail (images), fetched with the Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    /// Who uploaded and added it (address); `None` once the account is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
    /// When it was added to the library, ms since the Unix epoch.
    pub created_ms: i64,
}

/// What a [`ServerFrame::GroupMedia`] says happened to a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum MediaAction {
    /// `entry` was added.
    Added,
    /// The entry `id` was deleted.
    Deleted,
}

/// Frames a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// The server takes an absent field and `null` alike for every Option here.
#[cfg_attr(feature = "ts", ts(optional_fields = nullable))]
pub enum ClientFrame {
    /// First frame of a connection.
    Hello {
        /// Resume after this position; absent for a fresh start (the server
        /// then sends what this user has not had delivered yet).
        #[serde(default)]
        resume: Option<Cursor>,
    },
    /// Send a message to a user (`peer`) or a group (`gid`).
    Send {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Client-chosen message id (1–64 chars): a retry with the same id is
        /// answered with the first `sent` and never stored or delivered twice.
        id: String,
        /// Recipient address for a 1:1 message.
        #[serde(default)]
        peer: Option<String>,
        /// Group id for a group message.
        #[serde(default)]
        gid: Option<GroupId>,
        /// Text.
        #[serde(default)]
        text: Option<String>,
        /// Structured JSON data.
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(type = "unknown", optional))]
        data: Option<Value>,
        /// A file reference.
        // Boxed: it is large, and most frames carry none.
        #[serde(default)]
        file: Option<Box<FileRef>>,
        /// App-defined message type (Mesibo `type`).
        #[serde(default)]
        mtype: Option<u32>,
    },
    /// Edit one of your own messages.
    Edit {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Server message id.
        mid: MessageId,
        /// New text.
        #[serde(default)]
        text: Option<String>,
        /// New data.
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(type = "unknown", optional))]
        data: Option<Value>,
    },
    /// Delete one of your own messages (leaves a tombstone).
    Delete {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Server message id.
        mid: MessageId,
    },
    /// The client has processed every `message` up to `pos`: marks them delivered.
    Ack {
        /// Highest processed position.
        pos: Pos,
    },
    /// The user has read a conversation up to `seq`.
    Read {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// 1:1 conversation partner.
        #[serde(default)]
        peer: Option<String>,
        /// Group id.
        #[serde(default)]
        gid: Option<GroupId>,
        /// Read up to and including this sequence number.
        seq: Seq,
    },
    /// Typing started (`on: true`) or stopped in a conversation.
    Typing {
        /// 1:1 conversation partner.
        #[serde(default)]
        peer: Option<String>,
        /// Group id.
        #[serde(default)]
        gid: Option<GroupId>,
        /// Typing or not.
        on: bool,
    },
    /// Liveness check; answered with `pong`.
    Ping {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
    },
    /// Join the call of group `gid` (answered with `call_joined`); a negative `gid` is the media
    /// room of an answered 1:1 call (`-call`, see [`crate::direct`]). A session is in one call at a
    /// time; joining from a second session replaces the first.
    CallJoin {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The group.
        gid: GroupId,
    },
    /// Publish a stream, with the publish connection's offer (answered with `call_published`).
    CallPublish(PublishRequest),
    /// Stop publishing stream `sid`. With `sdp` (a new publish offer without its media lines) the
    /// answer is in the `call_sdp` reply.
    CallUnpublish {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Which stream.
        sid: u32,
        /// A renegotiation offer of the publish connection.
        #[serde(default)]
        sdp: Option<String>,
    },
    /// Restart ICE on the session's peer connections, after a network change or a connection
    /// that went silent: `sdp` is a new offer of the publish connection with new ICE
    /// credentials (answered in the `call_sdp` reply); the subscribe connection, if there is
    /// one, is offered anew with new credentials (`call_offer`).
    CallRestart {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The publish connection's ICE-restart offer (none when the session publishes nothing).
        #[serde(default)]
        sdp: Option<String>,
    },
    /// Receive a stream (answered with `ok`; a `call_offer` follows).
    CallSubscribe {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Whose stream.
        address: String,
        /// Which of their streams.
        sid: u32,
        /// Receive its audio.
        #[serde(default = "yes")]
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        audio: bool,
        /// Receive its video.
        #[serde(default = "yes")]
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        video: bool,
        /// The height at which the video is shown, in pixels, for layer choice (`null`: as large
        /// as available). Send again to change it.
        #[serde(default)]
        height: Option<u32>,
    },
    /// Stop receiving a stream.
    CallUnsubscribe {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Whose stream.
        address: String,
        /// Which of their streams.
        sid: u32,
    },
    /// The answer to the last `call_offer`.
    CallAnswer {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// SDP answer of the subscribe connection.
        sdp: String,
    },
    /// Mute or unmute your own stream's audio and/or video.
    CallMute {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Which stream.
        sid: u32,
        /// New audio mute state, if changing.
        #[serde(default)]
        audio: Option<bool>,
        /// New video mute state, if changing.
        #[serde(default)]
        video: Option<bool>,
    },
    /// An admin action on others.
    CallAdmin {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// What to do.
        action: AdminAction,
        /// The participant acted on (not for `mute_all` / `unmute_all`).
        #[serde(default)]
        address: Option<String>,
        /// The stream to hang up (`hangup` only).
        #[serde(default)]
        sid: Option<u32>,
        /// Mute or unmute audio (`mute`, `unmute`, `mute_all`, `unmute_all`).
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        audio: bool,
        /// Mute or unmute video.
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        video: bool,
    },
    /// Start or stop recording the call (needs call control); answered with `call_recording`.
    CallRecord {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Start or stop.
        action: RecordAction,
    },
    /// Live mode: raise or lower your hand (audience members only); answered with `ok`.
    CallHand {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// Raise (`true`) or lower.
        raised: bool,
    },
    /// Live mode: a page of the audience, in the order they joined (needs the list permission);
    /// answered with `call_audience`.
    CallAudience {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The `next` cursor of the previous page (`null` or absent: the first page).
        #[serde(default)]
        after: Option<u64>,
        /// At most this many (1–100; absent: 100).
        #[serde(default)]
        limit: Option<u32>,
        /// Only those with a hand raised.
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        hands: bool,
    },
    /// Leave the call.
    CallLeave {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
    },
    /// Place a 1:1 call to `peer` (answered with `call_dialing`; `call_status` frames follow).
    CallDial {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The callee's address.
        peer: String,
        /// A video call (`false`: voice only).
        #[serde(default)]
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        video: bool,
    },
    /// Answer a ringing 1:1 call from this session (answered with `ok`).
    CallAccept {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The call.
        call: CallId,
    },
    /// Decline a ringing 1:1 call (answered with `ok`).
    CallDecline {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The call.
        call: CallId,
    },
    /// Hang up a 1:1 call, or cancel it while it rings (answered with `ok`).
    CallHangup {
        /// Request id, echoed.
        #[serde(default)]
        rid: Option<String>,
        /// The call.
        call: CallId,
    },
}

fn yes() -> bool {
    true
}

impl ClientFrame {
    fn rid_slot(&mut self) -> Option<&mut Option<String>> {
        match self {
            ClientFrame::Send { rid, .. }
            | ClientFrame::Edit { rid, .. }
            | ClientFrame::Delete { rid, .. }
            | ClientFrame::Read { rid, .. }
            | ClientFrame::Ping { rid }
            | ClientFrame::CallJoin { rid, .. }
            | ClientFrame::CallUnpublish { rid, .. }
            | ClientFrame::CallRestart { rid, .. }
            | ClientFrame::CallSubscribe { rid, .. }
            | ClientFrame::CallUnsubscribe { rid, .. }
            | ClientFrame::CallAnswer { rid, .. }
            | ClientFrame::CallMute { rid, .. }
            | ClientFrame::CallAdmin { rid, .. }
            | ClientFrame::CallRecord { rid, .. }
            | ClientFrame::CallHand { rid, .. }
            | ClientFrame::CallAudience { rid, .. }
            | ClientFrame::CallLeave { rid }
            | ClientFrame::CallDial { rid, .. }
            | ClientFrame::CallAccept { rid, .. }
            | ClientFrame::CallDecline { rid, .. }
            | ClientFrame::CallHangup { rid, .. } => Some(rid),
            ClientFrame::CallPublish(p) => Some(&mut p.rid),
            ClientFrame::Hello { .. } | ClientFrame::Ack { .. } | ClientFrame::Typing { .. } => None,
        }
    }

    /// The frame's request id, if it has one.
    pub fn rid(&self) -> Option<&str> {
        match self {
            ClientFrame::Send { rid, .. }
            | ClientFrame::Edit { rid, .. }
            | ClientFrame::Delete { rid, .. }
            | ClientFrame::Read { rid, .. }
            | ClientFrame::Ping { rid }
            | ClientFrame::CallJoin { rid, .. }
            | ClientFrame::CallUnpublish { rid, .. }
            | ClientFrame::CallRestart { rid, .. }
            | ClientFrame::CallSubscribe { rid, .. }
            | ClientFrame::CallUnsubscribe { rid, .. }
            | ClientFrame::CallAnswer { rid, .. }
            | ClientFrame::CallMute { rid, .. }
            | ClientFrame::CallAdmin { rid, .. }
            | ClientFrame::CallRecord { rid, .. }
            | ClientFrame::CallHand { rid, .. }
            | ClientFrame::CallAudience { rid, .. }
            | ClientFrame::CallLeave { rid }
            | ClientFrame::CallDial { rid, .. }
            | ClientFrame::CallAccept { rid, .. }
            | ClientFrame::CallDecline { rid, .. }
            | ClientFrame::CallHangup { rid, .. } => rid.as_deref(),
            ClientFrame::CallPublish(p) => p.rid.as_deref(),
            ClientFrame::Hello { .. } | ClientFrame::Ack { .. } | ClientFrame::Typing { .. } => None,
        }
    }

    /// The same frame with request id `rid` (frames without one, `hello`, `ack` and `typing`, are
    /// returned unchanged).
    pub fn with_rid(mut self, rid: Option<String>) -> Self {
        if let Some(slot) = self.rid_slot() {
            *slot = rid;
        }
        self
    }
}

/// The user a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SessionUser {
    /// Numeric user id.
    pub uid: UserId,
    /// Public address (never the email).
    pub address: String,
    /// Display name.
    pub name: String,
}

/// A stored message as delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Every Option here is left out when None.
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub struct Message {
    /// Server message id.
    pub mid: MessageId,
    /// Client-chosen id the sender used.
    pub id: String,
    /// Sender address.
    pub from: String,
    /// Recipient address (1:1 messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Group id (group messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<GroupId>,
    /// Sequence in its conversation (1, 2, 3…): orders messages and addresses receipts.
    pub seq: Seq,
    /// Position in the stream: increases with every new message or change; resume from it.
    pub pos: Pos,
    /// Server time of sending, milliseconds since the Unix epoch.
    pub ts: i64,
    /// App-defined type.
    #[serde(default)]
    pub mtype: u32,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// JSON data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    pub data: Option<Value>,
    /// File reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    /// The sender edited it.
    #[serde(default)]
    pub edited: bool,
    /// The sender deleted it (content is gone).
    #[serde(default)]
    pub deleted: bool,
}

/// What changed in a group (see [`ServerFrame::Group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum GroupEvent {
    /// Members joined, were added, or had their permissions changed.
    MembersAdded,
    /// Members left or were removed (sent to them too).
    MembersRemoved,
    /// Name, policy or call settings changed.
    Updated,
    /// The group was deleted (sent to everyone who was a member).
    Deleted,
}

/// How a [`ServerFrame::Board`] changes the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum BoardAction {
    /// `objs` were added at the end of the board (the board of `version - 1` plus these).
    Append,
    /// `objs` is the whole board now (replaced, cleared or partly cleared).
    Set,
}

/// Frames the server sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Every Option here is left out when None.
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub enum ServerFrame {
    /// Answer to `hello`.
    Welcome {
        /// This connection's session id.
        session: String,
        /// Who you are.
        user: SessionUser,
        /// The store epoch to put in resume cursors.
        epoch: String,
        /// True when a resume cursor was given and will be honoured: every
        /// message after it follows, then `synced`.
        resumed: bool,
        /// Why a given cursor cannot be resumed (`epoch_mismatch`,
        /// `cursor_ahead`, `gap_too_large`). The client must reload history
        /// over REST; live delivery continues from `synced.pos`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The backlog has been sent; live frames follow.
    Synced {
        /// Highest stream position sent so far (use as the cursor if no message arrived).
        pos: Pos,
        /// Number of backlog messages sent.
        count: u64,
        /// False when more undelivered messages exist than one sync sends;
        /// page the rest with REST history.
        complete: bool,
    },
    /// The server stored your message.
    Sent {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// Your client id.
        id: String,
        /// Server message id.
        mid: MessageId,
        /// Conversation sequence.
        seq: Seq,
        /// Stream position.
        pos: Pos,
        /// Server time, ms.
        ts: i64,
        /// Always 1 (sent).
        status: u8,
        /// True when this answers a retry of an already stored message.
        duplicate: bool,
    },
    /// A message (new, edited or deleted).
    Message(Message),
    /// Receipt: `by` has had delivered (status 2) or read (status 3) every
    /// message of the conversation up to `seq`.
    Receipt {
        /// 1:1 conversation partner (from the receiver's point of view).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// Group id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<GroupId>,
        /// Who received or read.
        by: String,
        /// 2 delivered, 3 read.
        status: u8,
        /// Up to and including this sequence.
        seq: Seq,
    },
    /// Presence: online (1), offline (2), typing (3), typing cleared (4).
    Presence {
        /// Whose presence.
        from: String,
        /// For typing in a 1:1 conversation: the conversation partner (you).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// For typing in a group: the group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<GroupId>,
        /// Presence value.
        presence: u8,
    },
    /// A group you belong to changed: refetch what you show (REST
    /// `GET /v1/groups/{gid}` and `…/members`).
    Group {
        /// The group.
        gid: GroupId,
        /// What happened.
        event: GroupEvent,
        /// For member events: the members concerned (addresses).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        // `optional_fields` above makes only Options optional; this one is left out when empty.
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        members: Vec<String>,
    },
    /// A group's media library changed. Sent to the sessions of every member who may receive.
    /// Live only: after a reconnect, list the library again (`GET /v1/groups/{gid}/media`).
    GroupMedia {
        /// The group.
        gid: GroupId,
        /// `added` or `deleted`.
        action: MediaAction,
        /// The file's id.
        id: String,
        /// The new entry (`added` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<MediaEntry>,
    },
    /// A group's whiteboard changed. Sent to every member's sessions, the writer's included.
    /// Live only: not stored, not part of the resume backlog (fetch the board with
    /// `GET /v1/groups/{gid}/board` after a reconnect or a missed `version`).
    Board {
        /// The group.
        gid: GroupId,
        /// The board's version after this change (1 for the first write, then +1 per change).
        version: i64,
        /// Who changed it (address).
        from: String,
        /// `append`: `objs` were added; `set`: `objs` is the whole board.
        action: BoardAction,
        /// The objects added, or the whole board.
        #[cfg_attr(feature = "ts", ts(type = "Array<Record<string, unknown>>"))]
        objs: Vec<Value>,
    },
    /// Success for requests without a richer answer (edit, delete, read).
    Ok {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
    },
    /// Answer to `ping`.
    Pong {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
    },
    /// Answer to `call_join`: you are in the call.
    CallJoined {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// The group.
        gid: GroupId,
        /// Your address in the call.
        address: String,
        /// What you may do.
        permissions: CallPermissions,
        /// The call's settings.
        settings: CallSettings,
        /// Who is in the call, you included (only yourself without the list permission).
        participants: Vec<CallParticipant>,
        /// TURN servers with fresh credentials for you (RTCPeerConnection `iceServers`); absent
        /// when the server runs no TURN relay.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        // `optional_fields` above makes only Options optional; this one is left out when empty.
        #[cfg_attr(feature = "ts", ts(as = "Option<_>", optional))]
        ice_servers: Vec<IceServer>,
        /// The call is being recorded: by whom and since when (absent when it is not), told
        /// before any media flows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording: Option<CallRecording>,
        /// Live mode: how many are in the audience (absent when the call is not live).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<u32>,
    },
    /// Answer to `call_audience`: a page of the audience.
    CallAudience {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// The group.
        gid: GroupId,
        /// Audience members in the call now.
        count: u32,
        /// This page, in the order they joined.
        members: Vec<CallAudienceMember>,
        /// The cursor of the next page (`after`), absent on the last.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<u64>,
    },
    /// Answer to `call_record`: the call's recording state now.
    CallRecording {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// The group.
        gid: GroupId,
        /// The recording state.
        recording: CallRecording,
    },
    /// Answer to `call_publish`: the stream as granted and the SDP answer.
    CallPublished {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// The stream as granted (height clamped to the room's cap, layers to what is allowed).
        stream: CallStream,
        /// SDP answer of the publish connection.
        sdp: String,
    },
    /// Answer to `call_unpublish`, with the SDP answer if an offer came with it.
    CallSdp {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// SDP answer of the publish connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<String>,
    },
    /// A new offer of the subscribe connection: answer with `call_answer`.
    CallOffer {
        /// The call (group, or a 1:1 call's room) whose subscribe connection this is: an offer of
        /// a call the session has just left is not for the one it joins.
        gid: GroupId,
        /// SDP offer.
        sdp: String,
        /// What each media line carries. Lines not listed are unused.
        tracks: Vec<CallTrack>,
    },
    /// Something happened in the call.
    CallEvent {
        /// The group.
        gid: GroupId,
        /// What.
        #[serde(flatten)]
        event: CallEvent,
    },
    /// Answer to `call_dial`: the 1:1 call is placed; `call_status` frames tell what follows.
    CallDialing {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// The call.
        call: CallId,
        /// The callee's address.
        peer: String,
        /// A video call.
        video: bool,
    },
    /// Someone is calling you (sent to every session of the callee): ring, then `call_accept`
    /// or `call_decline`.
    CallIncoming {
        /// The call.
        call: CallId,
        /// The caller's address.
        from: String,
        /// The caller's display name.
        name: String,
        /// A video call (`false`: voice only).
        video: bool,
    },
    /// A 1:1 call changed (sent to every session of both users).
    CallStatus(DirectCallUpdate),
    /// A request failed; nothing was changed.
    Error {
        /// Echoed request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// For a failed `send`: the client id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Error code.
        code: ErrorCode,
        /// Plain-words explanation.
        message: String,
        /// For a failed `send`: the Mesibo message status (≥ 0x80); for a refused 1:1 call
        /// request: the Mesibo call status (`MESIBO_CALLSTATUS_*`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u8>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"send","id":"a1","gid":1000,"text":"hi"}"#).unwrap();
        assert!(matches!(f, ClientFrame::Send { gid: Some(GroupId(1000)), .. }));
        let bad = serde_json::from_str::<ClientFrame>(r#"{"type":"send","gid":1000}"#);
        assert!(bad.is_err(), "id is required");
        let unknown = serde_json::from_str::<ClientFrame>(r#"{"type":"ping","x":1}"#);
        assert!(unknown.is_err(), "unknown fields are rejected");
    }

    #[test]
    fn call_frames_round_trip() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"call_publish","rid":"1","sid":0,"audio":true,"video":true,"rids":["q","h","f"],"sdp":"v=0"}"#,
        )
        .unwrap();
        assert!(
            matches!(f, ClientFrame::CallPublish(PublishRequest { sid: 0, audio: true, ref rids, .. }) if rids.len() == 3)
        );
        let unknown = serde_json::from_str::<ClientFrame>(r#"{"type":"call_publish","sid":0,"sdp":"","x":1}"#);
        assert!(unknown.is_err(), "unknown fields are rejected in call frames too");
        let sub: ClientFrame = serde_json::from_str(r#"{"type":"call_subscribe","address":"a","sid":0}"#).unwrap();
        assert!(matches!(sub, ClientFrame::CallSubscribe { audio: true, video: true, height: None, .. }));
        let ev = ServerFrame::CallEvent {
            gid: GroupId(1000),
            event: CallEvent::Talking { address: "u1".into(), talking: true },
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(json, r#"{"type":"call_event","gid":1000,"event":"talking","address":"u1","talking":true}"#);
        let back: ServerFrame = serde_json::from_str(&json).unwrap();
        assert!(matches!(back, ServerFrame::CallEvent { event: CallEvent::Talking { talking: true, .. }, .. }));
    }

    #[test]
    fn request_ids_are_read_and_set_on_every_frame_that_has_one() {
        let f = ClientFrame::CallLeave { rid: None }.with_rid(Some("9".into()));
        assert_eq!(f.rid(), Some("9"));
        let p: ClientFrame = serde_json::from_str(r#"{"type":"call_publish","sid":1,"sdp":""}"#).unwrap();
        assert_eq!(p.with_rid(Some("x".into())).rid(), Some("x"));
        let ack = ClientFrame::Ack { pos: Pos(1) }.with_rid(Some("1".into()));
        assert_eq!(ack.rid(), None, "ack has no request id");
    }

    #[test]
    fn server_frames_are_tagged() {
        let f = ServerFrame::Pong { rid: Some("7".into()) };
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"type":"pong","rid":"7"}"#);
    }
}

/// One entry of RTCPeerConnection `iceServers`: a TURN server and credentials (TURN REST API:
/// `username` is `<expiry unix seconds>:<uid>`, `credential` base64 HMAC-SHA1 of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IceServer {
    /// `turn:host:port?transport=udp`.
    pub urls: Vec<String>,
    /// Time-limited user name.
    pub username: String,
    /// Password for `username`.
    pub credential: String,
}
