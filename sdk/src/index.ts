/**
 * Chorus browser SDK: messaging and group calls against a Chorus server.
 *
 * - `ChorusAuth`: login by code (REST).
 * - `ChorusClient`: the WebSocket session (messages, receipts, presence, resume) and REST helpers.
 * - `GroupCall`: a group call on the SFU (`client.joinCall(gid)`).
 * - `DirectCall`: a 1:1 call (`client.call(address)`, the `incoming-call` event).
 * - `Upload`: a resumable tus upload (`client.upload(file)`); media libraries and files in chat.
 *
 * @module chorus
 */
export * from './protocol.js';
export { ChorusError } from './errors.js';
export type { ChorusErrorCode, LocalErrorCode } from './errors.js';
export { Emitter } from './emitter.js';
export type { Listener } from './emitter.js';
export { ChorusAuth, RestClient, restRequest, restPage, nextLink, fileIdOf } from './rest.js';
export type {
  CodeSent,
  LoginSession,
  Membership,
  Group,
  Pin,
  Board,
  CreatedGroup,
  Member,
  GroupSettings,
  CreateGroupOptions,
  CreatePinOptions,
  EditPinOptions,
  HistoryPage,
  ConversationSummary,
  MemberReceipt,
  FetchLike,
  RestPage,
  FileInfo,
  SignedUrl,
  MediaPage,
} from './rest.js';
export { Upload, fetchTransport, xhrTransport, metadataValue } from './upload.js';
export type { UploadOptions, UploadState, UploadProgress, UploadEvents, UploadRequest, UploadResponse, UploadTransport } from './upload.js';
export { ChorusClient, newMessageId } from './client.js';
export { MessageCache } from './cache.js';
export type { CacheConversation } from './cache.js';
export type {
  ChorusClientOptions,
  ChorusClientEvents,
  ConnectionState,
  ConnectionEvent,
  OutgoingMessage,
  WebSocketLike,
  WebSocketFactory,
} from './client.js';
export { GroupCall, RemoteStream, LocalStream, SIMULCAST_ENCODINGS } from './call.js';
export type {
  AudienceOptions,
  AudiencePage,
  HandEvent,
  GroupCallOptions,
  GroupCallEvents,
  RemoteStreamEvents,
  PublishOptions,
  SubscribeOptions,
  TrackEvent,
} from './call.js';

export { DirectCall, directCallEnded } from './direct.js';
export type { DirectCallEvents } from './direct.js';

/** The SDK version. */
export const VERSION = '0.1.0';
