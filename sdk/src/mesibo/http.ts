/**
 * Mesibo's HTTP helper (`Mesibo.getInstance().createhttpRequest()`), which Mesibo's demos use to
 * call their login backend: `setUrl(url)`, `setPostData(obj, json)`, `send(cbdata, cb)`.
 *
 * @module mesibo/http
 */
import type { FetchLike } from '../rest.js';

/** `cb(cbdata, responseText)`; `responseText` is null when no answer came (network error). */
export type MesiboHttpCallback = (cbdata: unknown, response: string | null) => void;

/** Form encoding of a parameter object: objects and arrays as JSON, null/undefined left out. */
export function formEncode(obj: Record<string, unknown>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null) continue;
    q.append(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  return q.toString();
}

/**
 * One HTTP request. Without post data it is a GET; with `setPostData(obj)` a POST of `obj` as
 * form fields (`application/x-www-form-urlencoded`: what Mesibo backends read, and a request a
 * browser sends cross-origin without a preflight); with `setPostData(obj, true)` a POST of `obj`
 * as JSON. A relative URL is resolved against the server the bundle talks to; without `setUrl`
 * the request goes to that server's `/api` (Mesibo's demo backend, docs/mesibo-compat.md).
 */
export class MesiboHttpRequest {
  private url = '';
  private body: string | FormData | Blob | null = null;
  private json = false;
  private headers: Record<string, string> = {};

  /** @internal Use `mesibo.createhttpRequest()`. */
  constructor(
    private readonly base: () => string,
    private readonly fetchImpl: FetchLike | undefined,
  ) {}

  setUrl(url: string): void {
    this.url = String(url ?? '');
  }
  /**
   * `obj`: an object (encoded as form fields, or as JSON when `json` is true), an already encoded
   * string, or a `FormData` / `Blob` sent as it is (a `FormData` with a `file` field is how a page
   * stores a file with `op=upload`; the browser sets the multipart boundary).
   */
  setPostData(obj: unknown, json?: boolean): void {
    this.json = !!json;
    if (typeof obj === 'string') this.body = obj;
    else if ((typeof FormData !== 'undefined' && obj instanceof FormData) || (typeof Blob !== 'undefined' && obj instanceof Blob)) this.body = obj;
    else if (obj && typeof obj === 'object') this.body = this.json ? JSON.stringify(obj) : formEncode(obj as Record<string, unknown>);
    else this.body = null;
  }
  /** Chorus extension: an extra request header (e.g. `authorization`). */
  setHeader(name: string, value: string): void {
    this.headers[String(name)] = String(value);
  }
  /** The URL the request goes to. */
  getUrl(): string {
    const base = this.base();
    if (!this.url) return `${base}/api`;
    try {
      return new URL(this.url, `${base}/`).toString();
    } catch {
      return this.url;
    }
  }

  /** Sends it; `cb(cbdata, responseText)` when the answer is in (any HTTP status), `cb(cbdata, null)` if none came. Returns true. */
  send(cbdata?: unknown, cb?: MesiboHttpCallback): boolean {
    const f: FetchLike | undefined = this.fetchImpl ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
    const done = (text: string | null) => {
      if (typeof cb !== 'function') return;
      try {
        cb(cbdata, text);
      } catch (e) {
        console.error('mesibo: http callback threw', e);
      }
    };
    if (!f) {
      setTimeout(() => done(null), 0);
      return true;
    }
    const headers: Record<string, string> = { ...this.headers };
    const init: RequestInit = { method: this.body === null ? 'GET' : 'POST', headers };
    if (this.body !== null) {
      if (typeof this.body === 'string' && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) {
        headers['content-type'] = this.json ? 'application/json' : 'application/x-www-form-urlencoded';
      }
      init.body = this.body;
    }
    f(this.getUrl(), init).then(
      (res) => res.text().then(done, () => done(null)),
      (e: unknown) => {
        console.warn('mesibo: http request failed:', e);
        done(null);
      },
    );
    return true;
  }
}
