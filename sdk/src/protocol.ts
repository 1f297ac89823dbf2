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
import type { CallEvent, ClientFrame, ErrorCode, ServerFrame } from './proto/frames.js';

export type {
  AdminAction,
  BoardAction,
  CallAudienceMember,
  CallId,
  DirectCallStatus,
  DirectCallUpdate,
  CallEvent,
  CallLeaveReason,
  CallMute,
  CallParticipant,
  CallPermissions,
  CallRecording,
  CallSettings,
  CallStream,
  CallTrack,
  ClientFrame,
  Cursor,
  ErrorCode,
  FileRef,
  GroupEvent,
  IceServer,
  MediaAction,
  MediaEntry,
  MediaKind,
  Message,
  PublishRequest,
  RecordAction,
  RecordingStopReason,
  ServerFrame,
  SessionUser,
  StreamEndReason,
} from './proto/frames.js';

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
] as const satisfies readonly ErrorCode[];

// The list names every generated code: a code added in Rust fails the type check until it is here.
const everyCodeListed: Exclude<ErrorCode, (typeof ERROR_CODES)[number]> extends never ? true : false = true;
void everyCodeListed;

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
/** Mesibo's call status numbers (`MESIBO_CALLSTATUS_*`) that 1:1 calls report (`call_status.code`, `error.status`). */
export const CallStatusCode = {
  RINGING: 0x03,
  ANSWER: 0x05,
  COMPLETE: 0x40,
  CANCEL: 0x41,
  NOANSWER: 0x42,
  BUSY: 0x43,
  OFFLINE: 0x45,
  INVALIDDEST: 0x46,
  INVALIDSTATE: 0x47,
  NOTALLOWED: 0x4a,
  NETWORKERROR: 0x62,
} as const;

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

/** A conversation: exactly one of `peer` (1:1) or `gid` (group). */
export type Conversation = { peer: string; gid?: undefined } | { gid: number; peer?: undefined };

/** The name of a call event. */
export type CallEventName = CallEvent['event'];

// ---------------------------------------------------------------- frames by name

/** The client frame of type `T`. */
type Client<T extends ClientFrame['type']> = Extract<ClientFrame, { type: T }>;
/** The server frame of type `T`. */
type Server<T extends ServerFrame['type']> = Extract<ServerFrame, { type: T }>;

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
  group_media: { gid: 'number', action: 'string', id: 'string' },
  board: { gid: 'number', version: 'number', from: 'string', action: 'string', objs: 'array' },
  ok: {},
  pong: {},
  call_joined: { gid: 'number', address: 'string', permissions: 'object', settings: 'object', participants: 'array' },
  call_audience: { gid: 'number', count: 'number', members: 'array' },
  call_published: { stream: 'object', sdp: 'string' },
  call_sdp: {},
  call_offer: { gid: 'number', sdp: 'string', tracks: 'array' },
  call_event: { gid: 'number', event: 'string' },
  call_recording: { gid: 'number', recording: 'object' },
  call_dialing: { call: 'number', peer: 'string', video: 'boolean' },
  call_incoming: { call: 'number', from: 'string', name: 'string', video: 'boolean' },
  call_status: { call: 'number', from: 'string', to: 'string', video: 'boolean', status: 'string', code: 'number' },
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
