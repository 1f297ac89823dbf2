/**
 * Mesibo message objects, statuses and read sessions, over Chorus messages
 * (docs/protocol.md §6, §7, §10).
 *
 * @module mesibo/messages
 */
import { ChorusError } from '../errors.js';
import type { Conversation, FileRef, Message } from '../protocol.js';
import { C } from './constants.js';
import { fire } from './dispatch.js';
import type { Mesibo, MesiboProfile } from './mesibo.js';

/** `sendMessage` parameters (Mesibo's legacy param object). */
export interface MesiboParams {
  peer?: string;
  groupid?: number;
  id?: number | string;
  flag?: number;
  type?: number;
  expiry?: number;
  channel?: number;
  refid?: number;
  /** Mesibo's demo puts the text here as well. */
  message?: string;
}

/** Mesibo's status for a failed Chorus send (the server's `error.status`, else FAIL). */
export function failureStatus(e: unknown): number {
  if (e instanceof ChorusError) {
    if (e.status !== undefined && e.status >= 0x80) return e.status;
    switch (e.code) {
      case 'not_found':
        return C.MESIBO_MSGSTATUS_INVALIDDEST;
      case 'forbidden':
        return C.MESIBO_MSGSTATUS_NOTMEMBER;
      case 'rate_limited':
      case 'too_large':
        return C.MESIBO_RESULT_RETRYLATER;
      default:
        return C.MESIBO_MSGSTATUS_FAIL;
    }
  }
  return C.MESIBO_MSGSTATUS_FAIL;
}

/** A Mesibo message: outgoing (`profile.newMessage()`, `sendMessage`) or received. */
export class MesiboMessage {
  /** The client message id (a number when it is numeric, as Mesibo's ids are). */
  id: number | string = 0;
  /** Chorus server message id. */
  mid = 0;
  /** 1:1: the other user; group: the sender (as in Mesibo). */
  peer = '';
  groupid = 0;
  /** The sender's address. */
  sender = '';
  message = '';
  title = '';
  data: unknown = undefined;
  /** A file reference (by URL: Chorus does not upload files). */
  file: FileRef | undefined = undefined;
  type = 0;
  /** Accepted and kept; Chorus messages do not expire. */
  expiry = 0;
  flag: number = C.MESIBO_FLAG_DEFAULT;
  status: number = C.MESIBO_MSGSTATUS_OUTBOX;
  /** Send time, ms. */
  ts = 0;
  origin: number = C.MESIBO_ORIGIN_REALTIME;
  /** Sequence in its conversation (Chorus). */
  seq = 0;
  /** Group messages: how many members have read it (from read receipts). */
  rcount = 0;
  edited = false;
  deleted = false;
  profile: MesiboProfile | null = null;
  groupProfile: MesiboProfile | null = null;
  /** @internal */
  _incoming = false;
  /** @internal */
  _readBy: Set<string> | null = null;
  /** @internal The client id on the wire. */
  _key = '';
  private sending = false;

  /** @internal */
  constructor(private readonly mesibo: Mesibo | null) {}

  isIncoming(): boolean {
    return this._incoming;
  }
  isOutgoing(): boolean {
    return !this._incoming;
  }
  isGroupMessage(): boolean {
    return this.groupid > 0;
  }
  isRealtimeMessage(): boolean {
    return this.origin === C.MESIBO_ORIGIN_REALTIME;
  }
  isDbMessage(): boolean {
    return this.origin === C.MESIBO_ORIGIN_DBMESSAGE;
  }
  isInOutbox(): boolean {
    return !this._incoming && this.status === C.MESIBO_MSGSTATUS_OUTBOX;
  }
  isSent(): boolean {
    return !this._incoming && this.status >= 1 && this.status < 0x10;
  }
  isDelivered(): boolean {
    return !this._incoming && (this.status === C.MESIBO_MSGSTATUS_DELIVERED || this.status === C.MESIBO_MSGSTATUS_READ);
  }
  isReadByPeer(): boolean {
    return !this._incoming && this.status === C.MESIBO_MSGSTATUS_READ;
  }
  isReadByUs(): boolean {
    return this._incoming && this.status === C.MESIBO_MSGSTATUS_RECEIVEDREAD;
  }
  isUnread(): boolean {
    return this._incoming && this.status === C.MESIBO_MSGSTATUS_RECEIVEDNEW;
  }
  isFailed(): boolean {
    return this.status >= 0x80;
  }
  isModified(): boolean {
    return this.edited;
  }
  isDeleted(): boolean {
    return this.deleted;
  }
  getSenderProfile(): MesiboProfile | null {
    return this.mesibo ? this.mesibo.getProfile(this.sender) : null;
  }
  getProfile(): MesiboProfile | null {
    return this.profile;
  }
  getGroupProfile(): MesiboProfile | null {
    return this.groupProfile;
  }

  setType(t: number): void {
    this.type = t;
  }
  setExpiry(e: number): void {
    this.expiry = e;
  }
  enableReadReceipt(on: boolean): void {
    this.flag = on ? this.flag | C.MESIBO_FLAG_READRECEIPT : this.flag & ~C.MESIBO_FLAG_READRECEIPT;
  }
  enableDeliveryReceipt(on: boolean): void {
    this.flag = on ? this.flag | C.MESIBO_FLAG_DELIVERYRECEIPT : this.flag & ~C.MESIBO_FLAG_DELIVERYRECEIPT;
  }
  /**
   * Chorus carries files by reference: pass a URL (or `{ url, name?, mime?, size?, filetype? }`)
   * of a file you uploaded. A `File`, or an input element id, throws: there is no upload.
   */
  setContent(content: string | FileRef): void {
    if (typeof content === 'string' && /^https?:\/\//i.test(content)) this.file = { url: content };
    else if (content && typeof content === 'object' && typeof (content as FileRef).url === 'string') this.file = { ...(content as FileRef) };
    else throw new Error('mesibo (Chorus): setContent takes the URL of an uploaded file; Chorus does not upload files');
  }

  /** Sends it; the outcome comes as `Mesibo_onMessageStatus(m)`. Returns 0. */
  send(): number {
    if (!this.mesibo) throw new Error('mesibo: message has no Mesibo instance');
    if (this.sending) return 0;
    this.sending = true;
    this.mesibo._send(this);
    return 0;
  }

  /** @internal The conversation of this message. */
  _conv(): Conversation {
    return this.groupid > 0 ? { gid: this.groupid } : { peer: this.peer };
  }
}

/** Mesibo's status for a received message. */
function receivedStatus(read: boolean): number {
  return read ? C.MESIBO_MSGSTATUS_RECEIVEDREAD : C.MESIBO_MSGSTATUS_RECEIVEDNEW;
}

/** A Chorus message as a Mesibo message. */
export function fromChorus(mesibo: Mesibo, m: Message, origin: number, self: string | null, readSeq = -1): MesiboMessage {
  const mm = new MesiboMessage(mesibo);
  const prefixed = /^mz[0-9a-f]{8}-(.+)$/.exec(m.id); // sent by this layer (see Mesibo._send)
  const id = prefixed ? (prefixed[1] as string) : m.id;
  mm.id = /^\d{1,15}$/.test(id) ? Number(id) : id;
  mm.mid = m.mid;
  mm.sender = m.from;
  mm._incoming = m.from !== self;
  if (m.gid !== undefined) {
    mm.groupid = m.gid;
    mm.peer = m.from;
    mm.groupProfile = mesibo.getGroupProfile(m.gid);
    mm.profile = mesibo.getProfile(m.from);
  } else {
    mm.peer = mm._incoming ? m.from : (m.peer ?? '');
    mm.profile = mesibo.getProfile(mm.peer);
  }
  mm.message = m.text ?? '';
  mm.data = m.data;
  mm.file = m.file;
  if (m.file?.name) mm.title = m.file.name;
  mm.type = m.mtype;
  mm.ts = m.ts;
  mm.seq = m.seq;
  mm.origin = origin;
  mm.edited = m.edited;
  mm.deleted = m.deleted;
  mm.expiry = 0;
  mm.status = mm._incoming ? receivedStatus(m.seq <= readSeq) : C.MESIBO_MSGSTATUS_SENT;
  return mm;
}

/**
 * A read session over one conversation (`profile.createReadSession(listener)`,
 * `mesibo.readDbSession(peer, groupid, query, on_read)`). Chorus keeps history on the server:
 * `read(n)` pages backwards through it (REST) and delivers each message as
 * `Mesibo_onMessage(m)` with `m.origin == MESIBO_ORIGIN_DBMESSAGE`.
 */
export class MesiboReadSession {
  private before: number | undefined = undefined;
  private done = false;
  private readReceipt = false;
  private fifo = false;
  private stopped = false;
  private highestIncoming = 0;

  /** @internal */
  constructor(
    private readonly mesibo: Mesibo,
    readonly conv: Conversation,
    private readonly listener: unknown,
    private readonly onRead: ((count: number) => void) | null = null,
  ) {
    mesibo._sessions.add(this);
  }

  /** Sends read receipts for what it reads, and for live messages of the conversation while open. */
  enableReadReceipt(on: boolean): void {
    this.readReceipt = !!on;
  }
  /** Oldest first within each page (default: newest first, as Mesibo). */
  enableFifo(on: boolean): void {
    this.fifo = !!on;
  }
  /** No-op: summary sessions (one entry per conversation) are not supported; use `Mesibo.getSortedProfiles()`. */
  enableSummary(_on: boolean): void {
    console.warn('mesibo (Chorus): enableSummary is not supported (no-op)');
  }
  /** No-op: read sessions always read from the server; there is no local database to sync. Calls `cb(0)`. */
  sync(_count: number, cb?: (count: number) => void): void {
    if (typeof cb === 'function') setTimeout(() => cb(0), 0);
  }

  /** Reads up to `count` older messages; resolves (and calls `cb`/`on_read`) with the number delivered. */
  async read(count: number, cb?: (count: number) => void): Promise<number> {
    let n = 0;
    try {
      if (!this.done && !this.stopped) {
        const client = await this.mesibo._client();
        const opts: { limit: number; before?: number } = { limit: Math.max(1, Math.min(count || 50, 200)) };
        if (this.before !== undefined) opts.before = this.before;
        const page = await client.history(this.conv, opts);
        if (page.before === null || page.messages.length === 0) this.done = true;
        else this.before = page.before;
        const self = this.mesibo.getAddress();
        const msgs = page.messages.map((m) => fromChorus(this.mesibo, m, C.MESIBO_ORIGIN_DBMESSAGE, self));
        if (!this.fifo) msgs.reverse();
        const target = this.listener ? [this.listener] : this.mesibo._listeners;
        for (const m of msgs) {
          if (m.isIncoming()) this.highestIncoming = Math.max(this.highestIncoming, m.seq);
          fire(target, 'Mesibo_onMessage', m, m.message);
        }
        n = msgs.length;
        if (this.readReceipt && this.highestIncoming > 0) await this.markRead(this.highestIncoming);
      }
    } catch (e) {
      this.mesibo._error('read', e);
    }
    if (typeof cb === 'function') cb(n);
    if (this.onRead) this.onRead(n);
    return n;
  }

  /** Unread count of the conversation (REST `GET /v1/conversations`). */
  async getUnreadCount(cb?: (count: number) => void): Promise<number> {
    let n = 0;
    try {
      const client = await this.mesibo._client();
      const list = await client.rest.conversations();
      const c = list.find((x) => (this.conv.gid !== undefined ? x.gid === this.conv.gid : x.peer === this.conv.peer));
      n = c?.unread ?? 0;
    } catch (e) {
      this.mesibo._error('getUnreadCount', e);
    }
    if (typeof cb === 'function') cb(n);
    return n;
  }

  /** Closes the session (no more read receipts). */
  stop(): void {
    this.stopped = true;
    this.mesibo._sessions.delete(this);
  }

  /** @internal A live message arrived in some conversation. */
  _live(m: MesiboMessage): void {
    if (this.stopped || !this.readReceipt || !m.isIncoming()) return;
    const same = this.conv.gid !== undefined ? m.groupid === this.conv.gid : m.groupid === 0 && m.peer === this.conv.peer;
    if (!same || m.seq <= this.highestIncoming) return;
    this.highestIncoming = m.seq;
    void this.markRead(m.seq);
  }

  private async markRead(seq: number): Promise<void> {
    try {
      const client = await this.mesibo._client();
      await client.read(this.conv.gid !== undefined ? { gid: this.conv.gid, seq } : { peer: this.conv.peer as string, seq });
    } catch (e) {
      this.mesibo._error('read receipt', e);
    }
  }
}
