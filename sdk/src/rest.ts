/**
 * REST helpers for the Chorus HTTP API (docs/openapi.json): login
 * (`ChorusAuth`) and the authenticated calls the client needs (`RestClient`).
 *
 * @module rest
 */
import { ChorusError } from './errors.js';
import { isErrorCode } from './protocol.js';
import type { Conversation, MediaEntry, Message, SessionUser } from './protocol.js';

/** Answer to `POST /v1/auth/code`. */
export interface CodeSent {
  /** Seconds until the code expires. */
  expires_in: number;
}

/** Answer to `POST /v1/auth/verify`: a new access token. */
export interface LoginSession {
  token: string;
  /** Expiry, ms since the Unix epoch. */
  expires_at: number;
  user: SessionUser;
}

/** Permissions of one member (Mesibo member and admin flags). */
export interface Membership {
  flags: number;
  admin_flags: number;
}

/** A group as its members see it. */
export interface Group {
  gid: number;
  name: string;
  flags: number;
  call_flags: number;
  video_resolution: number;
  call_duration: number;
  /** Calls are live streams: members who may publish are on stage, the others watch as an audience. */
  live?: boolean;
  /** Calls are recorded from their first join, for the owner (`auto_record`). */
  auto_record?: boolean;
  owner: string;
  created_at: number;
  membership?: Membership;
}

/** A join code carrying a permission set. */
/** A group's whiteboard (`GET /v1/groups/{gid}/board`). */
export interface Board {
  gid: number;
  /** 0 for a board never written, then +1 per change. */
  version: number;
  objs: Record<string, unknown>[];
  count: number;
  /** Size of the stored board (compact JSON text), at most the server's `max_board_bytes`. */
  bytes: number;
  updated_by: string | null;
  updated_at: number;
}
export interface Pin {
  pin: string;
  gid: number;
  flags: number;
  admin_flags: number;
  label: string;
  expires_at: number | null;
  uses_left: number | null;
}

/** Answer to `POST /v1/groups`. */
export interface CreatedGroup {
  group: Group;
  /** Publisher pin first, then view-only, when `room` was set; else empty. */
  pins: Pin[];
}

/** A member in a listing. */
export interface Member {
  address: string;
  name: string;
  flags: number;
  admin_flags: number;
}

/** Group settings (`PATCH /v1/groups/{gid}`); every field optional. */
export interface GroupSettings {
  name?: string;
  flags?: number;
  call_flags?: number;
  video_resolution?: number;
  call_duration?: number;
  /** Live stream mode (a call in progress keeps its mode until it ends). */
  live?: boolean;
  /**
   * Record every call of the group from its first join, for the owner (a call in progress is
   * not affected; an admin may still stop its recording).
   */
  auto_record?: boolean;
}

/** `POST /v1/groups`. */
export interface CreateGroupOptions extends GroupSettings {
  name: string;
  /** Also create a room's publisher and view-only pins. */
  room?: boolean;
}

/** `POST /v1/groups/{gid}/pins`. */
export interface CreatePinOptions {
  flags: number;
  admin_flags?: number;
  label?: string;
  expires_in?: number;
  uses?: number;
}

/**
 * `PATCH /v1/groups/{gid}/pins/{pin}`: what is given changes, the rest is kept; `null` for
 * `expires_in` or `uses` removes the pin's expiry or use limit.
 */
export interface EditPinOptions {
  flags?: number;
  admin_flags?: number;
  label?: string;
  expires_in?: number | null;
  uses?: number | null;
}

/** One page of history, newest last. */
export interface HistoryPage {
  messages: Message[];
  before: number | null;
}

/** One conversation in the caller's list. */
export interface ConversationSummary {
  peer?: string;
  gid?: number;
  name: string;
  last_seq: number;
  read_seq: number;
  unread: number;
  last?: Message;
}

/** Delivery and read watermarks of one member. */
export interface MemberReceipt {
  address: string;
  delivered: number;
  read: number;
}

/** A stored file (`GET /v1/files/{id}`). */
export interface FileInfo {
  id: string;
  /** The sanitised file name. */
  name: string;
  size: number;
  /** The type sniffed from the bytes. */
  type: string;
  created_ms: number;
  /** The uploader's address (`null` if the account is gone). */
  uploader: string | null;
}

/** A signed URL of a file's content (`POST /v1/files/{id}/url`): works without a token until `expires_ms`. */
export interface SignedUrl {
  /** Absolute URL (the server's answer resolved against the server). */
  url: string;
  expires_ms: number;
}

/** One page of a media library, newest first; pass `before` for the next (older) page. */
export interface MediaPage {
  media: MediaEntry[];
  before?: string;
}

/** A `fetch` implementation (the global one by default). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** `https://host` without a trailing slash. */
export function normalizeServer(server: string): string {
  return server.replace(/\/+$/, '');
}

/** Sends one REST request and decodes the JSON answer, or throws `ChorusError`. */
export async function restRequest<T>(
  server: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; fetch?: FetchLike } = {},
): Promise<T> {
  return (await restExchange<T>(server, method, path, opts)).json;
}

/** One page of a paged list and the path of the next page (`null` on the last). */
export interface RestPage<T> {
  items: T[];
  next: string | null;
}

/**
 * `GET` of one page of a paged list (`GET /v1/groups`, `GET /v1/groups/{gid}/members`):
 * while more follow, the answer has a `Link: <path>; rel="next"` header.
 */
export async function restPage<T>(
  server: string,
  path: string,
  opts: { token?: string; fetch?: FetchLike } = {},
): Promise<RestPage<T>> {
  const { json, res } = await restExchange<T[]>(server, 'GET', path, opts);
  return { items: Array.isArray(json) ? json : [], next: nextLink(res.headers.get('link')) };
}

/** The `rel="next"` target of a `Link` header, as a path on the same server. */
export function nextLink(header: string | null): string | null {
  if (!header) return null;
  for (const part of header.split(',')) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (!m || !/(^|;)\s*rel="?next"?\s*(;|$)/.test(m[2]!)) continue;
    const target = m[1]!;
    if (target.startsWith('/')) return target;
    try {
      const u = new URL(target);
      return u.pathname + u.search;
    } catch {
      return null;
    }
  }
  return null;
}

async function restExchange<T>(
  server: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; fetch?: FetchLike } = {},
): Promise<{ json: T; res: Response }> {
  const f: FetchLike | undefined = opts.fetch ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
  if (!f) throw new ChorusError('network', 'no fetch implementation available');
  const headers: Record<string, string> = {};
  if (opts.token) headers['Authorization'] = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await f(normalizeServer(server) + path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (e) {
    throw new ChorusError('network', `request to ${path} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const text = await res.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (err && isErrorCode(err.code)) {
      throw new ChorusError(err.code, typeof err.message === 'string' ? err.message : err.code, {
        httpStatus: res.status,
      });
    }
    throw new ChorusError(res.status === 401 ? 'unauthorized' : 'internal', `HTTP ${res.status} from ${path}`, {
      httpStatus: res.status,
    });
  }
  return { json: json as T, res };
}

function loginId(who: string | { email: string } | { phone: string }): { email: string } | { phone: string } {
  return typeof who === 'string' ? { email: who } : who;
}

/**
 * Login by emailed (or phoned) code: `requestCode`, then `verify`, which
 * returns the access token for `ChorusClient`.
 *
 * ```ts
 * const auth = new ChorusAuth('https://chat.example.org');
 * await auth.requestCode('ann@example.org');
 * const { token } = await auth.verify('ann@example.org', '123456', 'Ann');
 * ```
 */
export class ChorusAuth {
  readonly server: string;
  private readonly fetchImpl: FetchLike | undefined;

  constructor(server: string, options: { fetch?: FetchLike } = {}) {
    this.server = normalizeServer(server);
    this.fetchImpl = options.fetch;
  }

  /** `POST /v1/auth/code`: mails a 6-digit code. `who` is an email, or `{ phone }`. */
  requestCode(who: string | { email: string } | { phone: string }): Promise<CodeSent> {
    return restRequest<CodeSent>(this.server, 'POST', '/v1/auth/code', { body: loginId(who), fetch: this.fetchImpl });
  }

  /** `POST /v1/auth/verify`: exchanges the code for an access token. */
  verify(who: string | { email: string } | { phone: string }, code: string, name?: string): Promise<LoginSession> {
    const body: Record<string, string> = { ...loginId(who), code };
    if (name !== undefined) body.name = name;
    return restRequest<LoginSession>(this.server, 'POST', '/v1/auth/verify', { body, fetch: this.fetchImpl });
  }

  /** `POST /v1/auth/logout`: revokes `token` (its sessions are closed with 4001). */
  async logout(token: string): Promise<void> {
    await restRequest<void>(this.server, 'POST', '/v1/auth/logout', { token, fetch: this.fetchImpl });
  }

  /** Static shortcut of `requestCode`. */
  static requestCode(server: string, who: string | { email: string } | { phone: string }): Promise<CodeSent> {
    return new ChorusAuth(server).requestCode(who);
  }

  /** Static shortcut of `verify`. */
  static verify(server: string, who: string | { email: string } | { phone: string }, code: string, name?: string) {
    return new ChorusAuth(server).verify(who, code, name);
  }
}

/** Authenticated REST calls (the token as a Bearer header). */
export class RestClient {
  readonly server: string;
  token: string;
  private readonly fetchImpl: FetchLike | undefined;

  constructor(server: string, token: string, options: { fetch?: FetchLike } = {}) {
    this.server = normalizeServer(server);
    this.token = token;
    this.fetchImpl = options.fetch;
  }

  /** Any REST request with this token. */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return restRequest<T>(this.server, method, path, { token: this.token, body, fetch: this.fetchImpl });
  }

  /** One page of a paged list with this token; `next` is the path of the following page. */
  page<T>(path: string): Promise<RestPage<T>> {
    return restPage<T>(this.server, path, { token: this.token, fetch: this.fetchImpl });
  }

  /** Every item of a paged list: follows the `next` links from `path` to the last page. */
  async all<T>(path: string): Promise<T[]> {
    const out: T[] = [];
    const seen = new Set<string>();
    let next: string | null = path;
    while (next !== null && !seen.has(next)) {
      seen.add(next);
      const page: RestPage<T> = await this.page<T>(next);
      out.push(...page.items);
      next = page.next;
    }
    return out;
  }

  /** `GET /v1/me`. */
  me(): Promise<SessionUser> {
    return this.request('GET', '/v1/me');
  }
  /** `PATCH /v1/me`. */
  updateMe(name: string): Promise<SessionUser> {
    return this.request('PATCH', '/v1/me', { name });
  }
  /** `GET /v1/groups`: every group you belong to, most recently joined first (all pages). */
  groups(): Promise<Group[]> {
    return this.all('/v1/groups');
  }
  /** `GET /v1/groups/{gid}`. */
  group(gid: number): Promise<Group> {
    return this.request('GET', `/v1/groups/${gid}`);
  }
  /** `POST /v1/groups`. */
  createGroup(options: CreateGroupOptions): Promise<CreatedGroup> {
    return this.request('POST', '/v1/groups', options);
  }
  /** `PATCH /v1/groups/{gid}`. */
  updateGroup(gid: number, settings: GroupSettings): Promise<Group> {
    return this.request('PATCH', `/v1/groups/${gid}`, settings);
  }
  /** `DELETE /v1/groups/{gid}`. */
  async deleteGroup(gid: number): Promise<void> {
    await this.request('DELETE', `/v1/groups/${gid}`);
  }
  /** `POST /v1/groups/{gid}/join` with a pin. */
  joinGroup(gid: number, pin: string): Promise<Group> {
    return this.request('POST', `/v1/groups/${gid}/join`, { pin: String(pin) });
  }
  /** `POST /v1/groups/{gid}/leave`. */
  async leaveGroup(gid: number): Promise<void> {
    await this.request('POST', `/v1/groups/${gid}/leave`);
  }
  /** `GET /v1/groups/{gid}/members`: every member, in join order (all pages). */
  members(gid: number): Promise<Member[]> {
    return this.all(`/v1/groups/${gid}/members`);
  }
  /** `POST /v1/groups/{gid}/members`. */
  async addMembers(gid: number, addresses: string[], flags?: { flags?: number; admin_flags?: number }): Promise<void> {
    await this.request('POST', `/v1/groups/${gid}/members`, { addresses, ...flags });
  }
  /** `DELETE /v1/groups/{gid}/members/{address}`. */
  async removeMember(gid: number, address: string): Promise<void> {
    await this.request('DELETE', `/v1/groups/${gid}/members/${encodeURIComponent(address)}`);
  }
  /** `GET /v1/groups/{gid}/pins`. */
  pins(gid: number): Promise<Pin[]> {
    return this.request('GET', `/v1/groups/${gid}/pins`);
  }
  /** `POST /v1/groups/{gid}/pins`. */
  createPin(gid: number, options: CreatePinOptions): Promise<Pin> {
    return this.request('POST', `/v1/groups/${gid}/pins`, options);
  }
  /** `PATCH /v1/groups/{gid}/pins/{pin}`: changes a pin. */
  editPin(gid: number, pin: string, options: EditPinOptions): Promise<Pin> {
    return this.request('PATCH', `/v1/groups/${gid}/pins/${encodeURIComponent(pin)}`, options);
  }
  /** `DELETE /v1/groups/{gid}/pins/{pin}`. */
  async revokePin(gid: number, pin: string): Promise<void> {
    await this.request('DELETE', `/v1/groups/${gid}/pins/${encodeURIComponent(pin)}`);
  }
  /** `GET /v1/groups/{gid}/board`. */
  board(gid: number): Promise<Board> {
    return this.request('GET', `/v1/groups/${gid}/board`);
  }
  /** `PUT /v1/groups/{gid}/board`: replace the board (only if still at `version`, when given). */
  setBoard(gid: number, objs: Record<string, unknown>[], version?: number): Promise<Board> {
    return this.request('PUT', `/v1/groups/${gid}/board`, version === undefined ? { objs } : { objs, version });
  }
  /** `POST /v1/groups/{gid}/board`: add objects at the end of the board. */
  appendBoard(gid: number, objs: Record<string, unknown>[]): Promise<Board> {
    return this.request('POST', `/v1/groups/${gid}/board`, { objs });
  }
  /** `GET /v1/groups/{gid}/media`: one page of the group's media library, newest first. */
  media(gid: number, options: { before?: string; limit?: number } = {}): Promise<MediaPage> {
    const q: string[] = [];
    if (options.before !== undefined) q.push(`before=${encodeURIComponent(options.before)}`);
    if (options.limit !== undefined) q.push(`limit=${options.limit}`);
    return this.request('GET', `/v1/groups/${gid}/media${q.length ? '?' + q.join('&') : ''}`);
  }
  /** `GET /v1/groups/{gid}/media/{id}`. */
  mediaEntry(gid: number, id: string): Promise<MediaEntry> {
    return this.request('GET', `/v1/groups/${gid}/media/${encodeURIComponent(id)}`);
  }
  /** `POST /v1/groups/{gid}/media`: adds a finished upload of yours to the library. */
  addMedia(gid: number, upload: string): Promise<MediaEntry> {
    return this.request('POST', `/v1/groups/${gid}/media`, { upload });
  }
  /** `DELETE /v1/groups/{gid}/media/{id}` (the member who added it, or an admin): the file stays your upload. */
  async deleteMedia(gid: number, id: string): Promise<void> {
    await this.request('DELETE', `/v1/groups/${gid}/media/${encodeURIComponent(id)}`);
  }
  /** `GET /v1/files/{id}`. */
  fileInfo(id: string): Promise<FileInfo> {
    return this.request('GET', `/v1/files/${encodeURIComponent(id)}`);
  }
  /** `POST /v1/files/{id}/url`: a signed URL for `<video src>`, `<img src>` or a download link. */
  async fileUrl(id: string): Promise<SignedUrl> {
    const r = await this.request<SignedUrl>('POST', `/v1/files/${encodeURIComponent(id)}/url`);
    return { url: new URL(r.url, `${this.server}/`).toString(), expires_ms: r.expires_ms };
  }
  /** `DELETE /v1/uploads/{id}`: deletes your upload and its bytes (and the file from every library). */
  async deleteUpload(id: string): Promise<void> {
    const f: FetchLike | undefined = this.fetchImpl ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
    if (!f) throw new ChorusError('network', 'no fetch implementation available');
    const res = await f(`${this.server}/v1/uploads/${encodeURIComponent(id)}`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${this.token}`, 'Tus-Resumable': '1.0.0' },
    });
    if (res.status !== 204) throw new ChorusError(res.status === 404 ? 'not_found' : res.status === 401 ? 'unauthorized' : 'internal', `HTTP ${res.status} deleting upload`, { httpStatus: res.status });
  }
  /**
   * The bytes of a server path read with the token (a file's `/v1/files/{id}/content`, a
   * library thumbnail, a chat file's `url`), as a `Blob`.
   */
  async blob(path: string): Promise<Blob> {
    const f: FetchLike | undefined = this.fetchImpl ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
    if (!f) throw new ChorusError('network', 'no fetch implementation available');
    let res: Response;
    try {
      res = await f(path.startsWith('/') ? this.server + path : path, { headers: { Authorization: `Bearer ${this.token}` } });
    } catch (e) {
      throw new ChorusError('network', `request to ${path} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!res.ok) {
      const code = res.status === 404 ? 'not_found' : res.status === 403 ? 'forbidden' : res.status === 401 ? 'unauthorized' : 'internal';
      throw new ChorusError(code, `HTTP ${res.status} from ${path}`, { httpStatus: res.status });
    }
    return res.blob();
  }
  /** History of a conversation, newest last (`before`: a `seq` to page backwards). */
  history(conv: Conversation, options: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    const q: string[] = [];
    if (options.before !== undefined) q.push(`before=${options.before}`);
    if (options.limit !== undefined) q.push(`limit=${options.limit}`);
    return this.request('GET', `${convPath(conv)}/messages${q.length ? '?' + q.join('&') : ''}`);
  }
  /** Every member's delivered/read watermarks in a conversation. */
  async receipts(conv: Conversation): Promise<MemberReceipt[]> {
    const r = await this.request<{ members: MemberReceipt[] }>('GET', `${convPath(conv)}/receipts`);
    return r.members;
  }
  /** `GET /v1/conversations`, most recently active first. */
  conversations(): Promise<ConversationSummary[]> {
    return this.request('GET', '/v1/conversations');
  }
}

/**
 * The stored file's id a message's file reference names (`upload`, or a `url` of
 * `/v1/files/{id}/content` on this server), or null for a link elsewhere or inline bytes.
 */
export function fileIdOf(ref: { url?: string; upload?: string } | undefined | null): string | null {
  if (!ref) return null;
  if (ref.upload && /^[0-9a-f]{32}$/.test(ref.upload)) return ref.upload;
  const m = /(?:^|\/\/[^/]+)\/v1\/files\/([0-9a-f]{32})\/content(?:[?#]|$)/.exec(ref.url ?? '');
  return m ? m[1]! : null;
}

function convPath(conv: Conversation): string {
  return conv.gid !== undefined ? `/v1/groups/${conv.gid}` : `/v1/users/${encodeURIComponent(conv.peer)}`;
}
