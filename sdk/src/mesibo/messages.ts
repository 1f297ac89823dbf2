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
import type { Mesibo } from './mesibo.js';
import type { MesiboProfile } from './profile.js';

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
  /** The file reference on the wire (`file.upload` for a file stored on this server). */
  file: FileRef | undefined = undefined;
  /** Mesibo's file fields (file messages): type (image 1, video 2, audio 3, other 10), URL, size. */
  filetype = 0;
  /**
   * Where to fetch the file. For a file stored on this server, a signed URL (no token needed, for
   * `<a href>`/`<img src>`) on live messages; on messages read from history, its content path
   * (needs the token: ask `Mesibo.getFileUrl(m)` for a signed one).
   */
  fileurl = '';
  size = 0;
  type = 0;
  /** Kept on the object, not sent: the Chorus protocol has no expiry (messages are stored until deleted). */
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
  /** Made by `forward()` (known to this page only: the protocol does not carry it). */
  forwarded = false;
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
  isForwarded(): boolean {
    return this.forwarded;
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

  /** App-defined type: sent (`mtype`) and seen by the receivers as `m.type`. */
  setType(t: number): void {
    this.type = Number(t) || 0;
  }
  /** Kept, not sent (see `expiry`). */
  setExpiry(e: number): void {
    this.expiry = Number(e) || 0;
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

  /**
   * Edits one of your sent messages: change `message` (and/or `data`), then `sendUpdate()`.
   * Everyone in the conversation (you too) gets `Mesibo_onMessageUpdate(m)`. Returns false if
   * the message is not yours or not sent yet.
   */
  sendUpdate(): boolean {
    if (!this.mesibo || this._incoming || !this.mid) return false;
    const content: { text?: string; data?: unknown } = {};
    if (this.message || this.data === undefined) content.text = this.message;
    if (this.data !== undefined) content.data = this.data;
    this.mesibo._retract('sendUpdate', (c) => c.edit(this.mid, content));
    return true;
  }
  /**
   * Deletes one of your sent messages for everyone (a tombstone stays: `isDeleted()`); everyone
   * gets `Mesibo_onMessageUpdate(m)`. Returns false if the message is not yours or not sent yet.
   */
  recall(): boolean {
    if (!this.mesibo || this._incoming || !this.mid) return false;
    this.mesibo._retract('recall', (c) => c.delete(this.mid));
    return true;
  }
  /** Same as `recall()`: Chorus keeps no local copy to wipe. */
  wipeAndRecall(): boolean {
    return this.recall();
  }
  /**
   * Deletes the message here only: it leaves the read sessions' lists of this page. Chorus keeps
   * no local copy, so history read again still has it; `recall()` deletes it for everyone.
   */
  delete(): boolean {
    if (!this.mesibo) return false;
    this.mesibo._dropLocal(this);
    return true;
  }
  /** Same as `delete()`. */
  wipe(): boolean {
    return this.delete();
  }
  /** A new outgoing message to `to` (a profile) with this message's content; call `send()` on it. */
  forward(to: MesiboProfile): MesiboMessage {
    if (!to || typeof to.newMessage !== 'function') throw new Error('mesibo: forward(profile) needs a profile');
    const m = to.newMessage();
    m.message = this.message;
    m.title = this.title;
    m.data = this.data;
    m.file = this.file ? { ...this.file } : undefined;
    m.type = this.type;
    m.forwarded = true;
    return m;
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
  if (m.file) {
    mm.filetype = m.file.filetype ?? 0;
    mm.size = m.file.size ?? 0;
    const base = mesibo.getServer();
    try {
      mm.fileurl = base ? new URL(m.file.url, `${base}/`).toString() : m.file.url;
    } catch {
      mm.fileurl = m.file.url;
    }
  }
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
 * A read session over one conversation (`profile.createReadSession(listener | on_read)`,
 * `mesibo.readDbSession(peer, groupid, query, on_read)`). Chorus keeps history on the server:
 * `read(n)` pages backwards through it (REST). Each message read goes to the session's list
 * (`getMessages()`) and, unless the session was made with an `on_read` function, to
 * `Mesibo_onMessage(m)` of its listener (else of the `setListener` objects) with
 * `m.origin == MESIBO_ORIGIN_DBMESSAGE`. While the session is open, the list also gets the
 * conversation's live messages and this page's own sends, and follows edits and deletions.
 */
export class MesiboReadSession {
  /** Oldest first; sends not yet answered by the server at the end. */
  private readonly list: MesiboMessage[] = [];
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

  /**
   * The conversation as this session knows it, oldest first: what `read()` read, live messages
   * while open, and this page's sends (with their status updated in place). The session's own
   * array: read it, don't change it.
   */
  getMessages(): MesiboMessage[] {
    return this.list;
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
        // With an on_read function the app reads the list; else Mesibo_onMessage per message.
        const target = this.listener ? [this.listener] : this.onRead ? [] : this.mesibo._listeners;
        for (const m of msgs) {
          if (m.isIncoming()) this.highestIncoming = Math.max(this.highestIncoming, m.seq);
          this.add(m);
        }
        for (const m of msgs) fire(target, 'Mesibo_onMessage', m, m.message);
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
    if (this.stopped || !this.mine(m)) return;
    this.add(m);
    if (!this.readReceipt || !m.isIncoming() || m.seq <= this.highestIncoming) return;
    this.highestIncoming = m.seq;
    void this.markRead(m.seq);
  }

  /** @internal This page sends `m`. */
  _own(m: MesiboMessage): void {
    if (!this.stopped && this.mine(m)) this.add(m);
  }

  /** @internal The server stored `m` (it has its `seq` now): move it to its place. */
  _sent(m: MesiboMessage): void {
    const i = this.list.indexOf(m);
    if (i < 0) return;
    this.list.splice(i, 1);
    for (let j = this.list.length - 1; j >= 0; j--) if (this.list[j]?.mid === m.mid) this.list.splice(j, 1); // an echo of it
    this.add(m);
  }

  /** @internal An edit or deletion of a message (`m` carries the new content). */
  _update(m: MesiboMessage): void {
    const old = this.list.find((x) => x.mid === m.mid && x.mid !== 0);
    if (!old) return;
    old.message = m.message;
    old.data = m.data;
    old.file = m.file;
    old.edited = m.edited;
    old.deleted = m.deleted;
  }

  /** @internal `m` was deleted locally (`m.delete()`). */
  _drop(m: MesiboMessage): void {
    const i = this.list.findIndex((x) => x === m || (m.mid !== 0 && x.mid === m.mid));
    if (i >= 0) this.list.splice(i, 1);
  }

  private mine(m: MesiboMessage): boolean {
    return this.conv.gid !== undefined ? m.groupid === this.conv.gid : m.groupid === 0 && m.peer === this.conv.peer;
  }

  /** Inserts by `seq` (unsent messages, seq 0, stay last); a message already listed (same mid) is not added again. */
  private add(m: MesiboMessage): void {
    if (this.list.includes(m) || (m.mid !== 0 && this.list.some((x) => x.mid === m.mid))) return;
    if (m.seq === 0) {
      this.list.push(m);
      return;
    }
    let i = this.list.length;
    while (i > 0) {
      const prev = this.list[i - 1] as MesiboMessage;
      if (prev.seq !== 0 && prev.seq < m.seq) break;
      i--;
    }
    this.list.splice(i, 0, m);
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
