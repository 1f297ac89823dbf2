// Test doubles: a scriptable WebSocket and a minimal RTCPeerConnection.
import type { WebSocketLike } from '../src/client.ts';

/** Lets queued timers and promise callbacks run. */
export async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}

/** Waits until `cond()` is true (or fails after `ms`). */
export async function until(cond: () => boolean, ms = 1000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 1));
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export class FakeWebSocket implements WebSocketLike {
  static instances: FakeWebSocket[] = [];
  static reset(): void {
    FakeWebSocket.instances = [];
  }
  static get last(): FakeWebSocket {
    const ws = FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    if (!ws) throw new Error('no socket yet');
    return ws;
  }
  /** Waits until the `n`-th socket (from 1) has been opened (the client fetches a ticket first). */
  static async nth(n: number): Promise<FakeWebSocket> {
    await until(() => FakeWebSocket.instances.length >= n);
    return FakeWebSocket.instances[n - 1]!;
  }

  readyState = 0;
  readonly url: string;
  readonly sent: Json[] = [];
  closedWith: number | undefined;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(url: string) {
    this.url = url;
    FakeWebSocket.instances.push(this);
  }
  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }
  close(code?: number): void {
    this.closedWith = code ?? 1000;
    this.readyState = 3;
  }

  // -- test side
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(frame: Json): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  ofType(type: string): Json[] {
    return this.sent.filter((f) => f.type === type);
  }
  lastOf(type: string): Json {
    const all = this.ofType(type);
    const f = all[all.length - 1];
    if (!f) throw new Error(`no ${type} frame sent; sent: ${JSON.stringify(this.sent)}`);
    return f;
  }
  /** Answers the last request of `type` with `reply` (rid copied). */
  reply(type: string, reply: Json): void {
    this.receive({ ...reply, rid: this.lastOf(type).rid });
  }
  /** Plays the server side of the hello handshake. */
  handshake(opts: { epoch?: string; resumed?: boolean; pos?: number; address?: string } = {}): void {
    if (this.readyState !== 1) this.open();
    this.receive({
      type: 'welcome',
      session: '1',
      user: { uid: 1, address: opts.address ?? 'uA', name: 'Ann' },
      epoch: opts.epoch ?? 'E1',
      resumed: opts.resumed ?? false,
    });
    this.receive({ type: 'synced', pos: opts.pos ?? 0, count: 0, complete: true });
  }
}

export class FakeTrack {
  enabled = true;
  readonly id: string;
  constructor(
    readonly kind: 'audio' | 'video',
    private readonly height = 720,
  ) {
    this.id = `${kind}-${Math.random().toString(16).slice(2)}`;
  }
  getSettings(): { height?: number } {
    return this.kind === 'video' ? { height: this.height } : {};
  }
}

export class FakeSender {
  params: { encodings: Json[] };
  readonly setCalls: Json[] = [];
  constructor(
    public track: FakeTrack | null,
    encodings: Json[] | undefined,
  ) {
    this.params = { encodings: (encodings ?? [{}]).map((e) => ({ active: true, ...e })) };
  }
  getParameters(): Json {
    return JSON.parse(JSON.stringify(this.params));
  }
  async replaceTrack(t: FakeTrack | null): Promise<void> {
    this.track = t;
  }
  async setParameters(p: Json): Promise<void> {
    this.setCalls.push(p);
    this.params = p;
  }
}

export class FakeTransceiver {
  mid: string | null = null;
  stopped = false;
  readonly sender: FakeSender;
  readonly receiver: { track: FakeTrack };
  constructor(
    readonly kind: 'audio' | 'video',
    public direction: string,
    track: FakeTrack | null,
    readonly init: Json,
  ) {
    this.sender = new FakeSender(track, init?.sendEncodings);
    this.receiver = { track: new FakeTrack(kind) };
  }
  stop(): void {
    this.stopped = true;
  }
}

/**
 * Fake SDP for offers from the "server": `m=<mid>:<kind>` tokens, e.g.
 * `"v=0 m=0:audio m=1:video"`.
 */
export class FakePeerConnection {
  static instances: FakePeerConnection[] = [];
  static reset(): void {
    FakePeerConnection.instances = [];
  }
  readonly transceivers: FakeTransceiver[] = [];
  localDescription: { type: string; sdp: string } | null = null;
  remoteDescription: { type: string; sdp: string } | null = null;
  signalingState = 'stable';
  ontrack: ((e: Json) => void) | null = null;
  iceConnectionState = 'new';
  oniceconnectionstatechange: (() => void) | null = null;
  closed = false;
  offers = 0;
  /** The options of each `createOffer`. */
  readonly offerOptions: Json[] = [];
  readonly log: string[] = [];
  private nextMid = 0;

  constructor(readonly config?: Json) {
    FakePeerConnection.instances.push(this);
  }
  addTransceiver(track: FakeTrack, init: Json): FakeTransceiver {
    const t = new FakeTransceiver(track.kind, init?.direction ?? 'sendrecv', track, init);
    this.transceivers.push(t);
    this.log.push(`addTransceiver:${track.kind}`);
    return t;
  }
  getTransceivers(): FakeTransceiver[] {
    return [...this.transceivers];
  }
  async createOffer(options?: Json): Promise<{ type: string; sdp: string }> {
    this.offers++;
    this.offerOptions.push(options ?? {});
    const lines = this.transceivers.map((t, i) => `m=${t.mid ?? 'new' + i}:${t.kind}${t.stopped ? ':stopped' : ''}`);
    const restart = options?.iceRestart ? ' ice-restart' : '';
    return { type: 'offer', sdp: `v=0 offer#${this.offers}${restart} ${lines.join(' ')}` };
  }
  /** Test side: the ICE connection state changes. */
  setIce(state: string): void {
    this.iceConnectionState = state;
    this.oniceconnectionstatechange?.();
  }
  async createAnswer(): Promise<{ type: string; sdp: string }> {
    return { type: 'answer', sdp: `v=0 answer to ${this.remoteDescription?.sdp}` };
  }
  async setLocalDescription(d: { type: string; sdp?: string }): Promise<void> {
    this.log.push(`setLocal:${d.type}`);
    if (d.type === 'rollback') {
      this.signalingState = 'stable';
      return;
    }
    for (const t of this.transceivers) if (t.mid === null && !t.stopped) t.mid = String(this.nextMid++);
    this.localDescription = { type: d.type, sdp: d.sdp ?? '' };
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
  }
  async setRemoteDescription(d: { type: string; sdp: string }): Promise<void> {
    this.log.push(`setRemote:${d.type}`);
    this.remoteDescription = d;
    if (d.type === 'answer') {
      this.signalingState = 'stable';
      return;
    }
    this.signalingState = 'have-remote-offer';
    for (const m of d.sdp.matchAll(/m=(\w+):(audio|video)/g)) {
      const [, mid, kind] = m as unknown as [string, string, 'audio' | 'video'];
      if (this.transceivers.some((t) => t.mid === mid)) continue;
      const t = new FakeTransceiver(kind, 'recvonly', null, {});
      t.mid = mid;
      this.transceivers.push(t);
      this.ontrack?.({ track: t.receiver.track, transceiver: t, streams: [] });
    }
  }
  close(): void {
    this.closed = true;
  }
}
