/**
 * Mesibo group calls (`mesibo.groupCall(listener, gid)` and the gen-1 `initGroupCall()`), on
 * top of the Chorus `GroupCall` (docs/protocol.md §15).
 *
 * @module mesibo/groupcall
 */
import type { GroupCall, LocalStream, RemoteStream } from '../call.js';
import { ChorusError } from '../errors.js';
import type { CallLeaveReason, CallMute, StreamEndReason } from '../protocol.js';
import { C, RESOLUTION_HEIGHT, SOURCE_HEIGHT } from './constants.js';
import { fire } from './dispatch.js';
import type { Mesibo } from './mesibo.js';
import { groupError } from './profile.js';

type Cb = ((ok: boolean) => void) | undefined;

/** What a gen-1 `call(options, elementId, on_stream, on_status)` was given. */
interface Gen1Call {
  elementId: string | null;
  onStream: ((p: MesiboParticipant) => void) | null;
  onStatus: ((p: MesiboParticipant, status: number) => void) | null;
}

/** Options of the gen-1 `call(options, ...)`. */
export interface Gen1CallOptions {
  /** `'180p'` … `'2160p'`, `'screen'`, or a `MESIBOCALL_VIDEOSOURCE_*` number. */
  source?: string | number;
  audio?: boolean;
  video?: boolean;
  name?: string;
  peer?: unknown;
  groupid?: number;
}

/** Why you are out of the call, as a hang-up reason for every stream. */
function leaveReason(r: CallLeaveReason): number {
  switch (r) {
    case 'left':
      return C.MESIBOCALL_HANGUP_REASON_USER;
    case 'duration':
      return C.MESIBOCALL_HANGUP_REASON_DURATION;
    case 'lost':
    case 'slow':
      return C.MESIBOCALL_HANGUP_REASON_ERROR;
    default:
      return C.MESIBOCALL_HANGUP_REASON_REMOTE;
  }
}

/**
 * Why one stream ended. Another user's stream: always REMOTE (its owner stopped it or left, an
 * admin hung it up, its right to publish went). Yours: USER when you unpublished it, else REMOTE.
 */
function streamEndReason(r: StreamEndReason, local: boolean): number {
  return local && r === 'unpublished' ? C.MESIBOCALL_HANGUP_REASON_USER : C.MESIBOCALL_HANGUP_REASON_REMOTE;
}

export function docGet(id: string): HTMLElement | null {
  const d = (globalThis as { document?: Document }).document;
  return d ? d.getElementById(id) : null;
}

export function play(el: HTMLMediaElement): void {
  el.autoplay = true;
  if ('playsInline' in el) (el as HTMLVideoElement).playsInline = true;
  const p = typeof el.play === 'function' ? el.play() : undefined;
  if (p && typeof p.catch === 'function') {
    p.catch((e: unknown) => {
      // Autoplay with sound needs a user gesture: play muted rather than not at all.
      if (e instanceof Error && e.name === 'NotAllowedError' && !el.muted) {
        console.warn('mesibo: autoplay with sound was blocked; playing the element muted');
        el.muted = true;
        void el.play().catch(() => undefined);
      }
    });
  }
}

/**
 * A participant stream (`MesiboParticipant`): your publisher from `createPublisher(sid)`, or
 * another user's stream from `MesiboGroupcall_OnPublisher(p, true)`. `(getAddress(), getSid())`
 * names it; `getId()` is the same for all streams of one user.
 */
export class MesiboParticipant {
  readonly address: string;
  readonly sid: number;
  private _name: string;
  private listener: unknown = null;
  private calling = false;
  private connected = false;
  private ended = false;
  private videoSource: number = C.MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT;
  private videoSourceIndex = 0;
  private sourceHeight: number | null = null;
  private view: HTMLMediaElement | null = null;
  private media: MediaStream | null = null;
  /** @internal */
  _ls: LocalStream | null = null;
  /** @internal */
  _rs: RemoteStream | null = null;
  private announcedTracks = new Set<MediaStreamTrack>();
  private localMute: CallMute = { audio: false, video: false };
  private lastRemoteMute = '';
  private gen1: Gen1Call | null = null;
  private offRs: (() => void)[] = [];

  /** @internal */
  constructor(
    private readonly gc: MesiboGroupCall,
    readonly local: boolean,
    address: string,
    sid: number,
    name: string,
  ) {
    this.address = address;
    this.sid = sid;
    this._name = name;
  }

  // ---------------------------------------------------------------- identity
  /** One number per user in this page (not the server uid: Chorus shows addresses only). */
  getId(): number {
    return this.gc._mesibo._idFor(this.address);
  }
  getUid(): number {
    return this.local ? this.gc._mesibo.getUid() || this.getId() : this.getId();
  }
  getSid(): number {
    return this.sid;
  }
  /** The stream id (Mesibo's type: 0 camera, > 0 screens and further cameras). */
  getType(): number {
    return this.sid;
  }
  getName(): string {
    return this._name || this.gc._nameOf(this.address);
  }
  /** Sets the name shown locally. Chorus streams carry no names of their own: others see the user's name. */
  setName(name: string): void {
    this._name = String(name ?? '');
  }
  getAddress(): string {
    return this.address;
  }
  getProfile() {
    return this.gc._mesibo.getProfile(this.address);
  }
  isLocal(): boolean {
    return this.local;
  }
  isMe(): boolean {
    return this.local;
  }
  isPublisher(): boolean {
    return this.local;
  }
  getGroupCall(): MesiboGroupCall {
    return this.gc;
  }
  hasVideo(): boolean {
    if (this.local) return !!this.media?.getVideoTracks().length;
    return !!this._rs?.info.video;
  }
  hasAudio(): boolean {
    if (this.local) return !!this.media?.getAudioTracks().length;
    return !!this._rs?.info.audio;
  }
  isVideoCall(): boolean {
    return this.hasVideo();
  }
  isCallInProgress(): boolean {
    return this.calling && !this.ended;
  }
  isCallConnected(): boolean {
    return this.connected;
  }
  /** Talk detection (the server's VAD on the user's audio). */
  isTalking(): boolean {
    return this.gc._talking(this.address);
  }

  // ---------------------------------------------------------------- media source (publishers)
  /** `MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT | CAMERAFRONT | CAMERAREAR | SCREEN`; `index` picks the n-th camera. Returns this. */
  setVideoSource(source: number, index = 0): this {
    this.videoSource = Number(source) || 0;
    this.videoSourceIndex = Number(index) || 0;
    return this;
  }
  getVideoSource(): number {
    return this.videoSource;
  }

  // ---------------------------------------------------------------- call / hangup
  /**
   * Publishes (your publisher) or subscribes (another's stream).
   * - Current form: `call(audio, video, listener)`; the listener gets `MesiboGroupcall_OnConnected`,
   *   `OnVideo`, `OnAudio`, `OnMute`, `OnTalking`, `OnHangup`.
   * - Gen-1 form: `call(options | null, elementId, on_stream(p), on_status(p, status))`, options
   *   `{source, audio, video}` (null: audio and video); the video is shown in `elementId`.
   * A second call while the first is in progress is ignored.
   */
  call(audio?: boolean, video?: boolean, listener?: unknown): boolean;
  call(
    options: Gen1CallOptions | null,
    elementId?: string | null,
    onStream?: (p: MesiboParticipant) => void,
    onStatus?: (p: MesiboParticipant, status: number) => void,
  ): boolean;
  call(a?: boolean | Gen1CallOptions | null, b?: boolean | string | null, c?: unknown, d?: unknown): boolean {
    let audio = true;
    let video = true;
    // Gen-1: an options object or null first, or an element id / callbacks after it.
    const gen1 = a === null || typeof a === 'object' || typeof b === 'string' || typeof c === 'function' || typeof d === 'function';
    if (gen1) {
      const o: Gen1CallOptions = a && typeof a === 'object' ? a : {};
      audio = o.audio !== false;
      video = o.video !== false;
      if (o.name) this._name = o.name;
      if (o.source === 'screen' || o.source === C.MESIBOCALL_VIDEOSOURCE_SCREEN) this.videoSource = C.MESIBOCALL_VIDEOSOURCE_SCREEN;
      else if (typeof o.source === 'string' && SOURCE_HEIGHT[o.source]) this.sourceHeight = SOURCE_HEIGHT[o.source] as number;
      else if (typeof o.source === 'number') this.videoSource = o.source;
      this.gen1 = {
        elementId: typeof b === 'string' ? b : null,
        onStream: typeof c === 'function' ? (c as Gen1Call['onStream']) : null,
        onStatus: typeof d === 'function' ? (d as Gen1Call['onStatus']) : null,
      };
    } else {
      if (a !== undefined) audio = !!a;
      if (b !== undefined) video = !!b;
      if (c) this.listener = c;
    }
    if (this.calling && !this.ended) return false;
    this.calling = true;
    this.ended = false;
    this.lastError = null;
    this.connected = false;
    this.announcedTracks.clear();
    void (this.local ? this.publish(audio, video) : this.subscribe(audio, video));
    return true;
  }

  /** Stops publishing (yours) or viewing (another's) → `MesiboGroupcall_OnHangup(p, MESIBOCALL_HANGUP_REASON_USER)`. */
  hangup(): void {
    if (!this.calling || this.ended) return;
    const call = this.gc._callNow();
    if (call && call.active) {
      const op = this.local ? (this._ls ? call.unpublish(this.sid) : Promise.resolve()) : this._rs?.unsubscribe() ?? Promise.resolve();
      op.catch((e: unknown) => this.gc._mesibo._error('hangup', e));
    }
    this._ended(C.MESIBOCALL_HANGUP_REASON_USER);
  }

  private async publish(audio: boolean, video: boolean): Promise<void> {
    try {
      const call = await this.gc._joined();
      if (!call.permissions.publish) throw new ChorusError('forbidden', 'you may not publish in this group call (no MESIBO_MEMBERFLAG_PUBL)');
      if (!audio && !video) throw new ChorusError('bad_request', 'nothing to publish');
      const screen = this.videoSource === C.MESIBOCALL_VIDEOSOURCE_SCREEN;
      const md = (globalThis as { navigator?: Navigator }).navigator?.mediaDevices;
      if (!md) throw new ChorusError('webrtc', 'navigator.mediaDevices is not available');
      let media: MediaStream;
      if (screen) {
        media = await md.getDisplayMedia({ video: true, audio: false });
        if (audio) {
          const mic = await md.getUserMedia({ audio: true });
          for (const t of mic.getAudioTracks()) media.addTrack(t);
        }
      } else {
        const cap = call.settings.max_height ?? 0;
        const res = RESOLUTION_HEIGHT[this.gc._videoResolution()] ?? 0;
        let h = this.sourceHeight ?? (res || 720);
        if (cap > 0) h = Math.min(h, cap);
        const v: MediaTrackConstraints = { height: { ideal: h }, width: { ideal: Math.round((h * 16) / 9) } };
        if (this.videoSource === C.MESIBOCALL_VIDEOSOURCE_CAMERAFRONT) v.facingMode = 'user';
        if (this.videoSource === C.MESIBOCALL_VIDEOSOURCE_CAMERAREAR) v.facingMode = 'environment';
        if (this.videoSourceIndex > 0 && typeof md.enumerateDevices === 'function') {
          const cams = (await md.enumerateDevices()).filter((x) => x.kind === 'videoinput');
          const cam = cams[this.videoSourceIndex];
          if (cam) v.deviceId = { exact: cam.deviceId };
        }
        media = await md.getUserMedia({ audio: audio && call.settings.audio, video: video && call.settings.video ? v : false });
      }
      if (this.ended) {
        media.getTracks().forEach((t) => t.stop());
        return;
      }
      this.media = media;
      const at = media.getAudioTracks()[0];
      const vt = media.getVideoTracks()[0];
      if (vt) vt.addEventListener?.('ended', () => this.hangup()); // e.g. the browser's "stop sharing"
      if (vt) this.onMedia('video', vt);
      if (at) this.onMedia('audio', at);
      const opts: { audio?: MediaStreamTrack; video?: MediaStreamTrack; screen?: boolean; muted?: CallMute; height?: number } = { screen };
      if (at) opts.audio = at;
      if (vt) opts.video = vt;
      if (this.localMute.audio || this.localMute.video) opts.muted = { ...this.localMute };
      this._ls = await call.publish(this.sid, opts);
      if (this.ended) {
        void call.unpublish(this.sid).catch(() => undefined);
        return;
      }
      this.setConnected(true);
    } catch (e) {
      this.failed(e);
    }
  }

  private async subscribe(audio: boolean, video: boolean): Promise<void> {
    try {
      const call = await this.gc._joined();
      const rs = this._rs ?? call.stream(this.address, this.sid) ?? null;
      if (!rs || rs.ended) throw new ChorusError('not_found', 'the stream has ended');
      this._bindRemote(rs);
      await rs.subscribe({ audio, video });
      if (this.ended) return;
      this.setConnected(true);
      for (const t of [rs.tracks.video, rs.tracks.audio]) if (t) this.onMedia(t.kind as 'audio' | 'video', t);
    } catch (e) {
      this.failed(e);
    }
  }

  private failed(e: unknown): void {
    console.warn(`mesibo: ${this.local ? 'publish' : 'subscribe'} of ${this.address}/${this.sid} failed:`, e);
    this.media?.getTracks().forEach((t) => t.stop());
    this.media = null;
    if (this.ended) return;
    const code = e instanceof ChorusError ? e.code : 'webrtc';
    this.lastError = { code, message: e instanceof Error ? e.message : String(e) };
    this._ended(
      C.MESIBOCALL_HANGUP_REASON_ERROR,
      code === 'forbidden' ? C.MESIBO_CALLSTATUS_NOTALLOWED : C.MESIBO_CALLSTATUS_ERROR,
    );
  }

  /** The error that ended the last `call()`, if any (`{code, message}`; Chorus extension). */
  private lastError: { code: string; message: string } | null = null;
  getError(): { code: string; message: string } | null {
    return this.lastError;
  }

  private setConnected(on: boolean): void {
    if (this.connected === on) return;
    this.connected = on;
    this.fireP('MesiboGroupcall_OnConnected', this, on);
    if (on) this.gen1?.onStatus?.(this, C.MESIBO_CALLSTATUS_CHANNELUP);
  }

  private onMedia(kind: 'audio' | 'video', t: MediaStreamTrack): void {
    if (!this.calling || this.ended || this.announcedTracks.has(t)) return;
    this.announcedTracks.add(t);
    if (!this.local && this.localMute[kind]) t.enabled = false;
    if (this.view) this.attachView(this.view);
    if (kind === 'video') {
      this.fireP('MesiboGroupcall_OnVideo', this);
      if (this.gen1) {
        if (this.gen1.elementId) this.setVideoView(this.gen1.elementId, undefined, 100, 20);
        this.gen1.onStream?.(this);
      }
    } else {
      this.fireP('MesiboGroupcall_OnAudio', this);
      if (this.gen1 && !this.hasVideo()) this.gen1.onStream?.(this);
    }
  }

  /** @internal Wires a remote stream's events once. */
  _bindRemote(rs: RemoteStream): void {
    if (this._rs === rs && this.offRs.length) return;
    for (const off of this.offRs) off();
    this._rs = rs;
    this.offRs = [
      rs.on('track', (ev) => this.onMedia(ev.kind, ev.track)),
      rs.on('muted', () => this._remoteMute()),
    ];
  }

  /** @internal The stream ended, or the call did. */
  _ended(reason: number, status: number = C.MESIBO_CALLSTATUS_COMPLETE): void {
    if (this.ended || !this.calling) {
      this.ended = true;
      return;
    }
    this.ended = true;
    this.calling = false;
    if (this.connected) {
      this.connected = false;
    }
    if (this.local) {
      this.media?.getTracks().forEach((t) => t.stop());
      this.media = null;
      this._ls = null;
      if (this.view && this.view.srcObject) this.view.srcObject = null;
    }
    this.fireP('MesiboGroupcall_OnHangup', this, reason);
    this.gen1?.onStatus?.(this, status);
  }

  /** @internal Stream-level teardown (unsubscribes listeners). */
  _dispose(): void {
    for (const off of this.offRs) off();
    this.offRs = [];
  }

  // ---------------------------------------------------------------- video views
  /**
   * Shows the video in the element with id `elementId` (retrying every `retryMs` until it exists,
   * at most `maxRetries` times); `cb(true)` once attached, `cb(false)` if it never appeared.
   */
  setVideoView(elementId: string, cb?: Cb, retryMs = 100, maxRetries = 10): void {
    let tries = 0;
    const attempt = () => {
      const el = docGet(elementId) as HTMLMediaElement | null;
      if (el) {
        this.view = el;
        this.attachView(el);
        if (typeof cb === 'function') cb(true);
        return;
      }
      if (tries++ >= maxRetries) {
        if (typeof cb === 'function') cb(false);
        return;
      }
      setTimeout(attempt, Math.max(10, retryMs || 100));
    };
    attempt();
  }
  /** Gen-1 name of `setVideoView`. */
  attach(elementId: string, cb?: Cb, retryMs?: number, maxRetries?: number): void {
    this.setVideoView(elementId, cb, retryMs, maxRetries);
  }
  getVideoView(): HTMLMediaElement | null {
    return this.view;
  }

  private attachView(el: HTMLMediaElement): void {
    if (this.local) {
      const vt = this.media?.getVideoTracks()[0];
      if (!vt || typeof MediaStream === 'undefined') return;
      const cur = el.srcObject as MediaStream | null;
      if (!cur || !cur.getVideoTracks().includes(vt)) el.srcObject = new MediaStream([vt]);
      el.muted = true; // never play your own microphone back
      play(el);
      return;
    }
    const rs = this._rs;
    if (!rs || (!rs.tracks.video && !rs.tracks.audio)) return;
    if (el.srcObject !== rs.mediaStream) rs.attach(el);
    play(el);
  }

  // ---------------------------------------------------------------- mute
  /**
   * Toggles audio: your publisher mutes what it sends (everyone sees `OnMute`); another's stream
   * is muted for you only (the track is disabled locally). Returns the new muted state.
   */
  toggleAudioMute(): boolean {
    const m = !this.ownMute().audio;
    this.mute(true, false, m);
    return m;
  }
  toggleVideoMute(): boolean {
    const m = !this.ownMute().video;
    this.mute(false, true, m);
    return m;
  }
  /** Mutes (`enable` true) or unmutes the given media. */
  mute(audio: boolean, video: boolean, enable: boolean): void {
    const next: CallMute = { audio: audio ? !!enable : this.ownMute().audio, video: video ? !!enable : this.ownMute().video };
    if (this.local) {
      this.localMute = next;
      const call = this.gc._callNow();
      if (this._ls && call?.active) {
        const m: Partial<CallMute> = {};
        if (audio) m.audio = !!enable;
        if (video) m.video = !!enable;
        call.mute(this.sid, m).catch((e: unknown) => this.gc._mesibo._error('mute', e));
      } else {
        for (const t of this.media?.getAudioTracks() ?? []) t.enabled = !next.audio;
        for (const t of this.media?.getVideoTracks() ?? []) t.enabled = !next.video;
      }
    } else {
      this.localMute = next;
      const rs = this._rs;
      if (rs?.tracks.audio) rs.tracks.audio.enabled = !next.audio;
      if (rs?.tracks.video) rs.tracks.video.enabled = !next.video;
    }
    this.fireP('MesiboGroupcall_OnMute', this, next.audio, next.video, false);
  }
  /** Gen-1: `toggleMute(video)`. */
  toggleMute(video: boolean): boolean {
    return video ? this.toggleVideoMute() : this.toggleAudioMute();
  }
  /**
   * True if muted. `remote` true: muted by the publisher (or an admin); false: muted here
   * (your own mute for your publisher, the local mute for another's stream); absent: either.
   */
  getMuteStatus(video: boolean, remote?: boolean): boolean {
    const k: keyof CallMute = video ? 'video' : 'audio';
    const r = this.remoteMute()[k];
    const l = this.ownMute()[k];
    if (remote === true) return r;
    if (remote === false) return l;
    return r || l;
  }
  /** Gen-1 name of `getMuteStatus`. */
  muteStatus(video: boolean, remote?: boolean): boolean {
    return this.getMuteStatus(video, remote);
  }

  private ownMute(): CallMute {
    if (this.local && this._ls) return { audio: this._ls.info.muted.audio, video: this._ls.info.muted.video };
    return { ...this.localMute };
  }

  /** Mute set by the stream's owner or an admin (for your publisher: by an admin). */
  private remoteMute(): CallMute {
    const admin = this.gc._adminMuted(this.address);
    if (this.local) return { ...admin };
    const own = this._rs?.info.muted ?? { audio: false, video: false };
    return { audio: own.audio || admin.audio, video: own.video || admin.video };
  }

  /** @internal The owner's or an admin's mute changed: `OnMute(p, audio, video, true)` if it did for this stream. */
  _remoteMute(): void {
    const m = this.remoteMute();
    const key = `${m.audio}/${m.video}`;
    if (key === this.lastRemoteMute) return;
    const first = this.lastRemoteMute === '';
    this.lastRemoteMute = key;
    if (first && !m.audio && !m.video) return;
    const l = this.local && this._ls ? this._ls.info.muted : { audio: false, video: false };
    this.fireP('MesiboGroupcall_OnMute', this, m.audio || l.audio, m.video || l.video, true);
    this.gc._participantUpdated(this);
  }

  /** @internal */
  _talking(talking: boolean): void {
    this.fireP('MesiboGroupcall_OnTalking', this, talking);
    this.gc._participantUpdated(this);
  }

  // ---------------------------------------------------------------- admin
  /** Moderation of this participant (needs admin rights in the group). */
  getAdmin(): MesiboParticipantAdmin {
    return new MesiboParticipantAdmin(this.gc, this);
  }

  private fireP(name: string, ...args: unknown[]): void {
    const targets = this.listener ? [this.listener] : [...this.gc._callTargets()];
    if (this.gc.gen1) targets.push(...this.gc._mesibo._listeners);
    fire(targets, name, ...args);
  }
}

/** Admin actions on one participant (`p.getAdmin()`). */
export class MesiboParticipantAdmin {
  /** @internal */
  constructor(
    private readonly gc: MesiboGroupCall,
    private readonly p: MesiboParticipant,
  ) {}
  /** Mutes (`enable`) or unmutes the user's audio/video for everyone (all the user's streams: Chorus mutes per user). */
  mute(audio: boolean, video: boolean, enable: boolean): boolean {
    return this.gc.getAdmin().mute([this.p], audio, video, enable);
  }
  toggleAudioMute(): boolean {
    return this.mute(true, false, !this.gc._adminMuted(this.p.address).audio);
  }
  toggleVideoMute(): boolean {
    return this.mute(false, true, !this.gc._adminMuted(this.p.address).video);
  }
  /** Ends this stream (`call_admin hangup`). */
  hangup(): boolean {
    return this.gc.getAdmin().hangup([this.p]);
  }
  /** Not supported: Chorus cannot make another user publish. Returns false. */
  publish(): boolean {
    console.warn('mesibo (Chorus): remote publish is not supported');
    return false;
  }
  /** Not supported: Chorus cannot make another user subscribe. Returns false. */
  subscribe(): boolean {
    console.warn('mesibo (Chorus): remote subscribe is not supported');
    return false;
  }
}

/** Room-wide moderation (`groupCall.getAdmin()`). Failures come as `Mesibo_onError({op, code, message})`. */
export class MesiboGroupCallAdmin {
  /** @internal */
  constructor(private readonly gc: MesiboGroupCall) {}

  /** Mutes (`enable` true) or unmutes `audio`/`video` of each participant's user. */
  mute(participants: MesiboParticipant[] | MesiboParticipant, audio: boolean, video: boolean, enable: boolean): boolean {
    if (!audio && !video) return false;
    const list = Array.isArray(participants) ? participants : [participants];
    const addrs = [...new Set(list.map((p) => p.address))];
    return this.run('mute', (call) =>
      Promise.all(addrs.map((address) => call.admin(enable ? 'mute' : 'unmute', { address, audio: !!audio, video: !!video }))),
    );
  }
  /** Mutes or unmutes everyone. */
  muteAll(audio: boolean, video: boolean, enable: boolean): boolean {
    if (!audio && !video) return false;
    return this.run('muteAll', (call) => call.admin(enable ? 'mute_all' : 'unmute_all', { audio: !!audio, video: !!video }));
  }
  /** Ends each participant stream. */
  hangup(participants: MesiboParticipant[] | MesiboParticipant): boolean {
    const list = Array.isArray(participants) ? participants : [participants];
    return this.run('hangup', (call) => Promise.all(list.map((p) => call.admin('hangup', { address: p.address, sid: p.sid }))));
  }
  /** Ends every other participant's streams. */
  hangupAll(): boolean {
    return this.run('hangupAll', (call) =>
      Promise.all([...call.streams.values()].map((s) => call.admin('hangup', { address: s.address, sid: s.sid }))),
    );
  }
  /** Not supported (no server-side layout in Chorus). Returns false. */
  fullscreen(_p: MesiboParticipant): boolean {
    console.warn('mesibo (Chorus): admin fullscreen is not supported');
    return false;
  }

  private run(op: string, fn: (call: GroupCall) => Promise<unknown>): boolean {
    const call = this.gc._callNow();
    if (!call || !call.active) {
      this.gc._mesibo._error(op, new ChorusError('state', 'not in the call'));
      return false;
    }
    fn(call).catch((e: unknown) => this.gc._mesibo._error(op, e));
    return true;
  }
}

/** A subscriber of one of your streams (`MesiboGroupcall_OnSubscriber(s, joined)`). */
export interface MesiboSubscriber {
  address: string;
  name: string;
  sid: number;
  getAddress(): string;
  getName(): string;
  getSid(): number;
}

/**
 * The group call of one group. Current form: `mesibo.groupCall(listener, gid)`, `join(listener)`,
 * `createPublisher(sid)`, `leave()`. Gen-1 form: `mesibo.initGroupCall()`, `setRoom(gid)`,
 * `getLocalParticipant(sid, name, address)`, callbacks `Mesibo_onParticipants(all, latest)`,
 * `Mesibo_onParticipantUpdated(all, p)`, `Mesibo_onSubscriber(s)` on the `setListener` objects.
 */
export class MesiboGroupCall {
  /** @internal */
  _finished = false;
  private call: GroupCall | null = null;
  private joining: Promise<GroupCall> | null = null;
  private joinListener: unknown = null;
  private readonly publishers = new Map<number, MesiboParticipant>();
  private readonly remotes = new Map<string, MesiboParticipant>();
  private offs: (() => void)[] = [];
  private userLeft = false;

  /** @internal Use `mesibo.groupCall(listener, gid)` or `mesibo.initGroupCall()`. */
  constructor(
    /** @internal */ readonly _mesibo: Mesibo,
    private groupListener: unknown,
    private gid: number,
    readonly gen1: boolean,
  ) {}

  /** The group id. */
  getGroupId(): number {
    return this.gid;
  }

  /** Gen-1: sets the room (group id) and joins its call. */
  setRoom(gid: number): void {
    this.gid = Number(gid);
    this.join();
  }

  /**
   * Joins the call. Streams already published, and later ones, come as
   * `MesiboGroupcall_OnPublisher(p, true)` (gen-1: `Mesibo_onParticipants(all, latest)`); a failure
   * as `Mesibo_onGroupError(groupProfile, error)`.
   */
  join(listener?: unknown): boolean {
    if (listener) this.joinListener = listener;
    if (this.joining) return true; // joined or joining
    this.userLeft = false;
    this._finished = false;
    const p = (async () => {
      const client = await this._mesibo._client();
      const call = await client.joinCall(this.gid);
      this.wire(call);
      return call;
    })();
    this.joining = p;
    p.catch((e: unknown) => {
      if (this.joining === p) this.joining = null;
      console.warn('mesibo: joining the group call failed:', e);
      fire(this.targets(), 'Mesibo_onGroupError', this._mesibo.getGroupProfile(this.gid), groupError(e));
    });
    return true;
  }

  /** Leaves the call: your streams end (`OnHangup(p, USER)`) and nothing more is received. */
  leave(): void {
    this.userLeft = true;
    const call = this.call;
    if (call?.active) void call.leave();
    else this.finish('left');
  }

  /** Your publisher `sid` (0 camera, 1.. screens and further cameras); the same object for the same sid. */
  createPublisher(sid = 0): MesiboParticipant {
    const s = Number(sid) || 0;
    let p = this.publishers.get(s);
    if (!p) {
      const self = this._mesibo.getSelfProfile();
      p = new MesiboParticipant(this, true, this._mesibo.getAddress() ?? '', s, self?.name ?? '');
      this.publishers.set(s, p);
    }
    return p;
  }

  /**
   * Gen-1: your publisher, with a display name: `getLocalParticipant(name, address)` (the camera,
   * sid 0) or `getLocalParticipant(sid, name, address)`. `address` is accepted and ignored: the
   * stream is published as the logged-in user.
   */
  getLocalParticipant(sidOrName?: number | string, nameOrAddress?: string, _address?: string): MesiboParticipant {
    const withSid = typeof sidOrName === 'number' || arguments.length >= 3;
    const sid = withSid ? Number(sidOrName) || 0 : 0;
    const name = withSid ? nameOrAddress : sidOrName;
    const p = this.createPublisher(sid);
    if (name !== undefined && name !== null && name !== '') p.setName(String(name));
    return p;
  }

  /** The remote participant streams known now. */
  getParticipants(): MesiboParticipant[] {
    return [...this.remotes.values()];
  }

  /**
   * True if you may moderate: `hangup` true asks for the hang-up right, else call control (mute).
   * In the call: the rights the server gave; before joining: your admin flags in the group
   * (`MESIBO_ADMINFLAG_HANGUP`, `CALLCONTROL`) as last loaded.
   */
  hasAdminPermissions(hangup?: boolean): boolean {
    const perms = this.call?.permissions;
    if (perms) return hangup ? perms.hangup : perms.call_control;
    const admin = this._mesibo.getGroupProfile(this.gid).permissions?.adminFlags ?? 0;
    return (admin & (hangup ? C.MESIBO_ADMINFLAG_HANGUP : C.MESIBO_ADMINFLAG_CALLCONTROL)) !== 0;
  }

  /** Room-wide moderation. */
  getAdmin(): MesiboGroupCallAdmin {
    return new MesiboGroupCallAdmin(this);
  }

  /** No-op: Chorus plays no in-call sounds. */
  playInCallSound(): void {
    /* not supported */
  }
  stopInCallSound(): void {
    /* not supported */
  }

  // ---------------------------------------------------------------- internals

  /** @internal */
  _setListener(l: unknown): void {
    this.groupListener = l;
  }
  /** @internal The listener for group-call callbacks. */
  _listener(): unknown {
    return this.joinListener ?? this.groupListener;
  }
  /** @internal Where group-call callbacks go: the call's listener, else the `setListener` objects. */
  _callTargets(): unknown[] {
    const l = this._listener();
    return l ? [l] : this._mesibo._listeners;
  }
  /** @internal */
  _callNow(): GroupCall | null {
    return this.call;
  }
  /** @internal Waits for the join. */
  _joined(): Promise<GroupCall> {
    if (this.call?.active) return Promise.resolve(this.call);
    if (this.joining) return this.joining;
    return Promise.reject(new ChorusError('state', 'join() the group call first'));
  }
  /** @internal */
  _nameOf(address: string): string {
    return this.call?.participants.get(address)?.name ?? this._mesibo.getProfile(address).getName();
  }
  /** @internal */
  _talking(address: string): boolean {
    return !!this.call?.participants.get(address)?.talking;
  }
  /** @internal */
  _adminMuted(address: string): CallMute {
    const call = this.call;
    if (!call) return { audio: false, video: false };
    if (address === call.address) return { ...call.adminMuted };
    const m = call.participants.get(address)?.admin_muted;
    return m ? { ...m } : { audio: false, video: false };
  }
  /** @internal */
  _videoResolution(): number {
    return this._mesibo.getGroupProfile(this.gid).settings?.videoResolution ?? 0;
  }
  /** @internal Gen-1: `Mesibo_onParticipantUpdated(all, p)`. */
  _participantUpdated(p: MesiboParticipant): void {
    if (this.gen1) fire(this._mesibo._listeners, 'Mesibo_onParticipantUpdated', this.getParticipants(), p);
  }
  /** @internal The Mesibo object stopped. */
  _stopped(): void {
    this.userLeft = true;
    this.finish('left');
  }

  private targets(): unknown[] {
    const l = this._listener();
    return this.gen1 || !l ? this._mesibo._listeners : [l, ...this._mesibo._listeners];
  }

  private remoteFor(rs: RemoteStream): MesiboParticipant {
    const key = `${rs.sid}:${rs.address}`;
    let p = this.remotes.get(key);
    if (!p) {
      p = new MesiboParticipant(this, false, rs.address, rs.sid, '');
      this.remotes.set(key, p);
    }
    p._bindRemote(rs);
    return p;
  }

  private participantsOf(address: string): MesiboParticipant[] {
    const out = [...this.remotes.values()].filter((p) => p.address === address);
    if (address === this.call?.address) out.push(...this.publishers.values());
    return out;
  }

  /** Gen-1: `Mesibo_onParticipants(all, latest)`, or its singular spelling `Mesibo_onParticipant` for a listener that has only that. */
  private participants(latest: MesiboParticipant[]): void {
    const all = this.getParticipants();
    for (const l of new Set(this._mesibo._listeners)) {
      if (fire([l], 'Mesibo_onParticipants', all, latest) === 0) fire([l], 'Mesibo_onParticipant', all, latest);
    }
  }

  private announce(p: MesiboParticipant, joined: boolean): void {
    if (this.gen1) {
      this.participants(joined ? [p] : []);
      return;
    }
    fire(this._callTargets(), 'MesiboGroupcall_OnPublisher', p, joined);
  }

  private wire(call: GroupCall): void {
    for (const off of this.offs) off();
    this.call = call;
    for (const p of call.participants.values()) this._mesibo._learnName(p.address, p.name);
    this.offs = [
      call.on('participant-joined', (p) => this._mesibo._learnName(p.address, p.name)),
      call.on('stream-published', (rs) => {
        const p = this.remoteFor(rs);
        this.announce(p, true);
        p._remoteMute();
      }),
      call.on('stream-unpublished', (e) => {
        if (e.local) {
          this.publishers.get(e.sid)?._ended(streamEndReason(e.reason, true));
          return;
        }
        const key = `${e.sid}:${e.address}`;
        const p = this.remotes.get(key);
        if (!p) return;
        this.remotes.delete(key);
        p._ended(streamEndReason(e.reason, false));
        p._dispose();
        this.announce(p, false);
      }),
      call.on('muted', (e) => {
        if (e.address === call.address) this.publishers.get(e.sid)?._remoteMute();
        // remote streams: via their RemoteStream's `muted` event
      }),
      call.on('participant-updated', (p) => {
        for (const x of this.participantsOf(p.address)) x._remoteMute();
      }),
      call.on('talking', (e) => {
        for (const x of this.participantsOf(e.address)) x._talking(e.talking);
      }),
      call.on('subscriber', (e) => {
        const name = this._nameOf(e.address);
        const s: MesiboSubscriber = {
          address: e.address,
          name,
          sid: e.sid,
          getAddress: () => e.address,
          getName: () => name,
          getSid: () => e.sid,
        };
        if (this.gen1) fire(this._mesibo._listeners, 'Mesibo_onSubscriber', s, e.joined);
        else fire(this._callTargets(), 'MesiboGroupcall_OnSubscriber', s, e.joined);
      }),
      call.on('left', (e) => this.finish(e.reason)),
      call.on('error', (e) => this._mesibo._error('groupcall', e)),
    ];
    const existing = [...call.streams.values()].filter((rs) => rs.ended === null).map((rs) => this.remoteFor(rs));
    if (this.gen1) {
      if (existing.length) this.participants(existing);
    } else {
      for (const p of existing) fire(this._callTargets(), 'MesiboGroupcall_OnPublisher', p, true);
    }
    for (const p of existing) p._remoteMute();
  }

  /** Out of the call (left, removed, dropped): every stream ends. */
  private finish(reason: CallLeaveReason): void {
    for (const off of this.offs) off();
    this.offs = [];
    const r = this.userLeft ? C.MESIBOCALL_HANGUP_REASON_USER : leaveReason(reason);
    for (const p of this.publishers.values()) p._ended(r);
    const remotes = [...this.remotes.values()];
    this.remotes.clear();
    for (const p of remotes) {
      p._ended(r);
      p._dispose();
      if (!this.userLeft) this.announce(p, false);
    }
    this.call = null;
    this.joining = null;
    this._finished = true;
  }
}
