/*! Chorus SDK 0.1.0 — generated from sdk/src by `npm run build`; do not edit. */

// src/protocol.ts
var ERROR_CODES = [
  "bad_request",
  "unauthorized",
  "forbidden",
  "not_found",
  "conflict",
  "too_large",
  "rate_limited",
  "code_invalid",
  "code_expired",
  "code_locked",
  "pin_invalid",
  "limit_exceeded",
  "method_not_allowed",
  "internal"
];
function isErrorCode(s) {
  return typeof s === "string" && ERROR_CODES.includes(s);
}
var MessageStatus = {
  OUTBOX: 0,
  SENT: 1,
  DELIVERED: 2,
  READ: 3,
  FAILED: 128,
  INVALID_DEST: 131,
  RETRY_LATER: 135,
  NOT_MEMBER: 145
};
var Presence = {
  ONLINE: 1,
  OFFLINE: 2,
  TYPING: 3,
  TYPING_CLEARED: 4
};
var CallStatusCode = {
  RINGING: 3,
  ANSWER: 5,
  COMPLETE: 64,
  CANCEL: 65,
  NOANSWER: 66,
  BUSY: 67,
  OFFLINE: 69,
  INVALIDDEST: 70,
  INVALIDSTATE: 71,
  NOTALLOWED: 74,
  NETWORKERROR: 98
};
var CloseCode = {
  /** Outbound queue overflowed: reconnect at once and resume. */
  FELL_BEHIND: 4e3,
  /** Token revoked / user deactivated: do not reconnect with the same token. */
  SESSION_ENDED: 4001,
  /** `hello` problems. */
  PROTOCOL_ERROR: 1008,
  /** Frame too large or broken WebSocket data. */
  BAD_FRAME: 1009
};
var REQUIRED = {
  welcome: { session: "string", user: "object", epoch: "string", resumed: "boolean" },
  synced: { pos: "number", count: "number", complete: "boolean" },
  sent: { id: "string", mid: "number", seq: "number", pos: "number", ts: "number", status: "number", duplicate: "boolean" },
  message: { mid: "number", id: "string", from: "string", seq: "number", pos: "number", ts: "number" },
  receipt: { by: "string", status: "number", seq: "number" },
  presence: { from: "string", presence: "number" },
  group: { gid: "number", event: "string" },
  group_media: { gid: "number", action: "string", id: "string" },
  board: { gid: "number", version: "number", from: "string", action: "string", objs: "array" },
  ok: {},
  pong: {},
  call_joined: { gid: "number", address: "string", permissions: "object", settings: "object", participants: "array" },
  call_audience: { gid: "number", count: "number", members: "array" },
  call_published: { stream: "object", sdp: "string" },
  call_sdp: {},
  call_offer: { gid: "number", sdp: "string", tracks: "array" },
  call_event: { gid: "number", event: "string" },
  call_recording: { gid: "number", recording: "object" },
  call_dialing: { call: "number", peer: "string", video: "boolean" },
  call_incoming: { call: "number", from: "string", name: "string", video: "boolean" },
  call_status: { call: "number", from: "string", to: "string", video: "boolean", status: "string", code: "number" },
  error: { code: "string", message: "string" }
};
function isServerFrameType(t) {
  return typeof t === "string" && Object.prototype.hasOwnProperty.call(REQUIRED, t);
}
function kindOf(v) {
  if (Array.isArray(v)) return "array";
  const t = typeof v;
  if (t === "string" || t === "number" || t === "boolean") return t;
  if (v !== null && t === "object") return "object";
  return "any";
}
function parseServerFrame(text) {
  const v = JSON.parse(text);
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new TypeError("frame is not a JSON object");
  const o = v;
  if (!isServerFrameType(o.type)) throw new TypeError(`unknown frame type ${JSON.stringify(o.type)}`);
  for (const [field, kind] of Object.entries(REQUIRED[o.type])) {
    if (!(field in o)) throw new TypeError(`${o.type} frame lacks "${field}"`);
    if (kind !== "any" && kindOf(o[field]) !== kind) throw new TypeError(`${o.type}.${field} is not a ${kind}`);
  }
  return o;
}
function frameRid(f) {
  return "rid" in f && typeof f.rid === "string" ? f.rid : void 0;
}

// src/errors.ts
var ChorusError = class _ChorusError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = "ChorusError";
    this.code = code;
    if (extra?.httpStatus !== void 0) this.httpStatus = extra.httpStatus;
    if (extra?.id !== void 0) this.id = extra.id;
    if (extra?.status !== void 0) this.status = extra.status;
  }
  /** The error of a server `error` frame. */
  static fromFrame(f) {
    return new _ChorusError(f.code, f.message, { id: f.id, status: f.status });
  }
};

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Adds a listener; returns a function that removes it. */
  on(name, fn) {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, set = /* @__PURE__ */ new Set());
    set.add(fn);
    return () => this.off(name, fn);
  }
  /** Adds a listener called at most once. */
  once(name, fn) {
    const off = this.on(name, (e) => {
      off();
      fn(e);
    });
    return off;
  }
  /** Removes a listener. */
  off(name, fn) {
    this.listeners.get(name)?.delete(fn);
  }
  /** Removes every listener (of one event, or of all). */
  removeAllListeners(name) {
    if (name === void 0) this.listeners.clear();
    else this.listeners.delete(name);
  }
  emit(name, event) {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(event);
      } catch (e) {
        console.error(`chorus: "${String(name)}" listener threw`, e);
      }
    }
  }
};

// src/rest.ts
function normalizeServer(server) {
  return server.replace(/\/+$/, "");
}
async function restRequest(server, method, path, opts = {}) {
  return (await restExchange(server, method, path, opts)).json;
}
async function restPage(server, path, opts = {}) {
  const { json, res } = await restExchange(server, "GET", path, opts);
  return { items: Array.isArray(json) ? json : [], next: nextLink(res.headers.get("link")) };
}
function nextLink(header) {
  if (!header) return null;
  for (const part of header.split(",")) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (!m || !/(^|;)\s*rel="?next"?\s*(;|$)/.test(m[2])) continue;
    const target = m[1];
    if (target.startsWith("/")) return target;
    try {
      const u = new URL(target);
      return u.pathname + u.search;
    } catch {
      return null;
    }
  }
  return null;
}
async function restExchange(server, method, path, opts = {}) {
  const f = opts.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
  if (!f) throw new ChorusError("network", "no fetch implementation available");
  const headers = {};
  if (opts.token) headers["Authorization"] = `Bearer ${opts.token}`;
  if (opts.body !== void 0) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await f(normalizeServer(server) + path, {
      method,
      headers,
      body: opts.body === void 0 ? void 0 : JSON.stringify(opts.body)
    });
  } catch (e) {
    throw new ChorusError("network", `request to ${path} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const text = await res.text();
  let json = void 0;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = void 0;
    }
  }
  if (!res.ok) {
    const err = json?.error;
    if (err && isErrorCode(err.code)) {
      throw new ChorusError(err.code, typeof err.message === "string" ? err.message : err.code, {
        httpStatus: res.status
      });
    }
    throw new ChorusError(res.status === 401 ? "unauthorized" : "internal", `HTTP ${res.status} from ${path}`, {
      httpStatus: res.status
    });
  }
  return { json, res };
}
function loginId(who) {
  return typeof who === "string" ? { email: who } : who;
}
var ChorusAuth = class _ChorusAuth {
  constructor(server, options = {}) {
    this.server = normalizeServer(server);
    this.fetchImpl = options.fetch;
  }
  /** `POST /v1/auth/code`: mails a 6-digit code. `who` is an email, or `{ phone }`. */
  requestCode(who) {
    return restRequest(this.server, "POST", "/v1/auth/code", { body: loginId(who), fetch: this.fetchImpl });
  }
  /** `POST /v1/auth/verify`: exchanges the code for an access token. */
  verify(who, code, name) {
    const body = { ...loginId(who), code };
    if (name !== void 0) body.name = name;
    return restRequest(this.server, "POST", "/v1/auth/verify", { body, fetch: this.fetchImpl });
  }
  /** `POST /v1/auth/logout`: revokes `token` (its sessions are closed with 4001). */
  async logout(token) {
    await restRequest(this.server, "POST", "/v1/auth/logout", { token, fetch: this.fetchImpl });
  }
  /** Static shortcut of `requestCode`. */
  static requestCode(server, who) {
    return new _ChorusAuth(server).requestCode(who);
  }
  /** Static shortcut of `verify`. */
  static verify(server, who, code, name) {
    return new _ChorusAuth(server).verify(who, code, name);
  }
};
var RestClient = class {
  constructor(server, token, options = {}) {
    this.server = normalizeServer(server);
    this.token = token;
    this.fetchImpl = options.fetch;
  }
  /** Any REST request with this token. */
  request(method, path, body) {
    return restRequest(this.server, method, path, { token: this.token, body, fetch: this.fetchImpl });
  }
  /** One page of a paged list with this token; `next` is the path of the following page. */
  page(path) {
    return restPage(this.server, path, { token: this.token, fetch: this.fetchImpl });
  }
  /** Every item of a paged list: follows the `next` links from `path` to the last page. */
  async all(path) {
    const out = [];
    const seen = /* @__PURE__ */ new Set();
    let next = path;
    while (next !== null && !seen.has(next)) {
      seen.add(next);
      const page = await this.page(next);
      out.push(...page.items);
      next = page.next;
    }
    return out;
  }
  /** `GET /v1/me`. */
  me() {
    return this.request("GET", "/v1/me");
  }
  /** `PATCH /v1/me`. */
  updateMe(name) {
    return this.request("PATCH", "/v1/me", { name });
  }
  /** `GET /v1/groups`: every group you belong to, most recently joined first (all pages). */
  groups() {
    return this.all("/v1/groups");
  }
  /** `GET /v1/groups/{gid}`. */
  group(gid) {
    return this.request("GET", `/v1/groups/${gid}`);
  }
  /** `POST /v1/groups`. */
  createGroup(options) {
    return this.request("POST", "/v1/groups", options);
  }
  /** `PATCH /v1/groups/{gid}`. */
  updateGroup(gid, settings) {
    return this.request("PATCH", `/v1/groups/${gid}`, settings);
  }
  /** `DELETE /v1/groups/{gid}`. */
  async deleteGroup(gid) {
    await this.request("DELETE", `/v1/groups/${gid}`);
  }
  /** `POST /v1/groups/{gid}/join` with a pin. */
  joinGroup(gid, pin) {
    return this.request("POST", `/v1/groups/${gid}/join`, { pin: String(pin) });
  }
  /** `POST /v1/groups/{gid}/leave`. */
  async leaveGroup(gid) {
    await this.request("POST", `/v1/groups/${gid}/leave`);
  }
  /** `GET /v1/groups/{gid}/members`: every member, in join order (all pages). */
  members(gid) {
    return this.all(`/v1/groups/${gid}/members`);
  }
  /** `POST /v1/groups/{gid}/members`. */
  async addMembers(gid, addresses, flags) {
    await this.request("POST", `/v1/groups/${gid}/members`, { addresses, ...flags });
  }
  /** `DELETE /v1/groups/{gid}/members/{address}`. */
  async removeMember(gid, address) {
    await this.request("DELETE", `/v1/groups/${gid}/members/${encodeURIComponent(address)}`);
  }
  /** `GET /v1/groups/{gid}/pins`. */
  pins(gid) {
    return this.request("GET", `/v1/groups/${gid}/pins`);
  }
  /** `POST /v1/groups/{gid}/pins`. */
  createPin(gid, options) {
    return this.request("POST", `/v1/groups/${gid}/pins`, options);
  }
  /** `PATCH /v1/groups/{gid}/pins/{pin}`: changes a pin. */
  editPin(gid, pin, options) {
    return this.request("PATCH", `/v1/groups/${gid}/pins/${encodeURIComponent(pin)}`, options);
  }
  /** `DELETE /v1/groups/{gid}/pins/{pin}`. */
  async revokePin(gid, pin) {
    await this.request("DELETE", `/v1/groups/${gid}/pins/${encodeURIComponent(pin)}`);
  }
  /** `GET /v1/groups/{gid}/board`. */
  board(gid) {
    return this.request("GET", `/v1/groups/${gid}/board`);
  }
  /** `PUT /v1/groups/{gid}/board`: replace the board (only if still at `version`, when given). */
  setBoard(gid, objs, version) {
    return this.request("PUT", `/v1/groups/${gid}/board`, version === void 0 ? { objs } : { objs, version });
  }
  /** `POST /v1/groups/{gid}/board`: add objects at the end of the board. */
  appendBoard(gid, objs) {
    return this.request("POST", `/v1/groups/${gid}/board`, { objs });
  }
  /** `GET /v1/groups/{gid}/media`: one page of the group's media library, newest first. */
  media(gid, options = {}) {
    const q = [];
    if (options.before !== void 0) q.push(`before=${encodeURIComponent(options.before)}`);
    if (options.limit !== void 0) q.push(`limit=${options.limit}`);
    return this.request("GET", `/v1/groups/${gid}/media${q.length ? "?" + q.join("&") : ""}`);
  }
  /** `GET /v1/groups/{gid}/media/{id}`. */
  mediaEntry(gid, id) {
    return this.request("GET", `/v1/groups/${gid}/media/${encodeURIComponent(id)}`);
  }
  /** `POST /v1/groups/{gid}/media`: adds a finished upload of yours to the library. */
  addMedia(gid, upload) {
    return this.request("POST", `/v1/groups/${gid}/media`, { upload });
  }
  /** `DELETE /v1/groups/{gid}/media/{id}` (the member who added it, or an admin): the file stays your upload. */
  async deleteMedia(gid, id) {
    await this.request("DELETE", `/v1/groups/${gid}/media/${encodeURIComponent(id)}`);
  }
  /** `GET /v1/files/{id}`. */
  fileInfo(id) {
    return this.request("GET", `/v1/files/${encodeURIComponent(id)}`);
  }
  /** `POST /v1/files/{id}/url`: a signed URL for `<video src>`, `<img src>` or a download link. */
  async fileUrl(id) {
    const r = await this.request("POST", `/v1/files/${encodeURIComponent(id)}/url`);
    return { url: new URL(r.url, `${this.server}/`).toString(), expires_ms: r.expires_ms };
  }
  /** `DELETE /v1/uploads/{id}`: deletes your upload and its bytes (and the file from every library). */
  async deleteUpload(id) {
    const f = this.fetchImpl ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
    if (!f) throw new ChorusError("network", "no fetch implementation available");
    const res = await f(`${this.server}/v1/uploads/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${this.token}`, "Tus-Resumable": "1.0.0" }
    });
    if (res.status !== 204) throw new ChorusError(res.status === 404 ? "not_found" : res.status === 401 ? "unauthorized" : "internal", `HTTP ${res.status} deleting upload`, { httpStatus: res.status });
  }
  /**
   * The bytes of a server path read with the token (a file's `/v1/files/{id}/content`, a
   * library thumbnail, a chat file's `url`), as a `Blob`.
   */
  async blob(path) {
    const f = this.fetchImpl ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
    if (!f) throw new ChorusError("network", "no fetch implementation available");
    let res;
    try {
      res = await f(path.startsWith("/") ? this.server + path : path, { headers: { Authorization: `Bearer ${this.token}` } });
    } catch (e) {
      throw new ChorusError("network", `request to ${path} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!res.ok) {
      const code = res.status === 404 ? "not_found" : res.status === 403 ? "forbidden" : res.status === 401 ? "unauthorized" : "internal";
      throw new ChorusError(code, `HTTP ${res.status} from ${path}`, { httpStatus: res.status });
    }
    return res.blob();
  }
  /** History of a conversation, newest last (`before`: a `seq` to page backwards). */
  history(conv, options = {}) {
    const q = [];
    if (options.before !== void 0) q.push(`before=${options.before}`);
    if (options.limit !== void 0) q.push(`limit=${options.limit}`);
    return this.request("GET", `${convPath(conv)}/messages${q.length ? "?" + q.join("&") : ""}`);
  }
  /** Every member's delivered/read watermarks in a conversation. */
  async receipts(conv) {
    const r = await this.request("GET", `${convPath(conv)}/receipts`);
    return r.members;
  }
  /** `GET /v1/conversations`, most recently active first. */
  conversations() {
    return this.request("GET", "/v1/conversations");
  }
};
function fileIdOf(ref) {
  if (!ref) return null;
  if (ref.upload && /^[0-9a-f]{32}$/.test(ref.upload)) return ref.upload;
  const m = /(?:^|\/\/[^/]+)\/v1\/files\/([0-9a-f]{32})\/content(?:[?#]|$)/.exec(ref.url ?? "");
  return m ? m[1] : null;
}
function convPath(conv) {
  return conv.gid !== void 0 ? `/v1/groups/${conv.gid}` : `/v1/users/${encodeURIComponent(conv.peer)}`;
}

// src/upload.ts
var DEFAULT_CHUNK = 16 * 1024 * 1024;
var DEFAULT_RETRIES = [0, 1e3, 3e3, 5e3, 1e4];
function metadataValue(s) {
  let bin = "";
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}
function fetchTransport(f) {
  return async (req) => {
    const res = await f(req.url, { method: req.method, headers: req.headers, body: req.body ?? null, signal: req.signal });
    const text = await res.text();
    if (req.body) req.onProgress?.(req.body.size);
    return { status: res.status, header: (n) => res.headers.get(n), text };
  };
}
function xhrTransport() {
  return (req) => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(req.method, req.url);
    for (const [k, v] of Object.entries(req.headers)) xhr.setRequestHeader(k, v);
    if (req.onProgress) xhr.upload.onprogress = (e) => req.onProgress?.(e.loaded);
    const abort = () => xhr.abort();
    req.signal.addEventListener("abort", abort);
    const fail = (why) => () => {
      req.signal.removeEventListener("abort", abort);
      reject(new ChorusError("network", why));
    };
    xhr.onerror = fail("the connection failed");
    xhr.onabort = fail("aborted");
    xhr.ontimeout = fail("timed out");
    xhr.onload = () => {
      req.signal.removeEventListener("abort", abort);
      resolve({ status: xhr.status, header: (n) => xhr.getResponseHeader(n), text: xhr.responseText });
    };
    xhr.send(req.body ?? null);
  });
}
function errorOf(res, what) {
  let code;
  let message = `${what}: HTTP ${res.status}`;
  try {
    const e = JSON.parse(res.text).error;
    code = e?.code;
    if (typeof e?.message === "string") message = e.message;
  } catch {
  }
  const c = isErrorCode(code) ? code : res.status === 401 ? "unauthorized" : res.status === 404 ? "not_found" : res.status === 413 ? "too_large" : "internal";
  return new ChorusError(c, message, { httpStatus: res.status });
}
var Upload = class extends Emitter {
  constructor(server, token, file, options = {}) {
    super();
    this.server = server;
    this.token = token;
    /** Bytes the server has confirmed. */
    this.offset = 0;
    this._state = "uploading";
    this.abort = null;
    this.running = false;
    this.file = file;
    this.name = options.name ?? file.name ?? "file";
    this.id = options.id ?? null;
    this.chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK);
    this.retryDelays = options.retryDelays ?? DEFAULT_RETRIES;
    const f = options.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
    this.transport = options.transport ?? (typeof XMLHttpRequest !== "undefined" ? xhrTransport() : f ? fetchTransport(f) : () => Promise.reject(new ChorusError("network", "no fetch")));
    this.done = new Promise((resolve, reject) => this.settle = { resolve, reject });
    this.done.catch(() => void 0);
    void this.run();
  }
  get state() {
    return this._state;
  }
  /** Stops sending; the server keeps what arrived. `resume()` continues from there. */
  pause() {
    if (this._state !== "uploading") return;
    this.setState("paused");
    this.abort?.abort();
  }
  /** Continues a paused upload from the server's offset. */
  resume() {
    if (this._state !== "paused") return;
    this.setState("uploading");
    void this.run();
  }
  /** Stops and deletes the upload and its bytes on the server (tus termination). */
  async cancel() {
    if (this._state === "done" || this._state === "cancelled" || this._state === "failed") return;
    this.setState("cancelled");
    this.abort?.abort();
    this.settle.reject(new ChorusError("state", "upload cancelled"));
    if (this.id) {
      await this.send({ method: "DELETE", url: this.url() }).catch(() => void 0);
    }
  }
  setState(s) {
    this._state = s;
    this.emit("state", s);
  }
  url() {
    return `${this.server}/v1/uploads/${encodeURIComponent(this.id ?? "")}`;
  }
  send(req) {
    this.abort = new AbortController();
    return this.transport({
      ...req,
      headers: { Authorization: `Bearer ${this.token()}`, "Tus-Resumable": "1.0.0", ...req.headers },
      signal: this.abort.signal
    });
  }
  progress(sent) {
    this.emit("progress", { sent: Math.min(sent, this.file.size), total: this.file.size });
  }
  /** Creates the upload if needed, then PATCHes chunks; after a broken request asks HEAD and goes on. */
  async run() {
    if (this.running) return;
    this.running = true;
    let retries = 0;
    let known = this.id === null;
    try {
      while (this._state === "uploading") {
        try {
          if (this.id === null) await this.create();
          else if (!known) await this.head();
          known = true;
          if (this.offset >= this.file.size) return this.finish();
          await this.patch();
          retries = 0;
        } catch (e) {
          if (this._state !== "uploading") return;
          const err = e instanceof ChorusError ? e : new ChorusError("network", String(e));
          const final = err.httpStatus !== void 0 && err.httpStatus !== 409 && err.httpStatus < 500;
          if (final || retries >= this.retryDelays.length) return this.fail(err);
          await new Promise((r) => setTimeout(r, this.retryDelays[retries++]));
          known = false;
        }
      }
    } finally {
      this.running = false;
    }
  }
  async create() {
    const res = await this.send({
      method: "POST",
      url: `${this.server}/v1/uploads`,
      headers: { "Upload-Length": String(this.file.size), "Upload-Metadata": `filename ${metadataValue(this.name)}` }
    });
    if (res.status !== 201) throw errorOf(res, "upload refused");
    const id = (res.header("location") ?? "").split("/").pop() ?? "";
    if (!id) throw new ChorusError("internal", "upload: no Location in the answer");
    this.id = id;
    this.offset = 0;
    this.progress(0);
  }
  async head() {
    const res = await this.send({ method: "HEAD", url: this.url() });
    if (res.status !== 200) throw errorOf(res, "upload gone");
    const off = Number(res.header("upload-offset"));
    if (!Number.isSafeInteger(off) || off < 0 || off > this.file.size) throw new ChorusError("internal", "upload: bad Upload-Offset");
    this.offset = off;
    this.progress(off);
  }
  async patch() {
    const start = this.offset;
    const body = this.file.slice(start, Math.min(this.file.size, start + this.chunkSize));
    const res = await this.send({
      method: "PATCH",
      url: this.url(),
      headers: { "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(start) },
      body,
      onProgress: (n) => this.progress(start + n)
    });
    if (res.status !== 204) throw errorOf(res, `upload failed at byte ${start}`);
    const next = Number(res.header("upload-offset"));
    if (!Number.isSafeInteger(next) || next <= start || next > this.file.size) throw new ChorusError("internal", "upload: bad Upload-Offset");
    this.offset = next;
    this.progress(next);
  }
  finish() {
    this.setState("done");
    this.settle.resolve(this.id);
  }
  fail(e) {
    this.setState("failed");
    this.settle.reject(e);
  }
};

// src/call.ts
var SIMULCAST_ENCODINGS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 15e4 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 5e5 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 15e5 }
];
function streamKey(address, sid) {
  return `${sid}:${address}`;
}
var RemoteStream = class extends Emitter {
  /** @internal */
  constructor(call, address, info) {
    super();
    this.call = call;
    /** Received tracks. */
    this.tracks = { audio: null, video: null };
    /** The received layer (`null`: unknown or paused). */
    this.layer = null;
    /** What was asked for, while subscribed. */
    this.subscription = null;
    /** Set when the stream has ended. */
    this.ended = null;
    this._mediaStream = null;
    this.attached = /* @__PURE__ */ new Map();
    this.lastHeight = void 0;
    this.pendingHeight = void 0;
    this.address = address;
    this.sid = info.sid;
    this.info = info;
  }
  /** The publisher's display name (from the roster). */
  get name() {
    return this.call.participants.get(this.address)?.name ?? this.address;
  }
  /** True while subscribed. */
  get subscribed() {
    return this.subscription !== null;
  }
  /** A MediaStream with the received tracks (null where `MediaStream` does not exist). */
  get mediaStream() {
    if (!this._mediaStream && typeof MediaStream !== "undefined") {
      this._mediaStream = new MediaStream();
      for (const t of [this.tracks.audio, this.tracks.video]) if (t) this._mediaStream.addTrack(t);
    }
    return this._mediaStream;
  }
  /** Starts (or changes) receiving this stream. */
  subscribe(options = {}) {
    return this.call.subscribe(this.address, this.sid, options);
  }
  /** Stops receiving it. */
  unsubscribe() {
    return this.call.unsubscribe(this.address, this.sid);
  }
  /** Changes the wanted video height (keeps audio/video choice). */
  setHeight(height) {
    return this.call.setHeight(this.address, this.sid, height);
  }
  /**
   * Shows the stream in a media element (sets `srcObject`, autoplay) and,
   * for video, observes its size and sends the displayed height (in device
   * pixels, debounced) so the server forwards a fitting layer. Returns a
   * function that detaches it.
   */
  attach(el, options = {}) {
    this.detach(el);
    const ms = this.mediaStream;
    if (ms) el.srcObject = ms;
    el.autoplay = true;
    if ("playsInline" in el) el.playsInline = true;
    let cleanup = () => {
    };
    const RO = globalThis.ResizeObserver;
    if (options.adaptive !== false && RO && typeof HTMLVideoElement !== "undefined" && el instanceof HTMLVideoElement) {
      const wait = options.debounce ?? 300;
      let timer;
      const measure = () => {
        timer = void 0;
        const dpr = globalThis.devicePixelRatio ?? 1;
        const h = Math.round(el.clientHeight * dpr);
        if (h <= 0) return;
        this.wantHeight(Math.min(8192, h));
      };
      const ro = new RO(() => {
        clearTimeout(timer);
        timer = setTimeout(measure, wait);
      });
      ro.observe(el);
      cleanup = () => {
        clearTimeout(timer);
        ro.disconnect();
      };
    }
    const detach = () => {
      cleanup();
      if (this.attached.get(el) === detach) this.attached.delete(el);
      if (el.srcObject === ms) el.srcObject = null;
    };
    this.attached.set(el, detach);
    return detach;
  }
  /** Detaches one element (or all). */
  detach(el) {
    if (el) this.attached.get(el)?.();
    else for (const d of [...this.attached.values()]) d();
  }
  wantHeight(h) {
    if (!this.subscribed) {
      this.pendingHeight = h;
      return;
    }
    if (h === this.lastHeight) return;
    this.lastHeight = h;
    this.setHeight(h).catch((e) => this.call._reportError(e));
  }
  /** @internal */
  _setTrack(ev, kind, removed) {
    const old = this.tracks[kind];
    if (old && this._mediaStream) this._mediaStream.removeTrack(old);
    this.tracks[kind] = ev ? ev.track : null;
    if (ev && this._mediaStream) this._mediaStream.addTrack(ev.track);
    if (removed) this.emit("track-removed", removed);
    if (ev) this.emit("track", ev);
  }
  /** @internal */
  _muted(m) {
    this.info = { ...this.info, muted: m };
    this.emit("muted", m);
  }
  /** @internal */
  _layer(l) {
    this.layer = l;
    this.emit("layer", l);
  }
  /** @internal */
  _end(reason) {
    this.ended = reason;
    this.subscription = null;
    this.detach();
    this.emit("ended", reason);
  }
  /** @internal */
  _subscribed(s) {
    this.subscription = s;
    if (s && s.height !== void 0) this.lastHeight = s.height;
    if (!s) this.lastHeight = void 0;
    const pending = this.pendingHeight;
    this.pendingHeight = void 0;
    if (s && pending !== void 0 && pending !== this.lastHeight) this.wantHeight(pending);
  }
};
var LocalStream = class {
  /** @internal */
  constructor(call, info, audio, video, options) {
    this.call = call;
    /** The last `layers` state (one flag per simulcast encoding), if any. */
    this.activeLayers = null;
    this.sid = info.sid;
    this.info = info;
    this._audioTransceiver = audio;
    this._videoTransceiver = video;
    this.audioTrack = options.audio ?? null;
    this.videoTrack = options.video ?? null;
    this._options = options;
  }
  /** The sendonly audio transceiver on the publish connection (a new one after a rejoin). */
  get audioTransceiver() {
    return this._audioTransceiver;
  }
  /** The sendonly video transceiver on the publish connection (a new one after a rejoin). */
  get videoTransceiver() {
    return this._videoTransceiver;
  }
  /** @internal Published again (after a rejoin) on new transceivers. */
  _rebind(info, audio, video) {
    this.info = info;
    this._audioTransceiver = audio;
    this._videoTransceiver = video;
    this.activeLayers = null;
  }
  /** Mutes or unmutes (absent: unchanged). */
  mute(m) {
    return this.call.mute(this.sid, m);
  }
  /** Stops publishing it. */
  unpublish() {
    return this.call.unpublish(this.sid);
  }
};
var GroupCall = class extends Emitter {
  /** @internal Use `ChorusClient.joinCall`. */
  constructor(client, joined, options = {}) {
    super();
    /** Your admin-mute state. */
    this.adminMuted = { audio: false, video: false };
    /** Everyone in the call (you included), by address. */
    this.participants = /* @__PURE__ */ new Map();
    /** Others' streams, by `sid:address` (see `stream()`). */
    this.streams = /* @__PURE__ */ new Map();
    /** Your published streams, by sid. */
    this.published = /* @__PURE__ */ new Map();
    /** Active-speaker order, most recent first. */
    this.speakers = [];
    /** Set once you are out of the call. */
    this.leftReason = null;
    /**
     * Live mode: how many are in the audience (from `call_joined`, then `audience` events, at most
     * one a second; 0 when the call is not live). The audience is not in `participants`.
     */
    this.audienceCount = 0;
    /** Live mode: your hand is raised (audience only; see `raiseHand`). */
    this.handRaised = false;
    /**
     * Live mode, for hosts (call control): the audience members with a hand raised, address →
     * name, oldest first (from `hand` events, and the raised hands of `audience()` pages: ask for
     * `audience({ hands: true })` after joining to learn of hands raised before).
     */
    this.hands = /* @__PURE__ */ new Map();
    this.pubPc = null;
    this.subPc = null;
    this.pubChain = Promise.resolve();
    this.subChain = Promise.resolve();
    this.paramChain = Promise.resolve();
    this.midMap = /* @__PURE__ */ new Map();
    this.bindings = /* @__PURE__ */ new Map();
    this._state = "joined";
    /** Why the call is being joined again (while `reconnecting`). */
    this.lostReason = "lost";
    /** A `call_join` of the rejoin is on its way; call frames wait in `rejoinBuffer`. */
    this.rejoining = false;
    this.rejoinBuffer = [];
    this.rejoinRetries = 0;
    /** ICE trouble: per connection, the 2 s timer since it went disconnected/failed. */
    this.iceTimers = /* @__PURE__ */ new Map();
    this.restarting = null;
    this.lastRestart = -Infinity;
    this.client = client;
    this.options = options;
    this.gid = joined.gid;
    this.address = joined.address;
    this.permissions = { ...joined.permissions };
    this.settings = { ...joined.settings };
    this.recording = joined.recording ? { ...joined.recording } : { active: false };
    this.audienceCount = joined.audience ?? 0;
    this.iceServers = iceServersOf(joined);
    for (const p of joined.participants) {
      const copy = cloneParticipant(p);
      this.participants.set(p.address, copy);
      if (p.address === this.address) this.adminMuted = { ...p.admin_muted };
      else for (const s of copy.streams) this.streams.set(streamKey(p.address, s.sid), new RemoteStream(this, p.address, s));
    }
  }
  /** True until you left (or were removed, or the call was lost and not recovered); also while `reconnecting`. */
  get active() {
    return this.leftReason === null;
  }
  /**
   * `joined`; `reconnecting` between the `reconnecting` and `reconnected` events (requests such
   * as `publish` fail with `disconnected` meanwhile); `left` once out of the call (`left` event).
   */
  get state() {
    return this.active ? this._state : "left";
  }
  /** The call is a live stream: those who may publish are on stage, the others are the audience. */
  get live() {
    return !!this.settings.live;
  }
  /** Live mode: you are on stage (you may publish); false in the audience and in calls that are not live. */
  get onStage() {
    return this.live && this.permissions.publish;
  }
  /** Others' stream `(address, sid)`, if known. */
  stream(address, sid) {
    return this.streams.get(streamKey(address, sid));
  }
  /** The publish and subscribe peer connections (null until used). */
  get peerConnections() {
    return { publish: this.pubPc, subscribe: this.subPc };
  }
  /** @internal Called once after construction. */
  _start() {
    if (this.options.autoSubscribe) for (const s of this.streams.values()) this.autoSubscribe(s);
  }
  // ------------------------------------------------------------ peer connections
  newPc() {
    const Ctor = this.options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (!Ctor) throw new ChorusError("webrtc", "RTCPeerConnection is not available");
    const config = { ...this.options.rtcConfig ?? {} };
    if (this.iceServers.length) config.iceServers = [...config.iceServers ?? [], ...this.iceServers];
    return new Ctor(config);
  }
  getPubPc() {
    if (!this.pubPc) {
      this.pubPc = this.newPc();
      this.watchIce(this.pubPc);
    }
    return this.pubPc;
  }
  getSubPc() {
    if (!this.subPc) {
      const pc = this.newPc();
      this.watchIce(pc);
      pc.ontrack = (e) => {
        const mid = e.transceiver?.mid;
        if (mid) this.bind(mid, e.track);
      };
      this.subPc = pc;
    }
    return this.subPc;
  }
  serial(chain, fn) {
    const prev = chain === "pub" ? this.pubChain : chain === "sub" ? this.subChain : this.paramChain;
    const next = prev.then(fn, fn);
    const settled = next.catch(() => void 0);
    if (chain === "pub") this.pubChain = settled;
    else if (chain === "sub") this.subChain = settled;
    else this.paramChain = settled;
    return next;
  }
  ensureActive() {
    if (!this.active) throw new ChorusError("state", "not in the call");
    if (this._state === "reconnecting") throw new ChorusError("disconnected", "reconnecting to the call");
  }
  // ------------------------------------------------------------ ICE restart
  watchIce(pc) {
    const on = () => this.iceChanged(pc);
    if (typeof pc.addEventListener === "function") pc.addEventListener("iceconnectionstatechange", on);
    else pc.oniceconnectionstatechange = on;
  }
  iceChanged(pc) {
    if (pc !== this.pubPc && pc !== this.subPc) return;
    if (iceBad(pc)) {
      if (this.iceTimers.has(pc) || !this.active || this._state !== "joined") return;
      this.iceTimers.set(
        pc,
        setTimeout(() => {
          this.iceTimers.delete(pc);
          if ((pc === this.pubPc || pc === this.subPc) && iceBad(pc)) this.autoRestart();
        }, ICE_TROUBLE_MS)
      );
    } else {
      clearTimeout(this.iceTimers.get(pc));
      this.iceTimers.delete(pc);
    }
  }
  /** A restart because of trouble: one at a time, at most one per 5 s. */
  autoRestart() {
    if (!this.active || this._state !== "joined" || this.restarting || this.restartTimer !== void 0) return;
    const wait = this.lastRestart + RESTART_EVERY_MS - Date.now();
    if (wait > 0) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = void 0;
        if (this.iceTrouble()) this.autoRestart();
      }, wait);
      return;
    }
    this.restart(true).catch((e) => {
      if (!(e instanceof ChorusError && (e.code === "disconnected" || e.code === "state"))) this._reportError(e);
    });
  }
  /** Either connection is ICE-disconnected or failed (or, with `checking`, still checking). */
  iceTrouble(checking = false) {
    return [this.pubPc, this.subPc].some((pc) => !!pc && (iceBad(pc) || checking && pc.iceConnectionState === "checking"));
  }
  /**
   * Restarts ICE on both connections now (docs/protocol.md §15.10): sends `call_restart` with a
   * publish offer carrying new ICE credentials (none when you publish nothing) and applies the
   * answer; the subscribe connection's new offer follows as a `call_offer`, answered by itself.
   * Done by itself when a connection has been ICE-disconnected or failed for 2 s (and again while
   * one is not connected 5 s after the answer, at most once per 5 s). Joins a restart in
   * progress; waits for a publish or unpublish negotiation in flight. Resolves once the server
   * answered (`ice-restart` event).
   */
  restartIce() {
    try {
      this.ensureActive();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.restart(false);
  }
  restart(automatic) {
    if (this.restarting) return this.restarting;
    clearTimeout(this.restartTimer);
    this.restartTimer = void 0;
    const p = this.serial("pub", () => this.doRestart(automatic)).finally(() => {
      if (this.restarting === p) this.restarting = null;
    });
    this.restarting = p;
    return p;
  }
  async doRestart(automatic) {
    this.ensureActive();
    const pc = this.pubPc;
    let sdp;
    if (pc && pc.remoteDescription && pc.signalingState === "stable") {
      const offer = await pc.createOffer({ iceRestart: true });
      await pc.setLocalDescription(offer);
      sdp = pc.localDescription?.sdp ?? offer.sdp;
    }
    const frame = sdp ? { type: "call_restart", sdp } : { type: "call_restart" };
    try {
      const res = await this.client.request(frame);
      if (res.sdp && pc && pc === this.pubPc && pc.signalingState === "have-local-offer") {
        await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
      }
    } catch (e) {
      if (pc && pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" }).catch(() => void 0);
      }
      throw e instanceof ChorusError ? e : new ChorusError("webrtc", errText(e));
    }
    this.lastRestart = Date.now();
    this.emit("ice-restart", { automatic });
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = void 0;
      if (this.iceTrouble(true)) this.autoRestart();
    }, RESTART_EVERY_MS);
  }
  stopIceWatch() {
    for (const t of this.iceTimers.values()) clearTimeout(t);
    this.iceTimers.clear();
    clearTimeout(this.restartTimer);
    this.restartTimer = void 0;
    this.restarting = null;
    this.lastRestart = -Infinity;
  }
  // ------------------------------------------------------------ publishing
  /**
   * Publishes stream `sid` (0 the camera, 1.. screens): adds sendonly
   * transceivers, offers, sends `call_publish` with their mids and applies
   * the answer. A camera video is sent as simulcast `q`/`h`/`f` when the
   * room allows it.
   */
  publish(sid, options) {
    return this.serial("pub", async () => {
      this.ensureActive();
      if (!options.audio && !options.video) throw new ChorusError("bad_request", "nothing to publish");
      if (this.published.has(sid)) throw new ChorusError("conflict", `stream ${sid} is already published`);
      return this.publishNow(sid, { ...options }, null);
    });
  }
  /** Offers and sends `call_publish` (in the `pub` chain); `again`: the stream republished after a rejoin. */
  async publishNow(sid, options, again) {
    const pc = this.getPubPc();
    const simulcast = !!options.video && !options.screen && options.simulcast !== false && this.settings.simulcast;
    const at = options.audio ? pc.addTransceiver(options.audio, { direction: "sendonly" }) : null;
    const vt = options.video ? pc.addTransceiver(
      options.video,
      simulcast ? { direction: "sendonly", sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) } : { direction: "sendonly" }
    ) : null;
    const muted = { audio: !!options.muted?.audio, video: !!options.muted?.video };
    if (options.audio && muted.audio) options.audio.enabled = false;
    if (options.video && muted.video) options.video.enabled = false;
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const sdp = pc.localDescription?.sdp ?? offer.sdp ?? "";
      const frame = {
        type: "call_publish",
        sid,
        audio: !!at,
        video: !!vt,
        screen: !!options.screen,
        sdp
      };
      if (simulcast) frame.rids = SIMULCAST_ENCODINGS.map((e) => e.rid);
      const height = options.height ?? trackHeight(options.video);
      if (vt && height) frame.height = Math.min(8192, Math.max(1, Math.round(height)));
      if (muted.audio || muted.video) frame.muted = muted;
      if (at) frame.audio_mid = at.mid;
      if (vt) frame.video_mid = vt.mid;
      const res = await this.client.request(frame);
      if (pc !== this.pubPc) throw new ChorusError("disconnected", "the call was lost");
      await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
      let ls;
      if (again) {
        ls = again;
        ls._rebind(res.stream, at, vt);
      } else {
        ls = new LocalStream(this, res.stream, at, vt, options);
      }
      this.published.set(sid, ls);
      const me = this.participants.get(this.address);
      if (me) me.streams = [...me.streams.filter((s) => s.sid !== sid), res.stream];
      return ls;
    } catch (e) {
      if (pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" }).catch(() => void 0);
      }
      stopTransceiver(at);
      stopTransceiver(vt);
      throw e instanceof ChorusError ? e : new ChorusError("webrtc", errText(e));
    }
  }
  /** Stops publishing stream `sid` (renegotiates the publish connection). */
  unpublish(sid) {
    return this.serial("pub", async () => {
      this.ensureActive();
      const ls = this.published.get(sid);
      if (!ls) throw new ChorusError("not_found", `stream ${sid} is not published`);
      this.published.delete(sid);
      this.dropOwnStream(sid);
      deactivateTransceiver(ls.audioTransceiver);
      deactivateTransceiver(ls.videoTransceiver);
      const pc = this.getPubPc();
      let sdp;
      try {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        sdp = pc.localDescription?.sdp ?? offer.sdp;
      } catch {
        sdp = void 0;
      }
      try {
        const res = await this.client.request(sdp ? { type: "call_unpublish", sid, sdp } : { type: "call_unpublish", sid });
        if (res.sdp && pc.signalingState === "have-local-offer") {
          await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
        }
      } catch (e) {
        if (pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" }).catch(() => void 0);
        }
        throw e;
      }
    });
  }
  /** Mutes or unmutes your stream `sid` (also sets the local tracks' `enabled`). */
  async mute(sid, m) {
    this.ensureActive();
    const ls = this.published.get(sid);
    if (ls) {
      if (m.audio !== void 0 && ls.audioTrack) ls.audioTrack.enabled = !m.audio;
      if (m.video !== void 0 && ls.videoTrack) ls.videoTrack.enabled = !m.video;
    }
    const frame = { type: "call_mute", sid };
    if (m.audio !== void 0) frame.audio = m.audio;
    if (m.video !== void 0) frame.video = m.video;
    await this.client.request(frame);
    if (ls) ls.info = { ...ls.info, muted: { audio: m.audio ?? ls.info.muted.audio, video: m.video ?? ls.info.muted.video } };
  }
  /** An admin action: `mute`/`unmute` (address, audio/video), `mute_all`/`unmute_all`, `hangup` (address, sid), `remove` (address). */
  async admin(action, target = {}) {
    this.ensureActive();
    const frame = { type: "call_admin", action };
    if (target.address !== void 0) frame.address = target.address;
    if (target.sid !== void 0) frame.sid = target.sid;
    if (target.audio) frame.audio = true;
    if (target.video) frame.video = true;
    await this.client.request(frame);
  }
  /**
   * Starts or stops recording the call (needs call control, as an admin). Starting a call that
   * records already changes nothing; stopping one that does not fails with `conflict`. Resolves
   * with the recording state; everyone in the call also gets a `recording` event. When it stops,
   * each participant's file enters the group's media library.
   */
  async record(action) {
    this.ensureActive();
    const answer = await this.client.request({ type: "call_record", action });
    this.recording = { ...answer.recording };
    return this.recording;
  }
  // ------------------------------------------------------------ live mode
  /**
   * Live mode: raises (or lowers) your hand; the hosts with call control see it. Only the
   * audience raises hands (on stage: `conflict`). Being brought on stage lowers it.
   */
  async raiseHand(raised = true) {
    this.ensureActive();
    await this.client.request({ type: "call_hand", raised });
    this.setHand(this.address, this.participants.get(this.address)?.name ?? this.address, raised);
  }
  /**
   * Live mode: a page of the audience, in the order they joined (needs the list permission;
   * `conflict` when the call is not live). Pass the page's `next` as `after` for the next one.
   * Raised hands it lists join `hands` (how a host who joins late learns of them).
   */
  async audience(options = {}) {
    this.ensureActive();
    const frame = { type: "call_audience" };
    if (options.after !== void 0) frame.after = options.after;
    if (options.limit !== void 0) frame.limit = options.limit;
    if (options.hands) frame.hands = true;
    const res = await this.client.request(frame);
    this.setAudienceCount(res.count);
    for (const m of res.members) if (m.hand && m.address !== this.address) this.setHand(m.address, m.name, true);
    const page = { count: res.count, members: res.members.map((m) => ({ ...m })) };
    if (res.next !== void 0 && res.next !== null) page.next = res.next;
    return page;
  }
  /**
   * Live mode, for hosts (call control): brings an audience member on stage: it may publish for
   * this call, and everyone sees it join (`participant-joined`).
   */
  bringOnStage(address) {
    return this.admin("stage", { address });
  }
  /**
   * Live mode, for hosts: sends a member brought on stage back to the audience: its streams end
   * and it leaves the roster (`participant-left` with reason `off_stage`).
   */
  sendBackstage(address) {
    return this.admin("unstage", { address });
  }
  setAudienceCount(count) {
    if (count === this.audienceCount) return;
    this.audienceCount = count;
    this.emit("audience", count);
  }
  setHand(address, name, raised) {
    if (address === this.address) {
      if (this.handRaised === raised) return;
      this.handRaised = raised;
    } else if (raised) {
      if (this.hands.get(address) === name) return;
      this.hands.set(address, name);
    } else if (!this.hands.delete(address)) {
      return;
    }
    this.emit("hand", { address, name, raised });
  }
  /** Your publish right changed in a live call: on stage, or back in the audience. */
  stageChanged(onStage) {
    if (onStage) {
      if (this.handRaised) this.setHand(this.address, this.participants.get(this.address)?.name ?? this.address, false);
    } else {
      for (const [sid, ls] of [...this.published]) {
        this.published.delete(sid);
        this.dropOwnStream(sid);
        deactivateTransceiver(ls.audioTransceiver);
        deactivateTransceiver(ls.videoTransceiver);
        this.emit("stream-unpublished", { address: this.address, sid, reason: "permission_revoked", local: true, stream: ls });
      }
    }
    this.emit("stage", { onStage });
  }
  applyLayers(sid, active) {
    const ls = this.published.get(sid);
    if (ls) ls.activeLayers = [...active];
    const sender = ls?.videoTransceiver?.sender;
    if (!sender) return Promise.resolve();
    return this.serial("param", async () => {
      const params = sender.getParameters();
      const enc = params.encodings ?? [];
      let changed = false;
      enc.forEach((e, i) => {
        if (i < active.length && e.active !== active[i]) {
          e.active = active[i];
          changed = true;
        }
      });
      if (changed) await sender.setParameters(params);
    });
  }
  // ------------------------------------------------------------ subscribing
  /** Receives `address`'s stream `sid` (send again, or `setHeight`, to change it). */
  async subscribe(address, sid, options = {}) {
    this.ensureActive();
    const frame = { type: "call_subscribe", address, sid };
    if (options.audio === false) frame.audio = false;
    if (options.video === false) frame.video = false;
    if (options.height !== void 0) frame.height = options.height;
    this.getSubPc();
    await this.client.request(frame);
    let rs = this.stream(address, sid);
    if (!rs) {
      rs = new RemoteStream(this, address, placeholderStream(sid));
      this.streams.set(streamKey(address, sid), rs);
    }
    rs._subscribed({ audio: options.audio ?? true, video: options.video ?? true, height: options.height ?? null });
  }
  /** Changes the height a subscribed video is shown at (the server picks the layer). */
  async setHeight(address, sid, height) {
    const rs = this.stream(address, sid);
    const sub = rs?.subscription ?? {};
    await this.subscribe(address, sid, { audio: sub.audio ?? true, video: sub.video ?? true, height });
  }
  /** Stops receiving `address`'s stream `sid`. */
  async unsubscribe(address, sid) {
    this.ensureActive();
    await this.client.request({ type: "call_unsubscribe", address, sid });
    this.stream(address, sid)?._subscribed(null);
  }
  autoSubscribe(rs) {
    const a = this.options.autoSubscribe;
    if (!a || !this.permissions.subscribe) return;
    const opts = typeof a === "object" ? a : {};
    this.subscribe(rs.address, rs.sid, opts).catch((e) => this._reportError(e));
  }
  onOffer(f) {
    this.serial("sub", () => this.answerOffer(f)).catch((e) => this._reportError(e));
  }
  async answerOffer(f) {
    if (!this.active) return;
    const pc = this.getSubPc();
    this.midMap = new Map(f.tracks.map((t) => [t.mid, t]));
    await pc.setRemoteDescription({ type: "offer", sdp: f.sdp });
    this.reconcile(pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    const sdp = pc.localDescription?.sdp ?? answer.sdp ?? "";
    if (!this.active || pc !== this.subPc) return;
    await this.client.request({ type: "call_answer", sdp });
  }
  /** Binds every listed media line to its track, unbinds lines no longer listed. */
  reconcile(pc) {
    for (const mid of [...this.bindings.keys()]) if (!this.midMap.has(mid)) this.unbind(mid);
    for (const t of pc.getTransceivers()) {
      if (t.mid && this.midMap.has(t.mid) && t.receiver?.track) this.bind(t.mid, t.receiver.track);
    }
  }
  bind(mid, track) {
    const t = this.midMap.get(mid);
    if (!t) return;
    const key = `${t.kind}:${t.sid}:${t.publisher}`;
    const old = this.bindings.get(mid);
    if (old && old.key === key && old.track === track) return;
    if (old) this.unbind(mid);
    let rs = this.stream(t.publisher, t.sid);
    if (!rs) {
      rs = new RemoteStream(this, t.publisher, placeholderStream(t.sid));
      this.streams.set(streamKey(t.publisher, t.sid), rs);
    }
    const event = { track, publisher: t.publisher, sid: t.sid, kind: t.kind, mid, stream: rs };
    this.bindings.set(mid, { key, track, event });
    rs._setTrack(event, t.kind);
    this.emit("track", event);
  }
  unbind(mid) {
    const b = this.bindings.get(mid);
    if (!b) return;
    this.bindings.delete(mid);
    const rs = b.event.stream;
    if (rs.tracks[b.event.kind] === b.track) rs._setTrack(null, b.event.kind, b.event);
    this.emit("track-removed", b.event);
  }
  // ------------------------------------------------------------ leaving
  /** Leaves the call. */
  async leave() {
    if (!this.active) return;
    try {
      await this.client.request({ type: "call_leave" });
    } catch {
    }
    this._end("left");
  }
  /** @internal Ends the call locally: closes both connections and emits `left` once. */
  _end(reason, by) {
    if (!this.active) return;
    this.leftReason = reason;
    this.stopIceWatch();
    clearTimeout(this.rejoinTimer);
    this.rejoinBuffer = [];
    for (const rs of this.streams.values()) rs.detach();
    this.closePcs();
    this.client._callEnded(this);
    this.emit("left", by !== void 0 ? { reason, by } : { reason });
  }
  closePcs() {
    for (const pc of [this.pubPc, this.subPc]) {
      try {
        pc?.close();
      } catch {
      }
    }
  }
  // ------------------------------------------------------------ recovering (§15.10)
  /**
   * @internal The WebSocket dropped. Returns true when the call stays (reconnecting, to be joined
   * again after the next `synced`), false when it ended (`recover: false`).
   */
  _connectionLost() {
    if (!this.active) return false;
    if (this.options.recover === false) {
      this._end("lost");
      return false;
    }
    this.rejoining = false;
    this.suspend("lost");
    return true;
  }
  /** @internal The WebSocket is back (`synced`): join again if the call was lost. */
  _connectionBack() {
    if (this.active && this._state === "reconnecting" && !this.rejoining) void this.rejoin();
  }
  /** Out of the call for now: media stops, what to restore is kept. */
  suspend(reason) {
    if (this._state === "reconnecting") return;
    this._state = "reconnecting";
    this.lostReason = reason;
    this.stopIceWatch();
    for (const mid of [...this.bindings.keys()]) this.unbind(mid);
    this.midMap = /* @__PURE__ */ new Map();
    this.closePcs();
    this.pubPc = null;
    this.subPc = null;
    this.emit("reconnecting", { reason });
  }
  async rejoin() {
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = void 0;
    this.rejoining = true;
    this.rejoinBuffer = [];
    let joined;
    try {
      joined = await this.client.request({ type: "call_join", gid: this.gid });
    } catch (e) {
      this.rejoining = false;
      if (!this.active || this._state !== "reconnecting") return;
      const code = e instanceof ChorusError ? e.code : "";
      if (code === "disconnected") return;
      if ((code === "timeout" || code === "rate_limited") && this.rejoinRetries < REJOIN_RETRIES) {
        this.rejoinRetries++;
        this.rejoinTimer = setTimeout(() => this._connectionBack(), REJOIN_RETRY_MS);
        return;
      }
      this._reportError(e);
      this._end(this.lostReason);
      return;
    }
    this.rejoining = false;
    if (!this.active || this.client.groupCall !== this) return;
    this.rejoinRetries = 0;
    const subs = /* @__PURE__ */ new Map();
    for (const [key, rs] of this.streams) if (rs.subscription) subs.set(key, { ...rs.subscription });
    const mine = [...this.published.values()];
    this._state = "joined";
    this.applyJoined(joined);
    const buffered = this.rejoinBuffer.filter((f) => f.gid === this.gid);
    this.rejoinBuffer = [];
    for (const f of buffered) this._handle(f);
    const republished = [];
    const work = [];
    for (const ls of mine) {
      const options = { ...ls._options, muted: { ...ls.info.muted } };
      work.push(
        this.serial("pub", () => {
          this.ensureActive();
          return this.publishNow(ls.sid, options, ls);
        }).then(
          () => republished.push(ls.sid),
          (e) => {
            if (!this.active || this._state !== "joined" || this.published.get(ls.sid) !== ls) return;
            this.published.delete(ls.sid);
            this.dropOwnStream(ls.sid);
            this._reportError(e);
            const reason = e instanceof ChorusError && e.code === "forbidden" ? "permission_revoked" : "unpublished";
            this.emit("stream-unpublished", { address: this.address, sid: ls.sid, reason, local: true, stream: ls });
          }
        )
      );
    }
    for (const [key, opts] of subs) {
      const rs = this.streams.get(key);
      if (!rs || rs.ended !== null || !this.permissions.subscribe) continue;
      work.push(
        this.subscribe(rs.address, rs.sid, opts).catch((e) => {
          if (this.active && this._state === "joined") this._reportError(e);
        })
      );
    }
    await Promise.all(work);
    if (this.active && this._state === "joined") this.emit("reconnected", { republished: republished.sort((a, b) => a - b) });
  }
  /** The roster of a `call_joined` after a rejoin, told as the changes since before. */
  applyJoined(joined) {
    this.permissions = { ...joined.permissions };
    this.settings = { ...joined.settings };
    this.recording = joined.recording ? { ...joined.recording } : { active: false };
    this.setAudienceCount(joined.audience ?? 0);
    this.iceServers = iceServersOf(joined);
    const before = new Map(this.participants);
    this.participants.clear();
    const now = /* @__PURE__ */ new Map();
    for (const p of joined.participants) now.set(p.address, cloneParticipant(p));
    for (const rs of [...this.streams.values()]) {
      const p = now.get(rs.address);
      if (!p || !p.streams.some((x) => x.sid === rs.sid)) this.removeStream(rs, p ? "unpublished" : "owner_left");
    }
    for (const [address, p] of before) {
      if (address !== this.address && !now.has(address)) this.emit("participant-left", { participant: p, reason: "left" });
    }
    for (const [address, p] of now) {
      this.participants.set(address, p);
      if (address === this.address) {
        this.adminMuted = { ...p.admin_muted };
        p.streams = [];
        continue;
      }
      if (!before.has(address)) this.emit("participant-joined", p);
      for (const st of p.streams) {
        const rs = this.stream(address, st.sid);
        if (!rs) {
          this.addStream(address, st);
          continue;
        }
        const mutedChanged = rs.info.muted.audio !== st.muted.audio || rs.info.muted.video !== st.muted.video;
        rs.info = { ...st, muted: { ...st.muted } };
        if (mutedChanged) {
          rs._muted({ ...st.muted });
          this.emit("muted", { address, sid: st.sid, muted: { ...st.muted } });
        }
      }
    }
  }
  /** @internal */
  _reportError(e) {
    this.emit("error", e instanceof ChorusError ? e : new ChorusError("webrtc", errText(e)));
  }
  // ------------------------------------------------------------ server frames
  /** @internal Routes `call_offer` and `call_event` frames. */
  _handle(f) {
    if (!this.active) return;
    if (f.gid !== this.gid) return;
    if (this._state === "reconnecting") {
      if (this.rejoining) this.rejoinBuffer.push(f);
      return;
    }
    if (f.type === "call_offer") return this.onOffer(f);
    this.emit("event", f);
    this.onEvent(f);
  }
  dropOwnStream(sid) {
    const me = this.participants.get(this.address);
    if (me) me.streams = me.streams.filter((s) => s.sid !== sid);
  }
  onEvent(e) {
    switch (e.event) {
      case "joined": {
        const p = cloneParticipant(e.participant);
        this.participants.set(p.address, p);
        if (this.hands.has(p.address)) this.setHand(p.address, this.hands.get(p.address) ?? p.name, false);
        this.emit("participant-joined", p);
        if (p.address !== this.address) for (const s of p.streams) this.addStream(p.address, s);
        return;
      }
      case "updated": {
        const p = this.participants.get(e.address);
        if (p) {
          p.permissions = { ...e.permissions };
          p.admin_muted = { ...e.admin_muted };
        }
        let stage = null;
        if (e.address === this.address) {
          const could = this.permissions.publish;
          this.permissions = { ...e.permissions };
          this.adminMuted = { ...e.admin_muted };
          if (this.live && could !== e.permissions.publish) stage = e.permissions.publish;
        }
        if (p) this.emit("participant-updated", p);
        if (stage !== null) this.stageChanged(stage);
        return;
      }
      case "left": {
        if (e.address === this.address) {
          if (e.reason === "off_stage") return;
          if ((e.reason === "lost" || e.reason === "slow") && this.options.recover !== false && this.client.synced) {
            this.suspend(e.reason);
            this._connectionBack();
            return;
          }
          this._end(e.reason, e.by);
          return;
        }
        const p = this.participants.get(e.address);
        for (const rs of [...this.streams.values()]) {
          if (rs.address === e.address) this.removeStream(rs, "owner_left");
        }
        this.participants.delete(e.address);
        if (p) this.emit("participant-left", e.by !== void 0 ? { participant: p, reason: e.reason, by: e.by } : { participant: p, reason: e.reason });
        return;
      }
      case "published": {
        const p = this.participants.get(e.address);
        if (p) p.streams = [...p.streams.filter((s) => s.sid !== e.stream.sid), { ...e.stream }];
        if (e.address !== this.address) this.addStream(e.address, e.stream);
        return;
      }
      case "muted": {
        const p = this.participants.get(e.address);
        const s = p?.streams.find((x) => x.sid === e.sid);
        if (s) s.muted = { ...e.muted };
        this.stream(e.address, e.sid)?._muted({ ...e.muted });
        const ls = e.address === this.address ? this.published.get(e.sid) : void 0;
        if (ls) ls.info = { ...ls.info, muted: { ...e.muted } };
        this.emit("muted", { address: e.address, sid: e.sid, muted: { ...e.muted } });
        return;
      }
      case "unpublished": {
        if (e.address === this.address) {
          const ls = this.published.get(e.sid) ?? null;
          this.dropOwnStream(e.sid);
          if (ls) {
            this.published.delete(e.sid);
            deactivateTransceiver(ls.audioTransceiver);
            deactivateTransceiver(ls.videoTransceiver);
            this.emit("stream-unpublished", { address: e.address, sid: e.sid, reason: e.reason, local: true, stream: ls });
          }
          return;
        }
        const p = this.participants.get(e.address);
        if (p) p.streams = p.streams.filter((s) => s.sid !== e.sid);
        const rs = this.stream(e.address, e.sid);
        if (rs) this.removeStream(rs, e.reason);
        return;
      }
      case "talking": {
        const p = this.participants.get(e.address);
        if (p) p.talking = e.talking;
        this.emit("talking", { address: e.address, talking: e.talking });
        return;
      }
      case "speakers":
        this.speakers = [...e.order];
        this.emit("speakers", [...e.order]);
        return;
      case "subscriber":
        this.emit("subscriber", { address: e.address, sid: e.sid, joined: e.joined });
        return;
      case "layers":
        this.applyLayers(e.sid, e.active).then(
          () => this.emit("layers", { sid: e.sid, active: [...e.active] }),
          (err) => this._reportError(err)
        );
        return;
      case "layer":
        this.stream(e.address, e.sid)?._layer(e.layer);
        this.emit("layer", { address: e.address, sid: e.sid, layer: e.layer });
        return;
      case "recording":
        this.recording = { ...e.recording };
        this.emit("recording", { ...e.recording });
        return;
      case "audience":
        this.setAudienceCount(e.count);
        return;
      case "hand":
        this.setHand(e.address, e.name, e.raised);
        return;
      default:
        return;
    }
  }
  addStream(address, s) {
    const key = streamKey(address, s.sid);
    let rs = this.streams.get(key);
    if (rs && rs.ended === null) {
      rs.info = { ...s };
    } else {
      rs = new RemoteStream(this, address, { ...s });
      this.streams.set(key, rs);
    }
    this.emit("stream-published", rs);
    this.autoSubscribe(rs);
  }
  removeStream(rs, reason) {
    this.streams.delete(streamKey(rs.address, rs.sid));
    rs._end(reason);
    this.emit("stream-unpublished", { address: rs.address, sid: rs.sid, reason, local: false, stream: rs });
  }
};
var ICE_TROUBLE_MS = 2e3;
var RESTART_EVERY_MS = 5e3;
var REJOIN_RETRY_MS = 2e3;
var REJOIN_RETRIES = 5;
function iceBad(pc) {
  const s = pc.iceConnectionState;
  return s === "disconnected" || s === "failed";
}
function iceServersOf(joined) {
  return (joined.ice_servers ?? []).map((s) => ({ urls: [...s.urls], username: s.username, credential: s.credential }));
}
function cloneParticipant(p) {
  return {
    ...p,
    permissions: { ...p.permissions },
    admin_muted: { ...p.admin_muted },
    streams: p.streams.map((s) => ({ ...s, muted: { ...s.muted } }))
  };
}
function placeholderStream(sid) {
  return { sid, audio: true, video: true, screen: false, layers: 1, height: null, muted: { audio: false, video: false } };
}
function trackHeight(t) {
  if (!t || typeof t.getSettings !== "function") return void 0;
  const h = t.getSettings().height;
  return typeof h === "number" && h > 0 ? h : void 0;
}
function deactivateTransceiver(t) {
  if (!t) return;
  try {
    void t.sender.replaceTrack(null).catch(() => void 0);
    t.direction = "inactive";
  } catch {
  }
}
function stopTransceiver(t) {
  if (!t) return;
  try {
    t.stop();
  } catch {
  }
}
function errText(e) {
  return e instanceof Error ? e.message : String(e);
}

// src/direct.ts
function directCallEnded(status) {
  return status !== "ringing" && status !== "answered";
}
var DirectCall = class _DirectCall extends Emitter {
  /** @internal */
  constructor(client, init) {
    super();
    this.client = client;
    this._status = "ringing";
    this._code = 3;
    this._media = null;
    this._heard = false;
    this.id = init.id;
    this.peer = init.peer;
    this.name = init.name;
    this.video = init.video;
    this.incoming = init.incoming;
  }
  /** Where the call stands. */
  get status() {
    return this._status;
  }
  /** Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`). */
  get code() {
    return this._code;
  }
  /** Who hung up (`ended`) or whose session was lost (`lost`). */
  get by() {
    return this._by;
  }
  /** A `call_status` of this call has arrived (before it, `status` is the assumed `ringing`). */
  get heard() {
    return this._heard;
  }
  /** The call is over. */
  get ended() {
    return directCallEnded(this._status);
  }
  /** The call's media room, once joined. */
  get media() {
    return this._media;
  }
  /** The `gid` of the call's media room (`-id`). */
  get room() {
    return -this.id;
  }
  /**
   * Answers a ringing incoming call from this session and joins its media room; the callee's
   * other sessions stop ringing. Rejects with `ChorusError` (`not_found`, `conflict`).
   */
  async answer(options = {}) {
    if (!this.incoming) throw new ChorusError("bad_request", "only the callee answers");
    await this.client.request({ type: "call_accept", call: this.id });
    return this.join(options);
  }
  /** Declines a ringing incoming call. */
  async decline() {
    await this.client.request({ type: "call_decline", call: this.id });
  }
  /** Hangs up (cancels while ringing, declines an incoming one); the media room closes. */
  async hangup() {
    if (this.ended) return;
    await this.client.request({ type: "call_hangup", call: this.id });
  }
  /**
   * Joins the media room of the answered call (the caller after `answered`; `answer()` does it
   * for the callee). Publish and subscribe on the returned `GroupCall`; the other side's streams
   * come as `stream-published` (or pass `autoSubscribe: true`).
   */
  async join(options = {}) {
    if (this._media?.active) return this._media;
    const media = await this.client.joinCall(this.room, { recover: false, ...options });
    this._media = media;
    return media;
  }
  /** @internal Applies a `call_status` frame. */
  _update(f) {
    if (this.ended) return;
    this._heard = true;
    this._status = f.status;
    this._code = f.code;
    this._by = f.by;
    this.emit("status", f);
    if (this.ended) this.emit("ended", f);
  }
  /** @internal An incoming call from its `call_incoming` frame. */
  static _incoming(client, f) {
    return new _DirectCall(client, { id: f.call, peer: f.from, name: f.name, video: f.video, incoming: true });
  }
};

// src/client.ts
var OPEN = 1;
function newMessageId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  let s = "";
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}
var ChorusClient = class extends Emitter {
  constructor(options) {
    super();
    this.ws = null;
    this.serial = 0;
    this._state = "idle";
    this._user = null;
    this._synced = false;
    this.stopped = true;
    this.attempts = 0;
    this.pingOutstanding = false;
    this.ackedPos = -1;
    this.ridCounter = 0;
    this.pending = /* @__PURE__ */ new Map();
    this.outbox = /* @__PURE__ */ new Map();
    this.connectWaiters = [];
    this.lastWelcome = null;
    this._call = null;
    this.joining = 0;
    this.callBuffer = [];
    /** 1:1 calls ringing on this session or placed from it. */
    this.direct = /* @__PURE__ */ new Map();
    /** `call_status` frames of calls not known yet, by call id (at most 16 calls). */
    this.earlyStatus = /* @__PURE__ */ new Map();
    this.options = options;
    this.server = normalizeServer(options.server);
    this.rest = new RestClient(this.server, options.token, { fetch: options.fetch });
    this._cursor = options.cursor ?? null;
  }
  // ------------------------------------------------------------ state
  /** The connection state. */
  get state() {
    return this._state;
  }
  /** Who you are (from the last `welcome`). */
  get user() {
    return this._user;
  }
  /** Your address (from the last `welcome`). */
  get address() {
    return this._user?.address ?? null;
  }
  /** The resume cursor: the store epoch and the highest processed position. */
  get cursor() {
    return this._cursor ? { ...this._cursor } : null;
  }
  /** True between `synced` and the next disconnect. */
  get synced() {
    return this._synced;
  }
  /** The call room this session is in (a group's call, or a 1:1 call's media), if any. */
  get groupCall() {
    return this._call;
  }
  /** Messages waiting for their `sent` answer, by client id. */
  get outboxSize() {
    return this.outbox.size;
  }
  /** The access token. Setting it takes effect at the next (re)connect. */
  get token() {
    return this.rest.token;
  }
  set token(t) {
    this.rest.token = t;
  }
  // ------------------------------------------------------------ connection
  /**
   * Opens the session (and keeps it open, reconnecting as needed). Resolves
   * with the `welcome` once the backlog is through (`synced`); rejects if the
   * token is refused or `close()` is called first.
   */
  connect() {
    if (this._synced && this.lastWelcome) return Promise.resolve(this.lastWelcome);
    const p = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.stopped) {
      this.stopped = false;
      this.attempts = 0;
      this.open();
    }
    return p;
  }
  /** Closes the session for good (no reconnect). Pending requests and unsent messages are rejected. */
  close() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.endCall();
    const ws = this.ws;
    this.teardown();
    if (ws) {
      try {
        ws.close(1e3, "client closed");
      } catch {
      }
    }
    const err = new ChorusError("closed", "the client was closed");
    for (const [, o] of this.outbox) o.reject(err);
    this.outbox.clear();
    this.rejectConnectWaiters(err);
    this.setState("closed");
  }
  /**
   * Where to open the WebSocket: with a fresh single-use ticket from `POST /v1/ws/ticket`,
   * so the access token stays out of URLs (and the logs that keep them). Falls back to
   * `?token=` when no ticket can be had (an older server, or a page on another origin:
   * the server sends no CORS headers); rejects with `unauthorized` when the token is refused.
   */
  async wsUrl() {
    const base = `${this.server.replace(/^http/i, "ws")}/v1/ws`;
    try {
      const t = await this.rest.request("POST", "/v1/ws/ticket");
      if (typeof t?.ticket === "string") return `${base}?ticket=${encodeURIComponent(t.ticket)}`;
    } catch (e) {
      if (e instanceof ChorusError && e.code === "unauthorized") throw e;
    }
    return `${base}?token=${encodeURIComponent(this.rest.token)}`;
  }
  open() {
    const Ctor = this.options.WebSocket ?? globalThis.WebSocket;
    if (!Ctor) throw new ChorusError("state", "no WebSocket implementation available");
    const serial = ++this.serial;
    this.setState("connecting");
    this.wsUrl().then(
      (url) => {
        if (serial === this.serial && !this.stopped) this.openSocket(Ctor, url, serial);
      },
      () => {
        if (serial === this.serial && !this.stopped) this.authFailed(void 0);
      }
    );
  }
  openSocket(Ctor, url, serial) {
    let ws;
    try {
      ws = new Ctor(url);
    } catch (e) {
      this.scheduleReconnect(void 0);
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      if (serial !== this.serial) return;
      const hello = this._cursor ? { type: "hello", resume: this._cursor } : { type: "hello" };
      this.transmit(hello);
    };
    ws.onmessage = (ev) => {
      if (serial !== this.serial) return;
      if (typeof ev.data !== "string") return;
      let f;
      try {
        f = parseServerFrame(ev.data);
      } catch (e) {
        console.warn("chorus: ignoring bad frame", e);
        return;
      }
      if (f.type === "welcome") welcomed = true;
      this.handleFrame(f);
    };
    ws.onerror = () => {
    };
    ws.onclose = (ev) => {
      if (serial !== this.serial) return;
      this.onClosed(ev.code, welcomed);
    };
  }
  onClosed(code, welcomed) {
    this.teardown();
    if (this.stopped) return;
    if (code === CloseCode.SESSION_ENDED) {
      this.authFailed(code);
      return;
    }
    if (!welcomed && this.attempts >= 1) {
      this.rest.me().then(
        () => this.scheduleReconnect(code),
        (e) => {
          if (e instanceof ChorusError && e.code === "unauthorized") this.authFailed(code);
          else this.scheduleReconnect(code);
        }
      );
      this.setState("offline", { code });
      return;
    }
    this.scheduleReconnect(code);
  }
  authFailed(code) {
    this.stopped = true;
    this.endCall();
    const err = new ChorusError("unauthorized", "the access token is no longer valid");
    for (const [, o] of this.outbox) o.reject(err);
    this.outbox.clear();
    this.rejectConnectWaiters(err);
    this.setState("auth_failed", code === void 0 ? {} : { code });
  }
  scheduleReconnect(code) {
    if (this.stopped) return;
    const r = this.options.reconnect ?? true;
    if (r === false) {
      this.stopped = true;
      this.endCall();
      this.rejectConnectWaiters(new ChorusError("disconnected", `connection closed (${code ?? "failed"})`));
      this.setState("closed", { code });
      return;
    }
    const min = typeof r === "object" && r.minDelay !== void 0 ? r.minDelay : 1e3;
    const max = typeof r === "object" && r.maxDelay !== void 0 ? r.maxDelay : 3e4;
    let delay;
    if (code === CloseCode.FELL_BEHIND && this.attempts === 0) delay = 0;
    else delay = Math.min(max, min * 2 ** this.attempts) * (0.75 + Math.random() * 0.5);
    delay = Math.round(delay);
    this.attempts++;
    clearTimeout(this.reconnectTimer);
    this.setState("offline", { code, retryIn: delay });
    this.reconnectTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }
  /**
   * @internal Test hook: drops the WebSocket as a broken network would (closes it and reconnects
   * with the usual backoff). Browsers' offline emulation leaves open WebSockets alone.
   */
  _dropConnection() {
    const ws = this.ws;
    if (!ws || this.stopped) return;
    try {
      ws.close();
    } catch {
    }
    this.onClosed(1006, true);
  }
  /** No reconnect will come: a call waiting to rejoin ends (`lost`). */
  endCall() {
    const call = this._call;
    this._call = null;
    call?._end("lost");
  }
  /** Ends the current socket's state: pending requests fail, a call waits to rejoin (or ends). */
  teardown() {
    this.serial++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    }
    this._synced = false;
    clearInterval(this.pingTimer);
    this.pingTimer = void 0;
    this.pingOutstanding = false;
    clearTimeout(this.ackTimer);
    this.ackTimer = void 0;
    const err = new ChorusError("disconnected", "the connection was lost");
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(rid);
      if (p.sendId === void 0) p.reject(err);
    }
    if (this._call && (this.stopped || this.options.reconnect === false || !this._call._connectionLost())) this.endCall();
    this.callBuffer = [];
    const me = this._user?.address ?? "";
    for (const call of this.direct.values()) {
      const [from, to] = call.incoming ? [call.peer, me] : [me, call.peer];
      call._update({ type: "call_status", call: call.id, from, to, video: call.video, status: "lost", code: 98, by: me });
    }
    this.direct.clear();
    this.earlyStatus.clear();
    if (ws && this._state === "online") this.setState("offline");
  }
  rejectConnectWaiters(err) {
    const w = this.connectWaiters;
    this.connectWaiters = [];
    for (const x of w) x.reject(err);
  }
  setState(state, extra = {}) {
    const changed = state !== this._state;
    this._state = state;
    if (changed || extra.retryIn !== void 0) this.emit("connection", { state, ...extra });
  }
  // ------------------------------------------------------------ frames in
  handleFrame(f) {
    this.emit("frame", f);
    const rid = frameRid(f);
    if (rid !== void 0) {
      const p = this.pending.get(rid);
      if (p) {
        this.pending.delete(rid);
        clearTimeout(p.timer);
        if (p.sendId !== void 0) this.settleSend(p.sendId, f);
        else if (f.type === "error") p.reject(ChorusError.fromFrame(f));
        else p.resolve(f);
        return;
      }
    }
    switch (f.type) {
      case "welcome":
        return this.onWelcome(f);
      case "synced":
        return this.onSynced(f);
      case "message": {
        const { type: _t, ...m } = f;
        this.emit("message", m);
        this.advanceCursor(f.pos);
        if (this._synced) this.scheduleAck(200);
        return;
      }
      case "receipt":
        return this.emit("receipt", f);
      case "presence":
        return this.emit("presence", f);
      case "group":
        return this.emit("group", f);
      case "board":
        return this.emit("board", f);
      case "group_media":
        return this.emit("group_media", f);
      case "sent":
        return this.settleSend(f.id, f);
      case "call_offer":
      case "call_event":
        if (this._call) this._call._handle(f);
        else if (this.joining > 0) this.callBuffer.push(f);
        return;
      case "call_incoming":
        return this.onIncomingCall(f);
      case "call_status":
        return this.onCallStatus(f);
      case "error":
        return this.onUnsolicitedError(f);
      default:
        return;
    }
  }
  onWelcome(f) {
    this._user = f.user;
    this.lastWelcome = f;
    if (!this._cursor || this._cursor.epoch !== f.epoch || !f.resumed && f.reason) {
      this._cursor = { epoch: f.epoch, pos: 0 };
      this.ackedPos = -1;
    }
    this.emit("welcome", f);
  }
  onSynced(f) {
    this.advanceCursor(f.pos);
    this._synced = true;
    this.attempts = 0;
    this.setState("online");
    this.startPing();
    this.emit("synced", f);
    this.flushAck();
    this.flushOutbox();
    this._call?._connectionBack();
    const w = this.connectWaiters;
    this.connectWaiters = [];
    if (this.lastWelcome) for (const x of w) x.resolve(this.lastWelcome);
  }
  onUnsolicitedError(f) {
    const err = ChorusError.fromFrame(f);
    if (f.id !== void 0 && this.outbox.has(f.id)) {
      this.settleSend(f.id, f);
      return;
    }
    if (f.code === "unauthorized") {
    }
    this.emit("error", err);
  }
  advanceCursor(pos) {
    if (!this._cursor) return;
    if (pos > this._cursor.pos) {
      this._cursor = { epoch: this._cursor.epoch, pos };
      this.emit("cursor", { ...this._cursor });
    }
  }
  // ------------------------------------------------------------ frames out
  transmit(frame) {
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
  request(frame, options = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== OPEN || !this.lastWelcome) {
        reject(new ChorusError("disconnected", "not connected"));
        return;
      }
      const rid = String(++this.ridCounter);
      const timeout = options.timeout ?? this.options.requestTimeout ?? 2e4;
      const p = { resolve, reject, timer: void 0 };
      if (timeout > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(rid);
          reject(new ChorusError("timeout", `no answer to ${frame.type} within ${timeout} ms`));
        }, timeout);
      }
      this.pending.set(rid, p);
      this.transmit({ ...frame, rid });
    });
  }
  /**
   * Sends a message. Resolves with the `sent` answer (possibly
   * `duplicate: true` after a retry). The message waits in the outbox while
   * disconnected and is resent with the same id after each reconnect; rejects
   * with `ChorusError` (with `id` and `status`) when the server refuses it.
   */
  send(msg) {
    const id = msg.id ?? newMessageId();
    const frame = { type: "send", id };
    if (msg.peer !== void 0) frame.peer = msg.peer;
    if (msg.gid !== void 0) frame.gid = msg.gid;
    if (msg.text !== void 0) frame.text = msg.text;
    if (msg.data !== void 0) frame.data = msg.data;
    if (msg.file !== void 0) frame.file = msg.file;
    if (msg.mtype !== void 0) frame.mtype = msg.mtype;
    if (this._state === "closed" || this._state === "auth_failed") {
      return Promise.reject(
        this._state === "closed" ? new ChorusError("closed", "the client is closed") : new ChorusError("unauthorized", "the access token is no longer valid")
      );
    }
    const existing = this.outbox.get(id);
    if (existing) return new Promise((resolve, reject) => this.chainOutbox(existing, resolve, reject));
    return new Promise((resolve, reject) => {
      const entry = { frame, resolve, reject, sentOn: -1 };
      this.outbox.set(id, entry);
      if (this._synced) this.transmitSend(entry);
    });
  }
  chainOutbox(e, resolve, reject) {
    const r0 = e.resolve;
    const j0 = e.reject;
    e.resolve = (f) => (r0(f), resolve(f));
    e.reject = (x) => (j0(x), reject(x));
  }
  /** Ids of the messages waiting for `sent`. */
  pendingSends() {
    return [...this.outbox.keys()];
  }
  transmitSend(entry) {
    if (!this.ws || this.ws.readyState !== OPEN) return;
    const rid = String(++this.ridCounter);
    this.pending.set(rid, { resolve: () => {
    }, reject: () => {
    }, timer: void 0, sendId: entry.frame.id });
    entry.sentOn = this.serial;
    this.transmit({ ...entry.frame, rid });
  }
  flushOutbox() {
    for (const [, e] of this.outbox) if (e.sentOn !== this.serial) this.transmitSend(e);
  }
  settleSend(id, f) {
    const e = this.outbox.get(id);
    if (!e) return;
    if (f.type === "sent") {
      this.outbox.delete(id);
      e.resolve(f);
      this.emit("sent", f);
      const { rid: _rid, type: _type, ...content } = e.frame;
      this.emit("own-message", {
        ...content,
        mid: f.mid,
        from: this._user?.address ?? "",
        seq: f.seq,
        pos: f.pos,
        ts: f.ts,
        mtype: e.frame.mtype ?? 0,
        edited: false,
        deleted: false
      });
    } else if (f.type === "error") {
      this.outbox.delete(id);
      e.reject(ChorusError.fromFrame({ ...f, id: f.id ?? id }));
    }
  }
  /** Edits one of your messages (`text`/`data` replace the old ones). */
  async edit(mid, content) {
    await this.request({ type: "edit", mid, ...content });
  }
  /** Deletes one of your messages (leaves a tombstone). */
  async delete(mid) {
    await this.request({ type: "delete", mid });
  }
  /** Marks a conversation read up to and including `seq`. */
  async read(to) {
    await this.request(to.gid !== void 0 ? { type: "read", gid: to.gid, seq: to.seq } : { type: "read", peer: to.peer, seq: to.seq });
  }
  /** Typing started (`on`, default true) or stopped in a conversation. No answer; failures come as `error` events. */
  typing(to) {
    const on = to.on ?? true;
    this.transmit(to.gid !== void 0 ? { type: "typing", gid: to.gid, on } : { type: "typing", peer: to.peer, on });
  }
  /** Sends `ack` for everything processed up to `pos` (default: the cursor). Done automatically unless `autoAck: false`. */
  ack(pos) {
    const p = pos ?? this._cursor?.pos;
    if (p === void 0) return;
    if (this.transmit({ type: "ack", pos: p })) this.ackedPos = Math.max(this.ackedPos, p);
  }
  scheduleAck(delay) {
    if (this.options.autoAck === false || this.ackTimer !== void 0) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = void 0;
      this.flushAck();
    }, delay);
  }
  flushAck() {
    if (this.options.autoAck === false || !this._cursor) return;
    if (this._cursor.pos > this.ackedPos) this.ack(this._cursor.pos);
  }
  /** Round trip to the server; resolves with the time taken in ms. */
  async ping() {
    const t0 = Date.now();
    await this.request({ type: "ping" });
    return Date.now() - t0;
  }
  startPing() {
    clearInterval(this.pingTimer);
    const every = this.options.pingInterval ?? 25e3;
    if (every <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.pingOutstanding) {
        const ws = this.ws;
        this.onClosed(1006, true);
        try {
          ws?.close(4002, "ping timeout");
        } catch {
        }
        return;
      }
      this.pingOutstanding = true;
      this.request({ type: "ping" }, { timeout: 0 }).then(
        () => this.pingOutstanding = false,
        () => this.pingOutstanding = false
      );
    }, every);
  }
  // ------------------------------------------------------------ calls
  /**
   * Joins the call of group `gid` (leaving any call this session is in) and
   * resolves with the `GroupCall` once the server answered `call_joined`.
   */
  async joinCall(gid, options = {}) {
    if (this._call) {
      const old = this._call;
      this._call = null;
      old._end("left");
    }
    this.joining++;
    try {
      const joined = await this.request({ type: "call_join", gid });
      const call = new GroupCall(this, joined, {
        RTCPeerConnection: this.options.RTCPeerConnection,
        ...options
      });
      this._call = call;
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
  async call(address, options = {}) {
    const video = options.video ?? false;
    const f = await this.request({ type: "call_dial", peer: address, video });
    const call = new DirectCall(this, { id: f.call, peer: f.peer, name: f.peer, video: f.video, incoming: false });
    this.trackDirect(call);
    return call;
  }
  /** The 1:1 calls this session is ringing with or has placed, not yet ended. */
  get directCalls() {
    return [...this.direct.values()];
  }
  trackDirect(call) {
    this.direct.set(call.id, call);
    const early = this.earlyStatus.get(call.id) ?? [];
    this.earlyStatus.delete(call.id);
    for (const f of early) this.applyCallStatus(call, f);
  }
  onIncomingCall(f) {
    const call = DirectCall._incoming(this, f);
    this.trackDirect(call);
    if (!call.ended) this.emit("incoming-call", call);
  }
  onCallStatus(f) {
    this.emit("call-status", f);
    const call = this.direct.get(f.call);
    if (call) return this.applyCallStatus(call, f);
    if (this.earlyStatus.size >= 16) this.earlyStatus.delete(this.earlyStatus.keys().next().value);
    this.earlyStatus.set(f.call, [...this.earlyStatus.get(f.call) ?? [], f]);
  }
  applyCallStatus(call, f) {
    call._update(f);
    if (call.ended) this.direct.delete(call.id);
  }
  /** @internal Called by a GroupCall that ended itself. */
  _callEnded(call) {
    if (this._call === call) this._call = null;
  }
  // ------------------------------------------------------------ REST shortcuts
  /** `GET /v1/me`. */
  me() {
    return this.rest.me();
  }
  /** `POST /v1/groups`. */
  createGroup(options) {
    return this.rest.createGroup(options);
  }
  /** `POST /v1/groups/{gid}/join`. */
  joinGroup(gid, pin) {
    return this.rest.joinGroup(gid, pin);
  }
  /** `GET /v1/groups/{gid}/members`. */
  members(gid) {
    return this.rest.members(gid);
  }
  /** `GET /v1/groups/{gid}/board`: the group's whiteboard. */
  board(gid) {
    return this.rest.board(gid);
  }
  /** `PUT /v1/groups/{gid}/board`: replace the whiteboard (only if still at `version`, when given). */
  setBoard(gid, objs, version) {
    return this.rest.setBoard(gid, objs, version);
  }
  /** `POST /v1/groups/{gid}/board`: add objects to the whiteboard. */
  appendBoard(gid, objs) {
    return this.rest.appendBoard(gid, objs);
  }
  /** `GET /v1/groups/{gid}/pins`. */
  pins(gid) {
    return this.rest.pins(gid);
  }
  /** `GET /v1/groups`. */
  groups() {
    return this.rest.groups();
  }
  /** `GET /v1/groups/{gid}`. */
  group(gid) {
    return this.rest.group(gid);
  }
  /** History of a conversation (REST). */
  history(conv, options) {
    return this.rest.history(conv, options);
  }
  // ------------------------------------------------------------ files and media
  /**
   * Uploads `file` by tus (docs/protocol.md 16.1), starting at once: listen to `progress`,
   * `pause()`/`resume()`/`cancel()` it, await `done` for the file's id. A broken connection
   * resumes from the server's offset by itself.
   */
  upload(file, options = {}) {
    return new Upload(this.server, () => this.rest.token, file, { fetch: this.options.fetch, ...options });
  }
  /**
   * Sends `file` as a chat message to `to` (`{ peer }` or `{ gid }`): uploads it (`onUpload`
   * gets the `Upload` for progress, pause and cancel), then sends a message carrying the stored
   * file, which only the conversation's members can read. Resolves with the upload id and the
   * server's `sent`.
   */
  async sendFile(to, file, options = {}) {
    const { text, onUpload, messageId, ...uploadOptions } = options;
    const up = this.upload(file, uploadOptions);
    onUpload?.(up);
    const upload = await up.done;
    const msg = { ...to, file: { url: "", upload, name: up.name } };
    if (text !== void 0) msg.text = text;
    if (messageId !== void 0) msg.id = messageId;
    return { upload, sent: await this.send(msg) };
  }
  /** `GET /v1/groups/{gid}/media`: one page of a group's media library, newest first. */
  media(gid, options) {
    return this.rest.media(gid, options);
  }
  /** `POST /v1/groups/{gid}/media`: adds a finished upload to the library (members get `group_media`). */
  addMedia(gid, upload) {
    return this.rest.addMedia(gid, upload);
  }
  /** `DELETE /v1/groups/{gid}/media/{id}`. */
  deleteMedia(gid, id) {
    return this.rest.deleteMedia(gid, id);
  }
  /** A signed URL of a stored file to play or show (`<video src>`, `<img src>`): `POST /v1/files/{id}/url`. */
  playUrl(id) {
    return this.rest.fileUrl(id);
  }
};

// src/cache.ts
var MESSAGES = "messages";
var META = "meta";
function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}
function convKey(c) {
  return "gid" in c ? `g:${c.gid}` : `p:${c.peer}`;
}
var MessageCache = class _MessageCache {
  constructor(db) {
    this.db = db;
  }
  /** Opens (or creates) the database `name`. `indexedDB` defaults to the global one. */
  static async open(name, indexedDB = globalThis.indexedDB) {
    if (!indexedDB) throw new Error("IndexedDB is not available");
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      const messages = db.createObjectStore(MESSAGES, { keyPath: "mid" });
      messages.createIndex("conv_seq", ["conv", "seq"]);
      db.createObjectStore(META);
    };
    return new _MessageCache(await request(req));
  }
  /** Stores a message (or replaces it: an edit or a deletion) as `self` sees it. */
  async put(m, self) {
    const partner = m.from === self ? m.peer : m.from;
    const conv = m.gid !== void 0 && m.gid !== null ? `g:${m.gid}` : `p:${partner ?? ""}`;
    const tx = this.db.transaction(MESSAGES, "readwrite");
    tx.objectStore(MESSAGES).put({ ...m, conv });
    await done(tx);
  }
  /** Up to `limit` messages of a conversation, newest first; `before` a `seq` to page back. */
  async messages(c, limit = 50, before) {
    const conv = convKey(c);
    const upper = before === void 0 ? [conv, Number.MAX_SAFE_INTEGER] : [conv, before - 1];
    const range = IDBKeyRange.bound([conv, Number.MIN_SAFE_INTEGER], upper);
    const tx = this.db.transaction(MESSAGES, "readonly");
    const index = tx.objectStore(MESSAGES).index("conv_seq");
    const out = [];
    await new Promise((resolve, reject) => {
      const cursor = index.openCursor(range, "prev");
      cursor.onerror = () => reject(cursor.error);
      cursor.onsuccess = () => {
        const c2 = cursor.result;
        if (!c2 || out.length >= limit) return resolve();
        const { conv: _conv, ...m } = c2.value;
        out.push(m);
        c2.continue();
      };
    });
    return out;
  }
  /** The saved resume cursor, if any. */
  async cursor() {
    const tx = this.db.transaction(META, "readonly");
    return await request(tx.objectStore(META).get("cursor")) ?? null;
  }
  /** Saves the resume cursor. */
  async setCursor(c) {
    const tx = this.db.transaction(META, "readwrite");
    tx.objectStore(META).put(c, "cursor");
    await done(tx);
  }
  /** Keeps the cache in step with `client`: every message it receives or sends, and its cursor.
   * Returns a function that stops it. */
  attach(client) {
    const store = (m) => void this.put(m, client.address).catch(() => void 0);
    const stops = [
      client.on("message", store),
      client.on("own-message", store),
      client.on("cursor", (c) => void this.setCursor(c).catch(() => void 0))
    ];
    return () => stops.forEach((stop) => stop());
  }
  /** Empties the cache (at logout). */
  async clear() {
    const tx = this.db.transaction([MESSAGES, META], "readwrite");
    tx.objectStore(MESSAGES).clear();
    tx.objectStore(META).clear();
    await done(tx);
  }
  /** Closes the database. */
  close() {
    this.db.close();
  }
};

// src/index.ts
var VERSION = "0.1.0";
export {
  CallStatusCode,
  ChorusAuth,
  ChorusClient,
  ChorusError,
  CloseCode,
  DirectCall,
  ERROR_CODES,
  Emitter,
  GroupCall,
  LocalStream,
  MessageCache,
  MessageStatus,
  Presence,
  RemoteStream,
  RestClient,
  SIMULCAST_ENCODINGS,
  Upload,
  VERSION,
  directCallEnded,
  fetchTransport,
  fileIdOf,
  frameRid,
  isErrorCode,
  isServerFrameType,
  metadataValue,
  newMessageId,
  nextLink,
  parseServerFrame,
  restPage,
  restRequest,
  xhrTransport
};
