/**
 * Chorus WebSocket protocol types: JSON text frames tagged by `type`.
 *
 * These mirror `crates/proto/src/ws.rs`, `crates/proto/src/call.rs` and
 * `crates/proto/src/error.rs` field for field; docs/protocol.md is the
 * reference. Optional fields the server omits when absent are `?:`; fields the
 * server always sends are required. Client frames must contain only the listed
 * fields (the server rejects unknown fields), and `hello`, `ack` and `typing`
 * have no `rid`.
 *
 * @module protocol
 */

// ---------------------------------------------------------------- errors

/** Every error code REST and the WebSocket answer with (crates/proto/src/error.rs). */
export const ERROR_CODES = [
  'bad_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'too_large',
  'rate_limited',
  'code_invalid',
  'code_expired',
  'code_locked',
  'pin_invalid',
  'limit_exceeded',
  'method_not_allowed',
  'internal',
] as const;

/** A stable, documented server error code. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Whether `s` is one of the server's error codes. */
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && (ERROR_CODES as readonly string[]).includes(s);
}

/** The JSON body of every REST error. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

// ---------------------------------------------------------------- constants

/** Mesibo message status values (docs/protocol.md §10). */
export const MessageStatus = {
  OUTBOX: 0,
  SENT: 1,
  DELIVERED: 2,
  READ: 3,
  FAILED: 0x80,
  INVALID_DEST: 0x83,
  RETRY_LATER: 0x87,
  NOT_MEMBER: 0x91,
} as const;

/** `presence.presence` values. */
export const Presence = {
  ONLINE: 1,
  OFFLINE: 2,
  TYPING: 3,
  TYPING_CLEARED: 4,
} as const;

/** WebSocket close codes the server uses (docs/protocol.md §3). */
export const CloseCode = {
  /** Outbound queue overflowed: reconnect at once and resume. */
  FELL_BEHIND: 4000,
  /** Token revoked / user deactivated: do not reconnect with the same token. */
  SESSION_ENDED: 4001,
  /** `hello` problems. */
  PROTOCOL_ERROR: 1008,
  /** Frame too large or broken WebSocket data. */
  BAD_FRAME: 1009,
} as const;

// ---------------------------------------------------------------- shared shapes

/** A position in the user's message stream, to resume from after a reconnect. */
export interface Cursor {
  /** Store epoch from `welcome`. */
  epoch: string;
  /** Last processed stream position. */
  pos: number;
}

/** A file attached to a message (uploaded out of band). */
export interface FileRef {
  url: string;
  name?: string;
  mime?: string;
  size?: number;
  /** Mesibo file type (image 1, video 2, audio 3, other 10). */
  filetype?: number;
}

/** The user a session belongs to. */
export interface SessionUser {
  uid: number;
  address: string;
  name: string;
}

/** A stored message as delivered (also the shape of REST history entries). */
export interface Message {
  mid: number;
  id: string;
  from: string;
  /** Recipient address (1:1 messages only). */
  peer?: string;
  /** Group id (group messages only). */
  gid?: number;
  seq: number;
  pos: number;
  ts: number;
  mtype: number;
  text?: string;
  data?: unknown;
  file?: FileRef;
  edited: boolean;
  deleted: boolean;
}

/** What changed in a group. */
export type GroupEvent = 'members_added' | 'members_removed' | 'updated' | 'deleted';

/** A conversation: exactly one of `peer` (1:1) or `gid` (group). */
export type Conversation = { peer: string; gid?: undefined } | { gid: number; peer?: undefined };

// ---------------------------------------------------------------- call shapes

/** What a participant may do in the call. */
export interface CallPermissions {
  publish: boolean;
  subscribe: boolean;
  list: boolean;
  call_control: boolean;
  hangup: boolean;
}

/** The call settings of the group, as enforced by the server. */
export interface CallSettings {
  audio: boolean;
  video: boolean;
  screen: boolean;
  simulcast: boolean;
  /** Tallest video forwarded, px (`null`: no cap). */
  max_height: number | null;
  /** Seconds one participant may stay (`null`: no limit). */
  max_duration_secs: number | null;
  max_streams: number;
}

/** Which media of a stream are muted. */
export interface CallMute {
  audio: boolean;
  video: boolean;
}

/** A published stream. */
export interface CallStream {
  /** `0` the camera, `1..` screens and more. */
  sid: number;
  audio: boolean;
  video: boolean;
  screen: boolean;
  /** Simulcast layers of the video, as granted. */
  layers: number;
  /** Height of the tallest layer as granted. */
  height: number | null;
  /** What its owner muted. */
  muted: CallMute;
}

/** One participant as the roster shows it. */
export interface CallParticipant {
  address: string;
  name: string;
  permissions: CallPermissions;
  /** Media an admin muted on all their streams. */
  admin_muted: CallMute;
  talking: boolean;
  streams: CallStream[];
}

/** Audio or video. */
export type MediaKind = 'audio' | 'video';

/** One media line of the subscribe connection. */
export interface CallTrack {
  mid: string;
  publisher: string;
  sid: number;
  kind: MediaKind;
  /** The codec the line carries, by its SDP name (`opus`, `VP8`, `VP9`, `H264`, `AV1`): the one the publisher sends. */
  codec: string;
}

/** An admin action (`call_admin`). */
export type AdminAction = 'mute' | 'unmute' | 'mute_all' | 'unmute_all' | 'hangup' | 'remove';

/** Why a participant left. */
export type CallLeaveReason = 'left' | 'lost' | 'removed' | 'duration' | 'replaced' | 'not_member' | 'slow';

/** Why a stream ended. */
export type StreamEndReason = 'unpublished' | 'hung_up' | 'owner_left' | 'permission_revoked';

/** Something that happened in the call, tagged by `event`. */
export type CallEvent =
  | { event: 'joined'; participant: CallParticipant }
  | { event: 'updated'; address: string; permissions: CallPermissions; admin_muted: CallMute }
  | { event: 'left'; address: string; reason: CallLeaveReason; by?: string }
  | { event: 'published'; address: string; stream: CallStream }
  | { event: 'muted'; address: string; sid: number; muted: CallMute }
  | { event: 'unpublished'; address: string; sid: number; reason: StreamEndReason }
  | { event: 'talking'; address: string; talking: boolean }
  | { event: 'speakers'; order: string[] }
  | { event: 'subscriber'; address: string; sid: number; joined: boolean }
  | { event: 'layers'; sid: number; active: boolean[] }
  | { event: 'layer'; address: string; sid: number; layer: number | null };

/** The name of a call event. */
export type CallEventName = CallEvent['event'];

// ---------------------------------------------------------------- client frames

export interface HelloFrame {
  type: 'hello';
  resume?: Cursor | null;
}
export interface SendFrame {
  type: 'send';
  rid?: string;
  /** Client message id, 1–64 bytes; retries reuse it. */
  id: string;
  peer?: string;
  gid?: number;
  text?: string;
  data?: unknown;
  file?: FileRef;
  mtype?: number;
}
export interface EditFrame {
  type: 'edit';
  rid?: string;
  mid: number;
  text?: string;
  data?: unknown;
}
export interface DeleteFrame {
  type: 'delete';
  rid?: string;
  mid: number;
}
export interface AckFrame {
  type: 'ack';
  pos: number;
}
export interface ReadFrame {
  type: 'read';
  rid?: string;
  peer?: string;
  gid?: number;
  seq: number;
}
export interface TypingFrame {
  type: 'typing';
  peer?: string;
  gid?: number;
  on: boolean;
}
export interface PingFrame {
  type: 'ping';
  rid?: string;
}
export interface CallJoinFrame {
  type: 'call_join';
  rid?: string;
  gid: number;
}
/** `call_publish` (the body is `PublishRequest` in crates/proto/src/call.rs). */
export interface CallPublishFrame {
  type: 'call_publish';
  rid?: string;
  sid: number;
  audio?: boolean;
  video?: boolean;
  screen?: boolean;
  /** Simulcast RIDs, lowest resolution first; empty for one layer. */
  rids?: string[];
  height?: number | null;
  muted?: CallMute;
  audio_mid?: string | null;
  video_mid?: string | null;
  sdp: string;
}
export interface CallUnpublishFrame {
  type: 'call_unpublish';
  rid?: string;
  sid: number;
  sdp?: string | null;
}
export interface CallSubscribeFrame {
  type: 'call_subscribe';
  rid?: string;
  address: string;
  sid: number;
  audio?: boolean;
  video?: boolean;
  height?: number | null;
}
export interface CallUnsubscribeFrame {
  type: 'call_unsubscribe';
  rid?: string;
  address: string;
  sid: number;
}
export interface CallAnswerFrame {
  type: 'call_answer';
  rid?: string;
  sdp: string;
}
export interface CallMuteFrame {
  type: 'call_mute';
  rid?: string;
  sid: number;
  audio?: boolean | null;
  video?: boolean | null;
}
export interface CallAdminFrame {
  type: 'call_admin';
  rid?: string;
  action: AdminAction;
  address?: string | null;
  sid?: number | null;
  audio?: boolean;
  video?: boolean;
}
export interface CallLeaveFrame {
  type: 'call_leave';
  rid?: string;
}

/** Every frame a client sends. */
export type ClientFrame =
  | HelloFrame
  | SendFrame
  | EditFrame
  | DeleteFrame
  | AckFrame
  | ReadFrame
  | TypingFrame
  | PingFrame
  | CallJoinFrame
  | CallPublishFrame
  | CallUnpublishFrame
  | CallSubscribeFrame
  | CallUnsubscribeFrame
  | CallAnswerFrame
  | CallMuteFrame
  | CallAdminFrame
  | CallLeaveFrame;

/** Client frames that carry a `rid` and get an answer. */
export type RequestFrame = Exclude<ClientFrame, HelloFrame | AckFrame | TypingFrame>;

// ---------------------------------------------------------------- server frames

export interface WelcomeFrame {
  type: 'welcome';
  session: string;
  user: SessionUser;
  epoch: string;
  resumed: boolean;
  /** `epoch_mismatch`, `cursor_ahead` or `gap_too_large` when a cursor was not honoured. */
  reason?: string;
}
export interface SyncedFrame {
  type: 'synced';
  pos: number;
  count: number;
  complete: boolean;
}
export interface SentFrame {
  type: 'sent';
  rid?: string;
  id: string;
  mid: number;
  seq: number;
  pos: number;
  ts: number;
  status: number;
  duplicate: boolean;
}
export type MessageFrame = { type: 'message' } & Message;
export interface ReceiptFrame {
  type: 'receipt';
  peer?: string;
  gid?: number;
  by: string;
  /** 2 delivered, 3 read. */
  status: number;
  seq: number;
}
export interface PresenceFrame {
  type: 'presence';
  from: string;
  peer?: string;
  gid?: number;
  /** 1 online, 2 offline, 3 typing, 4 typing cleared. */
  presence: number;
}
export interface GroupFrame {
  type: 'group';
  gid: number;
  event: GroupEvent;
  /** Omitted when empty. */
  members?: string[];
}
/** A group's whiteboard changed (docs/protocol.md, `board`). */
export interface BoardFrame {
  type: 'board';
  gid: number;
  /** The board's version after this change. */
  version: number;
  /** Who changed it (address). */
  from: string;
  /** `append`: `objs` were added to the board of `version - 1`; `set`: `objs` is the whole board. */
  action: 'append' | 'set';
  objs: Record<string, unknown>[];
}
export interface OkFrame {
  type: 'ok';
  rid?: string;
}
export interface PongFrame {
  type: 'pong';
  rid?: string;
}
export interface CallJoinedFrame {
  type: 'call_joined';
  rid?: string;
  gid: number;
  address: string;
  permissions: CallPermissions;
  settings: CallSettings;
  participants: CallParticipant[];
  /** TURN servers with credentials for you; absent when the server runs no relay. */
  ice_servers?: IceServer[];
}
/** A TURN server of `call_joined` (an RTCPeerConnection `iceServers` entry). */
export interface IceServer {
  urls: string[];
  username: string;
  credential: string;
}
export interface CallPublishedFrame {
  type: 'call_published';
  rid?: string;
  stream: CallStream;
  sdp: string;
}
export interface CallSdpFrame {
  type: 'call_sdp';
  rid?: string;
  sdp?: string;
}
export interface CallOfferFrame {
  type: 'call_offer';
  sdp: string;
  tracks: CallTrack[];
}
export type CallEventFrame = { type: 'call_event'; gid: number } & CallEvent;
export interface ErrorFrame {
  type: 'error';
  rid?: string;
  /** For a failed `send`: the client id. */
  id?: string;
  code: ErrorCode;
  message: string;
  /** For a failed `send`: the Mesibo message status (≥ 0x80). */
  status?: number;
}

/** Every frame the server sends. */
export type ServerFrame =
  | WelcomeFrame
  | SyncedFrame
  | SentFrame
  | MessageFrame
  | ReceiptFrame
  | PresenceFrame
  | GroupFrame
  | BoardFrame
  | OkFrame
  | PongFrame
  | CallJoinedFrame
  | CallPublishedFrame
  | CallSdpFrame
  | CallOfferFrame
  | CallEventFrame
  | ErrorFrame;

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
  call_subscribe: OkFrame;
  call_unsubscribe: OkFrame;
  call_answer: OkFrame;
  call_mute: OkFrame;
  call_admin: OkFrame;
  call_leave: OkFrame;
}
/** The successful answer to request frame `F`. */
export type ResponseFor<F extends RequestFrame> = ResponseMap[F['type']];

// ---------------------------------------------------------------- parsing

type FieldKind = 'string' | 'number' | 'boolean' | 'object' | 'array' | 'any';
/** Required fields (and their JSON kinds) of each server frame; used by `parseServerFrame`. */
const REQUIRED: { [K in ServerFrame['type']]: Record<string, FieldKind> } = {
  welcome: { session: 'string', user: 'object', epoch: 'string', resumed: 'boolean' },
  synced: { pos: 'number', count: 'number', complete: 'boolean' },
  sent: { id: 'string', mid: 'number', seq: 'number', pos: 'number', ts: 'number', status: 'number', duplicate: 'boolean' },
  message: { mid: 'number', id: 'string', from: 'string', seq: 'number', pos: 'number', ts: 'number' },
  receipt: { by: 'string', status: 'number', seq: 'number' },
  presence: { from: 'string', presence: 'number' },
  group: { gid: 'number', event: 'string' },
  board: { gid: 'number', version: 'number', from: 'string', action: 'string', objs: 'array' },
  ok: {},
  pong: {},
  call_joined: { gid: 'number', address: 'string', permissions: 'object', settings: 'object', participants: 'array' },
  call_published: { stream: 'object', sdp: 'string' },
  call_sdp: {},
  call_offer: { sdp: 'string', tracks: 'array' },
  call_event: { gid: 'number', event: 'string' },
  error: { code: 'string', message: 'string' },
};

/** Whether `t` is the `type` of a server frame this SDK knows. */
export function isServerFrameType(t: unknown): t is ServerFrame['type'] {
  return typeof t === 'string' && Object.prototype.hasOwnProperty.call(REQUIRED, t);
}

function kindOf(v: unknown): FieldKind {
  if (Array.isArray(v)) return 'array';
  const t = typeof v;
  if (t === 'string' || t === 'number' || t === 'boolean') return t;
  if (v !== null && t === 'object') return 'object';
  return 'any';
}

/**
 * Parses one server text frame. Throws `TypeError` when it is not a JSON
 * object of a known `type` with its required fields. Unknown extra fields are
 * kept (the server may add fields).
 */
export function parseServerFrame(text: string): ServerFrame {
  const v: unknown = JSON.parse(text);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TypeError('frame is not a JSON object');
  const o = v as Record<string, unknown>;
  if (!isServerFrameType(o.type)) throw new TypeError(`unknown frame type ${JSON.stringify(o.type)}`);
  for (const [field, kind] of Object.entries(REQUIRED[o.type])) {
    if (!(field in o)) throw new TypeError(`${o.type} frame lacks "${field}"`);
    if (kind !== 'any' && kindOf(o[field]) !== kind) throw new TypeError(`${o.type}.${field} is not a ${kind}`);
  }
  return o as unknown as ServerFrame;
}

/** The `rid` of a server frame, if it has one. */
export function frameRid(f: ServerFrame): string | undefined {
  return 'rid' in f && typeof f.rid === 'string' ? f.rid : undefined;
}
