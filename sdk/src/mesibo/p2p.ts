/**
 * Mesibo's 1:1 call API on Chorus 1:1 calls (docs/protocol.md §17): `setupVideoCall` /
 * `setupVoiceCall`, `call(address)`, `answer(video)`, `hangup(callid)`, `mute`,
 * `toggleAudioMute`, `toggleVideoMute`; `Mesibo_OnCall(callid, from, video)` when a call rings and
 * `Mesibo_OnCallStatus(callid, status)` with Mesibo's status numbers (`MESIBO_CALLSTATUS_*`, as the
 * server sends them: RINGING, ANSWER, then COMPLETE, CANCEL, NOANSWER, BUSY, OFFLINE or
 * NETWORKERROR; CHANNELUP once the other side's media arrive). Every status ≥ 0x40 ends the call.
 *
 * The media go through the SFU: once answered, both sides join the call's room, publish the
 * camera and microphone (`getUserMedia`) shown in the local element, and the other side's stream
 * plays in the remote element (or the audio element of a voice call).
 *
 * @module mesibo/p2p
 */
import type { ChorusClient } from '../client.js';
import type { GroupCall } from '../call.js';
import type { DirectCall } from '../direct.js';
import { ChorusError } from '../errors.js';
import { C } from './constants.js';
import { fire } from './dispatch.js';
import { docGet, play } from './groupcall.js';

interface Setup {
  video: boolean;
  local: string | null;
  remote: string | null;
}

/** One Mesibo instance's 1:1 calls (at most one at a time, as in Mesibo). */
export class MesiboP2P {
  private setup: Setup = { video: true, local: null, remote: null };
  private current: DirectCall | null = null;
  private local: MediaStream | null = null;
  private media: GroupCall | null = null;
  private muted = { audio: false, video: false };
  private connected = false;

  constructor(private readonly listeners: unknown[]) {}

  /** Starts listening for calls ringing on `client`'s session. */
  attach(client: ChorusClient): void {
    client.on('incoming-call', (call) => {
      if (this.current && !this.current.ended) return; // the server reports busy to the caller
      this.track(call);
      fire(this.listeners, 'Mesibo_onCall', call.id, call.peer, call.video);
    });
  }

  /** The next call is a video call shown in these elements (ids); `enable` false: voice only. */
  setupVideoCall(localVideoId: string, remoteVideoId: string, enable = true): void {
    this.setup = { video: enable !== false, local: localVideoId ?? null, remote: remoteVideoId ?? null };
  }

  /** The next call is a voice call played in this `<audio>` element. */
  setupVoiceCall(audioElementId: string): void {
    this.setup = { video: false, local: null, remote: audioElementId ?? null };
  }

  /** Calls `address`. Returns 0; what follows comes as `Mesibo_onCallStatus`. */
  call(client: Promise<ChorusClient>, address: string): number {
    if (this.current && !this.current.ended) {
      setTimeout(() => this.status(0, C.MESIBO_CALLSTATUS_INVALIDSTATE), 0);
      return -1;
    }
    void client
      .then((c) => c.call(String(address ?? ''), { video: this.setup.video }))
      .then((call) => {
        this.track(call);
        // Statuses that came before the call was known were applied already: report the latest.
        if (call.heard) this.status(call.id, call.code);
      })
      .catch((e: unknown) => {
        const status = e instanceof ChorusError && e.status !== undefined ? e.status : C.MESIBO_CALLSTATUS_ERROR;
        this.status(0, status);
      });
    return 0;
  }

  /** Answers the ringing call (`video` false: answer a video call with audio only). */
  answer(video = true): number {
    const call = this.current;
    if (!call || !call.incoming || call.status !== 'ringing') return -1;
    const wantVideo = call.video && video !== false && this.setup.video;
    call.answer({ autoSubscribe: true }).then(
      (media) => this.startMedia(call, media, wantVideo),
      () => this.status(call.id, C.MESIBO_CALLSTATUS_INVALIDSTATE),
    );
    return 0;
  }

  /** Hangs up (or cancels, or declines) the call; `callid` 0: the current one. */
  hangup(callid = 0): number {
    const call = this.current;
    if (!call || (callid && Number(callid) !== call.id)) return -1;
    void call.hangup().catch(() => undefined);
    this.stopMedia();
    return 0;
  }

  /** Mutes (`enable` true) or unmutes your audio and/or video. */
  mute(audio: boolean, video: boolean, enable: boolean): void {
    if (audio) this.muted.audio = !!enable;
    if (video) this.muted.video = !!enable;
    this.applyMute();
  }
  toggleAudioMute(): boolean {
    this.muted.audio = !this.muted.audio;
    this.applyMute();
    return this.muted.audio;
  }
  toggleVideoMute(): boolean {
    this.muted.video = !this.muted.video;
    this.applyMute();
    return this.muted.video;
  }

  /** The client stopped: the call is gone with the session. */
  stopped(): void {
    this.stopMedia();
    this.current = null;
  }

  // ---------------------------------------------------------------- internals

  private status(callid: number, status: number): void {
    fire(this.listeners, 'Mesibo_onCallStatus', callid, status);
  }

  private track(call: DirectCall): void {
    this.current = call;
    this.connected = false;
    const joinAsCaller = () =>
      call.join({ autoSubscribe: true }).then(
        (media) => this.startMedia(call, media, call.video && this.setup.video),
        () => this.status(call.id, C.MESIBO_CALLSTATUS_ERROR),
      );
    call.on('status', (s) => {
      this.status(call.id, s.code);
      if (s.status === 'answered' && !call.incoming) void joinAsCaller();
    });
    if (call.status === 'answered' && !call.incoming) void joinAsCaller();
    call.on('ended', () => {
      if (this.current === call) {
        this.stopMedia();
        this.current = null;
      }
    });
  }

  private async startMedia(call: DirectCall, media: GroupCall, video: boolean): Promise<void> {
    this.media = media;
    media.on('track', (ev) => {
      const el = docGet(this.setup.remote ?? '') as HTMLMediaElement | null;
      if (el && (ev.kind === 'video' || !video)) {
        ev.stream.attach(el);
        play(el);
      }
      if (!this.connected) {
        this.connected = true;
        this.status(call.id, C.MESIBO_CALLSTATUS_CHANNELUP);
      }
    });
    try {
      const md = (globalThis as { navigator?: Navigator }).navigator?.mediaDevices;
      if (!md) throw new ChorusError('webrtc', 'navigator.mediaDevices is not available');
      const local = await md.getUserMedia({ audio: true, video });
      if (call.ended) {
        local.getTracks().forEach((t) => t.stop());
        return;
      }
      this.local = local;
      this.applyMute();
      const lv = this.setup.local ? (docGet(this.setup.local) as HTMLVideoElement | null) : null;
      if (lv && video) {
        lv.muted = true;
        lv.srcObject = local;
        play(lv);
      }
      const opts: { audio?: MediaStreamTrack; video?: MediaStreamTrack; simulcast: boolean } = { simulcast: false };
      const at = local.getAudioTracks()[0];
      const vt = local.getVideoTracks()[0];
      if (at) opts.audio = at;
      if (vt) opts.video = vt;
      await media.publish(0, opts);
    } catch (e) {
      fire(this.listeners, 'Mesibo_onError', e);
      this.status(call.id, C.MESIBO_CALLSTATUS_HWERROR);
    }
  }

  private applyMute(): void {
    for (const t of this.local?.getAudioTracks() ?? []) t.enabled = !this.muted.audio;
    for (const t of this.local?.getVideoTracks() ?? []) t.enabled = !this.muted.video;
    const media = this.media;
    if (media?.active) void media.mute(0, { ...this.muted }).catch(() => undefined);
  }

  private stopMedia(): void {
    this.local?.getTracks().forEach((t) => t.stop());
    this.local = null;
    if (this.media?.active) void this.media.leave();
    this.media = null;
    for (const id of [this.setup.local, this.setup.remote]) {
      const el = id ? (docGet(id) as HTMLMediaElement | null) : null;
      if (el) el.srcObject = null;
    }
  }
}
