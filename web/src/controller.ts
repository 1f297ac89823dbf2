// One call as the UI sees it: the SDK's GroupCall plus my local media (camera sid 0, screens 1..),
// the mute toggles, connection quality from WebRTC stats, and why the call ended.
import { ChorusError, Emitter } from 'chorus-sdk';
import type { CallLeaveReason, ChorusClient, GroupCall, LocalStream, RemoteStream } from 'chorus-sdk';
import { qualityOf, type Quality } from './lib.ts';

export interface LocalMedia {
  audio: MediaStreamTrack | null;
  video: MediaStreamTrack | null;
}

/** One tile of the grid: a participant's camera (sid 0, avatar when none) or a screen. */
export interface Tile {
  key: string;
  address: string;
  sid: number;
  name: string;
  self: boolean;
  screen: boolean;
  remote?: RemoteStream;
  localTrack?: MediaStreamTrack | null;
  audioMuted: boolean;
  videoOff: boolean;
  adminMuted: { audio: boolean; video: boolean };
  talking: boolean;
  viewOnly: boolean;
}

declare global {
  interface Window {
    __chorus?: { client: ChorusClient; call: GroupCall | null; controller?: CallController };
  }
}

/**
 * The server grants a stream at most the room's height (`info.height`); the SFU forwards no layer
 * taller than that. A single-encoding video (screens; cameras without simulcast) taller than its
 * grant is scaled down at the sender so it is forwarded at all.
 */
async function fitToGrant(ls: LocalStream, screen = false): Promise<void> {
  const granted = ls.info.height;
  const sender = ls.videoTransceiver?.sender;
  const h = ls.videoTrack?.getSettings().height;
  if (!sender) return;
  const params = sender.getParameters();
  if (!params.encodings?.length) return;
  const scale = granted && h && h > granted ? h / granted : 1;
  const shown = Math.min(h ?? granted ?? 720, granted ?? 8192);
  for (const e of params.encodings) {
    if (scale > 1) e.scaleResolutionDownBy = scale;
    // A screen's bitrate stays within what the SFU budgets for a layer of its height.
    if (screen) e.maxBitrate = shown <= 360 ? 500_000 : shown <= 720 ? 1_200_000 : 2_500_000;
  }
  if (scale > 1 || screen) await sender.setParameters(params).catch(() => undefined);
}

export class CallController extends Emitter<{ change: void }> {
  call: GroupCall | null = null;
  media: LocalMedia;
  micOn: boolean;
  camOn: boolean;
  /** Set when the call is over for us. */
  ended: { reason: CallLeaveReason; by?: string } | null = null;
  /** A notice in plain words (publish refused, screen share failed…). */
  notice: string | null = null;
  quality: Quality = 'unknown';
  joining = false;
  private screens = new Map<number, MediaStreamTrack>();
  private offs: (() => void)[] = [];
  private statsTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly client: ChorusClient,
    readonly gid: number,
    media: LocalMedia,
    opts: { micOn: boolean; camOn: boolean },
  ) {
    super();
    this.media = media;
    this.micOn = opts.micOn && !!media.audio;
    this.camOn = opts.camOn && !!media.video;
  }

  private changed = () => this.emit('change', undefined);

  get canPublish(): boolean {
    return !!this.call?.permissions.publish;
  }

  /** Joins the call (again, after a lost connection) and publishes the camera/mic if allowed. */
  async start(): Promise<void> {
    this.joining = true;
    this.ended = null;
    this.notice = null;
    this.changed();
    try {
      const call = await this.client.joinCall(this.gid, { autoSubscribe: true });
      this.call = call;
      window.__chorus = { client: this.client, call, controller: this };
      const names = [
        'participant-joined',
        'participant-updated',
        'participant-left',
        'stream-published',
        'stream-unpublished',
        'track',
        'track-removed',
        'talking',
        'speakers',
        'muted',
        'layer',
        'recording',
        'audience',
        'hand',
        'reconnecting', // the SDK joins again by itself after network trouble
        'reconnected',
      ] as const;
      for (const n of names) this.offs.push(call.on(n, this.changed));
      this.offs.push(
        call.on('left', (e) => {
          this.ended = e;
          this.stopStats();
          this.changed();
        }),
        call.on('stream-unpublished', (e) => {
          if (!e.local) return;
          if (e.sid > 0) this.stopScreenTrack(e.sid);
          if (e.reason === 'hung_up') this.notice = 'An admin stopped one of your streams.';
          if (e.reason === 'permission_revoked' && !call.live) this.notice = 'You may no longer publish in this room.';
        }),
        call.on('stage', ({ onStage }) => void this.stageChanged(onStage)),
      );
      // A host who joins late learns of the hands raised before.
      if (call.live && call.permissions.call_control && call.permissions.list) {
        void call.audience({ hands: true }).catch(() => undefined);
      }
      await this.publishCamera();
      this.startStats();
    } finally {
      this.joining = false;
      this.changed();
    }
  }

  private async publishCamera(): Promise<void> {
    const call = this.call;
    if (!call) return;
    const s = call.settings;
    const audio = s.audio ? this.media.audio : null;
    const video = s.video ? this.media.video : null;
    if (!audio && !video) return;
    if (!call.permissions.publish) {
      this.notice = call.live
        ? "You're watching the live stream. Raise your hand to ask to join the stage."
        : "You're watching: this link lets you see and hear the room, not be seen or heard.";
      return;
    }
    try {
      const ls = await call.publish(0, {
        ...(audio ? { audio } : {}),
        ...(video ? { video } : {}),
        muted: { audio: !this.micOn, video: !this.camOn },
      });
      if (ls.info.layers <= 1) await fitToGrant(ls);
    } catch (e) {
      this.notice =
        e instanceof ChorusError && e.code === 'forbidden'
          ? "You're watching: this room doesn't let you publish."
          : `Your camera and microphone could not be sent (${e instanceof Error ? e.message : String(e)}). Try leaving and joining again.`;
    }
  }

  /** Live mode: in the audience (not on stage). */
  get audience(): boolean {
    return !!this.call?.live && !this.call.permissions.publish;
  }

  /** Live mode: raises or lowers my hand. */
  async toggleHand(): Promise<void> {
    const call = this.call;
    if (!call) return;
    await call.raiseHand(!call.handRaised).catch(this.report);
    this.changed();
  }

  /**
   * Live mode: a host brought me on stage (camera and microphone, asked for now if the pre-join
   * screen had none, go out as my camera stream), or sent me back (my streams have ended; the
   * devices are released).
   */
  private async stageChanged(onStage: boolean): Promise<void> {
    const call = this.call;
    if (!call) return;
    if (onStage) {
      this.notice = 'A host brought you on stage: your camera and microphone are on.';
      this.changed();
      const s = call.settings;
      const h = Math.min(s.max_height ?? 720, 1080);
      const want = async (c: MediaStreamConstraints) => (await navigator.mediaDevices.getUserMedia(c).catch(() => null)) ?? null;
      if (s.video && !this.media.video) {
        const ms = await want({ video: { height: { ideal: h }, width: { ideal: Math.round((h * 16) / 9) } } });
        this.media.video = ms?.getVideoTracks()[0] ?? null;
        this.camOn = !!this.media.video;
      }
      if (s.audio && !this.media.audio) {
        const ms = await want({ audio: true });
        this.media.audio = ms?.getAudioTracks()[0] ?? null;
        this.micOn = !!this.media.audio;
      }
      if (!call.active || !call.permissions.publish || call.published.has(0)) return;
      if (!this.media.audio && !this.media.video) this.notice = "You're on stage, but your camera and microphone could not be started.";
      else await this.publishCamera();
    } else {
      for (const sid of [...this.screens.keys()]) this.stopScreenTrack(sid);
      this.media.audio?.stop();
      this.media.video?.stop();
      this.media = { audio: null, video: null };
      this.micOn = false;
      this.camOn = false;
      this.notice = 'You are back in the audience.';
    }
    this.changed();
  }

  private get cam(): LocalStream | undefined {
    return this.call?.published.get(0);
  }

  async toggleMic(): Promise<void> {
    const on = !this.micOn;
    this.micOn = on;
    if (this.media.audio) this.media.audio.enabled = on;
    this.changed();
    if (this.cam?.audioTrack) await this.call?.mute(0, { audio: !on }).catch(this.report);
  }

  async toggleCam(): Promise<void> {
    const on = !this.camOn;
    this.camOn = on;
    if (this.media.video) this.media.video.enabled = on;
    this.changed();
    if (this.cam?.videoTrack) await this.call?.mute(0, { video: !on }).catch(this.report);
  }

  private report = (e: unknown) => {
    this.notice = e instanceof Error ? e.message : String(e);
    this.changed();
  };

  get screenSids(): number[] {
    return [...this.screens.keys()];
  }

  /** Shares a screen (or window, or tab) as the next free sid (1, 2, …). */
  async shareScreen(): Promise<void> {
    const call = this.call;
    if (!call) return;
    let track: MediaStreamTrack | undefined;
    try {
      const ms = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      track = ms.getVideoTracks()[0];
    } catch (e) {
      if ((e as DOMException)?.name !== 'NotAllowedError') this.report(new Error("Chorus can't capture your screen in this browser."));
      return;
    }
    if (!track) return;
    let sid = 1;
    while (call.published.has(sid) || this.screens.has(sid)) sid++;
    this.screens.set(sid, track);
    track.addEventListener('ended', () => void this.stopScreen(sid));
    this.changed();
    try {
      if ('contentHint' in track) track.contentHint = 'detail';
      const ls = await call.publish(sid, { video: track, screen: true });
      await fitToGrant(ls, true);
    } catch (e) {
      this.stopScreenTrack(sid);
      this.report(
        e instanceof ChorusError && (e.code === 'forbidden' || e.code === 'limit_exceeded')
          ? new Error(e.code === 'forbidden' ? "This room doesn't allow screen sharing for you." : 'This room has as many streams as it allows.')
          : e,
      );
    }
    this.changed();
  }

  async stopScreen(sid: number): Promise<void> {
    this.stopScreenTrack(sid);
    if (this.call?.active && this.call.published.has(sid)) await this.call.unpublish(sid).catch(() => undefined);
    this.changed();
  }

  private stopScreenTrack(sid: number): void {
    this.screens.get(sid)?.stop();
    this.screens.delete(sid);
  }

  screenTrack(sid: number): MediaStreamTrack | undefined {
    return this.screens.get(sid);
  }

  async leave(): Promise<void> {
    this.stopStats();
    await this.call?.leave();
    this.dispose();
  }

  /** Stops local media and listeners (the call object stays for the end screen). */
  dispose(): void {
    this.stopStats();
    for (const off of this.offs) off();
    this.offs = [];
    for (const sid of [...this.screens.keys()]) this.stopScreenTrack(sid);
    this.media.audio?.stop();
    this.media.video?.stop();
  }

  /** Drops listeners of the old call before a rejoin. */
  resetForRejoin(): void {
    for (const off of this.offs) off();
    this.offs = [];
    for (const sid of [...this.screens.keys()]) this.stopScreenTrack(sid);
  }

  // ------------------------------------------------------------------ tiles

  tiles(): Tile[] {
    const call = this.call;
    if (!call) return [];
    const out: Tile[] = [];
    const me = call.address;
    // A live audience watches the stage: it has no tile of its own.
    const ordered = [...call.participants.values()].filter((p) => !(call.live && !p.permissions.publish)).sort((a, b) => (a.address === me ? -1 : b.address === me ? 1 : 0));
    for (const p of ordered) {
      const self = p.address === me;
      const cam = self ? undefined : call.stream(p.address, 0);
      const info = self ? this.cam?.info : cam?.info;
      const published = self ? !!this.cam : !!cam;
      out.push({
        key: `${p.address}:0`,
        address: p.address,
        sid: 0,
        name: p.name || p.address,
        self,
        screen: false,
        ...(cam ? { remote: cam } : {}),
        ...(self ? { localTrack: this.cam?.videoTrack ?? (this.camOn ? this.media.video : null) } : {}),
        audioMuted: self ? !this.micOn || call.adminMuted.audio || !this.media.audio : !published || !info?.audio || !!info?.muted.audio || p.admin_muted.audio,
        videoOff: self ? !this.camOn || call.adminMuted.video || !this.media.video : !published || !info?.video || !!info?.muted.video || p.admin_muted.video,
        adminMuted: self ? { ...call.adminMuted } : { ...p.admin_muted },
        talking: p.talking,
        viewOnly: !p.permissions.publish,
      });
    }
    for (const p of ordered) {
      const self = p.address === me;
      const sids = self
        ? [...new Set([...this.screens.keys(), ...[...call.published.keys()].filter((s) => s > 0)])]
        : p.streams.map((s) => s.sid).filter((s) => s > 0);
      for (const sid of sids.sort((a, b) => a - b)) {
        const rs = self ? undefined : call.stream(p.address, sid);
        out.push({
          key: `${p.address}:${sid}`,
          address: p.address,
          sid,
          name: `${p.name || p.address} — screen${sid > 1 ? ` ${sid}` : ''}`,
          self,
          screen: true,
          ...(rs ? { remote: rs } : {}),
          ...(self ? { localTrack: this.screens.get(sid) ?? call.published.get(sid)?.videoTrack ?? null } : {}),
          audioMuted: true,
          videoOff: false,
          adminMuted: { ...p.admin_muted },
          talking: false,
          viewOnly: false,
        });
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ quality

  private startStats(): void {
    this.stopStats();
    const tick = async () => {
      const call = this.call;
      if (!call?.active) return;
      let rtt: number | null = null;
      let lost = 0;
      let received = 0;
      for (const pc of [call.peerConnections.publish, call.peerConnections.subscribe]) {
        if (!pc) continue;
        const stats = await pc.getStats().catch(() => null);
        stats?.forEach((s: Record<string, unknown>) => {
          if (s.type === 'candidate-pair' && s.nominated && typeof s.currentRoundTripTime === 'number') {
            rtt = Math.max(rtt ?? 0, s.currentRoundTripTime);
          }
          if (s.type === 'inbound-rtp') {
            lost += Number(s.packetsLost ?? 0);
            received += Number(s.packetsReceived ?? 0);
          }
        });
      }
      const q = this.client.state !== 'online' ? 'poor' : qualityOf(rtt, received + lost > 0 ? lost / (received + lost) : null);
      if (q !== this.quality) {
        this.quality = q;
        this.changed();
      }
    };
    this.statsTimer = setInterval(() => void tick(), 2000);
    void tick();
  }

  private stopStats(): void {
    clearInterval(this.statsTimer);
    this.statsTimer = undefined;
  }
}
