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
import { Emitter } from './emitter.js';
import { ChorusError } from './errors.js';
import type { ChorusClient } from './client.js';
import type {
  AdminAction,
  CallAudienceMember,
  CallEvent,
  CallEventFrame,
  CallJoinedFrame,
  CallLeaveReason,
  CallMute,
  CallOfferFrame,
  CallParticipant,
  CallRestartFrame,
  CallPermissions,
  CallPublishFrame,
  CallRecording,
  CallSettings,
  CallStream,
  CallSubscribeFrame,
  CallTrack,
  MediaKind,
  RecordAction,
  StreamEndReason,
} from './protocol.js';

/** The simulcast encodings of a camera, lowest resolution first (RIDs `q`, `h`, `f`). */
export const SIMULCAST_ENCODINGS: readonly RTCRtpEncodingParameters[] = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

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
  'participant-left': { participant: CallParticipant; reason: CallLeaveReason; by?: string };
  'stream-published': RemoteStream;
  /** A stream ended; `local` when it is one of yours (e.g. hung up by an admin). */
  'stream-unpublished': { address: string; sid: number; reason: StreamEndReason; local: boolean; stream: RemoteStream | LocalStream | null };
  track: TrackEvent;
  /** A media line stopped carrying the track (unsubscribed, stream ended). */
  'track-removed': TrackEvent;
  talking: { address: string; talking: boolean };
  /** Most recent speaker first. */
  speakers: string[];
  muted: { address: string; sid: number; muted: CallMute };
  /** The layer you receive of a stream changed (`null`: paused for lack of bandwidth). */
  layer: { address: string; sid: number; layer: number | null };
  /** Which simulcast layers of your stream anyone receives (already applied to the encodings). */
  layers: { sid: number; active: boolean[] };
  /** Someone started or stopped receiving one of your streams. */
  subscriber: { address: string; sid: number; joined: boolean };
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
  stage: { onStage: boolean };
  /** You are out of the call. */
  left: { reason: CallLeaveReason; by?: string };
  /**
   * The call was lost (`reason`: `lost` when the WebSocket dropped or the server said `lost`,
   * `slow` when it fell behind) and is being joined again (`state` is `reconnecting`). Your
   * streams stopped sending and every received track ended (`track-removed`); the
   * `RemoteStream`s, `LocalStream`s and subscriptions are kept for the rejoin.
   */
  reconnecting: { reason: CallLeaveReason };
  /**
   * Joined again after `reconnecting`: the roster is the server's new one (participants and
   * streams that went away meanwhile got `participant-left` / `stream-unpublished`, new ones
   * `participant-joined` / `stream-published`), your streams are published again (`republished`
   * sids; those refused got a local `stream-unpublished`) and your subscriptions resubscribed
   * (their new tracks come as `track` events on the same `RemoteStream`s).
   */
  reconnected: { republished: number[] };
  /** An ICE restart (`call_restart`) was answered by the server (automatic, or `restartIce()`). */
  'ice-restart': { automatic: boolean };
  error: ChorusError;
  /** Every `call_event` frame, raw. */
  event: CallEventFrame;
}

function streamKey(address: string, sid: number): string {
  return `${sid}:${address}`;
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
export class RemoteStream extends Emitter<RemoteStreamEvents> {
  readonly address: string;
  readonly sid: number;
  /** The stream as last announced (mute state included). */
  info: CallStream;
  /** Received tracks. */
  readonly tracks: { audio: MediaStreamTrack | null; video: MediaStreamTrack | null } = { audio: null, video: null };
  /** The received layer (`null`: unknown or paused). */
  layer: number | null = null;
  /** What was asked for, while subscribed. */
  subscription: SubscribeOptions | null = null;
  /** Set when the stream has ended. */
  ended: StreamEndReason | null = null;
  private _mediaStream: MediaStream | null = null;
  private attached = new Map<HTMLMediaElement, () => void>();
  private lastHeight: number | null | undefined = undefined;
  private pendingHeight: number | undefined = undefined;

  /** @internal */
  constructor(
    private readonly call: GroupCall,
    address: string,
    info: CallStream,
  ) {
    super();
    this.address = address;
    this.sid = info.sid;
    this.info = info;
  }

  /** The publisher's display name (from the roster). */
  get name(): string {
    return this.call.participants.get(this.address)?.name ?? this.address;
  }
  /** True while subscribed. */
  get subscribed(): boolean {
    return this.subscription !== null;
  }
  /** A MediaStream with the received tracks (null where `MediaStream` does not exist). */
  get mediaStream(): MediaStream | null {
    if (!this._mediaStream && typeof MediaStream !== 'undefined') {
      this._mediaStream = new MediaStream();
      for (const t of [this.tracks.audio, this.tracks.video]) if (t) this._mediaStream.addTrack(t);
    }
    return this._mediaStream;
  }

  /** Starts (or changes) receiving this stream. */
  subscribe(options: SubscribeOptions = {}): Promise<void> {
    return this.call.subscribe(this.address, this.sid, options);
  }
  /** Stops receiving it. */
  unsubscribe(): Promise<void> {
    return this.call.unsubscribe(this.address, this.sid);
  }
  /** Changes the wanted video height (keeps audio/video choice). */
  setHeight(height: number | null): Promise<void> {
    return this.call.setHeight(this.address, this.sid, height);
  }

  /**
   * Shows the stream in a media element (sets `srcObject`, autoplay) and,
   * for video, observes its size and sends the displayed height (in device
   * pixels, debounced) so the server forwards a fitting layer. Returns a
   * function that detaches it.
   */
  attach(el: HTMLMediaElement, options: { debounce?: number; adaptive?: boolean } = {}): () => void {
    this.detach(el);
    const ms = this.mediaStream;
    if (ms) el.srcObject = ms;
    el.autoplay = true;
    if ('playsInline' in el) (el as HTMLVideoElement).playsInline = true;
    let cleanup = () => {};
    const RO = (globalThis as { ResizeObserver?: typeof ResizeObserver }).ResizeObserver;
    if (options.adaptive !== false && RO && typeof HTMLVideoElement !== 'undefined' && el instanceof HTMLVideoElement) {
      const wait = options.debounce ?? 300;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const measure = () => {
        timer = undefined;
        const dpr = (globalThis as { devicePixelRatio?: number }).devicePixelRatio ?? 1;
        const h = Math.round(el.clientHeight * dpr);
        if (h <= 0) return; // hidden: keep the current layer
        this.wantHeight(Math.min(8192, h));
      };
      const ro = new RO(() => {
        clearTimeout(timer);
        timer = setTimeout(measure, wait);
      });
      ro.observe(el);
      cleanup = () => {
        clearTimeout(timer);
        ro.disconnect();
      };
    }
    const detach = () => {
      cleanup();
      if (this.attached.get(el) === detach) this.attached.delete(el);
      if (el.srcObject === ms) el.srcObject = null;
    };
    this.attached.set(el, detach);
    return detach;
  }

  /** Detaches one element (or all). */
  detach(el?: HTMLMediaElement): void {
    if (el) this.attached.get(el)?.();
    else for (const d of [...this.attached.values()]) d();
  }

  private wantHeight(h: number): void {
    if (!this.subscribed) {
      this.pendingHeight = h; // sent once the subscription is in place
      return;
    }
    if (h === this.lastHeight) return;
    this.lastHeight = h;
    this.setHeight(h).catch((e: unknown) => this.call._reportError(e));
  }

  /** @internal */
  _setTrack(ev: TrackEvent | null, kind: MediaKind, removed?: TrackEvent): void {
    const old = this.tracks[kind];
    if (old && this._mediaStream) this._mediaStream.removeTrack(old);
    this.tracks[kind] = ev ? ev.track : null;
    if (ev && this._mediaStream) this._mediaStream.addTrack(ev.track);
    if (removed) this.emit('track-removed', removed);
    if (ev) this.emit('track', ev);
  }
  /** @internal */
  _muted(m: CallMute): void {
    this.info = { ...this.info, muted: m };
    this.emit('muted', m);
  }
  /** @internal */
  _layer(l: number | null): void {
    this.layer = l;
    this.emit('layer', l);
  }
  /** @internal */
  _end(reason: StreamEndReason): void {
    this.ended = reason;
    this.subscription = null;
    this.detach();
    this.emit('ended', reason);
  }
  /** @internal */
  _subscribed(s: SubscribeOptions | null): void {
    this.subscription = s;
    if (s && s.height !== undefined) this.lastHeight = s.height;
    if (!s) this.lastHeight = undefined;
    const pending = this.pendingHeight;
    this.pendingHeight = undefined;
    if (s && pending !== undefined && pending !== this.lastHeight) this.wantHeight(pending);
  }
}

/** One of your published streams. */
export class LocalStream {
  readonly sid: number;
  /** The stream as granted by the server. */
  info: CallStream;
  readonly audioTrack: MediaStreamTrack | null;
  readonly videoTrack: MediaStreamTrack | null;
  /** The last `layers` state (one flag per simulcast encoding), if any. */
  activeLayers: boolean[] | null = null;
  private _audioTransceiver: RTCRtpTransceiver | null;
  private _videoTransceiver: RTCRtpTransceiver | null;
  /** @internal How it was published (republished the same way after a rejoin). */
  readonly _options: PublishOptions;

  /** @internal */
  constructor(
    private readonly call: GroupCall,
    info: CallStream,
    audio: RTCRtpTransceiver | null,
    video: RTCRtpTransceiver | null,
    options: PublishOptions,
  ) {
    this.sid = info.sid;
    this.info = info;
    this._audioTransceiver = audio;
    this._videoTransceiver = video;
    this.audioTrack = options.audio ?? null;
    this.videoTrack = options.video ?? null;
    this._options = options;
  }

  /** The sendonly audio transceiver on the publish connection (a new one after a rejoin). */
  get audioTransceiver(): RTCRtpTransceiver | null {
    return this._audioTransceiver;
  }
  /** The sendonly video transceiver on the publish connection (a new one after a rejoin). */
  get videoTransceiver(): RTCRtpTransceiver | null {
    return this._videoTransceiver;
  }

  /** @internal Published again (after a rejoin) on new transceivers. */
  _rebind(info: CallStream, audio: RTCRtpTransceiver | null, video: RTCRtpTransceiver | null): void {
    this.info = info;
    this._audioTransceiver = audio;
    this._videoTransceiver = video;
    this.activeLayers = null;
  }

  /** Mutes or unmutes (absent: unchanged). */
  mute(m: Partial<CallMute>): Promise<void> {
    return this.call.mute(this.sid, m);
  }
  /** Stops publishing it. */
  unpublish(): Promise<void> {
    return this.call.unpublish(this.sid);
  }
}

interface Binding {
  key: string;
  track: MediaStreamTrack;
  event: TrackEvent;
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
export class GroupCall extends Emitter<GroupCallEvents> {
  readonly gid: number;
  /** Your address in the call. */
  readonly address: string;
  /** What you may do (updated by `updated` events about you). */
  permissions: CallPermissions;
  /** Your admin-mute state. */
  adminMuted: CallMute = { audio: false, video: false };
  /** The call's settings (the server's new ones after a rejoin). */
  settings: CallSettings;
  /** Everyone in the call (you included), by address. */
  readonly participants = new Map<string, CallParticipant>();
  /** Others' streams, by `sid:address` (see `stream()`). */
  readonly streams = new Map<string, RemoteStream>();
  /** Your published streams, by sid. */
  readonly published = new Map<number, LocalStream>();
  /** Active-speaker order, most recent first. */
  speakers: string[] = [];
  /** Set once you are out of the call. */
  leftReason: CallLeaveReason | null = null;
  /** Whether the call is being recorded, by whom and since when (known before any media flows). */
  recording: CallRecording;
  /**
   * Live mode: how many are in the audience (from `call_joined`, then `audience` events, at most
   * one a second; 0 when the call is not live). The audience is not in `participants`.
   */
  audienceCount = 0;
  /** Live mode: your hand is raised (audience only; see `raiseHand`). */
  handRaised = false;
  /**
   * Live mode, for hosts (call control): the audience members with a hand raised, address →
   * name, oldest first (from `hand` events, and the raised hands of `audience()` pages: ask for
   * `audience({ hands: true })` after joining to learn of hands raised before).
   */
  readonly hands = new Map<string, string>();

  private readonly client: ChorusClient;
  private readonly options: GroupCallOptions;
  private pubPc: RTCPeerConnection | null = null;
  private subPc: RTCPeerConnection | null = null;
  private pubChain: Promise<unknown> = Promise.resolve();
  private subChain: Promise<unknown> = Promise.resolve();
  private paramChain: Promise<unknown> = Promise.resolve();
  private midMap = new Map<string, CallTrack>();
  private bindings = new Map<string, Binding>();
  private iceServers: RTCIceServer[];
  private _state: GroupCallState = 'joined';
  /** Why the call is being joined again (while `reconnecting`). */
  private lostReason: CallLeaveReason = 'lost';
  /** A `call_join` of the rejoin is on its way; call frames wait in `rejoinBuffer`. */
  private rejoining = false;
  private rejoinBuffer: (CallOfferFrame | CallEventFrame)[] = [];
  private rejoinRetries = 0;
  private rejoinTimer: ReturnType<typeof setTimeout> | undefined;
  /** ICE trouble: per connection, the 2 s timer since it went disconnected/failed. */
  private iceTimers = new Map<RTCPeerConnection, ReturnType<typeof setTimeout>>();
  private restarting: Promise<void> | null = null;
  private lastRestart = -Infinity;
  private restartTimer: ReturnType<typeof setTimeout> | undefined;

  /** @internal Use `ChorusClient.joinCall`. */
  constructor(client: ChorusClient, joined: CallJoinedFrame, options: GroupCallOptions = {}) {
    super();
    this.client = client;
    this.options = options;
    this.gid = joined.gid;
    this.address = joined.address;
    this.permissions = { ...joined.permissions };
    this.settings = { ...joined.settings };
    this.recording = joined.recording ? { ...joined.recording } : { active: false };
    this.audienceCount = joined.audience ?? 0;
    this.iceServers = iceServersOf(joined);
    for (const p of joined.participants) {
      const copy = cloneParticipant(p);
      this.participants.set(p.address, copy);
      if (p.address === this.address) this.adminMuted = { ...p.admin_muted };
      else for (const s of copy.streams) this.streams.set(streamKey(p.address, s.sid), new RemoteStream(this, p.address, s));
    }
  }

  /** True until you left (or were removed, or the call was lost and not recovered); also while `reconnecting`. */
  get active(): boolean {
    return this.leftReason === null;
  }

  /**
   * `joined`; `reconnecting` between the `reconnecting` and `reconnected` events (requests such
   * as `publish` fail with `disconnected` meanwhile); `left` once out of the call (`left` event).
   */
  get state(): GroupCallState {
    return this.active ? this._state : 'left';
  }

  /** The call is a live stream: those who may publish are on stage, the others are the audience. */
  get live(): boolean {
    return !!this.settings.live;
  }

  /** Live mode: you are on stage (you may publish); false in the audience and in calls that are not live. */
  get onStage(): boolean {
    return this.live && this.permissions.publish;
  }

  /** Others' stream `(address, sid)`, if known. */
  stream(address: string, sid: number): RemoteStream | undefined {
    return this.streams.get(streamKey(address, sid));
  }

  /** The publish and subscribe peer connections (null until used). */
  get peerConnections(): { publish: RTCPeerConnection | null; subscribe: RTCPeerConnection | null } {
    return { publish: this.pubPc, subscribe: this.subPc };
  }

  /** @internal Called once after construction. */
  _start(): void {
    if (this.options.autoSubscribe) for (const s of this.streams.values()) this.autoSubscribe(s);
  }

  // ------------------------------------------------------------ peer connections

  private newPc(): RTCPeerConnection {
    const Ctor =
      this.options.RTCPeerConnection ??
      (globalThis as unknown as { RTCPeerConnection?: typeof RTCPeerConnection }).RTCPeerConnection;
    if (!Ctor) throw new ChorusError('webrtc', 'RTCPeerConnection is not available');
    const config: RTCConfiguration = { ...(this.options.rtcConfig ?? {}) };
    if (this.iceServers.length) config.iceServers = [...(config.iceServers ?? []), ...this.iceServers];
    return new Ctor(config);
  }

  private getPubPc(): RTCPeerConnection {
    if (!this.pubPc) {
      this.pubPc = this.newPc();
      this.watchIce(this.pubPc);
    }
    return this.pubPc;
  }

  private getSubPc(): RTCPeerConnection {
    if (!this.subPc) {
      const pc = this.newPc();
      this.watchIce(pc);
      pc.ontrack = (e: RTCTrackEvent) => {
        const mid = e.transceiver?.mid;
        if (mid) this.bind(mid, e.track);
      };
      this.subPc = pc;
    }
    return this.subPc;
  }

  private serial<T>(chain: 'pub' | 'sub' | 'param', fn: () => Promise<T>): Promise<T> {
    const prev = chain === 'pub' ? this.pubChain : chain === 'sub' ? this.subChain : this.paramChain;
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    if (chain === 'pub') this.pubChain = settled;
    else if (chain === 'sub') this.subChain = settled;
    else this.paramChain = settled;
    return next;
  }

  private ensureActive(): void {
    if (!this.active) throw new ChorusError('state', 'not in the call');
    if (this._state === 'reconnecting') throw new ChorusError('disconnected', 'reconnecting to the call');
  }

  // ------------------------------------------------------------ ICE restart

  private watchIce(pc: RTCPeerConnection): void {
    const on = () => this.iceChanged(pc);
    if (typeof pc.addEventListener === 'function') pc.addEventListener('iceconnectionstatechange', on);
    else pc.oniceconnectionstatechange = on;
  }

  private iceChanged(pc: RTCPeerConnection): void {
    if (pc !== this.pubPc && pc !== this.subPc) return; // a connection of before a rejoin
    if (iceBad(pc)) {
      if (this.iceTimers.has(pc) || !this.active || this._state !== 'joined') return;
      this.iceTimers.set(
        pc,
        setTimeout(() => {
          this.iceTimers.delete(pc);
          if ((pc === this.pubPc || pc === this.subPc) && iceBad(pc)) this.autoRestart();
        }, ICE_TROUBLE_MS),
      );
    } else {
      clearTimeout(this.iceTimers.get(pc));
      this.iceTimers.delete(pc);
    }
  }

  /** A restart because of trouble: one at a time, at most one per 5 s. */
  private autoRestart(): void {
    if (!this.active || this._state !== 'joined' || this.restarting || this.restartTimer !== undefined) return;
    const wait = this.lastRestart + RESTART_EVERY_MS - Date.now();
    if (wait > 0) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.iceTrouble()) this.autoRestart();
      }, wait);
      return;
    }
    this.restart(true).catch((e: unknown) => {
      // Lost with the WebSocket (or left): the rejoin takes over.
      if (!(e instanceof ChorusError && (e.code === 'disconnected' || e.code === 'state'))) this._reportError(e);
    });
  }

  /** Either connection is ICE-disconnected or failed (or, with `checking`, still checking). */
  private iceTrouble(checking = false): boolean {
    return [this.pubPc, this.subPc].some((pc) => !!pc && (iceBad(pc) || (checking && pc.iceConnectionState === 'checking')));
  }

  /**
   * Restarts ICE on both connections now (docs/protocol.md §15.10): sends `call_restart` with a
   * publish offer carrying new ICE credentials (none when you publish nothing) and applies the
   * answer; the subscribe connection's new offer follows as a `call_offer`, answered by itself.
   * Done by itself when a connection has been ICE-disconnected or failed for 2 s (and again while
   * one is not connected 5 s after the answer, at most once per 5 s). Joins a restart in
   * progress; waits for a publish or unpublish negotiation in flight. Resolves once the server
   * answered (`ice-restart` event).
   */
  restartIce(): Promise<void> {
    try {
      this.ensureActive();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.restart(false);
  }

  private restart(automatic: boolean): Promise<void> {
    if (this.restarting) return this.restarting;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const p: Promise<void> = this.serial('pub', () => this.doRestart(automatic)).finally(() => {
      if (this.restarting === p) this.restarting = null;
    });
    this.restarting = p;
    return p;
  }

  private async doRestart(automatic: boolean): Promise<void> {
    this.ensureActive();
    const pc = this.pubPc;
    let sdp: string | undefined;
    // The server has a publish connection once an offer of it was answered.
    if (pc && pc.remoteDescription && pc.signalingState === 'stable') {
      const offer = await pc.createOffer({ iceRestart: true });
      await pc.setLocalDescription(offer);
      sdp = pc.localDescription?.sdp ?? offer.sdp;
    }
    const frame: CallRestartFrame = sdp ? { type: 'call_restart', sdp } : { type: 'call_restart' };
    try {
      const res = await this.client.request(frame);
      if (res.sdp && pc && pc === this.pubPc && pc.signalingState === 'have-local-offer') {
        await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
      }
    } catch (e) {
      if (pc && pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => undefined);
      }
      throw e instanceof ChorusError ? e : new ChorusError('webrtc', errText(e));
    }
    this.lastRestart = Date.now();
    this.emit('ice-restart', { automatic });
    // Still not connected 5 s after the answer: restart again.
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.iceTrouble(true)) this.autoRestart();
    }, RESTART_EVERY_MS);
  }

  private stopIceWatch(): void {
    for (const t of this.iceTimers.values()) clearTimeout(t);
    this.iceTimers.clear();
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.restarting = null;
    this.lastRestart = -Infinity;
  }

  // ------------------------------------------------------------ publishing

  /**
   * Publishes stream `sid` (0 the camera, 1.. screens): adds sendonly
   * transceivers, offers, sends `call_publish` with their mids and applies
   * the answer. A camera video is sent as simulcast `q`/`h`/`f` when the
   * room allows it.
   */
  publish(sid: number, options: PublishOptions): Promise<LocalStream> {
    return this.serial('pub', async () => {
      this.ensureActive();
      if (!options.audio && !options.video) throw new ChorusError('bad_request', 'nothing to publish');
      if (this.published.has(sid)) throw new ChorusError('conflict', `stream ${sid} is already published`);
      return this.publishNow(sid, { ...options }, null);
    });
  }

  /** Offers and sends `call_publish` (in the `pub` chain); `again`: the stream republished after a rejoin. */
  private async publishNow(sid: number, options: PublishOptions, again: LocalStream | null): Promise<LocalStream> {
    const pc = this.getPubPc();
    const simulcast = !!options.video && !options.screen && options.simulcast !== false && this.settings.simulcast;
    const at = options.audio ? pc.addTransceiver(options.audio, { direction: 'sendonly' }) : null;
    const vt = options.video
      ? pc.addTransceiver(
          options.video,
          simulcast
            ? { direction: 'sendonly', sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) }
            : { direction: 'sendonly' },
        )
      : null;
    const muted: CallMute = { audio: !!options.muted?.audio, video: !!options.muted?.video };
    if (options.audio && muted.audio) options.audio.enabled = false;
    if (options.video && muted.video) options.video.enabled = false;
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const sdp = pc.localDescription?.sdp ?? offer.sdp ?? '';
      const frame: CallPublishFrame = {
        type: 'call_publish',
        sid,
        audio: !!at,
        video: !!vt,
        screen: !!options.screen,
        sdp,
      };
      if (simulcast) frame.rids = SIMULCAST_ENCODINGS.map((e) => e.rid as string);
      const height = options.height ?? trackHeight(options.video);
      if (vt && height) frame.height = Math.min(8192, Math.max(1, Math.round(height)));
      if (muted.audio || muted.video) frame.muted = muted;
      if (at) frame.audio_mid = at.mid;
      if (vt) frame.video_mid = vt.mid;
      const res = await this.client.request(frame);
      if (pc !== this.pubPc) throw new ChorusError('disconnected', 'the call was lost');
      await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
      let ls: LocalStream;
      if (again) {
        ls = again;
        ls._rebind(res.stream, at, vt);
      } else {
        ls = new LocalStream(this, res.stream, at, vt, options);
      }
      this.published.set(sid, ls);
      const me = this.participants.get(this.address);
      if (me) me.streams = [...me.streams.filter((s) => s.sid !== sid), res.stream];
      return ls;
    } catch (e) {
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => undefined);
      }
      stopTransceiver(at);
      stopTransceiver(vt);
      throw e instanceof ChorusError ? e : new ChorusError('webrtc', errText(e));
    }
  }

  /** Stops publishing stream `sid` (renegotiates the publish connection). */
  unpublish(sid: number): Promise<void> {
    return this.serial('pub', async () => {
      this.ensureActive();
      const ls = this.published.get(sid);
      if (!ls) throw new ChorusError('not_found', `stream ${sid} is not published`);
      this.published.delete(sid);
      this.dropOwnStream(sid);
      deactivateTransceiver(ls.audioTransceiver);
      deactivateTransceiver(ls.videoTransceiver);
      const pc = this.getPubPc();
      let sdp: string | undefined;
      try {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        sdp = pc.localDescription?.sdp ?? offer.sdp;
      } catch {
        sdp = undefined;
      }
      try {
        const res = await this.client.request(sdp ? { type: 'call_unpublish', sid, sdp } : { type: 'call_unpublish', sid });
        if (res.sdp && pc.signalingState === 'have-local-offer') {
          await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
        }
      } catch (e) {
        if (pc.signalingState === 'have-local-offer') {
          await pc.setLocalDescription({ type: 'rollback' }).catch(() => undefined);
        }
        throw e;
      }
    });
  }

  /** Mutes or unmutes your stream `sid` (also sets the local tracks' `enabled`). */
  async mute(sid: number, m: Partial<CallMute>): Promise<void> {
    this.ensureActive();
    const ls = this.published.get(sid);
    if (ls) {
      if (m.audio !== undefined && ls.audioTrack) ls.audioTrack.enabled = !m.audio;
      if (m.video !== undefined && ls.videoTrack) ls.videoTrack.enabled = !m.video;
    }
    const frame: { type: 'call_mute'; sid: number; audio?: boolean; video?: boolean } = { type: 'call_mute', sid };
    if (m.audio !== undefined) frame.audio = m.audio;
    if (m.video !== undefined) frame.video = m.video;
    await this.client.request(frame);
    if (ls) ls.info = { ...ls.info, muted: { audio: m.audio ?? ls.info.muted.audio, video: m.video ?? ls.info.muted.video } };
  }

  /** An admin action: `mute`/`unmute` (address, audio/video), `mute_all`/`unmute_all`, `hangup` (address, sid), `remove` (address). */
  async admin(
    action: AdminAction,
    target: { address?: string; sid?: number; audio?: boolean; video?: boolean } = {},
  ): Promise<void> {
    this.ensureActive();
    const frame: {
      type: 'call_admin';
      action: AdminAction;
      address?: string;
      sid?: number;
      audio?: boolean;
      video?: boolean;
    } = { type: 'call_admin', action };
    if (target.address !== undefined) frame.address = target.address;
    if (target.sid !== undefined) frame.sid = target.sid;
    if (target.audio) frame.audio = true;
    if (target.video) frame.video = true;
    await this.client.request(frame);
  }

  /**
   * Starts or stops recording the call (needs call control, as an admin). Starting a call that
   * records already changes nothing; stopping one that does not fails with `conflict`. Resolves
   * with the recording state; everyone in the call also gets a `recording` event. When it stops,
   * each participant's file enters the group's media library.
   */
  async record(action: RecordAction): Promise<CallRecording> {
    this.ensureActive();
    const answer = await this.client.request({ type: 'call_record', action });
    this.recording = { ...answer.recording };
    return this.recording;
  }

  // ------------------------------------------------------------ live mode

  /**
   * Live mode: raises (or lowers) your hand; the hosts with call control see it. Only the
   * audience raises hands (on stage: `conflict`). Being brought on stage lowers it.
   */
  async raiseHand(raised = true): Promise<void> {
    this.ensureActive();
    await this.client.request({ type: 'call_hand', raised });
    this.setHand(this.address, this.participants.get(this.address)?.name ?? this.address, raised);
  }

  /**
   * Live mode: a page of the audience, in the order they joined (needs the list permission;
   * `conflict` when the call is not live). Pass the page's `next` as `after` for the next one.
   * Raised hands it lists join `hands` (how a host who joins late learns of them).
   */
  async audience(options: AudienceOptions = {}): Promise<AudiencePage> {
    this.ensureActive();
    const frame: { type: 'call_audience'; after?: number; limit?: number; hands?: boolean } = { type: 'call_audience' };
    if (options.after !== undefined) frame.after = options.after;
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.hands) frame.hands = true;
    const res = await this.client.request(frame);
    this.setAudienceCount(res.count);
    for (const m of res.members) if (m.hand && m.address !== this.address) this.setHand(m.address, m.name, true);
    const page: AudiencePage = { count: res.count, members: res.members.map((m) => ({ ...m })) };
    if (res.next !== undefined && res.next !== null) page.next = res.next;
    return page;
  }

  /**
   * Live mode, for hosts (call control): brings an audience member on stage: it may publish for
   * this call, and everyone sees it join (`participant-joined`).
   */
  bringOnStage(address: string): Promise<void> {
    return this.admin('stage', { address });
  }

  /**
   * Live mode, for hosts: sends a member brought on stage back to the audience: its streams end
   * and it leaves the roster (`participant-left` with reason `off_stage`).
   */
  sendBackstage(address: string): Promise<void> {
    return this.admin('unstage', { address });
  }

  private setAudienceCount(count: number): void {
    if (count === this.audienceCount) return;
    this.audienceCount = count;
    this.emit('audience', count);
  }

  private setHand(address: string, name: string, raised: boolean): void {
    if (address === this.address) {
      if (this.handRaised === raised) return;
      this.handRaised = raised;
    } else if (raised) {
      if (this.hands.get(address) === name) return;
      this.hands.set(address, name);
    } else if (!this.hands.delete(address)) {
      return;
    }
    this.emit('hand', { address, name, raised });
  }

  /** Your publish right changed in a live call: on stage, or back in the audience. */
  private stageChanged(onStage: boolean): void {
    if (onStage) {
      if (this.handRaised) this.setHand(this.address, this.participants.get(this.address)?.name ?? this.address, false);
    } else {
      // The server ends the streams first (`unpublished`); whatever is left stops sending here.
      for (const [sid, ls] of [...this.published]) {
        this.published.delete(sid);
        this.dropOwnStream(sid);
        deactivateTransceiver(ls.audioTransceiver);
        deactivateTransceiver(ls.videoTransceiver);
        this.emit('stream-unpublished', { address: this.address, sid, reason: 'permission_revoked', local: true, stream: ls });
      }
    }
    this.emit('stage', { onStage });
  }

  private applyLayers(sid: number, active: boolean[]): Promise<void> {
    const ls = this.published.get(sid);
    if (ls) ls.activeLayers = [...active];
    const sender = ls?.videoTransceiver?.sender;
    if (!sender) return Promise.resolve();
    return this.serial('param', async () => {
      const params = sender.getParameters();
      const enc = params.encodings ?? [];
      let changed = false;
      enc.forEach((e, i) => {
        if (i < active.length && e.active !== active[i]) {
          e.active = active[i] as boolean;
          changed = true;
        }
      });
      if (changed) await sender.setParameters(params);
    });
  }

  // ------------------------------------------------------------ subscribing

  /** Receives `address`'s stream `sid` (send again, or `setHeight`, to change it). */
  async subscribe(address: string, sid: number, options: SubscribeOptions = {}): Promise<void> {
    this.ensureActive();
    const frame: CallSubscribeFrame = { type: 'call_subscribe', address, sid };
    if (options.audio === false) frame.audio = false;
    if (options.video === false) frame.video = false;
    if (options.height !== undefined) frame.height = options.height;
    this.getSubPc(); // ready before the offer comes
    await this.client.request(frame);
    let rs = this.stream(address, sid);
    if (!rs) {
      rs = new RemoteStream(this, address, placeholderStream(sid));
      this.streams.set(streamKey(address, sid), rs);
    }
    rs._subscribed({ audio: options.audio ?? true, video: options.video ?? true, height: options.height ?? null });
  }

  /** Changes the height a subscribed video is shown at (the server picks the layer). */
  async setHeight(address: string, sid: number, height: number | null): Promise<void> {
    const rs = this.stream(address, sid);
    const sub = rs?.subscription ?? {};
    await this.subscribe(address, sid, { audio: sub.audio ?? true, video: sub.video ?? true, height });
  }

  /** Stops receiving `address`'s stream `sid`. */
  async unsubscribe(address: string, sid: number): Promise<void> {
    this.ensureActive();
    await this.client.request({ type: 'call_unsubscribe', address, sid });
    this.stream(address, sid)?._subscribed(null);
  }

  private autoSubscribe(rs: RemoteStream): void {
    const a = this.options.autoSubscribe;
    if (!a || !this.permissions.subscribe) return;
    const opts = typeof a === 'object' ? a : {};
    this.subscribe(rs.address, rs.sid, opts).catch((e: unknown) => this._reportError(e));
  }

  private onOffer(f: CallOfferFrame): void {
    this.serial('sub', () => this.answerOffer(f)).catch((e: unknown) => this._reportError(e));
  }

  private async answerOffer(f: CallOfferFrame): Promise<void> {
    if (!this.active) return;
    const pc = this.getSubPc();
    this.midMap = new Map(f.tracks.map((t) => [t.mid, t]));
    await pc.setRemoteDescription({ type: 'offer', sdp: f.sdp });
    this.reconcile(pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    const sdp = pc.localDescription?.sdp ?? answer.sdp ?? '';
    if (!this.active || pc !== this.subPc) return;
    await this.client.request({ type: 'call_answer', sdp });
  }

  /** Binds every listed media line to its track, unbinds lines no longer listed. */
  private reconcile(pc: RTCPeerConnection): void {
    for (const mid of [...this.bindings.keys()]) if (!this.midMap.has(mid)) this.unbind(mid);
    for (const t of pc.getTransceivers()) {
      if (t.mid && this.midMap.has(t.mid) && t.receiver?.track) this.bind(t.mid, t.receiver.track);
    }
  }

  private bind(mid: string, track: MediaStreamTrack): void {
    const t = this.midMap.get(mid);
    if (!t) return;
    const key = `${t.kind}:${t.sid}:${t.publisher}`;
    const old = this.bindings.get(mid);
    if (old && old.key === key && old.track === track) return;
    if (old) this.unbind(mid);
    let rs = this.stream(t.publisher, t.sid);
    if (!rs) {
      rs = new RemoteStream(this, t.publisher, placeholderStream(t.sid));
      this.streams.set(streamKey(t.publisher, t.sid), rs);
    }
    const event: TrackEvent = { track, publisher: t.publisher, sid: t.sid, kind: t.kind, mid, stream: rs };
    this.bindings.set(mid, { key, track, event });
    rs._setTrack(event, t.kind);
    this.emit('track', event);
  }

  private unbind(mid: string): void {
    const b = this.bindings.get(mid);
    if (!b) return;
    this.bindings.delete(mid);
    const rs = b.event.stream;
    if (rs.tracks[b.event.kind] === b.track) rs._setTrack(null, b.event.kind, b.event);
    this.emit('track-removed', b.event);
  }

  // ------------------------------------------------------------ leaving

  /** Leaves the call. */
  async leave(): Promise<void> {
    if (!this.active) return;
    try {
      await this.client.request({ type: 'call_leave' });
    } catch {
      /* leaving anyway */
    }
    this._end('left');
  }

  /** @internal Ends the call locally: closes both connections and emits `left` once. */
  _end(reason: CallLeaveReason, by?: string): void {
    if (!this.active) return;
    this.leftReason = reason;
    this.stopIceWatch();
    clearTimeout(this.rejoinTimer);
    this.rejoinBuffer = [];
    for (const rs of this.streams.values()) rs.detach();
    this.closePcs();
    this.client._callEnded(this);
    this.emit('left', by !== undefined ? { reason, by } : { reason });
  }

  private closePcs(): void {
    for (const pc of [this.pubPc, this.subPc]) {
      try {
        pc?.close();
      } catch {
        /* ignore */
      }
    }
  }

  // ------------------------------------------------------------ recovering (§15.10)

  /**
   * @internal The WebSocket dropped. Returns true when the call stays (reconnecting, to be joined
   * again after the next `synced`), false when it ended (`recover: false`).
   */
  _connectionLost(): boolean {
    if (!this.active) return false;
    if (this.options.recover === false) {
      this._end('lost');
      return false;
    }
    this.rejoining = false; // its call_join failed with the socket
    this.suspend('lost');
    return true;
  }

  /** @internal The WebSocket is back (`synced`): join again if the call was lost. */
  _connectionBack(): void {
    if (this.active && this._state === 'reconnecting' && !this.rejoining) void this.rejoin();
  }

  /** Out of the call for now: media stops, what to restore is kept. */
  private suspend(reason: CallLeaveReason): void {
    if (this._state === 'reconnecting') return;
    this._state = 'reconnecting';
    this.lostReason = reason;
    this.stopIceWatch();
    for (const mid of [...this.bindings.keys()]) this.unbind(mid);
    this.midMap = new Map();
    this.closePcs();
    this.pubPc = null;
    this.subPc = null;
    this.emit('reconnecting', { reason });
  }

  private async rejoin(): Promise<void> {
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = undefined;
    this.rejoining = true;
    this.rejoinBuffer = [];
    let joined: CallJoinedFrame;
    try {
      joined = await this.client.request({ type: 'call_join', gid: this.gid });
    } catch (e) {
      this.rejoining = false;
      if (!this.active || this._state !== 'reconnecting') return;
      const code = e instanceof ChorusError ? e.code : '';
      if (code === 'disconnected') return; // the WebSocket dropped again: after the next synced
      if ((code === 'timeout' || code === 'rate_limited') && this.rejoinRetries < REJOIN_RETRIES) {
        this.rejoinRetries++;
        this.rejoinTimer = setTimeout(() => this._connectionBack(), REJOIN_RETRY_MS);
        return;
      }
      // Refused (not_found, forbidden, …): the call is over.
      this._reportError(e);
      this._end(this.lostReason);
      return;
    }
    this.rejoining = false;
    // Left meanwhile (its call_leave, or another call's call_join, follows this call_join on the
    // WebSocket and undoes it), or another call was joined.
    if (!this.active || this.client.groupCall !== this) return;
    this.rejoinRetries = 0;
    // What to restore, as it was before the call was lost.
    const subs = new Map<string, SubscribeOptions>();
    for (const [key, rs] of this.streams) if (rs.subscription) subs.set(key, { ...rs.subscription });
    const mine = [...this.published.values()];
    this._state = 'joined';
    this.applyJoined(joined);
    const buffered = this.rejoinBuffer.filter((f) => f.gid === this.gid);
    this.rejoinBuffer = [];
    for (const f of buffered) this._handle(f);
    const republished: number[] = [];
    const work: Promise<unknown>[] = [];
    for (const ls of mine) {
      const options: PublishOptions = { ...ls._options, muted: { ...ls.info.muted } };
      work.push(
        this.serial('pub', () => {
          this.ensureActive();
          return this.publishNow(ls.sid, options, ls);
        }).then(
          () => republished.push(ls.sid),
          (e: unknown) => {
            if (!this.active || this._state !== 'joined' || this.published.get(ls.sid) !== ls) return;
            this.published.delete(ls.sid);
            this.dropOwnStream(ls.sid);
            this._reportError(e);
            const reason: StreamEndReason = e instanceof ChorusError && e.code === 'forbidden' ? 'permission_revoked' : 'unpublished';
            this.emit('stream-unpublished', { address: this.address, sid: ls.sid, reason, local: true, stream: ls });
          },
        ),
      );
    }
    for (const [key, opts] of subs) {
      const rs = this.streams.get(key);
      if (!rs || rs.ended !== null || !this.permissions.subscribe) continue;
      work.push(
        this.subscribe(rs.address, rs.sid, opts).catch((e: unknown) => {
          if (this.active && this._state === 'joined') this._reportError(e); // else lost again: the next rejoin retries
        }),
      );
    }
    await Promise.all(work);
    if (this.active && this._state === 'joined') this.emit('reconnected', { republished: republished.sort((a, b) => a - b) });
  }

  /** The roster of a `call_joined` after a rejoin, told as the changes since before. */
  private applyJoined(joined: CallJoinedFrame): void {
    this.permissions = { ...joined.permissions };
    this.settings = { ...joined.settings };
    this.recording = joined.recording ? { ...joined.recording } : { active: false };
    this.setAudienceCount(joined.audience ?? 0);
    this.iceServers = iceServersOf(joined);
    const before = new Map(this.participants);
    this.participants.clear();
    const now = new Map<string, CallParticipant>();
    for (const p of joined.participants) now.set(p.address, cloneParticipant(p));
    // Streams that ended meanwhile, and their owners if gone.
    for (const rs of [...this.streams.values()]) {
      const p = now.get(rs.address);
      if (!p || !p.streams.some((x) => x.sid === rs.sid)) this.removeStream(rs, p ? 'unpublished' : 'owner_left');
    }
    for (const [address, p] of before) {
      if (address !== this.address && !now.has(address)) this.emit('participant-left', { participant: p, reason: 'left' });
    }
    for (const [address, p] of now) {
      this.participants.set(address, p);
      if (address === this.address) {
        this.adminMuted = { ...p.admin_muted };
        p.streams = []; // republished below
        continue;
      }
      if (!before.has(address)) this.emit('participant-joined', p);
      for (const st of p.streams) {
        const rs = this.stream(address, st.sid);
        if (!rs) {
          this.addStream(address, st);
          continue;
        }
        const mutedChanged = rs.info.muted.audio !== st.muted.audio || rs.info.muted.video !== st.muted.video;
        rs.info = { ...st, muted: { ...st.muted } };
        if (mutedChanged) {
          rs._muted({ ...st.muted });
          this.emit('muted', { address, sid: st.sid, muted: { ...st.muted } });
        }
      }
    }
  }

  /** @internal */
  _reportError(e: unknown): void {
    this.emit('error', e instanceof ChorusError ? e : new ChorusError('webrtc', errText(e)));
  }

  // ------------------------------------------------------------ server frames

  /** @internal Routes `call_offer` and `call_event` frames. */
  _handle(f: CallOfferFrame | CallEventFrame): void {
    if (!this.active) return;
    if (f.gid !== this.gid) return; // a frame of a call this session has left
    if (this._state === 'reconnecting') {
      // Frames racing the rejoin's call_joined belong to the new membership; none else come.
      if (this.rejoining) this.rejoinBuffer.push(f);
      return;
    }
    if (f.type === 'call_offer') return this.onOffer(f);
    this.emit('event', f);
    this.onEvent(f);
  }

  private dropOwnStream(sid: number): void {
    const me = this.participants.get(this.address);
    if (me) me.streams = me.streams.filter((s) => s.sid !== sid);
  }

  private onEvent(e: CallEvent): void {
    switch (e.event) {
      case 'joined': {
        const p = cloneParticipant(e.participant);
        this.participants.set(p.address, p);
        if (this.hands.has(p.address)) this.setHand(p.address, this.hands.get(p.address) ?? p.name, false); // on stage now
        this.emit('participant-joined', p);
        if (p.address !== this.address) for (const s of p.streams) this.addStream(p.address, s);
        return;
      }
      case 'updated': {
        const p = this.participants.get(e.address);
        if (p) {
          p.permissions = { ...e.permissions };
          p.admin_muted = { ...e.admin_muted };
        }
        let stage: boolean | null = null;
        if (e.address === this.address) {
          const could = this.permissions.publish;
          this.permissions = { ...e.permissions };
          this.adminMuted = { ...e.admin_muted };
          if (this.live && could !== e.permissions.publish) stage = e.permissions.publish;
        }
        if (p) this.emit('participant-updated', p);
        if (stage !== null) this.stageChanged(stage);
        return;
      }
      case 'left': {
        // `off_stage`: sent back to the audience; it leaves the roster (never about you: you hear `updated`).
        if (e.address === this.address) {
          if (e.reason === 'off_stage') return;
          // Taken out for network trouble (or falling behind): join again, the WebSocket being up.
          if ((e.reason === 'lost' || e.reason === 'slow') && this.options.recover !== false && this.client.synced) {
            this.suspend(e.reason);
            this._connectionBack();
            return;
          }
          this._end(e.reason, e.by);
          return;
        }
        const p = this.participants.get(e.address);
        for (const rs of [...this.streams.values()]) {
          if (rs.address === e.address) this.removeStream(rs, 'owner_left');
        }
        this.participants.delete(e.address);
        if (p) this.emit('participant-left', e.by !== undefined ? { participant: p, reason: e.reason, by: e.by } : { participant: p, reason: e.reason });
        return;
      }
      case 'published': {
        const p = this.participants.get(e.address);
        if (p) p.streams = [...p.streams.filter((s) => s.sid !== e.stream.sid), { ...e.stream }];
        if (e.address !== this.address) this.addStream(e.address, e.stream);
        return;
      }
      case 'muted': {
        const p = this.participants.get(e.address);
        const s = p?.streams.find((x) => x.sid === e.sid);
        if (s) s.muted = { ...e.muted };
        this.stream(e.address, e.sid)?._muted({ ...e.muted });
        const ls = e.address === this.address ? this.published.get(e.sid) : undefined;
        if (ls) ls.info = { ...ls.info, muted: { ...e.muted } };
        this.emit('muted', { address: e.address, sid: e.sid, muted: { ...e.muted } });
        return;
      }
      case 'unpublished': {
        if (e.address === this.address) {
          const ls = this.published.get(e.sid) ?? null;
          this.dropOwnStream(e.sid);
          if (ls) {
            // Ended by the server (hung up, permission revoked): stop sending on its lines.
            this.published.delete(e.sid);
            deactivateTransceiver(ls.audioTransceiver);
            deactivateTransceiver(ls.videoTransceiver);
            this.emit('stream-unpublished', { address: e.address, sid: e.sid, reason: e.reason, local: true, stream: ls });
          }
          return;
        }
        const p = this.participants.get(e.address);
        if (p) p.streams = p.streams.filter((s) => s.sid !== e.sid);
        const rs = this.stream(e.address, e.sid);
        if (rs) this.removeStream(rs, e.reason);
        return;
      }
      case 'talking': {
        const p = this.participants.get(e.address);
        if (p) p.talking = e.talking;
        this.emit('talking', { address: e.address, talking: e.talking });
        return;
      }
      case 'speakers':
        this.speakers = [...e.order];
        this.emit('speakers', [...e.order]);
        return;
      case 'subscriber':
        this.emit('subscriber', { address: e.address, sid: e.sid, joined: e.joined });
        return;
      case 'layers':
        this.applyLayers(e.sid, e.active).then(
          () => this.emit('layers', { sid: e.sid, active: [...e.active] }),
          (err: unknown) => this._reportError(err),
        );
        return;
      case 'layer':
        this.stream(e.address, e.sid)?._layer(e.layer);
        this.emit('layer', { address: e.address, sid: e.sid, layer: e.layer });
        return;
      case 'recording':
        this.recording = { ...e.recording };
        this.emit('recording', { ...e.recording });
        return;
      case 'audience':
        this.setAudienceCount(e.count);
        return;
      case 'hand':
        this.setHand(e.address, e.name, e.raised);
        return;
      default:
        return;
    }
  }

  private addStream(address: string, s: CallStream): void {
    const key = streamKey(address, s.sid);
    let rs = this.streams.get(key);
    if (rs && rs.ended === null) {
      rs.info = { ...s };
    } else {
      rs = new RemoteStream(this, address, { ...s });
      this.streams.set(key, rs);
    }
    this.emit('stream-published', rs);
    this.autoSubscribe(rs);
  }

  private removeStream(rs: RemoteStream, reason: StreamEndReason): void {
    this.streams.delete(streamKey(rs.address, rs.sid));
    rs._end(reason);
    this.emit('stream-unpublished', { address: rs.address, sid: rs.sid, reason, local: false, stream: rs });
  }
}

/** How long a connection may stay ICE-disconnected (or failed) before an ICE restart. */
const ICE_TROUBLE_MS = 2000;
/** At most one automatic ICE restart per this long; the next when still not connected after it. */
const RESTART_EVERY_MS = 5000;
/** A rejoin that timed out or was rate limited is tried again after this long, this many times. */
const REJOIN_RETRY_MS = 2000;
const REJOIN_RETRIES = 5;

function iceBad(pc: RTCPeerConnection): boolean {
  const s = pc.iceConnectionState;
  return s === 'disconnected' || s === 'failed';
}

function iceServersOf(joined: CallJoinedFrame): RTCIceServer[] {
  return (joined.ice_servers ?? []).map((s) => ({ urls: [...s.urls], username: s.username, credential: s.credential }));
}

function cloneParticipant(p: CallParticipant): CallParticipant {
  return {
    ...p,
    permissions: { ...p.permissions },
    admin_muted: { ...p.admin_muted },
    streams: p.streams.map((s) => ({ ...s, muted: { ...s.muted } })),
  };
}

function placeholderStream(sid: number): CallStream {
  return { sid, audio: true, video: true, screen: false, layers: 1, height: null, muted: { audio: false, video: false } };
}

function trackHeight(t: MediaStreamTrack | undefined): number | undefined {
  if (!t || typeof t.getSettings !== 'function') return undefined;
  const h = t.getSettings().height;
  return typeof h === 'number' && h > 0 ? h : undefined;
}

/**
 * Stops sending on a negotiated line and marks it inactive for the next offer. Lines are not
 * stopped (port 0): the server does the same on its side, as Chromium reacted to stopped lines
 * it had carried media on by closing the DTLS connection.
 */
function deactivateTransceiver(t: RTCRtpTransceiver | null): void {
  if (!t) return;
  try {
    void t.sender.replaceTrack(null).catch(() => undefined);
    t.direction = 'inactive';
  } catch {
    /* stopped or closed */
  }
}

function stopTransceiver(t: RTCRtpTransceiver | null): void {
  if (!t) return;
  try {
    t.stop();
  } catch {
    /* already stopped or closed */
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
