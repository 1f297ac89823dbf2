// Pure helpers (no DOM, no SDK state): unit-tested in test/lib.test.ts.

/** Room quality choices → the group's `video_resolution` (crates/proto/src/flags.rs, `resolution`). */
export const QUALITIES = [
  { label: '180p', value: 9, height: 180 },
  { label: '360p', value: 10, height: 360 },
  { label: '720p', value: 3, height: 720 },
  { label: '1080p', value: 4, height: 1080 },
  { label: '4K', value: 5, height: 2160 },
] as const;

/** `call_flags` bits (crates/proto/src/flags.rs, `call`). */
export const CALL = {
  VALID: 0x1,
  AUDIO: 0x2,
  VIDEO: 0x4,
  SCREEN: 0x100,
  SIMULCAST: 0x200,
  TALK_DETECTION: 0x8000,
} as const;

/** Member flags (`member`). */
export const MEMBER = { SEND: 0x1, RECV: 0x2, PUBLISH: 0x4, SUBSCRIBE: 0x8, LIST: 0x10, ADMIN: 0x1000 } as const;
/** Admin flags (`admin`). */
export const ADMIN = { MODIFY: 0x1, CALL_CONTROL: 0x400, HANGUP: 0x800, OWNER: 0x1000 } as const;

export interface RoomOptions {
  audio: boolean;
  video: boolean;
  screen: boolean;
  simulcast: boolean;
  talkDetection: boolean;
}

/** The `call_flags` of a new room. */
export function callFlags(o: RoomOptions): number {
  let f = CALL.VALID;
  if (o.audio) f |= CALL.AUDIO;
  if (o.video) f |= CALL.VIDEO;
  if (o.screen) f |= CALL.SCREEN;
  if (o.simulcast) f |= CALL.SIMULCAST;
  if (o.talkDetection) f |= CALL.TALK_DETECTION;
  return f;
}

/** A room's quality label from its `video_resolution` (0 = server default, 720p). */
export function qualityLabel(value: number): string {
  if (value === 0) return '720p';
  return QUALITIES.find((q) => q.value === value)?.label ?? `#${value}`;
}

/** The invite link `origin/?room=GID&pin=PIN`. */
export function inviteLink(origin: string, gid: number, pin: string): string {
  return `${origin.replace(/\/+$/, '')}/?room=${gid}&pin=${encodeURIComponent(pin)}`;
}

/** `?room=…&pin=…` from a query string (or a pasted invite link). */
export function parseInvite(input: string): { gid: number; pin: string | null } | null {
  let q = input.trim();
  const i = q.indexOf('?');
  if (i >= 0) q = q.slice(i + 1);
  const p = new URLSearchParams(q);
  const room = p.get('room');
  if (!room || !/^\d+$/.test(room)) return null;
  const pin = p.get('pin');
  return { gid: Number(room), pin: pin && pin.trim() ? pin.trim() : null };
}

/** Columns and rows for `n` tiles in a box of `width`×`height` (16:9 tiles), as large as possible. */
export function gridShape(n: number, width: number, height: number): { cols: number; rows: number } {
  if (n <= 0) return { cols: 1, rows: 1 };
  let best = { cols: 1, rows: n, size: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min(width / cols, ((height / rows) * 16) / 9);
    if (w >= best.size - 0.5) best = { cols, rows, size: w };
  }
  return { cols: best.cols, rows: best.rows };
}

/** Page `page` (0-based) of `items`, `perPage` at a time; clamps the page. */
export function paginate<T>(items: T[], page: number, perPage = 16): { items: T[]; page: number; pages: number } {
  const pages = Math.max(1, Math.ceil(items.length / perPage));
  const p = Math.min(Math.max(0, page), pages - 1);
  return { items: items.slice(p * perPage, p * perPage + perPage), page: p, pages };
}

/** Message delivery state for the sender: pending, sent (✓), delivered, read (✓✓), failed. */
export type Delivery = 'pending' | 'sent' | 'delivered' | 'read' | 'failed';

/** The state of my message `seq` given the highest delivered / read seqs others reported. */
export function deliveryOf(seq: number | undefined, marks: { delivered: number; read: number }): Delivery {
  if (seq === undefined) return 'pending';
  if (marks.read >= seq) return 'read';
  if (marks.delivered >= seq) return 'delivered';
  return 'sent';
}

/** The tick text of a delivery state. */
export function ticks(d: Delivery): string {
  switch (d) {
    case 'pending':
      return '…';
    case 'failed':
      return '!';
    case 'read':
      return '✓✓';
    default:
      return '✓';
  }
}

/** The conversation key of a chat: `g:GID` or `p:ADDRESS`. */
export type ConvKey = `g:${number}` | `p:${string}`;

/** Where a message belongs for me (`self`): the group, or the other side of a 1:1 chat. */
export function convOf(m: { gid?: number; peer?: string; from: string }, self: string): ConvKey | null {
  if (m.gid !== undefined && m.gid !== null) return `g:${m.gid}`;
  if (m.from === self && m.peer) return `p:${m.peer}`;
  if (m.from) return `p:${m.from}`;
  return null;
}

/** Mesibo file type of a MIME type (image 1, video 2, audio 3, other 10). */
export function fileType(mime: string): number {
  if (mime.startsWith('image/')) return 1;
  if (mime.startsWith('video/')) return 2;
  if (mime.startsWith('audio/')) return 3;
  return 10;
}

/** `1.2 KB`-style sizes. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** `1:05`, `1:02:03`: a duration in ms as a player shows it. */
export function formatDuration(ms: number): string {
  const t = Math.round(ms / 1000);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = String(t % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** How a library entry or chat file is shown: a <video>, <audio>, <img>, or a download link. */
export function mediaKind(type: string | undefined): 'video' | 'audio' | 'image' | 'file' {
  if (!type) return 'file';
  if (type.startsWith('video/')) return 'video';
  if (type.startsWith('audio/')) return 'audio';
  if (type.startsWith('image/')) return 'image';
  return 'file';
}

/** An upload's progress in whole percent (0 for an empty total). */
export function percent(sent: number, total: number): number {
  return total > 0 ? Math.min(100, Math.floor((sent / total) * 100)) : 100;
}

/** The URL to open an inline attachment from (a data: URL in `file.url` or `data.inline`, as Mesibo apps may send), or null if unsafe. */
export function attachmentUrl(m: { file?: { url: string }; data?: unknown }): string | null {
  const inline = (m.data as { inline?: unknown } | undefined)?.inline;
  const url = typeof inline === 'string' ? inline : m.file?.url;
  if (!url) return null;
  if (/^data:[^,]*,inline$/.test(url)) return null;
  if (/^(data:|https:|http:)/i.test(url)) return url;
  return null;
}

/** Connection quality from WebRTC stats: round trip (s) and inbound loss fraction (0..1). */
export type Quality = 'good' | 'fair' | 'poor' | 'unknown';
export function qualityOf(rtt: number | null, loss: number | null): Quality {
  if (rtt === null && loss === null) return 'unknown';
  const r = rtt ?? 0;
  const l = loss ?? 0;
  if (r > 0.4 || l > 0.08) return 'poor';
  if (r > 0.15 || l > 0.02) return 'fair';
  return 'good';
}

/** Plain-words text of an SDK/REST error code, with a way forward. */
export function explain(code: string | undefined, fallback: string): string {
  switch (code) {
    case 'pin_invalid':
      return "That pin doesn't open this room — check the link or ask the host.";
    case 'unauthorized':
      return 'Your session has ended — sign in again.';
    case 'code_invalid':
    case 'code_expired':
      return 'That code is wrong or has expired — check the email, or send a new code.';
    case 'code_locked':
    case 'rate_limited':
      return 'Too many tries — wait a minute, then try again.';
    case 'network':
    case 'disconnected':
    case 'timeout':
      return "Chorus can't reach the server — check your connection and try again.";
    case 'not_found':
      return "That room doesn't exist (any more) — check the link or ask the host.";
    case 'forbidden':
      return "You aren't allowed to do that in this room — ask the host.";
    case 'too_large':
      return 'That is too large to send.';
    default:
      return fallback;
  }
}

/** Initials for an avatar. */
export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return '?';
  return ((parts[0]?.[0] ?? '') + (parts.length > 1 ? (parts[parts.length - 1]?.[0] ?? '') : '')).toUpperCase();
}
