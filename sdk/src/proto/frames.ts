// Generated from crates/proto by `cargo test -p chorus-proto --features ts --test ts_bindings`
// (ts-rs). Do not edit: change the Rust types and run that command. scripts/test fails when this
// file differs from what the command writes.

/**
 * An admin action (`call_admin`).
 */
export type AdminAction = "mute" | "unmute" | "mute_all" | "unmute_all" | "hangup" | "remove" | "stage" | "unstage";

/**
 * How a [`ServerFrame::Board`] changes the board.
 */
export type BoardAction = "append" | "set";

/**
 * One audience member in a `call_audience` page.
 */
export type CallAudienceMember = {
/**
 * Public address.
 */
address: string,
/**
 * Display name.
 */
name: string,
/**
 * Has a hand raised.
 */
hand: boolean, };

/**
 * Something that happened in the call (`call_event`), tagged by `"event"`.
 */
export type CallEvent = { "event": "joined",
/**
 * Who.
 */
participant: CallParticipant, } | { "event": "updated",
/**
 * Who.
 */
address: string,
/**
 * What they may do now.
 */
permissions: CallPermissions,
/**
 * What an admin muted.
 */
admin_muted: CallMute, } | { "event": "left",
/**
 * Who.
 */
address: string,
/**
 * Why.
 */
reason: CallLeaveReason,
/**
 * The admin who removed them, if one did.
 */
by?: string, } | { "event": "published",
/**
 * Whose.
 */
address: string,
/**
 * The stream.
 */
stream: CallStream, } | { "event": "muted",
/**
 * Whose.
 */
address: string,
/**
 * Which stream.
 */
sid: number,
/**
 * The owner's mute state now.
 */
muted: CallMute, } | { "event": "unpublished",
/**
 * Whose.
 */
address: string,
/**
 * Which stream.
 */
sid: number,
/**
 * Why.
 */
reason: StreamEndReason, } | { "event": "talking",
/**
 * Who.
 */
address: string,
/**
 * Talking now.
 */
talking: boolean, } | { "event": "speakers",
/**
 * Addresses.
 */
order: Array<string>, } | { "event": "subscriber",
/**
 * Who receives.
 */
address: string,
/**
 * Which of your streams.
 */
sid: number,
/**
 * Started (`true`) or stopped.
 */
joined: boolean, } | { "event": "layers",
/**
 * Which of your streams.
 */
sid: number,
/**
 * One flag per layer.
 */
active: Array<boolean>, } | { "event": "layer",
/**
 * Whose stream.
 */
address: string,
/**
 * Which stream.
 */
sid: number,
/**
 * Layer index, `0` the lowest.
 */
layer: number | null, } | { "event": "recording",
/**
 * The recording state now.
 */
recording: CallRecording, } | { "event": "audience",
/**
 * Audience members in the call.
 */
count: number, } | { "event": "hand",
/**
 * Who.
 */
address: string,
/**
 * Their display name (the audience is not in the roster).
 */
name: string,
/**
 * Raised (`true`) or lowered.
 */
raised: boolean, };

/**
 * A 1:1 call's id (`call`, ≥ 1). Its media run in the call room `-call` (see
 * [`crate::direct`]).
 */
export type CallId = number;

/**
 * Why a participant left (Mesibo's hangup reasons where they exist).
 */
export type CallLeaveReason = "left" | "lost" | "removed" | "duration" | "replaced" | "not_member" | "slow" | "off_stage";

/**
 * Which media of a stream are muted.
 */
export type CallMute = {
/**
 * Audio muted.
 */
audio: boolean,
/**
 * Video muted.
 */
video: boolean, };

/**
 * One participant as the roster shows it.
 */
export type CallParticipant = {
/**
 * Public address.
 */
address: string,
/**
 * Display name.
 */
name: string,
/**
 * What they may do.
 */
permissions: CallPermissions,
/**
 * Media an admin muted on all their streams.
 */
admin_muted: CallMute,
/**
 * Talking now.
 */
talking: boolean,
/**
 * Their streams.
 */
streams: Array<CallStream>, };

/**
 * What a participant may do in the call, resolved from the group's policy and the member's flags.
 */
export type CallPermissions = {
/**
 * May publish streams.
 */
publish: boolean,
/**
 * May receive streams.
 */
subscribe: boolean,
/**
 * May see the roster.
 */
list: boolean,
/**
 * May mute others and everyone (admin with call control).
 */
call_control: boolean,
/**
 * May hang up others' streams and remove them from the call (admin with hang-up).
 */
hangup: boolean, };

/**
 * Whether a call is being recorded, by whom and since when (`call_recording`, the
 * `recording` call event, `call_joined`, and `/v1/groups/{gid}/call/recording`).
 */
export type CallRecording = {
/**
 * The call is being recorded.
 */
active: boolean,
/**
 * Who started the recording (their address), while active.
 */
by?: string,
/**
 * When the recording started, ms since the epoch, while active.
 */
since?: number,
/**
 * Why it stopped (in the event that says it stopped).
 */
reason?: RecordingStopReason, };

/**
 * The call settings of the group, as enforced by the server.
 */
export type CallSettings = {
/**
 * Audio may be published.
 */
audio: boolean,
/**
 * Video may be published.
 */
video: boolean,
/**
 * Screens may be shared.
 */
screen: boolean,
/**
 * Video may be sent as simulcast layers.
 */
simulcast: boolean,
/**
 * Tallest video forwarded, in pixels (`null`: no cap).
 */
max_height: number | null,
/**
 * Seconds one participant may stay in the call (`null`: no limit).
 */
max_duration_secs: number | null,
/**
 * Streams one participant may publish at once.
 */
max_streams: number,
/**
 * Live mode: members who may publish are on stage, the others are the audience, which is
 * not announced one by one (docs/protocol.md, "Live mode").
 */
live: boolean, };

/**
 * A published stream.
 */
export type CallStream = {
/**
 * The stream's id within its participant: `0` the camera, `1..` screens and more.
 */
sid: number,
/**
 * Carries audio.
 */
audio: boolean,
/**
 * Carries video.
 */
video: boolean,
/**
 * The video is a shared screen.
 */
screen: boolean,
/**
 * Simulcast layers of the video, as granted.
 */
layers: number,
/**
 * Height of the tallest layer as granted (clamped to the room's cap).
 */
height: number | null,
/**
 * What its owner muted.
 */
muted: CallMute, };

/**
 * One media line of the subscribe connection (`call_offer`).
 */
export type CallTrack = {
/**
 * The media line's mid.
 */
mid: string,
/**
 * Whose stream.
 */
publisher: string,
/**
 * Which of their streams.
 */
sid: number,
/**
 * `audio` or `video`.
 */
kind: MediaKind,
/**
 * The codec the line carries, its SDP name: `opus`, `VP8`, `VP9`, `H264` or `AV1` (the
 * one the publisher sends; the line's SDP lists no other).
 */
codec: string, };

/**
 * Frames a client sends.
 */
export type ClientFrame = { "type": "hello",
/**
 * Resume after this position; absent for a fresh start (the server
 * then sends what this user has not had delivered yet).
 */
resume?: Cursor | null, } | { "type": "send",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Client-chosen message id (1–64 chars): a retry with the same id is
 * answered with the first `sent` and never stored or delivered twice.
 */
id: string,
/**
 * Recipient address for a 1:1 message.
 */
peer?: string | null,
/**
 * Group id for a group message.
 */
gid?: GroupId | null,
/**
 * Text.
 */
text?: string | null,
/**
 * Structured JSON data.
 */
data?: unknown,
/**
 * A file reference.
 */
file?: FileRef | null,
/**
 * App-defined message type (Mesibo `type`).
 */
mtype?: number | null, } | { "type": "edit",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Server message id.
 */
mid: MessageId,
/**
 * New text.
 */
text?: string | null,
/**
 * New data.
 */
data?: unknown, } | { "type": "delete",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Server message id.
 */
mid: MessageId, } | { "type": "ack",
/**
 * Highest processed position.
 */
pos: Pos, } | { "type": "read",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * 1:1 conversation partner.
 */
peer?: string | null,
/**
 * Group id.
 */
gid?: GroupId | null,
/**
 * Read up to and including this sequence number.
 */
seq: Seq, } | { "type": "typing",
/**
 * 1:1 conversation partner.
 */
peer?: string | null,
/**
 * Group id.
 */
gid?: GroupId | null,
/**
 * Typing or not.
 */
on: boolean, } | { "type": "ping",
/**
 * Request id, echoed.
 */
rid?: string | null, } | { "type": "call_join",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The group.
 */
gid: GroupId, } | { "type": "call_publish" } & PublishRequest | { "type": "call_unpublish",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Which stream.
 */
sid: number,
/**
 * A renegotiation offer of the publish connection.
 */
sdp?: string | null, } | { "type": "call_restart",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The publish connection's ICE-restart offer (none when the session publishes nothing).
 */
sdp?: string | null, } | { "type": "call_subscribe",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Whose stream.
 */
address: string,
/**
 * Which of their streams.
 */
sid: number,
/**
 * Receive its audio.
 */
audio?: boolean,
/**
 * Receive its video.
 */
video?: boolean,
/**
 * The height at which the video is shown, in pixels, for layer choice (`null`: as large
 * as available). Send again to change it.
 */
height?: number | null, } | { "type": "call_unsubscribe",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Whose stream.
 */
address: string,
/**
 * Which of their streams.
 */
sid: number, } | { "type": "call_answer",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * SDP answer of the subscribe connection.
 */
sdp: string, } | { "type": "call_mute",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Which stream.
 */
sid: number,
/**
 * New audio mute state, if changing.
 */
audio?: boolean | null,
/**
 * New video mute state, if changing.
 */
video?: boolean | null, } | { "type": "call_admin",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * What to do.
 */
action: AdminAction,
/**
 * The participant acted on (not for `mute_all` / `unmute_all`).
 */
address?: string | null,
/**
 * The stream to hang up (`hangup` only).
 */
sid?: number | null,
/**
 * Mute or unmute audio (`mute`, `unmute`, `mute_all`, `unmute_all`).
 */
audio?: boolean,
/**
 * Mute or unmute video.
 */
video?: boolean, } | { "type": "call_record",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Start or stop.
 */
action: RecordAction, } | { "type": "call_hand",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * Raise (`true`) or lower.
 */
raised: boolean, } | { "type": "call_audience",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The `next` cursor of the previous page (`null` or absent: the first page).
 */
after?: number | null,
/**
 * At most this many (1–100; absent: 100).
 */
limit?: number | null,
/**
 * Only those with a hand raised.
 */
hands?: boolean, } | { "type": "call_leave",
/**
 * Request id, echoed.
 */
rid?: string | null, } | { "type": "call_dial",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The callee's address.
 */
peer: string,
/**
 * A video call (`false`: voice only).
 */
video?: boolean, } | { "type": "call_accept",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The call.
 */
call: CallId, } | { "type": "call_decline",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The call.
 */
call: CallId, } | { "type": "call_hangup",
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The call.
 */
call: CallId, };

/**
 * A position in the user's message stream, to resume from after a reconnect.
 *
 * `pos` is the highest `pos` of any `message` frame the client has processed.
 * `epoch` names the store that issued it; a cursor from another store (or a
 * reset one) cannot be resumed.
 */
export type Cursor = {
/**
 * Store epoch from `welcome`.
 */
epoch: string,
/**
 * Last processed stream position.
 */
pos: Pos, };

/**
 * Where a 1:1 call stands. `ringing` and `answered` keep the call going; every other status
 * ends it.
 */
export type DirectCallStatus = "ringing" | "answered" | "busy" | "offline" | "declined" | "no_answer" | "canceled" | "ended" | "lost";

/**
 * The body of a `call_status` frame: a 1:1 call changed.
 */
export type DirectCallUpdate = {
/**
 * The call.
 */
call: CallId,
/**
 * The caller's address.
 */
from: string,
/**
 * The callee's address.
 */
to: string,
/**
 * A video call (`false`: voice only).
 */
video: boolean,
/**
 * Where the call stands now.
 */
status: DirectCallStatus,
/**
 * Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`).
 */
code: number,
/**
 * Who hung up (`ended`) or whose session was lost (`lost`).
 */
by?: string, };

/**
 * A stable, documented error code.
 */
export type ErrorCode = "bad_request" | "unauthorized" | "forbidden" | "not_found" | "conflict" | "too_large" | "rate_limited" | "code_invalid" | "code_expired" | "code_locked" | "pin_invalid" | "limit_exceeded" | "method_not_allowed" | "internal";

/**
 * A file attached to a message. Files are uploaded out of band; the message
 * carries the reference.
 */
export type FileRef = {
/**
 * Where to download the file. For a stored file (`upload`) the server sets it to
 * `/v1/files/{upload}/content` (a client may leave it out).
 */
url: string,
/**
 * A finished upload of the sender's (`/v1/uploads`) this message carries: the server
 * checks it and fills `name`, `mime` and `size` from it; the conversation's members may
 * then read the file.
 */
upload?: string,
/**
 * Path of a thumbnail, if the sender's app has one (shown as is).
 */
thumbnail?: string,
/**
 * File name shown to the user.
 */
name?: string,
/**
 * MIME type.
 */
mime?: string,
/**
 * Size in bytes.
 */
size?: number,
/**
 * Mesibo file type (image 1, video 2, audio 3, other 10).
 */
filetype?: number, };

/**
 * What changed in a group (see [`ServerFrame::Group`]).
 */
export type GroupEvent = "members_added" | "members_removed" | "updated" | "deleted";

/**
 * A group's id (`gid`, ≥ 1000).
 */
export type GroupId = number;

/**
 * One entry of RTCPeerConnection `iceServers`: a TURN server and credentials (TURN REST API:
 * `username` is `<expiry unix seconds>:<uid>`, `credential` base64 HMAC-SHA1 of it).
 */
export type IceServer = {
/**
 * `turn:host:port?transport=udp`.
 */
urls: Array<string>,
/**
 * Time-limited user name.
 */
username: string,
/**
 * Password for `username`.
 */
credential: string, };

/**
 * What a [`ServerFrame::GroupMedia`] says happened to a library.
 */
export type MediaAction = "added" | "deleted";

/**
 * A file in a group's media library (`GET /v1/groups/{gid}/media`, and the `group_media`
 * frame). Metadata comes from the container (chorus-probe); a file it cannot read (not media,
 * corrupt, cut short) has no duration, dimensions or codecs.
 */
export type MediaEntry = {
/**
 * The file's id (also its id under `/v1/files/{id}`).
 */
id: string,
/**
 * The group.
 */
gid: GroupId,
/**
 * File name.
 */
name: string,
/**
 * Size in bytes.
 */
size: number,
/**
 * MIME type, from the bytes (an MP4 or WebM without video is `audio/…`).
 */
type: string,
/**
 * Duration in ms (audio and video).
 */
duration_ms?: number,
/**
 * Width in pixels (video and images).
 */
width?: number,
/**
 * Height in pixels.
 */
height?: number,
/**
 * Video codec, ffmpeg's short name (`h264`, `vp8`, `vp9`, `av1`, …).
 */
video_codec?: string,
/**
 * Audio codec (`aac`, `opus`, `vorbis`, `mp3`, …).
 */
audio_codec?: string,
/**
 * Path of a JPEG thumbnail (images), fetched with the Bearer token.
 */
thumbnail?: string,
/**
 * Who uploaded and added it (address); `None` once the account is deleted.
 */
uploader?: string,
/**
 * When it was added to the library, ms since the Unix epoch.
 */
created_ms: number, };

/**
 * Audio or video.
 */
export type MediaKind = "audio" | "video";

/**
 * A stored message as delivered.
 */
export type Message = {
/**
 * Server message id.
 */
mid: MessageId,
/**
 * Client-chosen id the sender used.
 */
id: string,
/**
 * Sender address.
 */
from: string,
/**
 * Recipient address (1:1 messages only).
 */
peer?: string,
/**
 * Group id (group messages only).
 */
gid?: GroupId,
/**
 * Sequence in its conversation (1, 2, 3…): orders messages and addresses receipts.
 */
seq: Seq,
/**
 * Position in the stream: increases with every new message or change; resume from it.
 */
pos: Pos,
/**
 * Server time of sending, milliseconds since the Unix epoch.
 */
ts: number,
/**
 * App-defined type.
 */
mtype: number,
/**
 * Text.
 */
text?: string,
/**
 * JSON data.
 */
data?: unknown,
/**
 * File reference.
 */
file?: FileRef,
/**
 * The sender edited it.
 */
edited: boolean,
/**
 * The sender deleted it (content is gone).
 */
deleted: boolean, };

/**
 * A stored message's server id (`mid`).
 */
export type MessageId = number;

/**
 * A position in a user's message stream (`pos`): resume from it.
 */
export type Pos = number;

/**
 * What a client asks to publish (`call_publish`).
 */
export type PublishRequest = {
/**
 * Request id, echoed.
 */
rid?: string | null,
/**
 * The stream's id: `0` the camera, `1..` screens and more (at most 63).
 */
sid: number,
/**
 * The stream has audio.
 */
audio?: boolean,
/**
 * The stream has video.
 */
video?: boolean,
/**
 * The video is a shared screen.
 */
screen?: boolean,
/**
 * Simulcast RIDs of the video, lowest resolution first (e.g. `["q","h","f"]`); empty for a
 * single layer.
 */
rids?: Array<string>,
/**
 * Height of the tallest layer in pixels.
 */
height?: number | null,
/**
 * Media that start muted.
 */
muted?: CallMute,
/**
 * The media line (mid) of the publish offer that carries the audio.
 */
audio_mid?: string | null,
/**
 * The media line (mid) of the publish offer that carries the video.
 */
video_mid?: string | null,
/**
 * The publish connection's SDP offer, including this stream's media lines.
 */
sdp: string, };

/**
 * Start or stop the call's recording (`call_record`).
 */
export type RecordAction = "start" | "stop";

/**
 * Why a recording stopped.
 */
export type RecordingStopReason = "stopped" | "duration_limit" | "size_limit" | "storage_failed";

/**
 * A message's sequence number in its conversation (`seq`: 1, 2, 3…).
 */
export type Seq = number;

/**
 * Frames the server sends.
 */
export type ServerFrame = { "type": "welcome",
/**
 * This connection's session id.
 */
session: string,
/**
 * Who you are.
 */
user: SessionUser,
/**
 * The store epoch to put in resume cursors.
 */
epoch: string,
/**
 * True when a resume cursor was given and will be honoured: every
 * message after it follows, then `synced`.
 */
resumed: boolean,
/**
 * Why a given cursor cannot be resumed (`epoch_mismatch`,
 * `cursor_ahead`, `gap_too_large`). The client must reload history
 * over REST; live delivery continues from `synced.pos`.
 */
reason?: string, } | { "type": "synced",
/**
 * Highest stream position sent so far (use as the cursor if no message arrived).
 */
pos: Pos,
/**
 * Number of backlog messages sent.
 */
count: number,
/**
 * False when more undelivered messages exist than one sync sends;
 * page the rest with REST history.
 */
complete: boolean, } | { "type": "sent",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * Your client id.
 */
id: string,
/**
 * Server message id.
 */
mid: MessageId,
/**
 * Conversation sequence.
 */
seq: Seq,
/**
 * Stream position.
 */
pos: Pos,
/**
 * Server time, ms.
 */
ts: number,
/**
 * Always 1 (sent).
 */
status: number,
/**
 * True when this answers a retry of an already stored message.
 */
duplicate: boolean, } | { "type": "message" } & Message | { "type": "receipt",
/**
 * 1:1 conversation partner (from the receiver's point of view).
 */
peer?: string,
/**
 * Group id.
 */
gid?: GroupId,
/**
 * Who received or read.
 */
by: string,
/**
 * 2 delivered, 3 read.
 */
status: number,
/**
 * Up to and including this sequence.
 */
seq: Seq, } | { "type": "presence",
/**
 * Whose presence.
 */
from: string,
/**
 * For typing in a 1:1 conversation: the conversation partner (you).
 */
peer?: string,
/**
 * For typing in a group: the group.
 */
gid?: GroupId,
/**
 * Presence value.
 */
presence: number, } | { "type": "group",
/**
 * The group.
 */
gid: GroupId,
/**
 * What happened.
 */
event: GroupEvent,
/**
 * For member events: the members concerned (addresses).
 */
members?: Array<string>, } | { "type": "group_media",
/**
 * The group.
 */
gid: GroupId,
/**
 * `added` or `deleted`.
 */
action: MediaAction,
/**
 * The file's id.
 */
id: string,
/**
 * The new entry (`added` only).
 */
entry?: MediaEntry, } | { "type": "board",
/**
 * The group.
 */
gid: GroupId,
/**
 * The board's version after this change (1 for the first write, then +1 per change).
 */
version: number,
/**
 * Who changed it (address).
 */
from: string,
/**
 * `append`: `objs` were added; `set`: `objs` is the whole board.
 */
action: BoardAction,
/**
 * The objects added, or the whole board.
 */
objs: Array<Record<string, unknown>>, } | { "type": "ok",
/**
 * Echoed request id.
 */
rid?: string, } | { "type": "pong",
/**
 * Echoed request id.
 */
rid?: string, } | { "type": "call_joined",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * The group.
 */
gid: GroupId,
/**
 * Your address in the call.
 */
address: string,
/**
 * What you may do.
 */
permissions: CallPermissions,
/**
 * The call's settings.
 */
settings: CallSettings,
/**
 * Who is in the call, you included (only yourself without the list permission).
 */
participants: Array<CallParticipant>,
/**
 * TURN servers with fresh credentials for you (RTCPeerConnection `iceServers`); absent
 * when the server runs no TURN relay.
 */
ice_servers?: Array<IceServer>,
/**
 * The call is being recorded: by whom and since when (absent when it is not), told
 * before any media flows.
 */
recording?: CallRecording,
/**
 * Live mode: how many are in the audience (absent when the call is not live).
 */
audience?: number, } | { "type": "call_audience",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * The group.
 */
gid: GroupId,
/**
 * Audience members in the call now.
 */
count: number,
/**
 * This page, in the order they joined.
 */
members: Array<CallAudienceMember>,
/**
 * The cursor of the next page (`after`), absent on the last.
 */
next?: number, } | { "type": "call_recording",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * The group.
 */
gid: GroupId,
/**
 * The recording state.
 */
recording: CallRecording, } | { "type": "call_published",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * The stream as granted (height clamped to the room's cap, layers to what is allowed).
 */
stream: CallStream,
/**
 * SDP answer of the publish connection.
 */
sdp: string, } | { "type": "call_sdp",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * SDP answer of the publish connection.
 */
sdp?: string, } | { "type": "call_offer",
/**
 * The call (group, or a 1:1 call's room) whose subscribe connection this is: an offer of
 * a call the session has just left is not for the one it joins.
 */
gid: GroupId,
/**
 * SDP offer.
 */
sdp: string,
/**
 * What each media line carries. Lines not listed are unused.
 */
tracks: Array<CallTrack>, } | { "type": "call_event",
/**
 * The group.
 */
gid: GroupId, } & ({ "event": "joined",
/**
 * Who.
 */
participant: CallParticipant, } | { "event": "updated",
/**
 * Who.
 */
address: string,
/**
 * What they may do now.
 */
permissions: CallPermissions,
/**
 * What an admin muted.
 */
admin_muted: CallMute, } | { "event": "left",
/**
 * Who.
 */
address: string,
/**
 * Why.
 */
reason: CallLeaveReason,
/**
 * The admin who removed them, if one did.
 */
by?: string, } | { "event": "published",
/**
 * Whose.
 */
address: string,
/**
 * The stream.
 */
stream: CallStream, } | { "event": "muted",
/**
 * Whose.
 */
address: string,
/**
 * Which stream.
 */
sid: number,
/**
 * The owner's mute state now.
 */
muted: CallMute, } | { "event": "unpublished",
/**
 * Whose.
 */
address: string,
/**
 * Which stream.
 */
sid: number,
/**
 * Why.
 */
reason: StreamEndReason, } | { "event": "talking",
/**
 * Who.
 */
address: string,
/**
 * Talking now.
 */
talking: boolean, } | { "event": "speakers",
/**
 * Addresses.
 */
order: Array<string>, } | { "event": "subscriber",
/**
 * Who receives.
 */
address: string,
/**
 * Which of your streams.
 */
sid: number,
/**
 * Started (`true`) or stopped.
 */
joined: boolean, } | { "event": "layers",
/**
 * Which of your streams.
 */
sid: number,
/**
 * One flag per layer.
 */
active: Array<boolean>, } | { "event": "layer",
/**
 * Whose stream.
 */
address: string,
/**
 * Which stream.
 */
sid: number,
/**
 * Layer index, `0` the lowest.
 */
layer: number | null, } | { "event": "recording",
/**
 * The recording state now.
 */
recording: CallRecording, } | { "event": "audience",
/**
 * Audience members in the call.
 */
count: number, } | { "event": "hand",
/**
 * Who.
 */
address: string,
/**
 * Their display name (the audience is not in the roster).
 */
name: string,
/**
 * Raised (`true`) or lowered.
 */
raised: boolean, }) | { "type": "call_dialing",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * The call.
 */
call: CallId,
/**
 * The callee's address.
 */
peer: string,
/**
 * A video call.
 */
video: boolean, } | { "type": "call_incoming",
/**
 * The call.
 */
call: CallId,
/**
 * The caller's address.
 */
from: string,
/**
 * The caller's display name.
 */
name: string,
/**
 * A video call (`false`: voice only).
 */
video: boolean, } | { "type": "call_status" } & DirectCallUpdate | { "type": "error",
/**
 * Echoed request id.
 */
rid?: string,
/**
 * For a failed `send`: the client id.
 */
id?: string,
/**
 * Error code.
 */
code: ErrorCode,
/**
 * Plain-words explanation.
 */
message: string,
/**
 * For a failed `send`: the Mesibo message status (≥ 0x80); for a refused 1:1 call
 * request: the Mesibo call status (`MESIBO_CALLSTATUS_*`).
 */
status?: number, };

/**
 * The user a session belongs to.
 */
export type SessionUser = {
/**
 * Numeric user id.
 */
uid: UserId,
/**
 * Public address (never the email).
 */
address: string,
/**
 * Display name.
 */
name: string, };

/**
 * Why a stream ended.
 */
export type StreamEndReason = "unpublished" | "hung_up" | "owner_left" | "permission_revoked";

/**
 * A user's numeric id (`uid`).
 */
export type UserId = number;
