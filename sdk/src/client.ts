/**
 * `ChorusClient`: one WebSocket session with a Chorus server (messaging,
 * presence, group events and call signaling), with automatic reconnect and
 * resume, plus the REST calls an app needs.
 *
 * @module client
 */
import { Emitter } from './emitter.js';
import { ChorusError } from './errors.js';
import { GroupCall, type GroupCallOptions } from './call.js';
import { DirectCall } from './direct.js';
import { RestClient, normalizeServer, type FetchLike } from './rest.js';
import { Upload, type UploadOptions } from './upload.js';
import {
  CloseCode,
  frameRid,
  parseServerFrame,
  type CallEventFrame,
  type CallIncomingFrame,
  type CallOfferFrame,
  type CallStatusFrame,
  type ClientFrame,
  type Conversation,
  type Cursor,
  type ErrorFrame,
  type FileRef,
  type GroupFrame,
  type BoardFrame,
  type GroupMediaFrame,
  type Message,
  type PresenceFrame,
  type ReceiptFrame,
  type RequestFrame,
  type ResponseFor,
  type SendFrame,
  type SentFrame,
  type ServerFrame,
  type SessionUser,
  type SyncedFrame,
  type WelcomeFrame,
} from './protocol.js';

/** The minimal WebSocket surface the client uses (the browser's `WebSocket` fits). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
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
  reconnect?: boolean | { minDelay?: number; maxDelay?: number };
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

interface Pending {
  resolve: (f: ServerFrame) => void;
  reject: (e: ChorusError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The outbox id, for sends. */
  sendId?: string;
}

/** A `send` frame as `send()` builds it: a field it has no value for is left out, never null. */
type OutboxFrame = { [K in keyof SendFrame]: Exclude<SendFrame[K], null> };

interface OutboxEntry {
  frame: OutboxFrame;
  resolve: (f: SentFrame) => void;
  reject: (e: ChorusError) => void;
  /** The connection (serial) it was last transmitted on. */
  sentOn: number;
}

const OPEN = 1;

/** A random client message id (UUID when available). */
export function newMessageId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}

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
export class ChorusClient extends Emitter<ChorusClientEvents> {
  /** Server base URL. */
  readonly server: string;
  /** REST calls with this client's token. */
  readonly rest: RestClient;
  /** Options as given. */
  readonly options: Readonly<ChorusClientOptions>;

  private ws: WebSocketLike | null = null;
  private serial = 0;
  private _state: ConnectionState = 'idle';
  private _user: SessionUser | null = null;
  private _cursor: Cursor | null;
  private _synced = false;
  private stopped = true;
  private attempts = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private pingOutstanding = false;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private ackedPos = -1;
  private ridCounter = 0;
  private pending = new Map<string, Pending>();
  private outbox = new Map<string, OutboxEntry>();
  private connectWaiters: { resolve: (w: WelcomeFrame) => void; reject: (e: ChorusError) => void }[] = [];
  private lastWelcome: WelcomeFrame | null = null;
  private _call: GroupCall | null = null;
  private joining = 0;
  private callBuffer: (CallOfferFrame | CallEventFrame)[] = [];
  /** 1:1 calls ringing on this session or placed from it. */
  private readonly direct = new Map<number, DirectCall>();
  /** `call_status` frames of calls not known yet, by call id (at most 16 calls). */
  private readonly earlyStatus = new Map<number, CallStatusFrame[]>();

  constructor(options: ChorusClientOptions) {
    super();
    this.options = options;
    this.server = normalizeServer(options.server);
    this.rest = new RestClient(this.server, options.token, { fetch: options.fetch });
    this._cursor = options.cursor ?? null;
  }

  // ------------------------------------------------------------ state

  /** The connection state. */
  get state(): ConnectionState {
    return this._state;
  }
  /** Who you are (from the last `welcome`). */
  get user(): SessionUser | null {
    return this._user;
  }
  /** Your address (from the last `welcome`). */
  get address(): string | null {
    return this._user?.address ?? null;
  }
  /** The resume cursor: the store epoch and the highest processed position. */
  get cursor(): Cursor | null {
    return this._cursor ? { ...this._cursor } : null;
  }
  /** True between `synced` and the next disconnect. */
  get synced(): boolean {
    return this._synced;
  }
  /** The call room this session is in (a group's call, or a 1:1 call's media), if any. */
  get groupCall(): GroupCall | null {
    return this._call;
  }
  /** Messages waiting for their `sent` answer, by client id. */
  get outboxSize(): number {
    return this.outbox.size;
  }
  /** The access token. Setting it takes effect at the next (re)connect. */
  get token(): string {
    return this.rest.token;
  }
  set token(t: string) {
    this.rest.token = t;
  }

  // ------------------------------------------------------------ connection

  /**
   * Opens the session (and keeps it open, reconnecting as needed). Resolves
   * with the `welcome` once the backlog is through (`synced`); rejects if the
   * token is refused or `close()` is called first.
   */
  connect(): Promise<WelcomeFrame> {
    if (this._synced && this.lastWelcome) return Promise.resolve(this.lastWelcome);
    const p = new Promise<WelcomeFrame>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.stopped) {
      this.stopped = false;
      this.attempts = 0;
      this.open();
    }
    return p;
  }

  /** Closes the session for good (no reconnect). Pending requests and unsent messages are rejected. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.endCall();
    const ws = this.ws;
    this.teardown();
    if (ws) {
      try {
        ws.close(1000, 'client closed');
      } catch {
        /* ignore */
      }
    }
    const err = new ChorusError('closed', 'the client was closed');
    for (const [, o] of this.outbox) o.reject(err);
    this.outbox.clear();
    this.rejectConnectWaiters(err);
    this.setState('closed');
  }

  /**
   * Where to open the WebSocket: with a fresh single-use ticket from `POST /v1/ws/ticket`,
   * so the access token stays out of URLs (and the logs that keep them). Falls back to
   * `?token=` when no ticket can be had (an older server, or a page on another origin:
   * the server sends no CORS headers); rejects with `unauthorized` when the token is refused.
   */
  private async wsUrl(): Promise<string> {
    const base = `${this.server.replace(/^http/i, 'ws')}/v1/ws`;
    try {
      const t = await this.rest.request<{ ticket?: unknown } | undefined>('POST', '/v1/ws/ticket');
      if (typeof t?.ticket === 'string') return `${base}?ticket=${encodeURIComponent(t.ticket)}`;
    } catch (e) {
      if (e instanceof ChorusError && e.code === 'unauthorized') throw e;
    }
    return `${base}?token=${encodeURIComponent(this.rest.token)}`;
  }

  private open(): void {
    const Ctor: WebSocketFactory | undefined =
      this.options.WebSocket ?? (globalThis as unknown as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!Ctor) throw new ChorusError('state', 'no WebSocket implementation available');
    const serial = ++this.serial;
    this.setState('connecting');
    this.wsUrl().then(
      (url) => {
        // Closed, or another attempt started, while the ticket was on its way.
        if (serial === this.serial && !this.stopped) this.openSocket(Ctor, url, serial);
      },
      () => {
        if (serial === this.serial && !this.stopped) this.authFailed(undefined);
      },
    );
  }

  private openSocket(Ctor: WebSocketFactory, url: string, serial: number): void {
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url);
    } catch (e) {
      this.scheduleReconnect(undefined);
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      if (serial !== this.serial) return;
      const hello: ClientFrame = this._cursor ? { type: 'hello', resume: this._cursor } : { type: 'hello' };
      this.transmit(hello);
    };
    ws.onmessage = (ev) => {
      if (serial !== this.serial) return;
      if (typeof ev.data !== 'string') return;
      let f: ServerFrame;
      try {
        f = parseServerFrame(ev.data);
      } catch (e) {
        console.warn('chorus: ignoring bad frame', e);
        return;
      }
      if (f.type === 'welcome') welcomed = true;
      this.handleFrame(f);
    };
    ws.onerror = () => {
      /* onclose follows */
    };
    ws.onclose = (ev) => {
      if (serial !== this.serial) return;
      this.onClosed(ev.code, welcomed);
    };
  }

  private onClosed(code: number, welcomed: boolean): void {
    this.teardown();
    if (this.stopped) return;
    if (code === CloseCode.SESSION_ENDED) {
      this.authFailed(code);
      return;
    }
    if (!welcomed && this.attempts >= 1) {
      // A refused upgrade (401) is invisible to browsers: ask REST whether the token is still good.
      this.rest.me().then(
        () => this.scheduleReconnect(code),
        (e: unknown) => {
          if (e instanceof ChorusError && e.code === 'unauthorized') this.authFailed(code);
          else this.scheduleReconnect(code);
        },
      );
      this.setState('offline', { code });
      return;
    }
    this.scheduleReconnect(code);
  }

  private authFailed(code: number | undefined): void {
    this.stopped = true;
    this.endCall();
    const err = new ChorusError('unauthorized', 'the access token is no longer valid');
    for (const [, o] of this.outbox) o.reject(err);
    this.outbox.clear();
    this.rejectConnectWaiters(err);
    this.setState('auth_failed', code === undefined ? {} : { code });
  }

  private scheduleReconnect(code: number | undefined): void {
    if (this.stopped) return;
    const r = this.options.reconnect ?? true;
    if (r === false) {
      this.stopped = true;
      this.endCall();
      this.rejectConnectWaiters(new ChorusError('disconnected', `connection closed (${code ?? 'failed'})`));
      this.setState('closed', { code });
      return;
    }
    const min = typeof r === 'object' && r.minDelay !== undefined ? r.minDelay : 1000;
    const max = typeof r === 'object' && r.maxDelay !== undefined ? r.maxDelay : 30000;
    let delay: number;
    if (code === CloseCode.FELL_BEHIND && this.attempts === 0) delay = 0;
    else delay = Math.min(max, min * 2 ** this.attempts) * (0.75 + Math.random() * 0.5);
    delay = Math.round(delay);
    this.attempts++;
    clearTimeout(this.reconnectTimer);
    this.setState('offline', { code, retryIn: delay });
    this.reconnectTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  /**
   * @internal Test hook: drops the WebSocket as a broken network would (closes it and reconnects
   * with the usual backoff). Browsers' offline emulation leaves open WebSockets alone.
   */
  _dropConnection(): void {
    const ws = this.ws;
    if (!ws || this.stopped) return;
    try {
      ws.close();
    } catch {
      /* ignore */
    }
    this.onClosed(1006, true);
  }

  /** No reconnect will come: a call waiting to rejoin ends (`lost`). */
  private endCall(): void {
    const call = this._call;
    this._call = null;
    call?._end('lost');
  }

  /** Ends the current socket's state: pending requests fail, a call waits to rejoin (or ends). */
  private teardown(): void {
    this.serial++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    }
    this._synced = false;
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    this.pingOutstanding = false;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const err = new ChorusError('disconnected', 'the connection was lost');
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(rid);
      // Sends stay in the outbox and are retried after the next `synced`.
      if (p.sendId === undefined) p.reject(err);
    }
    // A group call rejoins after the next `synced` (unless `recover: false`: it ends, `lost`).
    if (this._call && (this.stopped || this.options.reconnect === false || !this._call._connectionLost())) this.endCall();
    this.callBuffer = [];
    // The server ends the 1:1 calls this session carried (`lost`), and this session cannot hear
    // about the others any more: all end here.
    const me = this._user?.address ?? '';
    for (const call of this.direct.values()) {
      const [from, to] = call.incoming ? [call.peer, me] : [me, call.peer];
      call._update({ type: 'call_status', call: call.id, from, to, video: call.video, status: 'lost', code: 0x62, by: me });
    }
    this.direct.clear();
    this.earlyStatus.clear();
    if (ws && this._state === 'online') this.setState('offline');
  }

  private rejectConnectWaiters(err: ChorusError): void {
    const w = this.connectWaiters;
    this.connectWaiters = [];
    for (const x of w) x.reject(err);
  }

  private setState(state: ConnectionState, extra: Omit<ConnectionEvent, 'state'> = {}): void {
    const changed = state !== this._state;
    this._state = state;
    if (changed || extra.retryIn !== undefined) this.emit('connection', { state, ...extra });
  }

  // ------------------------------------------------------------ frames in

  private handleFrame(f: ServerFrame): void {
    this.emit('frame', f);
    const rid = frameRid(f);
    if (rid !== undefined) {
      const p = this.pending.get(rid);
      if (p) {
        this.pending.delete(rid);
        clearTimeout(p.timer);
        if (p.sendId !== undefined) this.settleSend(p.sendId, f);
        else if (f.type === 'error') p.reject(ChorusError.fromFrame(f));
        else p.resolve(f);
        return;
      }
    }
    switch (f.type) {
      case 'welcome':
        return this.onWelcome(f);
      case 'synced':
        return this.onSynced(f);
      case 'message': {
        const { type: _t, ...m } = f;
        this.emit('message', m);
        this.advanceCursor(f.pos);
        if (this._synced) this.scheduleAck(200);
        return;
      }
      case 'receipt':
        return this.emit('receipt', f);
      case 'presence':
        return this.emit('presence', f);
      case 'group':
        return this.emit('group', f);
      case 'board':
        return this.emit('board', f);
      case 'group_media':
        return this.emit('group_media', f);
      case 'sent':
        // A `sent` whose rid is unknown (e.g. answered after a timeout): settle by id.
        return this.settleSend(f.id, f);
      case 'call_offer':
      case 'call_event':
        if (this._call) this._call._handle(f);
        else if (this.joining > 0) this.callBuffer.push(f);
        return;
      case 'call_incoming':
        return this.onIncomingCall(f);
      case 'call_status':
        return this.onCallStatus(f);
      case 'error':
        return this.onUnsolicitedError(f);
      default:
        return;
    }
  }

  private onWelcome(f: WelcomeFrame): void {
    this._user = f.user;
    this.lastWelcome = f;
    if (!this._cursor || this._cursor.epoch !== f.epoch || (!f.resumed && f.reason)) {
      // No cursor, another store, or a cursor that cannot be honoured: start over in this epoch.
      this._cursor = { epoch: f.epoch, pos: 0 };
      this.ackedPos = -1;
    }
    this.emit('welcome', f);
  }

  private onSynced(f: SyncedFrame): void {
    this.advanceCursor(f.pos);
    this._synced = true;
    this.attempts = 0;
    this.setState('online');
    this.startPing();
    this.emit('synced', f);
    this.flushAck();
    this.flushOutbox();
    this._call?._connectionBack();
    const w = this.connectWaiters;
    this.connectWaiters = [];
    if (this.lastWelcome) for (const x of w) x.resolve(this.lastWelcome);
  }

  private onUnsolicitedError(f: ErrorFrame): void {
    const err = ChorusError.fromFrame(f);
    if (f.id !== undefined && this.outbox.has(f.id)) {
      this.settleSend(f.id, f);
      return;
    }
    if (f.code === 'unauthorized') {
      // Precedes close 4001; the close handler stops reconnecting.
    }
    this.emit('error', err);
  }

  private advanceCursor(pos: number): void {
    if (!this._cursor) return;
    if (pos > this._cursor.pos) {
      this._cursor = { epoch: this._cursor.epoch, pos };
      this.emit('cursor', { ...this._cursor });
    }
  }

  // ------------------------------------------------------------ frames out

  private transmit(frame: ClientFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Sends a request frame with a fresh `rid` and resolves with its answer
   * (rejects with `ChorusError` on an `error` answer, a timeout or a drop).
   * Requests need a live session (after `welcome`).
   */
  request<F extends RequestFrame>(frame: F, options: { timeout?: number } = {}): Promise<ResponseFor<F>> {
    return new Promise<ServerFrame>((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== OPEN || !this.lastWelcome) {
        reject(new ChorusError('disconnected', 'not connected'));
        return;
      }
      const rid = String(++this.ridCounter);
      const timeout = options.timeout ?? this.options.requestTimeout ?? 20000;
      const p: Pending = { resolve, reject, timer: undefined };
      if (timeout > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(rid);
          reject(new ChorusError('timeout', `no answer to ${frame.type} within ${timeout} ms`));
        }, timeout);
      }
      this.pending.set(rid, p);
      this.transmit({ ...frame, rid });
    }) as Promise<ResponseFor<F>>;
  }

  /**
   * Sends a message. Resolves with the `sent` answer (possibly
   * `duplicate: true` after a retry). The message waits in the outbox while
   * disconnected and is resent with the same id after each reconnect; rejects
   * with `ChorusError` (with `id` and `status`) when the server refuses it.
   */
  send(msg: OutgoingMessage): Promise<SentFrame> {
    const id = msg.id ?? newMessageId();
    const frame: OutboxFrame = { type: 'send', id };
    if (msg.peer !== undefined) frame.peer = msg.peer;
    if (msg.gid !== undefined) frame.gid = msg.gid;
    if (msg.text !== undefined) frame.text = msg.text;
    if (msg.data !== undefined) frame.data = msg.data;
    if (msg.file !== undefined) frame.file = msg.file;
    if (msg.mtype !== undefined) frame.mtype = msg.mtype;
    if (this._state === 'closed' || this._state === 'auth_failed') {
      return Promise.reject(
        this._state === 'closed'
          ? new ChorusError('closed', 'the client is closed')
          : new ChorusError('unauthorized', 'the access token is no longer valid'),
      );
    }
    const existing = this.outbox.get(id);
    if (existing) return new Promise((resolve, reject) => this.chainOutbox(existing, resolve, reject));
    return new Promise<SentFrame>((resolve, reject) => {
      const entry: OutboxEntry = { frame, resolve, reject, sentOn: -1 };
      this.outbox.set(id, entry);
      if (this._synced) this.transmitSend(entry);
    });
  }

  private chainOutbox(e: OutboxEntry, resolve: (f: SentFrame) => void, reject: (e: ChorusError) => void) {
    const r0 = e.resolve;
    const j0 = e.reject;
    e.resolve = (f) => (r0(f), resolve(f));
    e.reject = (x) => (j0(x), reject(x));
  }

  /** Ids of the messages waiting for `sent`. */
  pendingSends(): string[] {
    return [...this.outbox.keys()];
  }

  private transmitSend(entry: OutboxEntry): void {
    if (!this.ws || this.ws.readyState !== OPEN) return;
    const rid = String(++this.ridCounter);
    this.pending.set(rid, { resolve: () => {}, reject: () => {}, timer: undefined, sendId: entry.frame.id });
    entry.sentOn = this.serial;
    this.transmit({ ...entry.frame, rid });
  }

  private flushOutbox(): void {
    for (const [, e] of this.outbox) if (e.sentOn !== this.serial) this.transmitSend(e);
  }

  private settleSend(id: string, f: ServerFrame): void {
    const e = this.outbox.get(id);
    if (!e) return;
    if (f.type === 'sent') {
      this.outbox.delete(id);
      e.resolve(f);
      this.emit('sent', f);
      const { rid: _rid, type: _type, ...content } = e.frame;
      this.emit('own-message', {
        ...content,
        mid: f.mid,
        from: this._user?.address ?? '',
        seq: f.seq,
        pos: f.pos,
        ts: f.ts,
        mtype: e.frame.mtype ?? 0,
        edited: false,
        deleted: false,
      });
    } else if (f.type === 'error') {
      this.outbox.delete(id);
      e.reject(ChorusError.fromFrame({ ...f, id: f.id ?? id }));
    }
  }

  /** Edits one of your messages (`text`/`data` replace the old ones). */
  async edit(mid: number, content: { text?: string; data?: unknown }): Promise<void> {
    await this.request({ type: 'edit', mid, ...content });
  }

  /** Deletes one of your messages (leaves a tombstone). */
  async delete(mid: number): Promise<void> {
    await this.request({ type: 'delete', mid });
  }

  /** Marks a conversation read up to and including `seq`. */
  async read(to: Conversation & { seq: number }): Promise<void> {
    await this.request(to.gid !== undefined ? { type: 'read', gid: to.gid, seq: to.seq } : { type: 'read', peer: to.peer, seq: to.seq });
  }

  /** Typing started (`on`, default true) or stopped in a conversation. No answer; failures come as `error` events. */
  typing(to: Conversation & { on?: boolean }): void {
    const on = to.on ?? true;
    this.transmit(to.gid !== undefined ? { type: 'typing', gid: to.gid, on } : { type: 'typing', peer: to.peer, on });
  }

  /** Sends `ack` for everything processed up to `pos` (default: the cursor). Done automatically unless `autoAck: false`. */
  ack(pos?: number): void {
    const p = pos ?? this._cursor?.pos;
    if (p === undefined) return;
    if (this.transmit({ type: 'ack', pos: p })) this.ackedPos = Math.max(this.ackedPos, p);
  }

  private scheduleAck(delay: number): void {
    if (this.options.autoAck === false || this.ackTimer !== undefined) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      this.flushAck();
    }, delay);
  }

  private flushAck(): void {
    if (this.options.autoAck === false || !this._cursor) return;
    if (this._cursor.pos > this.ackedPos) this.ack(this._cursor.pos);
  }

  /** Round trip to the server; resolves with the time taken in ms. */
  async ping(): Promise<number> {
    const t0 = Date.now();
    await this.request({ type: 'ping' });
    return Date.now() - t0;
  }

  private startPing(): void {
    clearInterval(this.pingTimer);
    const every = this.options.pingInterval ?? 25000;
    if (every <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.pingOutstanding) {
        // The last ping went unanswered for a whole interval: the connection is dead.
        const ws = this.ws;
        this.onClosed(1006, true);
        try {
          ws?.close(4002, 'ping timeout');
        } catch {
          /* ignore */
        }
        return;
      }
      this.pingOutstanding = true;
      this.request({ type: 'ping' }, { timeout: 0 }).then(
        () => (this.pingOutstanding = false),
        () => (this.pingOutstanding = false),
      );
    }, every);
  }

  // ------------------------------------------------------------ calls

  /**
   * Joins the call of group `gid` (leaving any call this session is in) and
   * resolves with the `GroupCall` once the server answered `call_joined`.
   */
  async joinCall(gid: number, options: GroupCallOptions = {}): Promise<GroupCall> {
    if (this._call) {
      const old = this._call;
      this._call = null;
      old._end('left');
    }
    this.joining++;
    try {
      const joined = await this.request({ type: 'call_join', gid });
      const call = new GroupCall(this, joined, {
        RTCPeerConnection: this.options.RTCPeerConnection,
        ...options,
      });
      this._call = call;
      // Frames of the call this session has just left may still arrive: only this call's.
      const buffered = this.callBuffer.filter((f) => f.gid === gid);
      this.callBuffer = [];
      call._start();
      for (const f of buffered) call._handle(f);
      return call;
    } finally {
      this.joining--;
      if (this.joining === 0) this.callBuffer = [];
    }
  }

  /**
   * Places a 1:1 call to `address` (docs/protocol.md §17). Resolves with the `DirectCall` once
   * the server placed it; its `status` events follow (`ringing`, then `answered` — join its media
   * with `call.join()` — or how it ended: `busy`, `declined`, `no_answer`, `offline`, …). Rejects
   * with `ChorusError` (`not_found`: no such user; `bad_request`: yourself; `conflict`: you are
   * in a 1:1 call already), its `status` being Mesibo's call status.
   */
  async call(address: string, options: { video?: boolean } = {}): Promise<DirectCall> {
    const video = options.video ?? false;
    const f = await this.request({ type: 'call_dial', peer: address, video });
    const call = new DirectCall(this, { id: f.call, peer: f.peer, name: f.peer, video: f.video, incoming: false });
    this.trackDirect(call);
    return call;
  }

  /** The 1:1 calls this session is ringing with or has placed, not yet ended. */
  get directCalls(): DirectCall[] {
    return [...this.direct.values()];
  }

  private trackDirect(call: DirectCall): void {
    this.direct.set(call.id, call);
    // Statuses that overtook the call's creation (the answer to call_dial may come after them).
    const early = this.earlyStatus.get(call.id) ?? [];
    this.earlyStatus.delete(call.id);
    for (const f of early) this.applyCallStatus(call, f);
  }

  private onIncomingCall(f: CallIncomingFrame): void {
    const call = DirectCall._incoming(this, f);
    this.trackDirect(call);
    if (!call.ended) this.emit('incoming-call', call);
  }

  private onCallStatus(f: CallStatusFrame): void {
    this.emit('call-status', f);
    const call = this.direct.get(f.call);
    if (call) return this.applyCallStatus(call, f);
    // Kept briefly for a call this session is about to learn of (bounded).
    if (this.earlyStatus.size >= 16) this.earlyStatus.delete(this.earlyStatus.keys().next().value as number);
    this.earlyStatus.set(f.call, [...(this.earlyStatus.get(f.call) ?? []), f]);
  }

  private applyCallStatus(call: DirectCall, f: CallStatusFrame): void {
    call._update(f);
    if (call.ended) this.direct.delete(call.id);
  }

  /** @internal Called by a GroupCall that ended itself. */
  _callEnded(call: GroupCall): void {
    if (this._call === call) this._call = null;
  }

  // ------------------------------------------------------------ REST shortcuts

  /** `GET /v1/me`. */
  me() {
    return this.rest.me();
  }
  /** `POST /v1/groups`. */
  createGroup(options: Parameters<RestClient['createGroup']>[0]) {
    return this.rest.createGroup(options);
  }
  /** `POST /v1/groups/{gid}/join`. */
  joinGroup(gid: number, pin: string) {
    return this.rest.joinGroup(gid, pin);
  }
  /** `GET /v1/groups/{gid}/members`. */
  members(gid: number) {
    return this.rest.members(gid);
  }
  /** `GET /v1/groups/{gid}/board`: the group's whiteboard. */
  board(gid: number) {
    return this.rest.board(gid);
  }
  /** `PUT /v1/groups/{gid}/board`: replace the whiteboard (only if still at `version`, when given). */
  setBoard(gid: number, objs: Record<string, unknown>[], version?: number) {
    return this.rest.setBoard(gid, objs, version);
  }
  /** `POST /v1/groups/{gid}/board`: add objects to the whiteboard. */
  appendBoard(gid: number, objs: Record<string, unknown>[]) {
    return this.rest.appendBoard(gid, objs);
  }
  /** `GET /v1/groups/{gid}/pins`. */
  pins(gid: number) {
    return this.rest.pins(gid);
  }
  /** `GET /v1/groups`. */
  groups() {
    return this.rest.groups();
  }
  /** `GET /v1/groups/{gid}`. */
  group(gid: number) {
    return this.rest.group(gid);
  }
  /** History of a conversation (REST). */
  history(conv: Conversation, options?: { before?: number; limit?: number }) {
    return this.rest.history(conv, options);
  }

  // ------------------------------------------------------------ files and media

  /**
   * Uploads `file` by tus (docs/protocol.md 16.1), starting at once: listen to `progress`,
   * `pause()`/`resume()`/`cancel()` it, await `done` for the file's id. A broken connection
   * resumes from the server's offset by itself.
   */
  upload(file: Blob, options: UploadOptions = {}): Upload {
    return new Upload(this.server, () => this.rest.token, file, { fetch: this.options.fetch, ...options });
  }

  /**
   * Sends `file` as a chat message to `to` (`{ peer }` or `{ gid }`): uploads it (`onUpload`
   * gets the `Upload` for progress, pause and cancel), then sends a message carrying the stored
   * file, which only the conversation's members can read. Resolves with the upload id and the
   * server's `sent`.
   */
  async sendFile(
    to: Conversation,
    file: Blob,
    options: UploadOptions & { text?: string; onUpload?: (u: Upload) => void; messageId?: string } = {},
  ): Promise<{ upload: string; sent: SentFrame }> {
    const { text, onUpload, messageId, ...uploadOptions } = options;
    const up = this.upload(file, uploadOptions);
    onUpload?.(up);
    const upload = await up.done;
    const msg: OutgoingMessage = { ...to, file: { url: '', upload, name: up.name } };
    if (text !== undefined) msg.text = text;
    if (messageId !== undefined) msg.id = messageId;
    return { upload, sent: await this.send(msg) };
  }

  /** `GET /v1/groups/{gid}/media`: one page of a group's media library, newest first. */
  media(gid: number, options?: { before?: string; limit?: number }) {
    return this.rest.media(gid, options);
  }
  /** `POST /v1/groups/{gid}/media`: adds a finished upload to the library (members get `group_media`). */
  addMedia(gid: number, upload: string) {
    return this.rest.addMedia(gid, upload);
  }
  /** `DELETE /v1/groups/{gid}/media/{id}`. */
  deleteMedia(gid: number, id: string) {
    return this.rest.deleteMedia(gid, id);
  }
  /** A signed URL of a stored file to play or show (`<video src>`, `<img src>`): `POST /v1/files/{id}/url`. */
  playUrl(id: string) {
    return this.rest.fileUrl(id);
  }
}
