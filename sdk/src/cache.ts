/**
 * Local caching in IndexedDB: the messages a client has seen, by conversation, and its resume
 * cursor, so a page that reloads shows its conversations at once (even offline) and resumes the
 * session where it stopped instead of reloading the backlog.
 *
 * ```ts
 * const cache = await MessageCache.open('chorus-ann');          // one database per user
 * const client = new ChorusClient({ server, token, cursor: await cache.cursor() });
 * cache.attach(client);                                           // stores messages and the cursor
 * await client.connect();
 * const recent = await cache.messages({ gid: 1001 }, 50);         // newest first
 * ```
 *
 * Edits and deletions replace the stored message (same `mid`). The cache never deletes on its
 * own; `clear()` empties it (e.g. at logout).
 */

import type { ChorusClient } from './client.js';
import type { Cursor, Message } from './protocol.js';

/** A conversation: a 1:1 partner or a group. */
export type CacheConversation = { peer: string } | { gid: number };

interface Stored extends Message {
  /** `g:<gid>` or `p:<partner address>`. */
  conv: string;
}

const MESSAGES = 'messages';
const META = 'meta';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function convKey(c: CacheConversation): string {
  return 'gid' in c ? `g:${c.gid}` : `p:${c.peer}`;
}

/** Messages and the resume cursor of one user, in one IndexedDB database. */
export class MessageCache {
  private constructor(private readonly db: IDBDatabase) {}

  /** Opens (or creates) the database `name`. `indexedDB` defaults to the global one. */
  static async open(name: string, indexedDB: IDBFactory = globalThis.indexedDB): Promise<MessageCache> {
    if (!indexedDB) throw new Error('IndexedDB is not available');
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      const messages = db.createObjectStore(MESSAGES, { keyPath: 'mid' });
      messages.createIndex('conv_seq', ['conv', 'seq']);
      db.createObjectStore(META);
    };
    return new MessageCache(await request(req));
  }

  /** Stores a message (or replaces it: an edit or a deletion) as `self` sees it. */
  async put(m: Message, self: string | null): Promise<void> {
    const partner = m.from === self ? m.peer : m.from;
    const conv = m.gid !== undefined && m.gid !== null ? `g:${m.gid}` : `p:${partner ?? ''}`;
    const tx = this.db.transaction(MESSAGES, 'readwrite');
    tx.objectStore(MESSAGES).put({ ...m, conv } satisfies Stored);
    await done(tx);
  }

  /** Up to `limit` messages of a conversation, newest first; `before` a `seq` to page back. */
  async messages(c: CacheConversation, limit = 50, before?: number): Promise<Message[]> {
    const conv = convKey(c);
    const upper = before === undefined ? [conv, Number.MAX_SAFE_INTEGER] : [conv, before - 1];
    const range = IDBKeyRange.bound([conv, Number.MIN_SAFE_INTEGER], upper);
    const tx = this.db.transaction(MESSAGES, 'readonly');
    const index = tx.objectStore(MESSAGES).index('conv_seq');
    const out: Message[] = [];
    await new Promise<void>((resolve, reject) => {
      const cursor = index.openCursor(range, 'prev');
      cursor.onerror = () => reject(cursor.error);
      cursor.onsuccess = () => {
        const c = cursor.result;
        if (!c || out.length >= limit) return resolve();
        const { conv: _conv, ...m } = c.value as Stored;
        out.push(m as Message);
        c.continue();
      };
    });
    return out;
  }

  /** The saved resume cursor, if any. */
  async cursor(): Promise<Cursor | null> {
    const tx = this.db.transaction(META, 'readonly');
    return ((await request(tx.objectStore(META).get('cursor'))) as Cursor | undefined) ?? null;
  }

  /** Saves the resume cursor. */
  async setCursor(c: Cursor): Promise<void> {
    const tx = this.db.transaction(META, 'readwrite');
    tx.objectStore(META).put(c, 'cursor');
    await done(tx);
  }

  /** Keeps the cache in step with `client`: every message it receives or sends, and its cursor.
   * Returns a function that stops it. */
  attach(client: ChorusClient): () => void {
    const store = (m: Message) => void this.put(m, client.address).catch(() => undefined);
    const stops = [
      client.on('message', store),
      client.on('own-message', store),
      client.on('cursor', (c: Cursor) => void this.setCursor(c).catch(() => undefined)),
    ];
    return () => stops.forEach((stop) => stop());
  }

  /** Empties the cache (at logout). */
  async clear(): Promise<void> {
    const tx = this.db.transaction([MESSAGES, META], 'readwrite');
    tx.objectStore(MESSAGES).clear();
    tx.objectStore(META).clear();
    await done(tx);
  }

  /** Closes the database. */
  close(): void {
    this.db.close();
  }
}
