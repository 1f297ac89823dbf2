/**
 * The `Mesibo` object: Mesibo's JavaScript API (setup, connection, profiles' registry, messages,
 * presence, the entry points of calls) on top of `ChorusClient`; profiles and group management are
 * in `profile.ts`, messages and read sessions in `messages.ts`, calls in `groupcall.ts`/`p2p.ts`. See sdk/README.md, "Mesibo compatibility layer", for what maps to what and
 * what Chorus cannot do.
 *
 * @module mesibo/mesibo
 */
import { ChorusClient, type ChorusClientOptions, type ConnectionEvent, type WebSocketFactory } from '../client.js';
import { ChorusError } from '../errors.js';
import type { FetchLike } from '../rest.js';
import { CloseCode, type Conversation, type FileRef, type GroupFrame, type Message, type PresenceFrame, type ReceiptFrame } from '../protocol.js';
import { C } from './constants.js';
import { fire } from './dispatch.js';
import { signedUrl, uploadBlob } from './files.js';
import { MesiboGroupCall } from './groupcall.js';
import { MesiboHttpRequest } from './http.js';
import { MesiboP2P } from './p2p.js';
import { MesiboMessage, MesiboReadSession, failureStatus, fromChorus, type MesiboParams } from './messages.js';
import { MesiboProfile, groupError, type MesiboGroupSettings } from './profile.js';

/** Chorus extensions: where the server is and (for tests) the transport implementations. */
export interface MesiboOptions {
  /**
   * Server base URL. Default: the origin the bundle was loaded from (`<script src>`), else
   * `location.origin`. Also `setServer(url)`.
   */
  server?: string;
  WebSocket?: WebSocketFactory;
  RTCPeerConnection?: typeof RTCPeerConnection;
  fetch?: FetchLike;
  reconnect?: ChorusClientOptions['reconnect'];
  pingInterval?: number;
}

/** The origin of the script the bundle was loaded from (set by the bundle's entry, `global.ts`). */
let bundleServer: string | undefined;

/**
 * @internal The default server: the origin of `scriptSrc` (the bundle's own `<script src>`).
 * Ignored unless it is an http(s) URL.
 */
export function _setBundleServer(scriptSrc: string | null | undefined): void {
  bundleServer = undefined;
  if (!scriptSrc) return;
  try {
    const u = new URL(scriptSrc);
    if (u.protocol === 'http:' || u.protocol === 'https:') bundleServer = u.origin;
  } catch {
    /* not a URL: keep the page's origin */
  }
}

const CONNECTION_STATUS: Record<ConnectionEvent['state'], number> = {
  idle: C.MESIBO_STATUS_UNKNOWN,
  connecting: C.MESIBO_STATUS_CONNECTING,
  online: C.MESIBO_STATUS_ONLINE,
  offline: C.MESIBO_STATUS_OFFLINE,
  closed: C.MESIBO_STATUS_STOPPED,
  auth_failed: C.MESIBO_STATUS_AUTHFAIL,
};

let instance: Mesibo | null = null;

/**
 * Mesibo's `Mesibo` object. `new Mesibo()` (or `Mesibo.getInstance()`), `setAccessToken(token)`
 * (a Chorus access token), `setListener(obj)`, `start()`.
 */
export class Mesibo {
  /** @internal */
  readonly _listeners: unknown[] = [];
  private readonly p2p = new MesiboP2P(this._listeners);
  /** @internal */
  readonly _sessions = new Set<MesiboReadSession>();
  private readonly options: MesiboOptions;
  private server: string | undefined;
  private appName = '';
  private token = '';
  private dbName: string | null = null;
  private client: ChorusClient | null = null;
  /** Live messages waiting for an earlier file message's signed URL (see `onMessage`). */
  private inbox: Promise<void> | null = null;
  private readonly profiles = new Map<string, MesiboProfile>();
  private readonly groups = new Map<number, MesiboProfile>();
  private readonly memberOf = new Set<number>();
  private readonly calls = new Map<number, MesiboGroupCall>();
  private readonly outgoing = new Map<string, MesiboMessage>();
  private readonly ids = new Map<string, number>();
  /** Conversations, most recently active first (`getSortedProfiles`). */
  private recent: MesiboProfile[] = [];
  private status: number = C.MESIBO_STATUS_UNKNOWN;
  private readonly idPrefix = `mz${Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0')}`;

  constructor(options: MesiboOptions = {}) {
    this.options = options;
    this.server = options.server;
    if (!instance) instance = this;
  }

  /** The first `Mesibo` created (created now if none). */
  static getInstance(): Mesibo {
    return instance ?? new Mesibo();
  }

  // ---------------------------------------------------------------- setup

  /** Kept for compatibility; Chorus tokens are not bound to an app id. Returns 0. */
  setAppName(name: string): number {
    this.appName = String(name ?? '');
    return 0;
  }
  getAppName(): string {
    return this.appName;
  }
  /** The user's access token (a Chorus access token). Returns false for an empty token. */
  setAccessToken(token: string): boolean {
    this.token = String(token ?? '');
    if (this.client) this.client.token = this.token;
    return this.token.length > 0;
  }
  /** Same as `setAccessToken`. */
  setCredentials(token: string): boolean {
    return this.setAccessToken(token);
  }
  /** Chorus extension: the server base URL (default: the origin the bundle was loaded from, else `location.origin`). */
  setServer(url: string): void {
    this.server = url;
  }
  /** Chorus extension: the server this object talks to (REST, WebSocket, relative `createhttpRequest` URLs). */
  getServer(): string | null {
    const s = this.server ?? bundleServer ?? (globalThis as { location?: { origin?: string } }).location?.origin;
    return s && s !== 'null' ? s.replace(/\/+$/, '') : null;
  }
  /** Mesibo's HTTP helper: `setUrl(url)`, `setPostData(obj, json)`, `send(cbdata, cb(cbdata, responseText))`. */
  createhttpRequest(): MesiboHttpRequest {
    return new MesiboHttpRequest(() => {
      const s = this.getServer();
      if (!s) throw new Error('mesibo (Chorus): no server: call setServer(url) or run in a page');
      return s;
    }, this.options.fetch);
  }
  /** Replaces all listeners by `listener`. */
  setListener(listener: unknown): void {
    this._listeners.length = 0;
    if (listener) this._listeners.push(listener);
  }
  /** Adds a listener. */
  addListener(listener: unknown): void {
    if (listener && !this._listeners.includes(listener)) this._listeners.push(listener);
  }
  removeListener(listener: unknown): void {
    const i = this._listeners.indexOf(listener);
    if (i >= 0) this._listeners.splice(i, 1);
  }
  /**
   * Accepted; nothing is stored in the browser (no IndexedDB): history is read from the server
   * by read sessions. Calls `cb(true)`.
   */
  setDatabase(name: string, cb?: (init: boolean) => void): number {
    this.dbName = String(name ?? '');
    if (typeof cb === 'function') setTimeout(() => cb(true), 0);
    return 0;
  }
  getDatabase(): string | null {
    return this.dbName;
  }
  /** No-op (Chorus sessions per tab are independent). */
  enableCrossTabSessions(_on: boolean): void {
    /* every tab has its own session */
  }
  /** A random 32-bit id (for message ids). */
  random(): number {
    return (Math.floor(Math.random() * 0xfffffffe) + 1) >>> 0;
  }

  /** Connects (and keeps reconnecting) → `Mesibo_onConnectionStatus(status)`. Returns 0 (-1 without token). */
  start(): number {
    if (this.client) return 0;
    if (!this.token) {
      this.setStatus(C.MESIBO_STATUS_AUTHFAIL);
      return -1;
    }
    const server = this.getServer();
    if (!server) throw new Error('mesibo (Chorus): no server: call setServer(url) or run in a page');
    const opts: ChorusClientOptions = { server, token: this.token };
    if (this.options.WebSocket) opts.WebSocket = this.options.WebSocket;
    if (this.options.RTCPeerConnection) opts.RTCPeerConnection = this.options.RTCPeerConnection;
    if (this.options.fetch) opts.fetch = this.options.fetch;
    if (this.options.reconnect !== undefined) opts.reconnect = this.options.reconnect;
    if (this.options.pingInterval !== undefined) opts.pingInterval = this.options.pingInterval;
    const client = new ChorusClient(opts);
    this.client = client;
    client.on('connection', (e) => {
      if (e.state === 'online') return; // reported after the group list is loaded
      // Close code 4001: the token was revoked or the user deactivated (docs/protocol.md §2).
      if (e.state === 'auth_failed' && e.code === CloseCode.SESSION_ENDED) this.setStatus(C.MESIBO_STATUS_SIGNOUT);
      else this.setStatus(CONNECTION_STATUS[e.state]);
    });
    client.on('synced', () => {
      void Promise.all([this.refreshGroups(), this.refreshConversations()]).finally(() => {
        if (this.client === client && client.state === 'online') this.setStatus(C.MESIBO_STATUS_ONLINE);
      });
    });
    client.on('message', (m) => this.onMessage(m));
    client.on('receipt', (r) => this.onReceipt(r));
    client.on('presence', (p) => this.onPresence(p));
    client.on('group', (g) => this.onGroup(g));
    client.on('error', (e) => this._error('server', e));
    this.p2p.attach(client);
    client.connect().catch(() => undefined);
    return 0;
  }

  /** Disconnects → `Mesibo_onConnectionStatus(MESIBO_STATUS_STOPPED)`. */
  stop(): number {
    const c = this.client;
    this.client = null;
    for (const gc of this.calls.values()) gc._stopped();
    this.p2p.stopped();
    c?.close();
    this.setStatus(C.MESIBO_STATUS_STOPPED);
    return 0;
  }

  /** The last connection status. */
  getConnectionStatus(): number {
    return this.status;
  }

  // ---------------------------------------------------------------- identity, profiles

  getAddress(): string | null {
    return this.client?.address ?? null;
  }
  /** Your user id (from the session). */
  getUid(): number {
    return this.client?.user?.uid ?? 0;
  }
  getSelfProfile(): MesiboProfile | null {
    const a = this.getAddress();
    if (!a) return null;
    const p = this.getProfile(a);
    if (this.client?.user?.name) p.name = this.client.user.name;
    return p;
  }
  /** `getProfile(address)` for a user, `getProfile(null, gid)` for a group. */
  getProfile(address: string | null, groupid?: number): MesiboProfile {
    if (groupid && groupid > 0) return this.getGroupProfile(groupid);
    const a = String(address ?? '');
    let p = this.profiles.get(a);
    if (!p) this.profiles.set(a, (p = new MesiboProfile(this, a, 0)));
    return p;
  }
  /** The profile of group `gid`. */
  getGroupProfile(gid: number): MesiboProfile {
    const g = Number(gid);
    let p = this.groups.get(g);
    if (!p) this.groups.set(g, (p = new MesiboProfile(this, '', g)));
    return p;
  }
  /**
   * The groups you belong to, as loaded at connect (refreshed on group events). Mesibo returns
   * them synchronously from its local database; here `cb(list)` (optional) gets a fresh list from
   * the server.
   */
  getGroupProfiles(cb?: (list: MesiboProfile[]) => void): MesiboProfile[] {
    if (typeof cb === 'function') void this.refreshGroups().then(() => cb(this.groupList()));
    return this.groupList();
  }

  /**
   * Your conversations (users and groups), most recently active first: loaded at connect, moved
   * to the front by every message sent or received. `cb(list)` (optional) gets a fresh list from
   * the server.
   */
  getSortedProfiles(cb?: (list: MesiboProfile[]) => void): MesiboProfile[] {
    if (typeof cb === 'function') void this.refreshConversations().then(() => cb([...this.recent]));
    return [...this.recent];
  }

  /**
   * Creates a group: `createGroup({name, flags, callFlags, videoResolution, callDuration}, listener)`
   * or `createGroup(name, flags, listener)` → `Mesibo_onGroupCreated(profile)` (or `listener(profile)`
   * when it is a function); a failure → `Mesibo_onGroupError(null, error)`.
   */
  createGroup(settings: string | Partial<MesiboGroupSettings>, flagsOrListener?: number | unknown, listener?: unknown): number {
    const s: Partial<MesiboGroupSettings> = typeof settings === 'string' ? { name: settings } : { ...(settings ?? {}) };
    let l: unknown = listener;
    if (typeof flagsOrListener === 'number') s.flags = flagsOrListener;
    else if (flagsOrListener !== undefined) l = flagsOrListener;
    void (async () => {
      try {
        const client = await this._client();
        const opts: { name: string; flags?: number; call_flags?: number; video_resolution?: number; call_duration?: number } = {
          name: s.name ?? '',
        };
        if (s.flags !== undefined) opts.flags = s.flags;
        if (s.callFlags) opts.call_flags = s.callFlags;
        if (s.videoResolution !== undefined) opts.video_resolution = s.videoResolution;
        if (s.callDuration !== undefined) opts.call_duration = s.callDuration;
        const created = await client.createGroup(opts);
        const p = this.getGroupProfile(created.group.gid);
        p.applyGroup(created.group);
        this._rememberGroup(p);
        if (typeof l === 'function') (l as (p: MesiboProfile) => void)(p);
        else fire(this._targets(l), 'Mesibo_onGroupCreated', p);
      } catch (e) {
        console.warn('mesibo: createGroup failed:', e);
        fire(this._targets(typeof l === 'function' ? undefined : l), 'Mesibo_onGroupError', null, groupError(e));
      }
    })();
    return 0;
  }

  // ---------------------------------------------------------------- messages

  /**
   * Mesibo's legacy send: `params` `{peer | groupid, flag, type, expiry}`, `id` a number,
   * `data` the text (a string or bytes) or JSON data (an object). Returns 0; the outcome comes as
   * `Mesibo_onMessageStatus(m)` (SENT, DELIVERED, READ or a failure ≥ 0x80).
   */
  sendMessage(params: MesiboParams, id?: number | string, data?: unknown): number {
    const m = this.legacyMessage(params, id);
    if (typeof data === 'string') m.message = data;
    else if (data instanceof Uint8Array || data instanceof ArrayBuffer) m.message = new TextDecoder().decode(data);
    else if (data !== undefined && data !== null) m.data = data;
    else if (params.message !== undefined) m.message = params.message;
    return m.send();
  }

  /**
   * Mesibo's legacy file send: `sendFile(params, id, file)`, `params` as `sendMessage`'s. `file`
   * is a `File` or `Blob`: uploaded to this server first (tus 1.0, `POST /v1/uploads` with the
   * bytes, up to the server's `max_upload_bytes`), then sent as a stored file that only the
   * conversation's members can read. Or Mesibo's `{filetype, fileurl, size, title, message}`: a
   * file already on some HTTP server, sent by URL. Returns 0; the outcome comes as
   * `Mesibo_onMessageStatus(m)` (a refused upload: `MESIBO_MSGSTATUS_FAIL`).
   */
  sendFile(params: MesiboParams, id: number | string | undefined, file: unknown): number {
    const m = this.legacyMessage(params, id);
    const blob = typeof Blob !== 'undefined' && file instanceof Blob ? file : null;
    const o = (file && typeof file === 'object' && !blob ? file : {}) as Record<string, unknown>;
    if (typeof o['message'] === 'string') m.message = o['message'];
    if (typeof o['title'] === 'string') m.title = o['title'];
    if (!blob) {
      const url = o['fileurl'];
      if (typeof url !== 'string' || !url) throw new Error('mesibo: sendFile needs a File or Blob, or {fileurl}');
      const ref: FileRef = { url };
      // A file this user stored here by `op=upload` (its answer is the content URL): sent as a
      // stored file, so that the conversation's members can read it.
      const stored = /^(?:[a-z]+:\/\/[^/]+)?\/v1\/files\/([0-9a-f]{32})\/content$/.exec(url);
      if (stored && (url.startsWith('/') || url.startsWith(`${this.getServer()}/`))) ref.upload = stored[1]!;
      if (m.title) ref.name = m.title;
      if (Number(o['size']) > 0) ref.size = Number(o['size']);
      if (Number(o['filetype']) > 0) ref.filetype = Number(o['filetype']);
      m.file = ref;
      return m.send();
    }
    const name = (blob as { name?: string }).name || m.title || 'file';
    void (async () => {
      try {
        const c = await this._client();
        const upload = await uploadBlob(this.options.fetch ?? fetch.bind(globalThis), c.server, c.rest.token, blob, name);
        m.file = { url: '', upload, name };
        m.send();
      } catch (e) {
        console.warn('mesibo: sendFile: the upload failed:', e);
        m.status = C.MESIBO_MSGSTATUS_FAIL;
        fire(this._listeners, 'Mesibo_onMessageStatus', m);
      }
    })();
    return 0;
  }

  /**
   * A signed URL of a file message's file (`m.fileurl` already is one on live messages): works
   * without a token until it expires (the server's `file_url_ttl_secs`). A URL not on this
   * server comes back as it is.
   */
  async getFileUrl(m: MesiboMessage): Promise<string> {
    const id = m.file?.upload;
    if (!id) return m.fileurl;
    return signedUrl(await this._client(), id);
  }

  /** A new legacy-style message to `params.peer` or `params.groupid`. */
  private legacyMessage(params: MesiboParams, id?: number | string): MesiboMessage {
    const m = new MesiboMessage(this);
    m.id = id ?? params.id ?? this.random();
    if (params.groupid && params.groupid > 0) {
      m.groupid = Number(params.groupid);
      m.groupProfile = this.getGroupProfile(m.groupid);
    } else {
      m.peer = String(params.peer ?? '');
      m.profile = this.getProfile(m.peer);
    }
    if (params.flag !== undefined) m.flag = params.flag;
    if (params.type !== undefined) m.type = params.type;
    if (params.expiry !== undefined) m.expiry = params.expiry;
    return m;
  }

  /**
   * A read session (legacy): `readDbSession(peer, groupid, query, on_read)`; then `read(n)`, and
   * the messages are in `getMessages()` when `on_read(count)` is called. `query` is ignored.
   */
  readDbSession(peer: string | null, groupid: number, _query?: unknown, onRead?: (count: number) => void): MesiboReadSession {
    const conv: Conversation = groupid > 0 ? { gid: Number(groupid) } : { peer: String(peer ?? '') };
    return new MesiboReadSession(this, conv, null, typeof onRead === 'function' ? onRead : null);
  }

  // ---------------------------------------------------------------- calls

  /** The group call of `gid` (`join(listener)` to enter it). */
  groupCall(listener: unknown, gid: number): MesiboGroupCall {
    const g = Number(gid);
    let gc = this.calls.get(g);
    if (!gc || gc._finished) this.calls.set(g, (gc = new MesiboGroupCall(this, listener, g, false)));
    else if (listener) gc._setListener(listener);
    return gc;
  }
  /** Gen-1 group call: `initGroupCall()`, then `setRoom(gid)`; callbacks go to the `setListener` objects. */
  initGroupCall(): MesiboGroupCall {
    return new MesiboGroupCall(this, null, 0, true);
  }

  /** 1:1 calls (module `mesibo/p2p`): the media elements of the next video call. */
  setupVideoCall(localVideoId: string, remoteVideoId: string, enable?: boolean): void {
    this.p2p.setupVideoCall(localVideoId, remoteVideoId, enable);
  }
  /** The audio element of the next voice call. */
  setupVoiceCall(audioElementId: string): void {
    this.p2p.setupVoiceCall(audioElementId);
  }
  /** Calls `address` → `Mesibo_onCallStatus(callid, status)`. */
  call(address: string): number {
    return this.p2p.call(this._client(), address);
  }
  /** Answers the ringing call. */
  answer(video?: boolean): number {
    return this.p2p.answer(video);
  }
  /** Hangs up the call (`callid` 0: the current one). */
  hangup(callid?: number): number {
    return this.p2p.hangup(callid);
  }
  mute(audio: boolean, video: boolean, enable: boolean): void {
    this.p2p.mute(audio, video, enable);
  }
  toggleAudioMute(): boolean {
    return this.p2p.toggleAudioMute();
  }
  toggleVideoMute(): boolean {
    return this.p2p.toggleVideoMute();
  }

  // ---------------------------------------------------------------- internals

  /** @internal The connected client (waits for the connection). */
  async _client(): Promise<ChorusClient> {
    const c = this.client;
    if (!c) throw new ChorusError('state', 'Mesibo is not started (call start() first)');
    if (!c.synced) await c.connect();
    return c;
  }

  /** @internal The client, if started. */
  _clientNow(): ChorusClient | null {
    return this.client;
  }

  /** @internal Listener targets: the op's listener if given, else the global listeners. */
  _targets(listener: unknown): unknown[] {
    return listener && typeof listener === 'object' ? [listener] : this._listeners;
  }

  /** @internal Reports an error that has no Mesibo callback of its own: `Mesibo_onError({op, code, message})`. */
  _error(op: string, e: unknown): void {
    const err = { op, code: e instanceof ChorusError ? e.code : 'error', message: e instanceof Error ? e.message : String(e) };
    if (fire(this._listeners, 'Mesibo_onError', err) === 0) console.warn(`mesibo: ${op}:`, e);
  }

  /** @internal A stable per-user number for `getId()` (Chorus does not show others' uids). */
  _idFor(address: string): number {
    let id = this.ids.get(address);
    if (id === undefined) this.ids.set(address, (id = this.ids.size + 1));
    return id;
  }

  /** @internal */
  _learnName(address: string, name: string): void {
    if (name) this.getProfile(address).name = name;
  }

  /** @internal */
  _rememberGroup(p: MesiboProfile): void {
    this.memberOf.add(p.groupid);
  }
  /** @internal */
  _forgetGroup(gid: number): void {
    this.memberOf.delete(gid);
  }

  /** @internal */
  _typing(conv: Conversation, on: boolean): void {
    const c = this.client;
    if (!c || !c.synced) return;
    c.typing(conv.gid !== undefined ? { gid: conv.gid, on } : { peer: conv.peer as string, on });
  }

  /** @internal An edit or deletion of one of your messages; a failure → `Mesibo_onError({op, code, message})`. */
  _retract(op: string, fn: (c: ChorusClient) => Promise<void>): void {
    void this._client()
      .then(fn)
      .catch((e: unknown) => this._error(op, e));
  }

  /** @internal `m.delete()`: out of this page's read-session lists. */
  _dropLocal(m: MesiboMessage): void {
    for (const s of this._sessions) s._drop(m);
  }

  /** @internal Sends an outgoing message and reports its status. */
  _send(m: MesiboMessage): void {
    // Chorus client ids must be unique for the user forever; Mesibo apps often use small or
    // random numbers, so the id on the wire is prefixed per page (and stripped on receipt).
    const key = `${this.idPrefix}-${m.id}`;
    m._key = key;
    const report = () => fire(this._listeners, 'Mesibo_onMessageStatus', m);
    const c = this.client;
    if (!c) {
      m.status = C.MESIBO_MSGSTATUS_FAIL;
      setTimeout(report, 0);
      return;
    }
    m.ts = Date.now();
    this._touch(m);
    for (const s of this._sessions) s._own(m);
    this.outgoing.set(key, m);
    if (this.outgoing.size > 1000) this.outgoing.delete(this.outgoing.keys().next().value as string);
    const out: { id: string; peer?: string; gid?: number; text?: string; data?: unknown; file?: Message['file']; mtype?: number } = { id: key };
    if (m.groupid > 0) out.gid = m.groupid;
    else out.peer = m.peer;
    if (m.message) out.text = m.message;
    if (m.data !== undefined) out.data = m.data;
    if (m.file) out.file = m.file;
    if (m.type) out.mtype = m.type;
    if (!out.text && out.data === undefined && !out.file) out.text = '';
    c.send(out).then(
      (sent) => {
        m.mid = sent.mid;
        m.seq = sent.seq;
        m.ts = sent.ts;
        if (m.status < C.MESIBO_MSGSTATUS_SENT) m.status = C.MESIBO_MSGSTATUS_SENT;
        for (const s of this._sessions) s._sent(m);
        report();
      },
      (e: unknown) => {
        this.outgoing.delete(key);
        m.status = failureStatus(e);
        report();
      },
    );
  }

  private setStatus(s: number): void {
    if (s === this.status) return;
    this.status = s;
    fire(this._listeners, 'Mesibo_onConnectionStatus', s, 0);
  }

  private groupList(): MesiboProfile[] {
    return [...this.memberOf].map((g) => this.getGroupProfile(g));
  }

  private async refreshGroups(): Promise<void> {
    const c = this.client;
    if (!c) return;
    try {
      const list = await c.groups();
      this.memberOf.clear();
      for (const g of list) {
        const p = this.getGroupProfile(g.gid);
        p.applyGroup(g);
        this.memberOf.add(g.gid);
      }
    } catch (e) {
      this._error('getGroupProfiles', e);
    }
  }

  private async refreshConversations(): Promise<void> {
    const c = this.client;
    if (!c) return;
    try {
      const list = await c.rest.conversations();
      this.recent = (Array.isArray(list) ? list : []).map((x) => {
        if (x.gid !== undefined) {
          const p = this.getGroupProfile(x.gid);
          if (x.name) p.name = x.name;
          return p;
        }
        this._learnName(x.peer ?? '', x.name);
        return this.getProfile(x.peer ?? '');
      });
    } catch (e) {
      this._error('getSortedProfiles', e);
    }
  }

  /** @internal A message in `m`'s conversation: it moves to the front of `getSortedProfiles()`. */
  _touch(m: MesiboMessage): void {
    const p = m.groupid > 0 ? this.getGroupProfile(m.groupid) : this.getProfile(m.peer);
    if (this.recent[0] === p) return;
    this.recent = [p, ...this.recent.filter((x) => x !== p)];
  }

  /**
   * Live messages in order: one carrying a stored file waits for its signed URL (`m.fileurl`),
   * and the messages after it wait for it.
   */
  private onMessage(f: Message): void {
    if (!this.inbox && !f.file?.upload) return this.deliver(f, null);
    const upload = f.file?.upload;
    const next = (this.inbox ?? Promise.resolve()).then(async () => {
      let url: string | null = null;
      if (upload) {
        const c = this.client;
        try {
          if (c) url = await signedUrl(c, upload);
        } catch (e) {
          console.warn('mesibo: no signed URL for a file message:', e);
        }
      }
      this.deliver(f, url);
    });
    this.inbox = next;
    void next.finally(() => {
      if (this.inbox === next) this.inbox = null;
    });
  }

  private deliver(f: Message, signedUrl: string | null): void {
    const self = this.getAddress();
    if (f.from === self && this.outgoing.has(f.id) && !f.edited && !f.deleted) return; // our own send, echoed
    const m = fromChorus(this, f, C.MESIBO_ORIGIN_REALTIME, self);
    if (signedUrl) m.fileurl = signedUrl;
    if (f.edited || f.deleted) {
      for (const s of this._sessions) s._update(m);
      fire(this._listeners, 'Mesibo_onMessageUpdate', m);
      return;
    }
    this._touch(m);
    for (const s of this._sessions) s._live(m);
    fire(this._listeners, 'Mesibo_onMessage', m, m.message);
    if (m.isIncoming() && !m.groupid) {
      const p = this.getProfile(m.peer);
      p.typing = false;
    }
  }

  private onReceipt(r: ReceiptFrame): void {
    for (const m of this.outgoing.values()) {
      if (m.seq === 0 || m.seq > r.seq || m.status >= 0x80) continue;
      if (r.gid !== undefined ? m.groupid !== r.gid : m.groupid !== 0 || m.peer !== r.peer) continue;
      // Mesibo reports only the receipts a message asked for (its DELIVERYRECEIPT/READRECEIPT
      // flags); a read without READRECEIPT still counts as delivered when that was asked.
      let status: number = r.status;
      if (status === C.MESIBO_MSGSTATUS_READ && !(m.flag & C.MESIBO_FLAG_READRECEIPT)) status = C.MESIBO_MSGSTATUS_DELIVERED;
      if (status === C.MESIBO_MSGSTATUS_DELIVERED && !(m.flag & C.MESIBO_FLAG_DELIVERYRECEIPT)) continue;
      let changed = false;
      if (status === C.MESIBO_MSGSTATUS_READ && m.groupid) {
        m._readBy ??= new Set();
        if (!m._readBy.has(r.by)) {
          m._readBy.add(r.by);
          m.rcount = m._readBy.size;
          changed = true;
        }
      }
      if (status > m.status) {
        m.status = status;
        changed = true;
      }
      if (changed) fire(this._listeners, 'Mesibo_onMessageStatus', m);
      if (m.status === C.MESIBO_MSGSTATUS_READ && !m.groupid) this.outgoing.delete(m._key);
    }
  }

  private onPresence(f: PresenceFrame): void {
    const p = this.getProfile(f.from);
    p._presence(f);
    const presence = {
      presence: f.presence,
      value: 0,
      peer: f.from,
      from: f.from,
      groupid: f.gid ?? 0,
      profile: p,
      groupProfile: f.gid !== undefined ? this.getGroupProfile(f.gid) : null,
      getProfile: () => p,
      getPresence: () => f.presence,
    };
    fire(this._listeners, 'Mesibo_onPresence', presence);
  }

  private onGroup(f: GroupFrame): void {
    const p = this.getGroupProfile(f.gid);
    const members = f.members ?? [];
    const self = this.getAddress();
    switch (f.event) {
      case 'members_added':
        if (self && members.includes(self)) this.memberOf.add(f.gid);
        fire(this._listeners, 'Mesibo_onGroupMembersJoined', p, members);
        return;
      case 'members_removed':
        fire(this._listeners, 'Mesibo_onGroupMembersRemoved', p, members);
        if (self && members.includes(self)) {
          this.memberOf.delete(f.gid);
          fire(this._listeners, 'Mesibo_onGroupLeft', p);
        }
        return;
      case 'updated':
        fire(this._listeners, 'Mesibo_onProfileUpdated', p);
        return;
      case 'deleted':
        this.memberOf.delete(f.gid);
        fire(this._listeners, 'Mesibo_onGroupError', p, C.MESIBO_GROUPERR_DELETED);
        fire(this._listeners, 'Mesibo_onGroupLeft', p);
        return;
      default:
        return;
    }
  }
}
