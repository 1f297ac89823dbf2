/*! Chorus SDK 0.1.0 — generated from sdk/src by `npm run build`; do not edit. */

// ---- proto/frames
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
    address: string;
    /**
     * Display name.
     */
    name: string;
    /**
     * Has a hand raised.
     */
    hand: boolean;
};
/**
 * Something that happened in the call (`call_event`), tagged by `"event"`.
 */
export type CallEvent = {
    "event": "joined";
    /**
     * Who.
     */
    participant: CallParticipant;
} | {
    "event": "updated";
    /**
     * Who.
     */
    address: string;
    /**
     * What they may do now.
     */
    permissions: CallPermissions;
    /**
     * What an admin muted.
     */
    admin_muted: CallMute;
} | {
    "event": "left";
    /**
     * Who.
     */
    address: string;
    /**
     * Why.
     */
    reason: CallLeaveReason;
    /**
     * The admin who removed them, if one did.
     */
    by?: string;
} | {
    "event": "published";
    /**
     * Whose.
     */
    address: string;
    /**
     * The stream.
     */
    stream: CallStream;
} | {
    "event": "muted";
    /**
     * Whose.
     */
    address: string;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * The owner's mute state now.
     */
    muted: CallMute;
} | {
    "event": "unpublished";
    /**
     * Whose.
     */
    address: string;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * Why.
     */
    reason: StreamEndReason;
} | {
    "event": "talking";
    /**
     * Who.
     */
    address: string;
    /**
     * Talking now.
     */
    talking: boolean;
} | {
    "event": "speakers";
    /**
     * Addresses.
     */
    order: Array<string>;
} | {
    "event": "subscriber";
    /**
     * Who receives.
     */
    address: string;
    /**
     * Which of your streams.
     */
    sid: number;
    /**
     * Started (`true`) or stopped.
     */
    joined: boolean;
} | {
    "event": "layers";
    /**
     * Which of your streams.
     */
    sid: number;
    /**
     * One flag per layer.
     */
    active: Array<boolean>;
} | {
    "event": "layer";
    /**
     * Whose stream.
     */
    address: string;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * Layer index, `0` the lowest.
     */
    layer: number | null;
} | {
    "event": "recording";
    /**
     * The recording state now.
     */
    recording: CallRecording;
} | {
    "event": "audience";
    /**
     * Audience members in the call.
     */
    count: number;
} | {
    "event": "hand";
    /**
     * Who.
     */
    address: string;
    /**
     * Their display name (the audience is not in the roster).
     */
    name: string;
    /**
     * Raised (`true`) or lowered.
     */
    raised: boolean;
};
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
    audio: boolean;
    /**
     * Video muted.
     */
    video: boolean;
};
/**
 * One participant as the roster shows it.
 */
export type CallParticipant = {
    /**
     * Public address.
     */
    address: string;
    /**
     * Display name.
     */
    name: string;
    /**
     * What they may do.
     */
    permissions: CallPermissions;
    /**
     * Media an admin muted on all their streams.
     */
    admin_muted: CallMute;
    /**
     * Talking now.
     */
    talking: boolean;
    /**
     * Their streams.
     */
    streams: Array<CallStream>;
};
/**
 * What a participant may do in the call, resolved from the group's policy and the member's flags.
 */
export type CallPermissions = {
    /**
     * May publish streams.
     */
    publish: boolean;
    /**
     * May receive streams.
     */
    subscribe: boolean;
    /**
     * May see the roster.
     */
    list: boolean;
    /**
     * May mute others and everyone (admin with call control).
     */
    call_control: boolean;
    /**
     * May hang up others' streams and remove them from the call (admin with hang-up).
     */
    hangup: boolean;
};
/**
 * Whether a call is being recorded, by whom and since when (`call_recording`, the
 * `recording` call event, `call_joined`, and `/v1/groups/{gid}/call/recording`).
 */
export type CallRecording = {
    /**
     * The call is being recorded.
     */
    active: boolean;
    /**
     * Who started the recording (their address), while active.
     */
    by?: string;
    /**
     * When the recording started, ms since the epoch, while active.
     */
    since?: number;
    /**
     * Why it stopped (in the event that says it stopped).
     */
    reason?: RecordingStopReason;
};
/**
 * The call settings of the group, as enforced by the server.
 */
export type CallSettings = {
    /**
     * Audio may be published.
     */
    audio: boolean;
    /**
     * Video may be published.
     */
    video: boolean;
    /**
     * Screens may be shared.
     */
    screen: boolean;
    /**
     * Video may be sent as simulcast layers.
     */
    simulcast: boolean;
    /**
     * Tallest video forwarded, in pixels (`null`: no cap).
     */
    max_height: number | null;
    /**
     * Seconds one participant may stay in the call (`null`: no limit).
     */
    max_duration_secs: number | null;
    /**
     * Streams one participant may publish at once.
     */
    max_streams: number;
    /**
     * Live mode: members who may publish are on stage, the others are the audience, which is
     * not announced one by one (docs/protocol.md, "Live mode").
     */
    live: boolean;
};
/**
 * A published stream.
 */
export type CallStream = {
    /**
     * The stream's id within its participant: `0` the camera, `1..` screens and more.
     */
    sid: number;
    /**
     * Carries audio.
     */
    audio: boolean;
    /**
     * Carries video.
     */
    video: boolean;
    /**
     * The video is a shared screen.
     */
    screen: boolean;
    /**
     * Simulcast layers of the video, as granted.
     */
    layers: number;
    /**
     * Height of the tallest layer as granted (clamped to the room's cap).
     */
    height: number | null;
    /**
     * What its owner muted.
     */
    muted: CallMute;
};
/**
 * One media line of the subscribe connection (`call_offer`).
 */
export type CallTrack = {
    /**
     * The media line's mid.
     */
    mid: string;
    /**
     * Whose stream.
     */
    publisher: string;
    /**
     * Which of their streams.
     */
    sid: number;
    /**
     * `audio` or `video`.
     */
    kind: MediaKind;
    /**
     * The codec the line carries, its SDP name: `opus`, `VP8`, `VP9`, `H264` or `AV1` (the
     * one the publisher sends; the line's SDP lists no other).
     */
    codec: string;
};
/**
 * Frames a client sends.
 */
export type ClientFrame = {
    "type": "hello";
    /**
     * Resume after this position; absent for a fresh start (the server
     * then sends what this user has not had delivered yet).
     */
    resume?: Cursor | null;
} | {
    "type": "send";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Client-chosen message id (1–64 chars): a retry with the same id is
     * answered with the first `sent` and never stored or delivered twice.
     */
    id: string;
    /**
     * Recipient address for a 1:1 message.
     */
    peer?: string | null;
    /**
     * Group id for a group message.
     */
    gid?: GroupId | null;
    /**
     * Text.
     */
    text?: string | null;
    /**
     * Structured JSON data.
     */
    data?: unknown;
    /**
     * A file reference.
     */
    file?: FileRef | null;
    /**
     * App-defined message type (Mesibo `type`).
     */
    mtype?: number | null;
} | {
    "type": "edit";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Server message id.
     */
    mid: MessageId;
    /**
     * New text.
     */
    text?: string | null;
    /**
     * New data.
     */
    data?: unknown;
} | {
    "type": "delete";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Server message id.
     */
    mid: MessageId;
} | {
    "type": "ack";
    /**
     * Highest processed position.
     */
    pos: Pos;
} | {
    "type": "read";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * 1:1 conversation partner.
     */
    peer?: string | null;
    /**
     * Group id.
     */
    gid?: GroupId | null;
    /**
     * Read up to and including this sequence number.
     */
    seq: Seq;
} | {
    "type": "typing";
    /**
     * 1:1 conversation partner.
     */
    peer?: string | null;
    /**
     * Group id.
     */
    gid?: GroupId | null;
    /**
     * Typing or not.
     */
    on: boolean;
} | {
    "type": "ping";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
} | {
    "type": "call_join";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The group.
     */
    gid: GroupId;
} | {
    "type": "call_publish";
} & PublishRequest | {
    "type": "call_unpublish";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * A renegotiation offer of the publish connection.
     */
    sdp?: string | null;
} | {
    "type": "call_restart";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The publish connection's ICE-restart offer (none when the session publishes nothing).
     */
    sdp?: string | null;
} | {
    "type": "call_subscribe";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Whose stream.
     */
    address: string;
    /**
     * Which of their streams.
     */
    sid: number;
    /**
     * Receive its audio.
     */
    audio?: boolean;
    /**
     * Receive its video.
     */
    video?: boolean;
    /**
     * The height at which the video is shown, in pixels, for layer choice (`null`: as large
     * as available). Send again to change it.
     */
    height?: number | null;
} | {
    "type": "call_unsubscribe";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Whose stream.
     */
    address: string;
    /**
     * Which of their streams.
     */
    sid: number;
} | {
    "type": "call_answer";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * SDP answer of the subscribe connection.
     */
    sdp: string;
} | {
    "type": "call_mute";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * New audio mute state, if changing.
     */
    audio?: boolean | null;
    /**
     * New video mute state, if changing.
     */
    video?: boolean | null;
} | {
    "type": "call_admin";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * What to do.
     */
    action: AdminAction;
    /**
     * The participant acted on (not for `mute_all` / `unmute_all`).
     */
    address?: string | null;
    /**
     * The stream to hang up (`hangup` only).
     */
    sid?: number | null;
    /**
     * Mute or unmute audio (`mute`, `unmute`, `mute_all`, `unmute_all`).
     */
    audio?: boolean;
    /**
     * Mute or unmute video.
     */
    video?: boolean;
} | {
    "type": "call_record";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Start or stop.
     */
    action: RecordAction;
} | {
    "type": "call_hand";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * Raise (`true`) or lower.
     */
    raised: boolean;
} | {
    "type": "call_audience";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The `next` cursor of the previous page (`null` or absent: the first page).
     */
    after?: number | null;
    /**
     * At most this many (1–100; absent: 100).
     */
    limit?: number | null;
    /**
     * Only those with a hand raised.
     */
    hands?: boolean;
} | {
    "type": "call_leave";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
} | {
    "type": "call_dial";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The callee's address.
     */
    peer: string;
    /**
     * A video call (`false`: voice only).
     */
    video?: boolean;
} | {
    "type": "call_accept";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The call.
     */
    call: CallId;
} | {
    "type": "call_decline";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The call.
     */
    call: CallId;
} | {
    "type": "call_hangup";
    /**
     * Request id, echoed.
     */
    rid?: string | null;
    /**
     * The call.
     */
    call: CallId;
};
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
    epoch: string;
    /**
     * Last processed stream position.
     */
    pos: Pos;
};
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
    call: CallId;
    /**
     * The caller's address.
     */
    from: string;
    /**
     * The callee's address.
     */
    to: string;
    /**
     * A video call (`false`: voice only).
     */
    video: boolean;
    /**
     * Where the call stands now.
     */
    status: DirectCallStatus;
    /**
     * Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`).
     */
    code: number;
    /**
     * Who hung up (`ended`) or whose session was lost (`lost`).
     */
    by?: string;
};
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
    url: string;
    /**
     * A finished upload of the sender's (`/v1/uploads`) this message carries: the server
     * checks it and fills `name`, `mime` and `size` from it; the conversation's members may
     * then read the file.
     */
    upload?: string;
    /**
     * Path of a thumbnail, if the sender's app has one (shown as is).
     */
    thumbnail?: string;
    /**
     * File name shown to the user.
     */
    name?: string;
    /**
     * MIME type.
     */
    mime?: string;
    /**
     * Size in bytes.
     */
    size?: number;
    /**
     * Mesibo file type (image 1, video 2, audio 3, other 10).
     */
    filetype?: number;
};
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
    urls: Array<string>;
    /**
     * Time-limited user name.
     */
    username: string;
    /**
     * Password for `username`.
     */
    credential: string;
};
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
    id: string;
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * File name.
     */
    name: string;
    /**
     * Size in bytes.
     */
    size: number;
    /**
     * MIME type, from the bytes (an MP4 or WebM without video is `audio/…`).
     */
    type: string;
    /**
     * Duration in ms (audio and video).
     */
    duration_ms?: number;
    /**
     * Width in pixels (video and images).
     */
    width?: number;
    /**
     * Height in pixels.
     */
    height?: number;
    /**
     * Video codec, ffmpeg's short name (`h264`, `vp8`, `vp9`, `av1`, …).
     */
    video_codec?: string;
    /**
     * Audio codec (`aac`, `opus`, `vorbis`, `mp3`, …).
     */
    audio_codec?: string;
    /**
     * Path of a JPEG thumbnail (images), fetched with the Bearer token.
     */
    thumbnail?: string;
    /**
     * Who uploaded and added it (address); `None` once the account is deleted.
     */
    uploader?: string;
    /**
     * When it was added to the library, ms since the Unix epoch.
     */
    created_ms: number;
};
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
    mid: MessageId;
    /**
     * Client-chosen id the sender used.
     */
    id: string;
    /**
     * Sender address.
     */
    from: string;
    /**
     * Recipient address (1:1 messages only).
     */
    peer?: string;
    /**
     * Group id (group messages only).
     */
    gid?: GroupId;
    /**
     * Sequence in its conversation (1, 2, 3…): orders messages and addresses receipts.
     */
    seq: Seq;
    /**
     * Position in the stream: increases with every new message or change; resume from it.
     */
    pos: Pos;
    /**
     * Server time of sending, milliseconds since the Unix epoch.
     */
    ts: number;
    /**
     * App-defined type.
     */
    mtype: number;
    /**
     * Text.
     */
    text?: string;
    /**
     * JSON data.
     */
    data?: unknown;
    /**
     * File reference.
     */
    file?: FileRef;
    /**
     * The sender edited it.
     */
    edited: boolean;
    /**
     * The sender deleted it (content is gone).
     */
    deleted: boolean;
};
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
    rid?: string | null;
    /**
     * The stream's id: `0` the camera, `1..` screens and more (at most 63).
     */
    sid: number;
    /**
     * The stream has audio.
     */
    audio?: boolean;
    /**
     * The stream has video.
     */
    video?: boolean;
    /**
     * The video is a shared screen.
     */
    screen?: boolean;
    /**
     * Simulcast RIDs of the video, lowest resolution first (e.g. `["q","h","f"]`); empty for a
     * single layer.
     */
    rids?: Array<string>;
    /**
     * Height of the tallest layer in pixels.
     */
    height?: number | null;
    /**
     * Media that start muted.
     */
    muted?: CallMute;
    /**
     * The media line (mid) of the publish offer that carries the audio.
     */
    audio_mid?: string | null;
    /**
     * The media line (mid) of the publish offer that carries the video.
     */
    video_mid?: string | null;
    /**
     * The publish connection's SDP offer, including this stream's media lines.
     */
    sdp: string;
};
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
export type ServerFrame = {
    "type": "welcome";
    /**
     * This connection's session id.
     */
    session: string;
    /**
     * Who you are.
     */
    user: SessionUser;
    /**
     * The store epoch to put in resume cursors.
     */
    epoch: string;
    /**
     * True when a resume cursor was given and will be honoured: every
     * message after it follows, then `synced`.
     */
    resumed: boolean;
    /**
     * Why a given cursor cannot be resumed (`epoch_mismatch`,
     * `cursor_ahead`, `gap_too_large`). The client must reload history
     * over REST; live delivery continues from `synced.pos`.
     */
    reason?: string;
} | {
    "type": "synced";
    /**
     * Highest stream position sent so far (use as the cursor if no message arrived).
     */
    pos: Pos;
    /**
     * Number of backlog messages sent.
     */
    count: number;
    /**
     * False when more undelivered messages exist than one sync sends;
     * page the rest with REST history.
     */
    complete: boolean;
} | {
    "type": "sent";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * Your client id.
     */
    id: string;
    /**
     * Server message id.
     */
    mid: MessageId;
    /**
     * Conversation sequence.
     */
    seq: Seq;
    /**
     * Stream position.
     */
    pos: Pos;
    /**
     * Server time, ms.
     */
    ts: number;
    /**
     * Always 1 (sent).
     */
    status: number;
    /**
     * True when this answers a retry of an already stored message.
     */
    duplicate: boolean;
} | {
    "type": "message";
} & Message | {
    "type": "receipt";
    /**
     * 1:1 conversation partner (from the receiver's point of view).
     */
    peer?: string;
    /**
     * Group id.
     */
    gid?: GroupId;
    /**
     * Who received or read.
     */
    by: string;
    /**
     * 2 delivered, 3 read.
     */
    status: number;
    /**
     * Up to and including this sequence.
     */
    seq: Seq;
} | {
    "type": "presence";
    /**
     * Whose presence.
     */
    from: string;
    /**
     * For typing in a 1:1 conversation: the conversation partner (you).
     */
    peer?: string;
    /**
     * For typing in a group: the group.
     */
    gid?: GroupId;
    /**
     * Presence value.
     */
    presence: number;
} | {
    "type": "group";
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * What happened.
     */
    event: GroupEvent;
    /**
     * For member events: the members concerned (addresses).
     */
    members?: Array<string>;
} | {
    "type": "group_media";
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * `added` or `deleted`.
     */
    action: MediaAction;
    /**
     * The file's id.
     */
    id: string;
    /**
     * The new entry (`added` only).
     */
    entry?: MediaEntry;
} | {
    "type": "board";
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * The board's version after this change (1 for the first write, then +1 per change).
     */
    version: number;
    /**
     * Who changed it (address).
     */
    from: string;
    /**
     * `append`: `objs` were added; `set`: `objs` is the whole board.
     */
    action: BoardAction;
    /**
     * The objects added, or the whole board.
     */
    objs: Array<Record<string, unknown>>;
} | {
    "type": "ok";
    /**
     * Echoed request id.
     */
    rid?: string;
} | {
    "type": "pong";
    /**
     * Echoed request id.
     */
    rid?: string;
} | {
    "type": "call_joined";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * Your address in the call.
     */
    address: string;
    /**
     * What you may do.
     */
    permissions: CallPermissions;
    /**
     * The call's settings.
     */
    settings: CallSettings;
    /**
     * Who is in the call, you included (only yourself without the list permission).
     */
    participants: Array<CallParticipant>;
    /**
     * TURN servers with fresh credentials for you (RTCPeerConnection `iceServers`); absent
     * when the server runs no TURN relay.
     */
    ice_servers?: Array<IceServer>;
    /**
     * The call is being recorded: by whom and since when (absent when it is not), told
     * before any media flows.
     */
    recording?: CallRecording;
    /**
     * Live mode: how many are in the audience (absent when the call is not live).
     */
    audience?: number;
} | {
    "type": "call_audience";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * Audience members in the call now.
     */
    count: number;
    /**
     * This page, in the order they joined.
     */
    members: Array<CallAudienceMember>;
    /**
     * The cursor of the next page (`after`), absent on the last.
     */
    next?: number;
} | {
    "type": "call_recording";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * The group.
     */
    gid: GroupId;
    /**
     * The recording state.
     */
    recording: CallRecording;
} | {
    "type": "call_published";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * The stream as granted (height clamped to the room's cap, layers to what is allowed).
     */
    stream: CallStream;
    /**
     * SDP answer of the publish connection.
     */
    sdp: string;
} | {
    "type": "call_sdp";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * SDP answer of the publish connection.
     */
    sdp?: string;
} | {
    "type": "call_offer";
    /**
     * The call (group, or a 1:1 call's room) whose subscribe connection this is: an offer of
     * a call the session has just left is not for the one it joins.
     */
    gid: GroupId;
    /**
     * SDP offer.
     */
    sdp: string;
    /**
     * What each media line carries. Lines not listed are unused.
     */
    tracks: Array<CallTrack>;
} | {
    "type": "call_event";
    /**
     * The group.
     */
    gid: GroupId;
} & ({
    "event": "joined";
    /**
     * Who.
     */
    participant: CallParticipant;
} | {
    "event": "updated";
    /**
     * Who.
     */
    address: string;
    /**
     * What they may do now.
     */
    permissions: CallPermissions;
    /**
     * What an admin muted.
     */
    admin_muted: CallMute;
} | {
    "event": "left";
    /**
     * Who.
     */
    address: string;
    /**
     * Why.
     */
    reason: CallLeaveReason;
    /**
     * The admin who removed them, if one did.
     */
    by?: string;
} | {
    "event": "published";
    /**
     * Whose.
     */
    address: string;
    /**
     * The stream.
     */
    stream: CallStream;
} | {
    "event": "muted";
    /**
     * Whose.
     */
    address: string;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * The owner's mute state now.
     */
    muted: CallMute;
} | {
    "event": "unpublished";
    /**
     * Whose.
     */
    address: string;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * Why.
     */
    reason: StreamEndReason;
} | {
    "event": "talking";
    /**
     * Who.
     */
    address: string;
    /**
     * Talking now.
     */
    talking: boolean;
} | {
    "event": "speakers";
    /**
     * Addresses.
     */
    order: Array<string>;
} | {
    "event": "subscriber";
    /**
     * Who receives.
     */
    address: string;
    /**
     * Which of your streams.
     */
    sid: number;
    /**
     * Started (`true`) or stopped.
     */
    joined: boolean;
} | {
    "event": "layers";
    /**
     * Which of your streams.
     */
    sid: number;
    /**
     * One flag per layer.
     */
    active: Array<boolean>;
} | {
    "event": "layer";
    /**
     * Whose stream.
     */
    address: string;
    /**
     * Which stream.
     */
    sid: number;
    /**
     * Layer index, `0` the lowest.
     */
    layer: number | null;
} | {
    "event": "recording";
    /**
     * The recording state now.
     */
    recording: CallRecording;
} | {
    "event": "audience";
    /**
     * Audience members in the call.
     */
    count: number;
} | {
    "event": "hand";
    /**
     * Who.
     */
    address: string;
    /**
     * Their display name (the audience is not in the roster).
     */
    name: string;
    /**
     * Raised (`true`) or lowered.
     */
    raised: boolean;
}) | {
    "type": "call_dialing";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * The call.
     */
    call: CallId;
    /**
     * The callee's address.
     */
    peer: string;
    /**
     * A video call.
     */
    video: boolean;
} | {
    "type": "call_incoming";
    /**
     * The call.
     */
    call: CallId;
    /**
     * The caller's address.
     */
    from: string;
    /**
     * The caller's display name.
     */
    name: string;
    /**
     * A video call (`false`: voice only).
     */
    video: boolean;
} | {
    "type": "call_status";
} & DirectCallUpdate | {
    "type": "error";
    /**
     * Echoed request id.
     */
    rid?: string;
    /**
     * For a failed `send`: the client id.
     */
    id?: string;
    /**
     * Error code.
     */
    code: ErrorCode;
    /**
     * Plain-words explanation.
     */
    message: string;
    /**
     * For a failed `send`: the Mesibo message status (≥ 0x80); for a refused 1:1 call
     * request: the Mesibo call status (`MESIBO_CALLSTATUS_*`).
     */
    status?: number;
};
/**
 * The user a session belongs to.
 */
export type SessionUser = {
    /**
     * Numeric user id.
     */
    uid: UserId;
    /**
     * Public address (never the email).
     */
    address: string;
    /**
     * Display name.
     */
    name: string;
};
/**
 * Why a stream ended.
 */
export type StreamEndReason = "unpublished" | "hung_up" | "owner_left" | "permission_revoked";
/**
 * A user's numeric id (`uid`).
 */
export type UserId = number;

// ---- protocol
/**
 * Chorus WebSocket protocol types: JSON text frames tagged by `type`.
 *
 * The frame types are generated from `crates/proto` (`src/proto/frames.ts`, by
 * `cargo test -p chorus-proto --features ts --test ts_bindings`; never edit it by hand) and
 * re-exported here under the SDK's names; docs/protocol.md is the reference. Optional fields the
 * server omits when absent are `?:`; fields the server always sends are required. Client frames
 * must contain only the listed fields (the server rejects unknown fields), and `hello`, `ack` and
 * `typing` have no `rid`.
 *
 * @module protocol
 */


/** Every error code REST and the WebSocket answer with (crates/proto/src/error.rs). */
export declare const ERROR_CODES: readonly ["bad_request", "unauthorized", "forbidden", "not_found", "conflict", "too_large", "rate_limited", "code_invalid", "code_expired", "code_locked", "pin_invalid", "limit_exceeded", "method_not_allowed", "internal"];
/** Whether `s` is one of the server's error codes. */
export declare function isErrorCode(s: unknown): s is ErrorCode;
/** The JSON body of every REST error. */
export interface ErrorBody {
    error: {
        code: ErrorCode;
        message: string;
    };
}
/** Mesibo message status values (docs/protocol.md §10). */
export declare const MessageStatus: {
    readonly OUTBOX: 0;
    readonly SENT: 1;
    readonly DELIVERED: 2;
    readonly READ: 3;
    readonly FAILED: 128;
    readonly INVALID_DEST: 131;
    readonly RETRY_LATER: 135;
    readonly NOT_MEMBER: 145;
};
/** `presence.presence` values. */
export declare const Presence: {
    readonly ONLINE: 1;
    readonly OFFLINE: 2;
    readonly TYPING: 3;
    readonly TYPING_CLEARED: 4;
};
/** WebSocket close codes the server uses (docs/protocol.md §3). */
/** Mesibo's call status numbers (`MESIBO_CALLSTATUS_*`) that 1:1 calls report (`call_status.code`, `error.status`). */
export declare const CallStatusCode: {
    readonly RINGING: 3;
    readonly ANSWER: 5;
    readonly COMPLETE: 64;
    readonly CANCEL: 65;
    readonly NOANSWER: 66;
    readonly BUSY: 67;
    readonly OFFLINE: 69;
    readonly INVALIDDEST: 70;
    readonly INVALIDSTATE: 71;
    readonly NOTALLOWED: 74;
    readonly NETWORKERROR: 98;
};
export declare const CloseCode: {
    /** Outbound queue overflowed: reconnect at once and resume. */
    readonly FELL_BEHIND: 4000;
    /** Token revoked / user deactivated: do not reconnect with the same token. */
    readonly SESSION_ENDED: 4001;
    /** `hello` problems. */
    readonly PROTOCOL_ERROR: 1008;
    /** Frame too large or broken WebSocket data. */
    readonly BAD_FRAME: 1009;
};
/** A conversation: exactly one of `peer` (1:1) or `gid` (group). */
export type Conversation = {
    peer: string;
    gid?: undefined;
} | {
    gid: number;
    peer?: undefined;
};
/** The name of a call event. */
export type CallEventName = CallEvent['event'];
/** The client frame of type `T`. */
type Client<T extends ClientFrame['type']> = Extract<ClientFrame, {
    type: T;
}>;
/** The server frame of type `T`. */
type Server<T extends ServerFrame['type']> = Extract<ServerFrame, {
    type: T;
}>;
export type HelloFrame = Client<'hello'>;
export type SendFrame = Client<'send'>;
export type EditFrame = Client<'edit'>;
export type DeleteFrame = Client<'delete'>;
export type AckFrame = Client<'ack'>;
export type ReadFrame = Client<'read'>;
export type TypingFrame = Client<'typing'>;
export type PingFrame = Client<'ping'>;
export type CallJoinFrame = Client<'call_join'>;
/** `call_publish` (the body is `PublishRequest` in crates/proto/src/call.rs). */
export type CallPublishFrame = Client<'call_publish'>;
export type CallUnpublishFrame = Client<'call_unpublish'>;
export type CallSubscribeFrame = Client<'call_subscribe'>;
export type CallUnsubscribeFrame = Client<'call_unsubscribe'>;
/** Restart ICE on the call's connections (docs/protocol.md §15.10). */
export type CallRestartFrame = Client<'call_restart'>;
export type CallAnswerFrame = Client<'call_answer'>;
export type CallMuteFrame = Client<'call_mute'>;
export type CallAdminFrame = Client<'call_admin'>;
/** Start or stop recording the call (docs/protocol.md §15.8). */
export type CallRecordFrame = Client<'call_record'>;
/** Live mode: raise or lower a hand (docs/protocol.md, live mode). */
export type CallHandFrame = Client<'call_hand'>;
/** Live mode: a page of the audience. */
export type CallAudienceRequestFrame = Client<'call_audience'>;
export type CallLeaveFrame = Client<'call_leave'>;
export type CallDialFrame = Client<'call_dial'>;
export type CallAcceptFrame = Client<'call_accept'>;
export type CallDeclineFrame = Client<'call_decline'>;
export type CallHangupFrame = Client<'call_hangup'>;
/** Client frames that carry a `rid` and get an answer. */
export type RequestFrame = Exclude<ClientFrame, HelloFrame | AckFrame | TypingFrame>;
export type WelcomeFrame = Server<'welcome'>;
export type SyncedFrame = Server<'synced'>;
export type SentFrame = Server<'sent'>;
export type MessageFrame = Server<'message'>;
export type ReceiptFrame = Server<'receipt'>;
export type PresenceFrame = Server<'presence'>;
export type GroupFrame = Server<'group'>;
/** A group's media library changed (docs/protocol.md, `group_media`). */
export type GroupMediaFrame = Server<'group_media'>;
/** A group's whiteboard changed (docs/protocol.md, `board`). */
export type BoardFrame = Server<'board'>;
export type OkFrame = Server<'ok'>;
export type PongFrame = Server<'pong'>;
export type CallJoinedFrame = Server<'call_joined'>;
export type CallPublishedFrame = Server<'call_published'>;
export type CallSdpFrame = Server<'call_sdp'>;
export type CallOfferFrame = Server<'call_offer'>;
export type CallEventFrame = Server<'call_event'>;
/** Answer to `call_record`: the recording state. */
export type CallRecordingFrame = Server<'call_recording'>;
/** Answer to `call_audience`: a page of a live call's audience. */
export type CallAudienceFrame = Server<'call_audience'>;
export type CallDialingFrame = Server<'call_dialing'>;
export type CallIncomingFrame = Server<'call_incoming'>;
export type CallStatusFrame = Server<'call_status'>;
export type ErrorFrame = Server<'error'>;
/** The answer type of each request frame (errors arrive as `ErrorFrame`). */
export interface ResponseMap {
    send: SentFrame;
    edit: OkFrame;
    delete: OkFrame;
    read: OkFrame;
    ping: PongFrame;
    call_join: CallJoinedFrame;
    call_publish: CallPublishedFrame;
    call_unpublish: CallSdpFrame;
    call_restart: CallSdpFrame;
    call_subscribe: OkFrame;
    call_unsubscribe: OkFrame;
    call_answer: OkFrame;
    call_mute: OkFrame;
    call_admin: OkFrame;
    call_record: CallRecordingFrame;
    call_hand: OkFrame;
    call_audience: CallAudienceFrame;
    call_leave: OkFrame;
    call_dial: CallDialingFrame;
    call_accept: OkFrame;
    call_decline: OkFrame;
    call_hangup: OkFrame;
}
/** The successful answer to request frame `F`. */
export type ResponseFor<F extends RequestFrame> = ResponseMap[F['type']];
/** Whether `t` is the `type` of a server frame this SDK knows. */
export declare function isServerFrameType(t: unknown): t is ServerFrame['type'];
/**
 * Parses one server text frame. Throws `TypeError` when it is not a JSON
 * object of a known `type` with its required fields. Unknown extra fields are
 * kept (the server may add fields).
 */
export declare function parseServerFrame(text: string): ServerFrame;
/** The `rid` of a server frame, if it has one. */
export declare function frameRid(f: ServerFrame): string | undefined;

// ---- errors
/**
 * Codes of errors the SDK itself raises (not sent by the server):
 * `disconnected` (the connection dropped while the request was pending),
 * `closed` (the client was closed), `timeout` (no answer in time),
 * `network` (a REST request failed to reach the server), `webrtc` (a
 * peer-connection operation failed), `state` (the operation is not possible
 * in the current state, e.g. not in a call).
 */
export type LocalErrorCode = 'disconnected' | 'closed' | 'timeout' | 'network' | 'webrtc' | 'state';
/** Any error code a `ChorusError` carries. */
export type ChorusErrorCode = ErrorCode | LocalErrorCode;
/**
 * The one error type the SDK rejects with: a server `error` frame or REST
 * error body (`code` from the server's list), or a local failure.
 */
export declare class ChorusError extends Error {
    /** Stable machine-readable code. */
    readonly code: ChorusErrorCode;
    /** HTTP status, for REST errors. */
    readonly httpStatus?: number;
    /** For a failed `send`: the client message id. */
    readonly id?: string;
    /** For a failed `send`: the Mesibo message status (≥ 0x80). */
    readonly status?: number;
    constructor(code: ChorusErrorCode, message: string, extra?: {
        httpStatus?: number;
        id?: string;
        status?: number;
    });
    /** The error of a server `error` frame. */
    static fromFrame(f: ErrorFrame): ChorusError;
}

// ---- emitter
/**
 * A small typed event emitter. `E` maps event names to the payload type.
 * Listener exceptions are caught and reported with `console.error` so one
 * faulty listener never breaks the protocol handling.
 */
export type Listener<T> = (event: T) => void;
export declare class Emitter<E extends object> {
    private listeners;
    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof E>(name: K, fn: Listener<E[K]>): () => void;
    /** Adds a listener called at most once. */
    once<K extends keyof E>(name: K, fn: Listener<E[K]>): () => void;
    /** Removes a listener. */
    off<K extends keyof E>(name: K, fn: Listener<E[K]>): void;
    /** Removes every listener (of one event, or of all). */
    removeAllListeners(name?: keyof E): void;
    protected emit<K extends keyof E>(name: K, event: E[K]): void;
}

// ---- rest
/** Answer to `POST /v1/auth/code`. */
export interface CodeSent {
    /** Seconds until the code expires. */
    expires_in: number;
}
/** Answer to `POST /v1/auth/verify`: a new access token. */
export interface LoginSession {
    token: string;
    /** Expiry, ms since the Unix epoch. */
    expires_at: number;
    user: SessionUser;
}
/** Permissions of one member (Mesibo member and admin flags). */
export interface Membership {
    flags: number;
    admin_flags: number;
}
/** A group as its members see it. */
export interface Group {
    gid: number;
    name: string;
    flags: number;
    call_flags: number;
    video_resolution: number;
    call_duration: number;
    /** Calls are live streams: members who may publish are on stage, the others watch as an audience. */
    live?: boolean;
    /** Calls are recorded from their first join, for the owner (`auto_record`). */
    auto_record?: boolean;
    owner: string;
    created_at: number;
    membership?: Membership;
}
/** A join code carrying a permission set. */
/** A group's whiteboard (`GET /v1/groups/{gid}/board`). */
export interface Board {
    gid: number;
    /** 0 for a board never written, then +1 per change. */
    version: number;
    objs: Record<string, unknown>[];
    count: number;
    /** Size of the stored board (compact JSON text), at most the server's `max_board_bytes`. */
    bytes: number;
    updated_by: string | null;
    updated_at: number;
}
export interface Pin {
    pin: string;
    gid: number;
    flags: number;
    admin_flags: number;
    label: string;
    expires_at: number | null;
    uses_left: number | null;
}
/** Answer to `POST /v1/groups`. */
export interface CreatedGroup {
    group: Group;
    /** Publisher pin first, then view-only, when `room` was set; else empty. */
    pins: Pin[];
}
/** A member in a listing. */
export interface Member {
    address: string;
    name: string;
    flags: number;
    admin_flags: number;
}
/** Group settings (`PATCH /v1/groups/{gid}`); every field optional. */
export interface GroupSettings {
    name?: string;
    flags?: number;
    call_flags?: number;
    video_resolution?: number;
    call_duration?: number;
    /** Live stream mode (a call in progress keeps its mode until it ends). */
    live?: boolean;
    /**
     * Record every call of the group from its first join, for the owner (a call in progress is
     * not affected; an admin may still stop its recording).
     */
    auto_record?: boolean;
}
/** `POST /v1/groups`. */
export interface CreateGroupOptions extends GroupSettings {
    name: string;
    /** Also create a room's publisher and view-only pins. */
    room?: boolean;
}
/** `POST /v1/groups/{gid}/pins`. */
export interface CreatePinOptions {
    flags: number;
    admin_flags?: number;
    label?: string;
    expires_in?: number;
    uses?: number;
}
/**
 * `PATCH /v1/groups/{gid}/pins/{pin}`: what is given changes, the rest is kept; `null` for
 * `expires_in` or `uses` removes the pin's expiry or use limit.
 */
export interface EditPinOptions {
    flags?: number;
    admin_flags?: number;
    label?: string;
    expires_in?: number | null;
    uses?: number | null;
}
/** One page of history, newest last. */
export interface HistoryPage {
    messages: Message[];
    before: number | null;
}
/** One conversation in the caller's list. */
export interface ConversationSummary {
    peer?: string;
    gid?: number;
    name: string;
    last_seq: number;
    read_seq: number;
    unread: number;
    last?: Message;
}
/** Delivery and read watermarks of one member. */
export interface MemberReceipt {
    address: string;
    delivered: number;
    read: number;
}
/** A stored file (`GET /v1/files/{id}`). */
export interface FileInfo {
    id: string;
    /** The sanitised file name. */
    name: string;
    size: number;
    /** The type sniffed from the bytes. */
    type: string;
    created_ms: number;
    /** The uploader's address (`null` if the account is gone). */
    uploader: string | null;
}
/** A signed URL of a file's content (`POST /v1/files/{id}/url`): works without a token until `expires_ms`. */
export interface SignedUrl {
    /** Absolute URL (the server's answer resolved against the server). */
    url: string;
    expires_ms: number;
}
/** One page of a media library, newest first; pass `before` for the next (older) page. */
export interface MediaPage {
    media: MediaEntry[];
    before?: string;
}
/** A `fetch` implementation (the global one by default). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;
/** `https://host` without a trailing slash. */
export declare function normalizeServer(server: string): string;
/** Sends one REST request and decodes the JSON answer, or throws `ChorusError`. */
export declare function restRequest<T>(server: string, method: string, path: string, opts?: {
    token?: string;
    body?: unknown;
    fetch?: FetchLike;
}): Promise<T>;
/** One page of a paged list and the path of the next page (`null` on the last). */
export interface RestPage<T> {
    items: T[];
    next: string | null;
}
/**
 * `GET` of one page of a paged list (`GET /v1/groups`, `GET /v1/groups/{gid}/members`):
 * while more follow, the answer has a `Link: <path>; rel="next"` header.
 */
export declare function restPage<T>(server: string, path: string, opts?: {
    token?: string;
    fetch?: FetchLike;
}): Promise<RestPage<T>>;
/** The `rel="next"` target of a `Link` header, as a path on the same server. */
export declare function nextLink(header: string | null): string | null;
/**
 * Login by emailed (or phoned) code: `requestCode`, then `verify`, which
 * returns the access token for `ChorusClient`.
 *
 * ```ts
 * const auth = new ChorusAuth('https://chat.example.org');
 * await auth.requestCode('ann@example.org');
 * const { token } = await auth.verify('ann@example.org', '123456', 'Ann');
 * ```
 */
export declare class ChorusAuth {
    readonly server: string;
    private readonly fetchImpl;
    constructor(server: string, options?: {
        fetch?: FetchLike;
    });
    /** `POST /v1/auth/code`: mails a 6-digit code. `who` is an email, or `{ phone }`. */
    requestCode(who: string | {
        email: string;
    } | {
        phone: string;
    }): Promise<CodeSent>;
    /** `POST /v1/auth/verify`: exchanges the code for an access token. */
    verify(who: string | {
        email: string;
    } | {
        phone: string;
    }, code: string, name?: string): Promise<LoginSession>;
    /** `POST /v1/auth/logout`: revokes `token` (its sessions are closed with 4001). */
    logout(token: string): Promise<void>;
    /** Static shortcut of `requestCode`. */
    static requestCode(server: string, who: string | {
        email: string;
    } | {
        phone: string;
    }): Promise<CodeSent>;
    /** Static shortcut of `verify`. */
    static verify(server: string, who: string | {
        email: string;
    } | {
        phone: string;
    }, code: string, name?: string): Promise<LoginSession>;
}
/** Authenticated REST calls (the token as a Bearer header). */
export declare class RestClient {
    readonly server: string;
    token: string;
    private readonly fetchImpl;
    constructor(server: string, token: string, options?: {
        fetch?: FetchLike;
    });
    /** Any REST request with this token. */
    request<T>(method: string, path: string, body?: unknown): Promise<T>;
    /** One page of a paged list with this token; `next` is the path of the following page. */
    page<T>(path: string): Promise<RestPage<T>>;
    /** Every item of a paged list: follows the `next` links from `path` to the last page. */
    all<T>(path: string): Promise<T[]>;
    /** `GET /v1/me`. */
    me(): Promise<SessionUser>;
    /** `PATCH /v1/me`. */
    updateMe(name: string): Promise<SessionUser>;
    /** `GET /v1/groups`: every group you belong to, most recently joined first (all pages). */
    groups(): Promise<Group[]>;
    /** `GET /v1/groups/{gid}`. */
    group(gid: number): Promise<Group>;
    /** `POST /v1/groups`. */
    createGroup(options: CreateGroupOptions): Promise<CreatedGroup>;
    /** `PATCH /v1/groups/{gid}`. */
    updateGroup(gid: number, settings: GroupSettings): Promise<Group>;
    /** `DELETE /v1/groups/{gid}`. */
    deleteGroup(gid: number): Promise<void>;
    /** `POST /v1/groups/{gid}/join` with a pin. */
    joinGroup(gid: number, pin: string): Promise<Group>;
    /** `POST /v1/groups/{gid}/leave`. */
    leaveGroup(gid: number): Promise<void>;
    /** `GET /v1/groups/{gid}/members`: every member, in join order (all pages). */
    members(gid: number): Promise<Member[]>;
    /** `POST /v1/groups/{gid}/members`. */
    addMembers(gid: number, addresses: string[], flags?: {
        flags?: number;
        admin_flags?: number;
    }): Promise<void>;
    /** `DELETE /v1/groups/{gid}/members/{address}`. */
    removeMember(gid: number, address: string): Promise<void>;
    /** `GET /v1/groups/{gid}/pins`. */
    pins(gid: number): Promise<Pin[]>;
    /** `POST /v1/groups/{gid}/pins`. */
    createPin(gid: number, options: CreatePinOptions): Promise<Pin>;
    /** `PATCH /v1/groups/{gid}/pins/{pin}`: changes a pin. */
    editPin(gid: number, pin: string, options: EditPinOptions): Promise<Pin>;
    /** `DELETE /v1/groups/{gid}/pins/{pin}`. */
    revokePin(gid: number, pin: string): Promise<void>;
    /** `GET /v1/groups/{gid}/board`. */
    board(gid: number): Promise<Board>;
    /** `PUT /v1/groups/{gid}/board`: replace the board (only if still at `version`, when given). */
    setBoard(gid: number, objs: Record<string, unknown>[], version?: number): Promise<Board>;
    /** `POST /v1/groups/{gid}/board`: add objects at the end of the board. */
    appendBoard(gid: number, objs: Record<string, unknown>[]): Promise<Board>;
    /** `GET /v1/groups/{gid}/media`: one page of the group's media library, newest first. */
    media(gid: number, options?: {
        before?: string;
        limit?: number;
    }): Promise<MediaPage>;
    /** `GET /v1/groups/{gid}/media/{id}`. */
    mediaEntry(gid: number, id: string): Promise<MediaEntry>;
    /** `POST /v1/groups/{gid}/media`: adds a finished upload of yours to the library. */
    addMedia(gid: number, upload: string): Promise<MediaEntry>;
    /** `DELETE /v1/groups/{gid}/media/{id}` (the member who added it, or an admin): the file stays your upload. */
    deleteMedia(gid: number, id: string): Promise<void>;
    /** `GET /v1/files/{id}`. */
    fileInfo(id: string): Promise<FileInfo>;
    /** `POST /v1/files/{id}/url`: a signed URL for `<video src>`, `<img src>` or a download link. */
    fileUrl(id: string): Promise<SignedUrl>;
    /** `DELETE /v1/uploads/{id}`: deletes your upload and its bytes (and the file from every library). */
    deleteUpload(id: string): Promise<void>;
    /**
     * The bytes of a server path read with the token (a file's `/v1/files/{id}/content`, a
     * library thumbnail, a chat file's `url`), as a `Blob`.
     */
    blob(path: string): Promise<Blob>;
    /** History of a conversation, newest last (`before`: a `seq` to page backwards). */
    history(conv: Conversation, options?: {
        before?: number;
        limit?: number;
    }): Promise<HistoryPage>;
    /** Every member's delivered/read watermarks in a conversation. */
    receipts(conv: Conversation): Promise<MemberReceipt[]>;
    /** `GET /v1/conversations`, most recently active first. */
    conversations(): Promise<ConversationSummary[]>;
}
/**
 * The stored file's id a message's file reference names (`upload`, or a `url` of
 * `/v1/files/{id}/content` on this server), or null for a link elsewhere or inline bytes.
 */
export declare function fileIdOf(ref: {
    url?: string;
    upload?: string;
} | undefined | null): string | null;

// ---- upload
/**
 * Resumable uploads over tus 1.0 (docs/protocol.md section 16.1): progress, pause, resume,
 * cancel, and resume after a broken connection from the offset the server reports.
 *
 * A small tus client of our own rather than tus-js-client: the server speaks a fixed subset
 * (core, creation, termination), and this is ~250 lines with no dependencies in a bundle that
 * the Mesibo layer shares, where tus-js-client would bring its own base64, URL and throttle
 * packages. Any tus client works against the server all the same.
 *
 * ```ts
 * const up = client.upload(file);               // starts at once
 * up.on('progress', (p) => bar.value = p.sent / p.total);
 * pauseButton.onclick = () => up.pause();       // later: up.resume()
 * const id = await up.done;                     // the file's id (/v1/files/{id})
 * ```
 *
 * @module upload
 */


/** One HTTP request of the upload. `onProgress` gets the body bytes sent so far. */
export interface UploadRequest {
    method: 'POST' | 'HEAD' | 'PATCH' | 'DELETE';
    url: string;
    headers: Record<string, string>;
    body?: Blob;
    onProgress?: (sent: number) => void;
    signal: AbortSignal;
}
/** Its answer: the status, a header reader and the body text. */
export interface UploadResponse {
    status: number;
    header(name: string): string | null;
    text: string;
}
/**
 * Sends one request. Rejects when the request did not complete (network error, abort).
 * The browser default is XMLHttpRequest (it reports upload progress; fetch cannot), else fetch.
 */
export type UploadTransport = (req: UploadRequest) => Promise<UploadResponse>;
/** Options of an upload. */
export interface UploadOptions {
    /** File name sent as tus `filename` metadata (default: the `File`'s name, else `file`). */
    name?: string;
    /** Bytes per PATCH (default 16 MiB). Progress is reported within a PATCH too where the transport can. */
    chunkSize?: number;
    /** Waits (ms) before each retry after a broken request; when they run out the upload fails. Default `[0, 1000, 3000, 5000, 10000]`. */
    retryDelays?: number[];
    /** Continue an earlier upload of the same bytes (its id), e.g. after a page reload: asks the server for its offset first. */
    id?: string;
    /** Request implementation (default: XMLHttpRequest in browsers, else `fetch`). */
    transport?: UploadTransport;
}
/** Where an upload is. */
export type UploadState = 'uploading' | 'paused' | 'done' | 'failed' | 'cancelled';
/** Payload of the `progress` event. */
export interface UploadProgress {
    /** Bytes sent (the server's offset plus what is on the way). */
    sent: number;
    /** The file's size. */
    total: number;
}
/** Events of `Upload`. */
export interface UploadEvents {
    progress: UploadProgress;
    state: UploadState;
}
/** Base64 of a string's UTF-8 bytes (tus `Upload-Metadata` values). */
export declare function metadataValue(s: string): string;
/** A transport over `fetch` (no progress within a request). */
export declare function fetchTransport(f: FetchLike): UploadTransport;
/** A transport over XMLHttpRequest: reports upload progress as bytes leave. */
export declare function xhrTransport(): UploadTransport;
/**
 * One file going up by tus. It starts when created (`ChorusClient.upload`); `done` resolves with
 * the upload id — the file's id once finished — or rejects with `ChorusError` (a refusal such as
 * `too_large` or `forbidden` for a quota, `network` when retries ran out, `state` when cancelled).
 */
export declare class Upload extends Emitter<UploadEvents> {
    private readonly server;
    private readonly token;
    readonly file: Blob;
    readonly name: string;
    /** The upload's id, once the server created it. */
    id: string | null;
    /** Bytes the server has confirmed. */
    offset: number;
    /** Resolves with the id when every byte is stored. */
    readonly done: Promise<string>;
    private _state;
    private readonly chunkSize;
    private readonly retryDelays;
    private readonly transport;
    private abort;
    private settle;
    private running;
    constructor(server: string, token: () => string, file: Blob, options?: UploadOptions & {
        fetch?: FetchLike;
    });
    get state(): UploadState;
    /** Stops sending; the server keeps what arrived. `resume()` continues from there. */
    pause(): void;
    /** Continues a paused upload from the server's offset. */
    resume(): void;
    /** Stops and deletes the upload and its bytes on the server (tus termination). */
    cancel(): Promise<void>;
    private setState;
    private url;
    private send;
    private progress;
    /** Creates the upload if needed, then PATCHes chunks; after a broken request asks HEAD and goes on. */
    private run;
    private create;
    private head;
    private patch;
    private finish;
    private fail;
}

// ---- call
/**
 * Group calls over the Chorus SFU (docs/protocol.md §15).
 *
 * A `GroupCall` uses two RTCPeerConnections, each negotiated in one
 * direction: the **publish** connection is offered by the client
 * (`call_publish` / `call_unpublish`), the **subscribe** connection is
 * offered by the server (`call_offer`, answered with `call_answer`), and each
 * server offer says which media line carries whose stream.
 *
 * Network trouble (docs/protocol.md §15.10) is handled here: a connection
 * ICE-disconnected for 2 s is restarted (`call_restart`), and a call lost
 * with the WebSocket (or `left`, reason `lost`) is joined again by itself
 * (`reconnecting` / `reconnected` events) unless `recover: false`.
 *
 * @module call
 */




/** The simulcast encodings of a camera, lowest resolution first (RIDs `q`, `h`, `f`). */
export declare const SIMULCAST_ENCODINGS: readonly RTCRtpEncodingParameters[];
/** What to receive of a stream. */
export interface SubscribeOptions {
    /** Receive its audio (default true). */
    audio?: boolean;
    /** Receive its video (default true). */
    video?: boolean;
    /** Height the video is shown at, px, for the server's layer choice (`null`/absent: as large as available). */
    height?: number | null;
}
/** What to publish as one stream. */
export interface PublishOptions {
    /** Microphone (or other audio) track. */
    audio?: MediaStreamTrack;
    /** Camera or screen track. */
    video?: MediaStreamTrack;
    /** The video is a shared screen (sent as one encoding). */
    screen?: boolean;
    /** Send the camera as three simulcast layers (default true; only when the room allows simulcast). */
    simulcast?: boolean;
    /** Height of the top layer, px (default: the video track's settings). */
    height?: number;
    /** Media that start muted. */
    muted?: Partial<CallMute>;
}
/** Options of `ChorusClient.joinCall`. */
export interface GroupCallOptions {
    /** Subscribe to every stream others publish (with these options when an object). */
    autoSubscribe?: boolean | SubscribeOptions;
    /**
     * Configuration of both peer connections. No STUN is needed (the server is ICE-lite); the TURN
     * servers of `call_joined.ice_servers` (when the server runs a relay) are added to any
     * `iceServers` given here. `iceTransportPolicy: 'relay'` forces media through them.
     */
    rtcConfig?: RTCConfiguration;
    /** RTCPeerConnection implementation (default: the global one). */
    RTCPeerConnection?: typeof RTCPeerConnection;
    /**
     * Recover from network trouble by joining again (default true): when the WebSocket drops, or
     * the server takes you out with reason `lost` (or `slow`), the call emits `reconnecting`, joins
     * again once it can (after the WebSocket's `synced`), republishes your streams (same sids,
     * tracks and options) and resubscribes to what you received, then emits `reconnected`.
     * `false`: the call ends with `left` (reason `lost`) as it did before. ICE restarts happen
     * either way.
     */
    recover?: boolean;
}
/** Where a `GroupCall` stands: in the call, joining it again after network trouble, or out. */
export type GroupCallState = 'joined' | 'reconnecting' | 'left';
/** Options of `GroupCall.audience`: which page of a live call's audience. */
export interface AudienceOptions {
    /** The `next` cursor of the previous page (absent: the first page). */
    after?: number;
    /** At most this many (1–100; absent: 100). */
    limit?: number;
    /** Only those with a hand raised. */
    hands?: boolean;
}
/** A page of a live call's audience (`GroupCall.audience`). */
export interface AudiencePage {
    /** Audience members in the call now. */
    count: number;
    /** This page, in the order they joined. */
    members: CallAudienceMember[];
    /** The cursor of the next page (`after`), absent on the last. */
    next?: number;
}
/** Payload of the `hand` event: an audience member raised or lowered a hand (you, or someone a host sees). */
export interface HandEvent {
    address: string;
    name: string;
    raised: boolean;
}
/** Payload of the `track` event. */
export interface TrackEvent {
    track: MediaStreamTrack;
    /** Publisher address. */
    publisher: string;
    sid: number;
    kind: MediaKind;
    /** The media line of the subscribe connection. */
    mid: string;
    stream: RemoteStream;
}
/** Events of `GroupCall`. */
export interface GroupCallEvents {
    'participant-joined': CallParticipant;
    /** Permissions or admin mute changed (yours too: see `permissions`). */
    'participant-updated': CallParticipant;
    'participant-left': {
        participant: CallParticipant;
        reason: CallLeaveReason;
        by?: string;
    };
    'stream-published': RemoteStream;
    /** A stream ended; `local` when it is one of yours (e.g. hung up by an admin). */
    'stream-unpublished': {
        address: string;
        sid: number;
        reason: StreamEndReason;
        local: boolean;
        stream: RemoteStream | LocalStream | null;
    };
    track: TrackEvent;
    /** A media line stopped carrying the track (unsubscribed, stream ended). */
    'track-removed': TrackEvent;
    talking: {
        address: string;
        talking: boolean;
    };
    /** Most recent speaker first. */
    speakers: string[];
    muted: {
        address: string;
        sid: number;
        muted: CallMute;
    };
    /** The layer you receive of a stream changed (`null`: paused for lack of bandwidth). */
    layer: {
        address: string;
        sid: number;
        layer: number | null;
    };
    /** Which simulcast layers of your stream anyone receives (already applied to the encodings). */
    layers: {
        sid: number;
        active: boolean[];
    };
    /** Someone started or stopped receiving one of your streams. */
    subscriber: {
        address: string;
        sid: number;
        joined: boolean;
    };
    /** The call's recording started or stopped (`reason` says why it stopped). */
    recording: CallRecording;
    /** Live mode: the audience count changed (see `audienceCount`). */
    audience: number;
    /** Live mode: a hand went up or down: yours (`handRaised`), or, for hosts, an audience member's (`hands`). */
    hand: HandEvent;
    /**
     * Live mode: you went on stage (a host brought you: you may publish now) or back to the
     * audience (your streams have ended). See `onStage`.
     */
    stage: {
        onStage: boolean;
    };
    /** You are out of the call. */
    left: {
        reason: CallLeaveReason;
        by?: string;
    };
    /**
     * The call was lost (`reason`: `lost` when the WebSocket dropped or the server said `lost`,
     * `slow` when it fell behind) and is being joined again (`state` is `reconnecting`). Your
     * streams stopped sending and every received track ended (`track-removed`); the
     * `RemoteStream`s, `LocalStream`s and subscriptions are kept for the rejoin.
     */
    reconnecting: {
        reason: CallLeaveReason;
    };
    /**
     * Joined again after `reconnecting`: the roster is the server's new one (participants and
     * streams that went away meanwhile got `participant-left` / `stream-unpublished`, new ones
     * `participant-joined` / `stream-published`), your streams are published again (`republished`
     * sids; those refused got a local `stream-unpublished`) and your subscriptions resubscribed
     * (their new tracks come as `track` events on the same `RemoteStream`s).
     */
    reconnected: {
        republished: number[];
    };
    /** An ICE restart (`call_restart`) was answered by the server (automatic, or `restartIce()`). */
    'ice-restart': {
        automatic: boolean;
    };
    error: ChorusError;
    /** Every `call_event` frame, raw. */
    event: CallEventFrame;
}
/** Events of a `RemoteStream`. */
export interface RemoteStreamEvents {
    track: TrackEvent;
    'track-removed': TrackEvent;
    muted: CallMute;
    layer: number | null;
    ended: StreamEndReason;
}
/**
 * Another participant's stream `(address, sid)`. Subscribe to receive it,
 * then `attach()` a `<video>` element: the element's size is observed and
 * sent as the wanted height (adaptive stream).
 */
export declare class RemoteStream extends Emitter<RemoteStreamEvents> {
    private readonly call;
    readonly address: string;
    readonly sid: number;
    /** The stream as last announced (mute state included). */
    info: CallStream;
    /** Received tracks. */
    readonly tracks: {
        audio: MediaStreamTrack | null;
        video: MediaStreamTrack | null;
    };
    /** The received layer (`null`: unknown or paused). */
    layer: number | null;
    /** What was asked for, while subscribed. */
    subscription: SubscribeOptions | null;
    /** Set when the stream has ended. */
    ended: StreamEndReason | null;
    private _mediaStream;
    private attached;
    private lastHeight;
    private pendingHeight;
    /** @internal */
    constructor(call: GroupCall, address: string, info: CallStream);
    /** The publisher's display name (from the roster). */
    get name(): string;
    /** True while subscribed. */
    get subscribed(): boolean;
    /** A MediaStream with the received tracks (null where `MediaStream` does not exist). */
    get mediaStream(): MediaStream | null;
    /** Starts (or changes) receiving this stream. */
    subscribe(options?: SubscribeOptions): Promise<void>;
    /** Stops receiving it. */
    unsubscribe(): Promise<void>;
    /** Changes the wanted video height (keeps audio/video choice). */
    setHeight(height: number | null): Promise<void>;
    /**
     * Shows the stream in a media element (sets `srcObject`, autoplay) and,
     * for video, observes its size and sends the displayed height (in device
     * pixels, debounced) so the server forwards a fitting layer. Returns a
     * function that detaches it.
     */
    attach(el: HTMLMediaElement, options?: {
        debounce?: number;
        adaptive?: boolean;
    }): () => void;
    /** Detaches one element (or all). */
    detach(el?: HTMLMediaElement): void;
    private wantHeight;
    /** @internal */
    _setTrack(ev: TrackEvent | null, kind: MediaKind, removed?: TrackEvent): void;
    /** @internal */
    _muted(m: CallMute): void;
    /** @internal */
    _layer(l: number | null): void;
    /** @internal */
    _end(reason: StreamEndReason): void;
    /** @internal */
    _subscribed(s: SubscribeOptions | null): void;
}
/** One of your published streams. */
export declare class LocalStream {
    private readonly call;
    readonly sid: number;
    /** The stream as granted by the server. */
    info: CallStream;
    readonly audioTrack: MediaStreamTrack | null;
    readonly videoTrack: MediaStreamTrack | null;
    /** The last `layers` state (one flag per simulcast encoding), if any. */
    activeLayers: boolean[] | null;
    private _audioTransceiver;
    private _videoTransceiver;
    /** @internal How it was published (republished the same way after a rejoin). */
    readonly _options: PublishOptions;
    /** @internal */
    constructor(call: GroupCall, info: CallStream, audio: RTCRtpTransceiver | null, video: RTCRtpTransceiver | null, options: PublishOptions);
    /** The sendonly audio transceiver on the publish connection (a new one after a rejoin). */
    get audioTransceiver(): RTCRtpTransceiver | null;
    /** The sendonly video transceiver on the publish connection (a new one after a rejoin). */
    get videoTransceiver(): RTCRtpTransceiver | null;
    /** @internal Published again (after a rejoin) on new transceivers. */
    _rebind(info: CallStream, audio: RTCRtpTransceiver | null, video: RTCRtpTransceiver | null): void;
    /** Mutes or unmutes (absent: unchanged). */
    mute(m: Partial<CallMute>): Promise<void>;
    /** Stops publishing it. */
    unpublish(): Promise<void>;
}
/**
 * The call of one group, from `ChorusClient.joinCall(gid)`. Keeps the roster
 * (`participants`), others' streams (`streams`), your published streams
 * (`published`), and runs both peer connections.
 *
 * ```ts
 * const call = await client.joinCall(gid, { autoSubscribe: true });
 * call.on('track', ({ stream }) => stream.attach(videoElementFor(stream)));
 * const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
 * await call.publish(0, { audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0] });
 * ```
 */
export declare class GroupCall extends Emitter<GroupCallEvents> {
    readonly gid: number;
    /** Your address in the call. */
    readonly address: string;
    /** What you may do (updated by `updated` events about you). */
    permissions: CallPermissions;
    /** Your admin-mute state. */
    adminMuted: CallMute;
    /** The call's settings (the server's new ones after a rejoin). */
    settings: CallSettings;
    /** Everyone in the call (you included), by address. */
    readonly participants: Map<string, CallParticipant>;
    /** Others' streams, by `sid:address` (see `stream()`). */
    readonly streams: Map<string, RemoteStream>;
    /** Your published streams, by sid. */
    readonly published: Map<number, LocalStream>;
    /** Active-speaker order, most recent first. */
    speakers: string[];
    /** Set once you are out of the call. */
    leftReason: CallLeaveReason | null;
    /** Whether the call is being recorded, by whom and since when (known before any media flows). */
    recording: CallRecording;
    /**
     * Live mode: how many are in the audience (from `call_joined`, then `audience` events, at most
     * one a second; 0 when the call is not live). The audience is not in `participants`.
     */
    audienceCount: number;
    /** Live mode: your hand is raised (audience only; see `raiseHand`). */
    handRaised: boolean;
    /**
     * Live mode, for hosts (call control): the audience members with a hand raised, address →
     * name, oldest first (from `hand` events, and the raised hands of `audience()` pages: ask for
     * `audience({ hands: true })` after joining to learn of hands raised before).
     */
    readonly hands: Map<string, string>;
    private readonly client;
    private readonly options;
    private pubPc;
    private subPc;
    private pubChain;
    private subChain;
    private paramChain;
    private midMap;
    private bindings;
    private iceServers;
    private _state;
    /** Why the call is being joined again (while `reconnecting`). */
    private lostReason;
    /** A `call_join` of the rejoin is on its way; call frames wait in `rejoinBuffer`. */
    private rejoining;
    private rejoinBuffer;
    private rejoinRetries;
    private rejoinTimer;
    /** ICE trouble: per connection, the 2 s timer since it went disconnected/failed. */
    private iceTimers;
    private restarting;
    private lastRestart;
    private restartTimer;
    /** @internal Use `ChorusClient.joinCall`. */
    constructor(client: ChorusClient, joined: CallJoinedFrame, options?: GroupCallOptions);
    /** True until you left (or were removed, or the call was lost and not recovered); also while `reconnecting`. */
    get active(): boolean;
    /**
     * `joined`; `reconnecting` between the `reconnecting` and `reconnected` events (requests such
     * as `publish` fail with `disconnected` meanwhile); `left` once out of the call (`left` event).
     */
    get state(): GroupCallState;
    /** The call is a live stream: those who may publish are on stage, the others are the audience. */
    get live(): boolean;
    /** Live mode: you are on stage (you may publish); false in the audience and in calls that are not live. */
    get onStage(): boolean;
    /** Others' stream `(address, sid)`, if known. */
    stream(address: string, sid: number): RemoteStream | undefined;
    /** The publish and subscribe peer connections (null until used). */
    get peerConnections(): {
        publish: RTCPeerConnection | null;
        subscribe: RTCPeerConnection | null;
    };
    /** @internal Called once after construction. */
    _start(): void;
    private newPc;
    private getPubPc;
    private getSubPc;
    private serial;
    private ensureActive;
    private watchIce;
    private iceChanged;
    /** A restart because of trouble: one at a time, at most one per 5 s. */
    private autoRestart;
    /** Either connection is ICE-disconnected or failed (or, with `checking`, still checking). */
    private iceTrouble;
    /**
     * Restarts ICE on both connections now (docs/protocol.md §15.10): sends `call_restart` with a
     * publish offer carrying new ICE credentials (none when you publish nothing) and applies the
     * answer; the subscribe connection's new offer follows as a `call_offer`, answered by itself.
     * Done by itself when a connection has been ICE-disconnected or failed for 2 s (and again while
     * one is not connected 5 s after the answer, at most once per 5 s). Joins a restart in
     * progress; waits for a publish or unpublish negotiation in flight. Resolves once the server
     * answered (`ice-restart` event).
     */
    restartIce(): Promise<void>;
    private restart;
    private doRestart;
    private stopIceWatch;
    /**
     * Publishes stream `sid` (0 the camera, 1.. screens): adds sendonly
     * transceivers, offers, sends `call_publish` with their mids and applies
     * the answer. A camera video is sent as simulcast `q`/`h`/`f` when the
     * room allows it.
     */
    publish(sid: number, options: PublishOptions): Promise<LocalStream>;
    /** Offers and sends `call_publish` (in the `pub` chain); `again`: the stream republished after a rejoin. */
    private publishNow;
    /** Stops publishing stream `sid` (renegotiates the publish connection). */
    unpublish(sid: number): Promise<void>;
    /** Mutes or unmutes your stream `sid` (also sets the local tracks' `enabled`). */
    mute(sid: number, m: Partial<CallMute>): Promise<void>;
    /** An admin action: `mute`/`unmute` (address, audio/video), `mute_all`/`unmute_all`, `hangup` (address, sid), `remove` (address). */
    admin(action: AdminAction, target?: {
        address?: string;
        sid?: number;
        audio?: boolean;
        video?: boolean;
    }): Promise<void>;
    /**
     * Starts or stops recording the call (needs call control, as an admin). Starting a call that
     * records already changes nothing; stopping one that does not fails with `conflict`. Resolves
     * with the recording state; everyone in the call also gets a `recording` event. When it stops,
     * each participant's file enters the group's media library.
     */
    record(action: RecordAction): Promise<CallRecording>;
    /**
     * Live mode: raises (or lowers) your hand; the hosts with call control see it. Only the
     * audience raises hands (on stage: `conflict`). Being brought on stage lowers it.
     */
    raiseHand(raised?: boolean): Promise<void>;
    /**
     * Live mode: a page of the audience, in the order they joined (needs the list permission;
     * `conflict` when the call is not live). Pass the page's `next` as `after` for the next one.
     * Raised hands it lists join `hands` (how a host who joins late learns of them).
     */
    audience(options?: AudienceOptions): Promise<AudiencePage>;
    /**
     * Live mode, for hosts (call control): brings an audience member on stage: it may publish for
     * this call, and everyone sees it join (`participant-joined`).
     */
    bringOnStage(address: string): Promise<void>;
    /**
     * Live mode, for hosts: sends a member brought on stage back to the audience: its streams end
     * and it leaves the roster (`participant-left` with reason `off_stage`).
     */
    sendBackstage(address: string): Promise<void>;
    private setAudienceCount;
    private setHand;
    /** Your publish right changed in a live call: on stage, or back in the audience. */
    private stageChanged;
    private applyLayers;
    /** Receives `address`'s stream `sid` (send again, or `setHeight`, to change it). */
    subscribe(address: string, sid: number, options?: SubscribeOptions): Promise<void>;
    /** Changes the height a subscribed video is shown at (the server picks the layer). */
    setHeight(address: string, sid: number, height: number | null): Promise<void>;
    /** Stops receiving `address`'s stream `sid`. */
    unsubscribe(address: string, sid: number): Promise<void>;
    private autoSubscribe;
    private onOffer;
    private answerOffer;
    /** Binds every listed media line to its track, unbinds lines no longer listed. */
    private reconcile;
    private bind;
    private unbind;
    /** Leaves the call. */
    leave(): Promise<void>;
    /** @internal Ends the call locally: closes both connections and emits `left` once. */
    _end(reason: CallLeaveReason, by?: string): void;
    private closePcs;
    /**
     * @internal The WebSocket dropped. Returns true when the call stays (reconnecting, to be joined
     * again after the next `synced`), false when it ended (`recover: false`).
     */
    _connectionLost(): boolean;
    /** @internal The WebSocket is back (`synced`): join again if the call was lost. */
    _connectionBack(): void;
    /** Out of the call for now: media stops, what to restore is kept. */
    private suspend;
    private rejoin;
    /** The roster of a `call_joined` after a rejoin, told as the changes since before. */
    private applyJoined;
    /** @internal */
    _reportError(e: unknown): void;
    /** @internal Routes `call_offer` and `call_event` frames. */
    _handle(f: CallOfferFrame | CallEventFrame): void;
    private dropOwnStream;
    private onEvent;
    private addStream;
    private removeStream;
}

// ---- direct
/**
 * 1:1 calls (docs/protocol.md §17): ringing on every session of the callee, answer, decline,
 * hang up; the media of an answered call through the SFU as a two-party `GroupCall`.
 *
 * ```ts
 * // Caller
 * const call = await client.call('uB', { video: true });
 * call.on('status', async (s) => {
 *   if (s.status === 'answered') {
 *     const media = await call.join();
 *     await media.publish(0, { audio: mic, video: camera });
 *   }
 * });
 * // Callee
 * client.on('incoming-call', async (call) => {
 *   const media = await call.answer(); // or call.decline()
 *   await media.publish(0, { audio: mic, video: camera });
 * });
 * ```
 *
 * `call.on('status')` reports every change with Mesibo's call status number in `code`; once
 * `call.ended` is true the call is over (and its media room closed by the server).
 *
 * @module direct
 */




/** Events of a `DirectCall`. */
export interface DirectCallEvents {
    /** The call changed (`ringing`, `answered`, or how it ended). */
    status: CallStatusFrame;
    /** The call is over; the frame says how. */
    ended: CallStatusFrame;
}
/** Whether a 1:1 call in `status` is over. */
export declare function directCallEnded(status: DirectCallStatus): boolean;
/** A 1:1 call, placed (`client.call`) or ringing (`incoming-call`). */
export declare class DirectCall extends Emitter<DirectCallEvents> {
    private readonly client;
    /** The call id. */
    readonly id: number;
    /** The other side's address. */
    readonly peer: string;
    /** The caller's display name (incoming calls; the address for placed ones). */
    readonly name: string;
    /** A video call. */
    readonly video: boolean;
    /** Ringing on this session (`true`) or placed from it. */
    readonly incoming: boolean;
    private _status;
    private _code;
    private _by;
    private _media;
    private _heard;
    /** @internal */
    constructor(client: ChorusClient, init: {
        id: number;
        peer: string;
        name: string;
        video: boolean;
        incoming: boolean;
    });
    /** Where the call stands. */
    get status(): DirectCallStatus;
    /** Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`). */
    get code(): number;
    /** Who hung up (`ended`) or whose session was lost (`lost`). */
    get by(): string | undefined;
    /** A `call_status` of this call has arrived (before it, `status` is the assumed `ringing`). */
    get heard(): boolean;
    /** The call is over. */
    get ended(): boolean;
    /** The call's media room, once joined. */
    get media(): GroupCall | null;
    /** The `gid` of the call's media room (`-id`). */
    get room(): number;
    /**
     * Answers a ringing incoming call from this session and joins its media room; the callee's
     * other sessions stop ringing. Rejects with `ChorusError` (`not_found`, `conflict`).
     */
    answer(options?: GroupCallOptions): Promise<GroupCall>;
    /** Declines a ringing incoming call. */
    decline(): Promise<void>;
    /** Hangs up (cancels while ringing, declines an incoming one); the media room closes. */
    hangup(): Promise<void>;
    /**
     * Joins the media room of the answered call (the caller after `answered`; `answer()` does it
     * for the callee). Publish and subscribe on the returned `GroupCall`; the other side's streams
     * come as `stream-published` (or pass `autoSubscribe: true`).
     */
    join(options?: GroupCallOptions): Promise<GroupCall>;
    /** @internal Applies a `call_status` frame. */
    _update(f: CallStatusFrame): void;
    /** @internal An incoming call from its `call_incoming` frame. */
    static _incoming(client: ChorusClient, f: CallIncomingFrame): DirectCall;
}

// ---- client
/**
 * `ChorusClient`: one WebSocket session with a Chorus server (messaging,
 * presence, group events and call signaling), with automatic reconnect and
 * resume, plus the REST calls an app needs.
 *
 * @module client
 */







/** The minimal WebSocket surface the client uses (the browser's `WebSocket` fits). */
export interface WebSocketLike {
    readonly readyState: number;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    send(data: string): void;
    close(code?: number, reason?: string): void;
}
/** A WebSocket constructor. */
export type WebSocketFactory = new (url: string) => WebSocketLike;
/** Options of `ChorusClient`. */
export interface ChorusClientOptions {
    /** Server base URL, `https://host[:port]` (`ws(s)://` is derived from it). */
    server: string;
    /** Access token (from `ChorusAuth.verify` or the app backend). */
    token: string;
    /** A resume cursor saved from an earlier session (see the `cursor` event). */
    cursor?: Cursor | null;
    /** Reconnect automatically (default true); delays in ms, doubled with jitter from `minDelay` to `maxDelay`. */
    reconnect?: boolean | {
        minDelay?: number;
        maxDelay?: number;
    };
    /** Interval of the `ping` keepalive in ms (default 25000; 0 disables). A ping unanswered for as long drops the connection. */
    pingInterval?: number;
    /** Timeout of requests in ms (default 20000). Sends are not timed out: they wait in the outbox. */
    requestTimeout?: number;
    /** Send `ack` automatically after messages are emitted (default true). */
    autoAck?: boolean;
    /** WebSocket implementation (default: the global `WebSocket`). */
    WebSocket?: WebSocketFactory;
    /** fetch implementation for REST (default: the global `fetch`). */
    fetch?: FetchLike;
    /** RTCPeerConnection implementation for calls (default: the global one). */
    RTCPeerConnection?: typeof RTCPeerConnection;
}
/** Connection states reported by the `connection` event. */
export type ConnectionState = 'idle' | 'connecting' | 'online' | 'offline' | 'closed' | 'auth_failed';
/** Payload of the `connection` event. */
export interface ConnectionEvent {
    state: ConnectionState;
    /** The WebSocket close code, when the connection closed. */
    code?: number;
    /** Milliseconds until the next reconnect attempt (state `offline`). */
    retryIn?: number;
}
/** What `send` takes: a recipient (`peer` or `gid`) and at least one of `text`, `data`, `file`. */
export interface OutgoingMessage {
    peer?: string;
    gid?: number;
    text?: string;
    data?: unknown;
    file?: FileRef;
    /** App-defined message type. */
    mtype?: number;
    /** Client message id (generated when absent); retries reuse it. */
    id?: string;
}
/** Events of `ChorusClient`. */
export interface ChorusClientEvents {
    connection: ConnectionEvent;
    welcome: WelcomeFrame;
    synced: SyncedFrame;
    message: Message;
    sent: SentFrame;
    /** One of your own messages as the server stored it (after its `sent`): for local caches and UIs. */
    'own-message': Message;
    receipt: ReceiptFrame;
    presence: PresenceFrame;
    group: GroupFrame;
    /** A group's whiteboard changed. */
    board: BoardFrame;
    /** A group's media library changed (an entry added or deleted). */
    group_media: GroupMediaFrame;
    /** The resume cursor moved; persist it to resume after a page reload. */
    cursor: Cursor;
    /** An `error` frame that answers no pending request (e.g. a failed `typing`). */
    error: ChorusError;
    /** A 1:1 call rings on this session: `answer()` or `decline()` it. */
    'incoming-call': DirectCall;
    /** A 1:1 call of yours changed (every session of both users gets these). */
    'call-status': CallStatusFrame;
    /** Every frame received, after parsing (for debugging). */
    frame: ServerFrame;
}
/** A random client message id (UUID when available). */
export declare function newMessageId(): string;
/**
 * A Chorus session. Create it with a server URL and token, listen to events,
 * then `connect()`:
 *
 * ```ts
 * const client = new ChorusClient({ server: 'https://chat.example.org', token });
 * client.on('message', (m) => console.log(m.from, m.text));
 * await client.connect();
 * await client.send({ peer: 'u1234', text: 'hi' });
 * ```
 *
 * The client keeps the resume cursor (highest processed `message.pos`), acks
 * messages, reconnects with backoff after a drop and resumes from the cursor,
 * and resends unanswered sends with their original id after each reconnect.
 */
export declare class ChorusClient extends Emitter<ChorusClientEvents> {
    /** Server base URL. */
    readonly server: string;
    /** REST calls with this client's token. */
    readonly rest: RestClient;
    /** Options as given. */
    readonly options: Readonly<ChorusClientOptions>;
    private ws;
    private serial;
    private _state;
    private _user;
    private _cursor;
    private _synced;
    private stopped;
    private attempts;
    private reconnectTimer;
    private pingTimer;
    private pingOutstanding;
    private ackTimer;
    private ackedPos;
    private ridCounter;
    private pending;
    private outbox;
    private connectWaiters;
    private lastWelcome;
    private _call;
    private joining;
    private callBuffer;
    /** 1:1 calls ringing on this session or placed from it. */
    private readonly direct;
    /** `call_status` frames of calls not known yet, by call id (at most 16 calls). */
    private readonly earlyStatus;
    constructor(options: ChorusClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** Who you are (from the last `welcome`). */
    get user(): SessionUser | null;
    /** Your address (from the last `welcome`). */
    get address(): string | null;
    /** The resume cursor: the store epoch and the highest processed position. */
    get cursor(): Cursor | null;
    /** True between `synced` and the next disconnect. */
    get synced(): boolean;
    /** The call room this session is in (a group's call, or a 1:1 call's media), if any. */
    get groupCall(): GroupCall | null;
    /** Messages waiting for their `sent` answer, by client id. */
    get outboxSize(): number;
    /** The access token. Setting it takes effect at the next (re)connect. */
    get token(): string;
    set token(t: string);
    /**
     * Opens the session (and keeps it open, reconnecting as needed). Resolves
     * with the `welcome` once the backlog is through (`synced`); rejects if the
     * token is refused or `close()` is called first.
     */
    connect(): Promise<WelcomeFrame>;
    /** Closes the session for good (no reconnect). Pending requests and unsent messages are rejected. */
    close(): void;
    /**
     * Where to open the WebSocket: with a fresh single-use ticket from `POST /v1/ws/ticket`,
     * so the access token stays out of URLs (and the logs that keep them). Falls back to
     * `?token=` when no ticket can be had (an older server, or a page on another origin:
     * the server sends no CORS headers); rejects with `unauthorized` when the token is refused.
     */
    private wsUrl;
    private open;
    private openSocket;
    private onClosed;
    private authFailed;
    private scheduleReconnect;
    /**
     * @internal Test hook: drops the WebSocket as a broken network would (closes it and reconnects
     * with the usual backoff). Browsers' offline emulation leaves open WebSockets alone.
     */
    _dropConnection(): void;
    /** No reconnect will come: a call waiting to rejoin ends (`lost`). */
    private endCall;
    /** Ends the current socket's state: pending requests fail, a call waits to rejoin (or ends). */
    private teardown;
    private rejectConnectWaiters;
    private setState;
    private handleFrame;
    private onWelcome;
    private onSynced;
    private onUnsolicitedError;
    private advanceCursor;
    private transmit;
    /**
     * Sends a request frame with a fresh `rid` and resolves with its answer
     * (rejects with `ChorusError` on an `error` answer, a timeout or a drop).
     * Requests need a live session (after `welcome`).
     */
    request<F extends RequestFrame>(frame: F, options?: {
        timeout?: number;
    }): Promise<ResponseFor<F>>;
    /**
     * Sends a message. Resolves with the `sent` answer (possibly
     * `duplicate: true` after a retry). The message waits in the outbox while
     * disconnected and is resent with the same id after each reconnect; rejects
     * with `ChorusError` (with `id` and `status`) when the server refuses it.
     */
    send(msg: OutgoingMessage): Promise<SentFrame>;
    private chainOutbox;
    /** Ids of the messages waiting for `sent`. */
    pendingSends(): string[];
    private transmitSend;
    private flushOutbox;
    private settleSend;
    /** Edits one of your messages (`text`/`data` replace the old ones). */
    edit(mid: number, content: {
        text?: string;
        data?: unknown;
    }): Promise<void>;
    /** Deletes one of your messages (leaves a tombstone). */
    delete(mid: number): Promise<void>;
    /** Marks a conversation read up to and including `seq`. */
    read(to: Conversation & {
        seq: number;
    }): Promise<void>;
    /** Typing started (`on`, default true) or stopped in a conversation. No answer; failures come as `error` events. */
    typing(to: Conversation & {
        on?: boolean;
    }): void;
    /** Sends `ack` for everything processed up to `pos` (default: the cursor). Done automatically unless `autoAck: false`. */
    ack(pos?: number): void;
    private scheduleAck;
    private flushAck;
    /** Round trip to the server; resolves with the time taken in ms. */
    ping(): Promise<number>;
    private startPing;
    /**
     * Joins the call of group `gid` (leaving any call this session is in) and
     * resolves with the `GroupCall` once the server answered `call_joined`.
     */
    joinCall(gid: number, options?: GroupCallOptions): Promise<GroupCall>;
    /**
     * Places a 1:1 call to `address` (docs/protocol.md §17). Resolves with the `DirectCall` once
     * the server placed it; its `status` events follow (`ringing`, then `answered` — join its media
     * with `call.join()` — or how it ended: `busy`, `declined`, `no_answer`, `offline`, …). Rejects
     * with `ChorusError` (`not_found`: no such user; `bad_request`: yourself; `conflict`: you are
     * in a 1:1 call already), its `status` being Mesibo's call status.
     */
    call(address: string, options?: {
        video?: boolean;
    }): Promise<DirectCall>;
    /** The 1:1 calls this session is ringing with or has placed, not yet ended. */
    get directCalls(): DirectCall[];
    private trackDirect;
    private onIncomingCall;
    private onCallStatus;
    private applyCallStatus;
    /** @internal Called by a GroupCall that ended itself. */
    _callEnded(call: GroupCall): void;
    /** `GET /v1/me`. */
    me(): Promise<SessionUser>;
    /** `POST /v1/groups`. */
    createGroup(options: Parameters<RestClient['createGroup']>[0]): Promise<CreatedGroup>;
    /** `POST /v1/groups/{gid}/join`. */
    joinGroup(gid: number, pin: string): Promise<Group>;
    /** `GET /v1/groups/{gid}/members`. */
    members(gid: number): Promise<Member[]>;
    /** `GET /v1/groups/{gid}/board`: the group's whiteboard. */
    board(gid: number): Promise<Board>;
    /** `PUT /v1/groups/{gid}/board`: replace the whiteboard (only if still at `version`, when given). */
    setBoard(gid: number, objs: Record<string, unknown>[], version?: number): Promise<Board>;
    /** `POST /v1/groups/{gid}/board`: add objects to the whiteboard. */
    appendBoard(gid: number, objs: Record<string, unknown>[]): Promise<Board>;
    /** `GET /v1/groups/{gid}/pins`. */
    pins(gid: number): Promise<Pin[]>;
    /** `GET /v1/groups`. */
    groups(): Promise<Group[]>;
    /** `GET /v1/groups/{gid}`. */
    group(gid: number): Promise<Group>;
    /** History of a conversation (REST). */
    history(conv: Conversation, options?: {
        before?: number;
        limit?: number;
    }): Promise<HistoryPage>;
    /**
     * Uploads `file` by tus (docs/protocol.md 16.1), starting at once: listen to `progress`,
     * `pause()`/`resume()`/`cancel()` it, await `done` for the file's id. A broken connection
     * resumes from the server's offset by itself.
     */
    upload(file: Blob, options?: UploadOptions): Upload;
    /**
     * Sends `file` as a chat message to `to` (`{ peer }` or `{ gid }`): uploads it (`onUpload`
     * gets the `Upload` for progress, pause and cancel), then sends a message carrying the stored
     * file, which only the conversation's members can read. Resolves with the upload id and the
     * server's `sent`.
     */
    sendFile(to: Conversation, file: Blob, options?: UploadOptions & {
        text?: string;
        onUpload?: (u: Upload) => void;
        messageId?: string;
    }): Promise<{
        upload: string;
        sent: SentFrame;
    }>;
    /** `GET /v1/groups/{gid}/media`: one page of a group's media library, newest first. */
    media(gid: number, options?: {
        before?: string;
        limit?: number;
    }): Promise<MediaPage>;
    /** `POST /v1/groups/{gid}/media`: adds a finished upload to the library (members get `group_media`). */
    addMedia(gid: number, upload: string): Promise<MediaEntry>;
    /** `DELETE /v1/groups/{gid}/media/{id}`. */
    deleteMedia(gid: number, id: string): Promise<void>;
    /** A signed URL of a stored file to play or show (`<video src>`, `<img src>`): `POST /v1/files/{id}/url`. */
    playUrl(id: string): Promise<SignedUrl>;
}

// ---- cache
/**
 * Local caching in IndexedDB: the messages a client has seen, by conversation, and its resume
 * cursor, so a page that reloads shows its conversations at once (even offline) and resumes the
 * session where it stopped instead of reloading the backlog.
 *
 * ```ts
 * const cache = await MessageCache.open('chorus-ann');          // one database per user
 * const client = new ChorusClient({ server, token, cursor: await cache.cursor() });
 * cache.attach(client);                                           // stores messages and the cursor
 * await client.connect();
 * const recent = await cache.messages({ gid: 1001 }, 50);         // newest first
 * ```
 *
 * Edits and deletions replace the stored message (same `mid`). The cache never deletes on its
 * own; `clear()` empties it (e.g. at logout).
 */


/** A conversation: a 1:1 partner or a group. */
export type CacheConversation = {
    peer: string;
} | {
    gid: number;
};
/** Messages and the resume cursor of one user, in one IndexedDB database. */
export declare class MessageCache {
    private readonly db;
    private constructor();
    /** Opens (or creates) the database `name`. `indexedDB` defaults to the global one. */
    static open(name: string, indexedDB?: IDBFactory): Promise<MessageCache>;
    /** Stores a message (or replaces it: an edit or a deletion) as `self` sees it. */
    put(m: Message, self: string | null): Promise<void>;
    /** Up to `limit` messages of a conversation, newest first; `before` a `seq` to page back. */
    messages(c: CacheConversation, limit?: number, before?: number): Promise<Message[]>;
    /** The saved resume cursor, if any. */
    cursor(): Promise<Cursor | null>;
    /** Saves the resume cursor. */
    setCursor(c: Cursor): Promise<void>;
    /** Keeps the cache in step with `client`: every message it receives or sends, and its cursor.
     * Returns a function that stops it. */
    attach(client: ChorusClient): () => void;
    /** Empties the cache (at logout). */
    clear(): Promise<void>;
    /** Closes the database. */
    close(): void;
}

// ---- index
export declare const VERSION = "0.1.0";
