// 1:1 calls for the web app: one controller per session (placing, ringing, answering, hanging
// up, and the media of the answered call), rendered by Direct.tsx. See docs/protocol.md §17.
import type { ChorusClient, DirectCall, GroupCall, RemoteStream } from 'chorus-sdk';

/** What a call's status means to the user. */
export function statusText(call: DirectCall, peerName: string): string {
  switch (call.status) {
    case 'ringing':
      return call.incoming ? `${peerName} is calling…` : `Calling ${peerName}…`;
    case 'answered':
      return 'Connected';
    case 'busy':
      return `${peerName} is in another call`;
    case 'declined':
      return call.incoming ? 'You declined the call' : `${peerName} declined the call`;
    case 'no_answer':
      return call.incoming ? 'Missed call' : `${peerName} did not answer`;
    case 'offline':
      return `${peerName} is not online`;
    case 'canceled':
      return call.incoming ? 'Missed call' : 'Call canceled';
    case 'ended':
      return 'Call ended';
    case 'lost':
      return 'The connection was lost';
  }
}

export class DirectCalls {
  /** A call ringing on this tab, not answered yet. */
  incoming: DirectCall | null = null;
  /** The call placed or answered from this tab. */
  active: DirectCall | null = null;
  remote: RemoteStream | null = null;
  local: MediaStream | null = null;
  notice: string | null = null;
  /** The other side's display name. */
  peerName = '';
  private media: GroupCall | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly client: ChorusClient) {
    client.on('incoming-call', (call) => {
      if (this.active || this.incoming) return; // the server tells the caller we are busy
      this.incoming = call;
      this.peerName = call.name;
      this.notice = null;
      call.on('ended', () => {
        if (this.incoming === call) this.incoming = null;
        this.notice = statusText(call, this.peerName);
        this.changed();
      });
      this.changed();
    });
  }

  /** Calls `onChange` on every change; returns the unsubscribe function. */
  subscribe(onChange: () => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  async place(address: string, video: boolean, name = address): Promise<void> {
    if (this.active) return;
    this.notice = null;
    this.peerName = name;
    try {
      const call = await this.client.call(address, { video });
      this.track(call);
      if (call.status === 'answered') void this.startMedia(call, call.join({ autoSubscribe: true }));
    } catch (e) {
      this.notice = `Could not call: ${e instanceof Error ? e.message : String(e)}`;
      this.changed();
    }
  }

  async answer(): Promise<void> {
    const call = this.incoming;
    if (!call) return;
    this.incoming = null;
    this.track(call);
    await this.startMedia(call, call.answer({ autoSubscribe: true }));
  }

  async decline(): Promise<void> {
    const call = this.incoming;
    this.incoming = null;
    this.changed();
    await call?.decline().catch(() => undefined);
  }

  async hangup(): Promise<void> {
    const call = this.active;
    if (!call) return;
    const ringing = call.status === 'ringing';
    await call.hangup().catch(() => undefined);
    // The server's `ok` may come before the call's `ended` status (then `stop` below is the
    // only one that runs for this call): say how it ended here.
    this.stop(call, ringing ? 'Call canceled' : 'Call ended');
  }

  private track(call: DirectCall): void {
    this.active = call;
    call.on('status', (s) => {
      if (s.status === 'answered' && !call.incoming) void this.startMedia(call, call.join({ autoSubscribe: true }));
      if (call.ended) this.stop(call);
      this.changed();
    });
    this.changed();
  }

  private async startMedia(call: DirectCall, joining: Promise<GroupCall>): Promise<void> {
    try {
      const media = await joining;
      this.media = media;
      media.on('track', (ev) => {
        this.remote = ev.stream;
        this.changed();
      });
      const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.video });
      if (call.ended) return local.getTracks().forEach((t) => t.stop());
      this.local = local;
      this.changed();
      const opts: { audio?: MediaStreamTrack; video?: MediaStreamTrack; simulcast: boolean } = { simulcast: false };
      const a = local.getAudioTracks()[0];
      const v = local.getVideoTracks()[0];
      if (a) opts.audio = a;
      if (v) opts.video = v;
      await media.publish(0, opts);
    } catch (e) {
      this.notice = `Call media failed: ${e instanceof Error ? e.message : String(e)}`;
      await call.hangup().catch(() => undefined);
      this.stop(call);
    }
  }

  /** Ends this tab's part in `call`; `ours`: what to say when we ended it ourselves. */
  private stop(call: DirectCall, ours?: string): void {
    if (this.active !== call) return;
    if (call.ended) this.notice = statusText(call, this.peerName);
    else if (ours) this.notice = ours;
    this.active = null;
    this.remote = null;
    this.local?.getTracks().forEach((t) => t.stop());
    this.local = null;
    if (this.media?.active) void this.media.leave();
    this.media = null;
    this.changed();
  }

  dispose(): void {
    if (this.active) void this.hangup();
    this.listeners.clear();
  }
}
