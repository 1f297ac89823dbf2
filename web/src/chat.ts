// Chat state for one client: conversations (the room's group chat and 1:1 chats), my messages'
// delivery state from receipts, typing indicators. UI components subscribe to `change`.
import { ChorusClient, ChorusError, Emitter, newMessageId } from 'chorus-sdk';
import type { Message, OutgoingMessage, Upload } from 'chorus-sdk';
import { convOf, deliveryOf, fileType, type ConvKey, type Delivery } from './lib.ts';

export interface ChatMessage extends Message {
  /** My message, not yet acknowledged (or failed). */
  local?: 'pending' | 'failed';
  error?: string;
  /** My file still going up (progress, pause, cancel). */
  upload?: Upload;
  /** A local object URL of my image, shown until the stored file is readable. */
  preview?: string;
}

interface Marks {
  delivered: number;
  read: number;
}

export function convTarget(key: ConvKey): { gid: number } | { peer: string } {
  return key.startsWith('g:') ? { gid: Number(key.slice(2)) } : { peer: key.slice(2) };
}

export class ChatStore extends Emitter<{ change: void }> {
  readonly conversations = new Map<ConvKey, ChatMessage[]>();
  /** Highest delivered/read seq others reported, per conversation. */
  private marks = new Map<ConvKey, Marks>();
  /** Who is typing, per conversation, with expiry timers. */
  private typingNow = new Map<ConvKey, Map<string, ReturnType<typeof setTimeout>>>();
  /** Unread counts of conversations not on screen. */
  readonly unread = new Map<ConvKey, number>();
  /** The conversation on screen (messages there are marked read). */
  private visible: ConvKey | null = null;
  private readSent = new Map<ConvKey, number>();
  private loaded = new Set<ConvKey>();
  private typingOff: ReturnType<typeof setTimeout> | undefined;
  private typingConv: ConvKey | null = null;
  private offs: (() => void)[] = [];

  constructor(readonly client: ChorusClient) {
    super();
    this.offs.push(
      client.on('message', (m) => this.onMessage(m)),
      client.on('receipt', (r) => {
        const self = client.address ?? '';
        const key: ConvKey | null = r.gid !== undefined ? `g:${r.gid}` : r.by !== self ? `p:${r.by}` : r.peer ? `p:${r.peer}` : null;
        if (!key || r.by === self) return;
        const m = this.marks.get(key) ?? { delivered: 0, read: 0 };
        if (r.status >= 2) m.delivered = Math.max(m.delivered, r.seq);
        if (r.status >= 3) m.read = Math.max(m.read, r.seq);
        this.marks.set(key, m);
        this.emit('change', undefined);
      }),
      client.on('presence', (p) => {
        if (p.presence !== 3 && p.presence !== 4) return;
        if (p.from === client.address) return;
        const key: ConvKey = p.gid !== undefined ? `g:${p.gid}` : `p:${p.from}`;
        const who = this.typingNow.get(key) ?? new Map();
        clearTimeout(who.get(p.from));
        if (p.presence === 3) {
          who.set(
            p.from,
            setTimeout(() => {
              who.delete(p.from);
              this.emit('change', undefined);
            }, 8000),
          );
        } else who.delete(p.from);
        this.typingNow.set(key, who);
        this.emit('change', undefined);
      }),
    );
  }

  dispose(): void {
    for (const off of this.offs) off();
    this.offs = [];
  }

  messages(key: ConvKey): ChatMessage[] {
    return this.conversations.get(key) ?? [];
  }

  typing(key: ConvKey): string[] {
    return [...(this.typingNow.get(key)?.keys() ?? [])];
  }

  delivery(key: ConvKey, m: ChatMessage): Delivery {
    if (m.local === 'failed') return 'failed';
    if (m.local === 'pending') return 'pending';
    return deliveryOf(m.seq, this.marks.get(key) ?? { delivered: 0, read: 0 });
  }

  /** Loads the recent history of a conversation once. */
  async load(key: ConvKey): Promise<void> {
    if (this.loaded.has(key)) return;
    this.loaded.add(key);
    try {
      const page = await this.client.history(convTarget(key) as { gid: number }, { limit: 50 });
      for (const m of page.messages) this.upsert(key, m, false);
      const rec = await this.client.rest.receipts(convTarget(key) as { gid: number }).catch(() => []);
      const marks = this.marks.get(key) ?? { delivered: 0, read: 0 };
      for (const r of rec) {
        if (r.address === this.client.address) continue;
        marks.delivered = Math.max(marks.delivered, r.delivered);
        marks.read = Math.max(marks.read, r.read);
      }
      this.marks.set(key, marks);
      this.emit('change', undefined);
      this.markRead();
    } catch {
      this.loaded.delete(key);
    }
  }

  /** The conversation on screen (null: none): its messages from others get read receipts. */
  show(key: ConvKey | null): void {
    this.visible = key;
    if (key) {
      this.unread.delete(key);
      void this.load(key);
      this.markRead();
      this.emit('change', undefined);
    }
  }

  private markRead(): void {
    const key = this.visible;
    if (!key || (typeof document !== 'undefined' && document.visibilityState === 'hidden')) return;
    const self = this.client.address;
    let seq = 0;
    for (const m of this.messages(key)) if (m.from !== self && m.seq > seq) seq = m.seq;
    if (seq <= (this.readSent.get(key) ?? 0)) return;
    this.readSent.set(key, seq);
    this.client.read({ ...(convTarget(key) as { gid: number }), seq }).catch(() => this.readSent.delete(key));
  }

  private onMessage(m: Message): void {
    const key = convOf(m, this.client.address ?? '');
    if (!key) return;
    this.upsert(key, m, m.from !== this.client.address);
    this.markRead();
  }

  private upsert(key: ConvKey, m: Message, countUnread: boolean): void {
    const list = this.conversations.get(key) ?? [];
    const i = list.findIndex((x) => x.id === m.id || (x.mid !== 0 && x.mid === m.mid));
    if (i >= 0) list[i] = { ...m };
    else {
      list.push({ ...m });
      list.sort((a, b) => (a.seq || Infinity) - (b.seq || Infinity));
      if (countUnread && key !== this.visible) this.unread.set(key, (this.unread.get(key) ?? 0) + 1);
      // Whoever sent a message stopped typing.
      const who = this.typingNow.get(key);
      if (who?.has(m.from)) {
        clearTimeout(who.get(m.from));
        who.delete(m.from);
      }
    }
    this.conversations.set(key, list);
    this.emit('change', undefined);
  }

  /** Sends text and/or a file reference; shows it at once as pending. */
  async send(key: ConvKey, content: Pick<OutgoingMessage, 'text' | 'file' | 'data'>): Promise<void> {
    this.stopTyping();
    const id = newMessageId();
    this.draft(key, id, content);
    await this.deliver(key, id, content);
  }

  /**
   * Sends a file of any size: it goes up by tus first (the message shows its progress and can be
   * paused or cancelled), then a message carries the stored file, readable by the conversation only.
   */
  async sendFile(key: ConvKey, file: File): Promise<void> {
    this.stopTyping();
    const id = newMessageId();
    const mime = file.type || 'application/octet-stream';
    const upload = this.client.upload(file);
    const preview = mime.startsWith('image/') ? URL.createObjectURL(file) : undefined;
    this.draft(key, id, { file: { url: '', name: file.name, size: file.size, mime, filetype: fileType(mime) } }, { upload, preview });
    const offs = [upload.on('progress', () => this.emit('change', undefined)), upload.on('state', () => this.emit('change', undefined))];
    let uid: string;
    try {
      uid = await upload.done;
    } catch (e) {
      const cur = this.conversations.get(key) ?? [];
      const j = cur.findIndex((x) => x.id === id);
      if (j >= 0 && upload.state === 'cancelled') cur.splice(j, 1);
      else if (j >= 0) cur[j] = { ...(cur[j] as ChatMessage), upload: undefined, local: 'failed', error: e instanceof ChorusError ? e.code : String(e) };
      this.emit('change', undefined);
      return;
    } finally {
      for (const off of offs) off();
    }
    const ref = { url: '', upload: uid, name: file.name, size: file.size, mime, filetype: fileType(mime) };
    const cur = this.conversations.get(key) ?? [];
    const j = cur.findIndex((x) => x.id === id);
    if (j >= 0) cur[j] = { ...(cur[j] as ChatMessage), upload: undefined, file: ref };
    await this.deliver(key, id, { file: { url: '', upload: uid, name: file.name } });
  }

  /** Shows my message at once as pending. */
  private draft(key: ConvKey, id: string, content: Pick<OutgoingMessage, 'text' | 'file' | 'data'>, extra: Partial<ChatMessage> = {}): void {
    const self = this.client.address ?? '';
    const target = convTarget(key);
    const draft: ChatMessage = {
      mid: 0,
      id,
      from: self,
      ...('gid' in target ? { gid: target.gid } : { peer: target.peer }),
      seq: 0,
      pos: 0,
      ts: Date.now(),
      mtype: 0,
      ...content,
      edited: false,
      deleted: false,
      local: 'pending',
      ...extra,
    } as ChatMessage;
    const list = this.conversations.get(key) ?? [];
    list.push(draft);
    this.conversations.set(key, list);
    this.emit('change', undefined);
  }

  /** Sends the pending message `id` and records the server's answer. */
  private async deliver(key: ConvKey, id: string, content: Pick<OutgoingMessage, 'text' | 'file' | 'data'>): Promise<void> {
    const target = convTarget(key);
    try {
      const sent = await this.client.send({ ...target, ...content, id });
      const cur = this.conversations.get(key) ?? [];
      const j = cur.findIndex((x) => x.id === id);
      if (j >= 0) {
        const { local: _l, ...rest } = cur[j] as ChatMessage;
        cur[j] = { ...rest, mid: sent.mid, seq: sent.seq, pos: sent.pos, ts: sent.ts };
      }
    } catch (e) {
      const cur = this.conversations.get(key) ?? [];
      const j = cur.findIndex((x) => x.id === id);
      if (j >= 0) cur[j] = { ...(cur[j] as ChatMessage), local: 'failed', error: e instanceof ChorusError ? e.code : String(e) };
    }
    this.emit('change', undefined);
  }

  /** Call on input: sends `typing` once, clears it after 4 s without keys. */
  typed(key: ConvKey): void {
    if (this.typingConv !== key) {
      this.stopTyping();
      this.typingConv = key;
      try {
        this.client.typing({ ...(convTarget(key) as { gid: number }), on: true });
      } catch {
        /* offline: no indicator */
      }
    }
    clearTimeout(this.typingOff);
    this.typingOff = setTimeout(() => this.stopTyping(), 4000);
  }

  stopTyping(): void {
    clearTimeout(this.typingOff);
    const key = this.typingConv;
    this.typingConv = null;
    if (!key) return;
    try {
      this.client.typing({ ...(convTarget(key) as { gid: number }), on: false });
    } catch {
      /* offline */
    }
  }
}
