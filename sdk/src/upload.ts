/**
 * Resumable uploads over tus 1.0 (docs/protocol.md section 16.1): progress, pause, resume,
 * cancel, and resume after a broken connection from the offset the server reports.
 *
 * A small tus client of our own rather than tus-js-client: the server speaks a fixed subset
 * (core, creation, termination), and this is ~250 lines with no dependencies in a bundle that
 * the Mesibo layer shares, where tus-js-client would bring its own base64, URL and throttle
 * packages. Any tus client works against the server all the same.
 *
 * ```ts
 * const up = client.upload(file);               // starts at once
 * up.on('progress', (p) => bar.value = p.sent / p.total);
 * pauseButton.onclick = () => up.pause();       // later: up.resume()
 * const id = await up.done;                     // the file's id (/v1/files/{id})
 * ```
 *
 * @module upload
 */
import { Emitter } from './emitter.js';
import { ChorusError } from './errors.js';
import { isErrorCode } from './protocol.js';
import type { FetchLike } from './rest.js';

/** One HTTP request of the upload. `onProgress` gets the body bytes sent so far. */
export interface UploadRequest {
  method: 'POST' | 'HEAD' | 'PATCH' | 'DELETE';
  url: string;
  headers: Record<string, string>;
  body?: Blob;
  onProgress?: (sent: number) => void;
  signal: AbortSignal;
}

/** Its answer: the status, a header reader and the body text. */
export interface UploadResponse {
  status: number;
  header(name: string): string | null;
  text: string;
}

/**
 * Sends one request. Rejects when the request did not complete (network error, abort).
 * The browser default is XMLHttpRequest (it reports upload progress; fetch cannot), else fetch.
 */
export type UploadTransport = (req: UploadRequest) => Promise<UploadResponse>;

/** Options of an upload. */
export interface UploadOptions {
  /** File name sent as tus `filename` metadata (default: the `File`'s name, else `file`). */
  name?: string;
  /** Bytes per PATCH (default 16 MiB). Progress is reported within a PATCH too where the transport can. */
  chunkSize?: number;
  /** Waits (ms) before each retry after a broken request; when they run out the upload fails. Default `[0, 1000, 3000, 5000, 10000]`. */
  retryDelays?: number[];
  /** Continue an earlier upload of the same bytes (its id), e.g. after a page reload: asks the server for its offset first. */
  id?: string;
  /** Request implementation (default: XMLHttpRequest in browsers, else `fetch`). */
  transport?: UploadTransport;
}

/** Where an upload is. */
export type UploadState = 'uploading' | 'paused' | 'done' | 'failed' | 'cancelled';

/** Payload of the `progress` event. */
export interface UploadProgress {
  /** Bytes sent (the server's offset plus what is on the way). */
  sent: number;
  /** The file's size. */
  total: number;
}

/** Events of `Upload`. */
export interface UploadEvents {
  progress: UploadProgress;
  state: UploadState;
}

const DEFAULT_CHUNK = 16 * 1024 * 1024;
const DEFAULT_RETRIES = [0, 1000, 3000, 5000, 10000];

/** Base64 of a string's UTF-8 bytes (tus `Upload-Metadata` values). */
export function metadataValue(s: string): string {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** A transport over `fetch` (no progress within a request). */
export function fetchTransport(f: FetchLike): UploadTransport {
  return async (req) => {
    const res = await f(req.url, { method: req.method, headers: req.headers, body: req.body ?? null, signal: req.signal });
    const text = await res.text();
    if (req.body) req.onProgress?.(req.body.size);
    return { status: res.status, header: (n) => res.headers.get(n), text };
  };
}

/** A transport over XMLHttpRequest: reports upload progress as bytes leave. */
export function xhrTransport(): UploadTransport {
  return (req) =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(req.method, req.url);
      for (const [k, v] of Object.entries(req.headers)) xhr.setRequestHeader(k, v);
      if (req.onProgress) xhr.upload.onprogress = (e) => req.onProgress?.(e.loaded);
      const abort = () => xhr.abort();
      req.signal.addEventListener('abort', abort);
      const fail = (why: string) => () => {
        req.signal.removeEventListener('abort', abort);
        reject(new ChorusError('network', why));
      };
      xhr.onerror = fail('the connection failed');
      xhr.onabort = fail('aborted');
      xhr.ontimeout = fail('timed out');
      xhr.onload = () => {
        req.signal.removeEventListener('abort', abort);
        resolve({ status: xhr.status, header: (n) => xhr.getResponseHeader(n), text: xhr.responseText });
      };
      xhr.send(req.body ?? null);
    });
}

function errorOf(res: UploadResponse, what: string): ChorusError {
  let code: unknown;
  let message = `${what}: HTTP ${res.status}`;
  try {
    const e = (JSON.parse(res.text) as { error?: { code?: unknown; message?: unknown } }).error;
    code = e?.code;
    if (typeof e?.message === 'string') message = e.message;
  } catch {
    /* HEAD answers have no body */
  }
  const c = isErrorCode(code) ? code : res.status === 401 ? 'unauthorized' : res.status === 404 ? 'not_found' : res.status === 413 ? 'too_large' : 'internal';
  return new ChorusError(c, message, { httpStatus: res.status });
}

/**
 * One file going up by tus. It starts when created (`ChorusClient.upload`); `done` resolves with
 * the upload id — the file's id once finished — or rejects with `ChorusError` (a refusal such as
 * `too_large` or `forbidden` for a quota, `network` when retries ran out, `state` when cancelled).
 */
export class Upload extends Emitter<UploadEvents> {
  readonly file: Blob;
  readonly name: string;
  /** The upload's id, once the server created it. */
  id: string | null;
  /** Bytes the server has confirmed. */
  offset = 0;
  /** Resolves with the id when every byte is stored. */
  readonly done: Promise<string>;
  private _state: UploadState = 'uploading';
  private readonly chunkSize: number;
  private readonly retryDelays: number[];
  private readonly transport: UploadTransport;
  private abort: AbortController | null = null;
  private settle!: { resolve: (id: string) => void; reject: (e: ChorusError) => void };
  private running = false;

  constructor(
    private readonly server: string,
    private readonly token: () => string,
    file: Blob,
    options: UploadOptions & { fetch?: FetchLike } = {},
  ) {
    super();
    this.file = file;
    this.name = options.name ?? (file as Partial<File>).name ?? 'file';
    this.id = options.id ?? null;
    this.chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK);
    this.retryDelays = options.retryDelays ?? DEFAULT_RETRIES;
    const f = options.fetch ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
    this.transport =
      options.transport ?? (typeof XMLHttpRequest !== 'undefined' ? xhrTransport() : f ? fetchTransport(f) : () => Promise.reject(new ChorusError('network', 'no fetch')));
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined); // a caller that never awaits is not an unhandled rejection
    void this.run();
  }

  get state(): UploadState {
    return this._state;
  }

  /** Stops sending; the server keeps what arrived. `resume()` continues from there. */
  pause(): void {
    if (this._state !== 'uploading') return;
    this.setState('paused');
    this.abort?.abort();
  }

  /** Continues a paused upload from the server's offset. */
  resume(): void {
    if (this._state !== 'paused') return;
    this.setState('uploading');
    void this.run();
  }

  /** Stops and deletes the upload and its bytes on the server (tus termination). */
  async cancel(): Promise<void> {
    if (this._state === 'done' || this._state === 'cancelled' || this._state === 'failed') return;
    this.setState('cancelled');
    this.abort?.abort();
    this.settle.reject(new ChorusError('state', 'upload cancelled'));
    if (this.id) {
      await this.send({ method: 'DELETE', url: this.url() }).catch(() => undefined);
    }
  }

  private setState(s: UploadState): void {
    this._state = s;
    this.emit('state', s);
  }

  private url(): string {
    return `${this.server}/v1/uploads/${encodeURIComponent(this.id ?? '')}`;
  }

  private send(req: Omit<UploadRequest, 'signal' | 'headers'> & { headers?: Record<string, string> }): Promise<UploadResponse> {
    this.abort = new AbortController();
    return this.transport({
      ...req,
      headers: { Authorization: `Bearer ${this.token()}`, 'Tus-Resumable': '1.0.0', ...req.headers },
      signal: this.abort.signal,
    });
  }

  private progress(sent: number): void {
    this.emit('progress', { sent: Math.min(sent, this.file.size), total: this.file.size });
  }

  /** Creates the upload if needed, then PATCHes chunks; after a broken request asks HEAD and goes on. */
  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    let retries = 0;
    let known = this.id === null; // a fresh upload starts at 0; an id from elsewhere asks HEAD first
    try {
      while (this._state === 'uploading') {
        try {
          if (this.id === null) await this.create();
          else if (!known) await this.head();
          known = true;
          if (this.offset >= this.file.size) return this.finish();
          await this.patch();
          retries = 0;
        } catch (e) {
          if (this._state !== 'uploading') return; // paused or cancelled: the abort is ours
          const err = e instanceof ChorusError ? e : new ChorusError('network', String(e));
          // A refusal (4xx other than 409) is final; a broken request or a conflict is retried after HEAD.
          const final = err.httpStatus !== undefined && err.httpStatus !== 409 && err.httpStatus < 500;
          if (final || retries >= this.retryDelays.length) return this.fail(err);
          await new Promise((r) => setTimeout(r, this.retryDelays[retries++]));
          known = false;
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async create(): Promise<void> {
    const res = await this.send({
      method: 'POST',
      url: `${this.server}/v1/uploads`,
      headers: { 'Upload-Length': String(this.file.size), 'Upload-Metadata': `filename ${metadataValue(this.name)}` },
    });
    if (res.status !== 201) throw errorOf(res, 'upload refused');
    const id = (res.header('location') ?? '').split('/').pop() ?? '';
    if (!id) throw new ChorusError('internal', 'upload: no Location in the answer');
    this.id = id;
    this.offset = 0;
    this.progress(0);
  }

  private async head(): Promise<void> {
    const res = await this.send({ method: 'HEAD', url: this.url() });
    if (res.status !== 200) throw errorOf(res, 'upload gone');
    const off = Number(res.header('upload-offset'));
    if (!Number.isSafeInteger(off) || off < 0 || off > this.file.size) throw new ChorusError('internal', 'upload: bad Upload-Offset');
    this.offset = off;
    this.progress(off);
  }

  private async patch(): Promise<void> {
    const start = this.offset;
    const body = this.file.slice(start, Math.min(this.file.size, start + this.chunkSize));
    const res = await this.send({
      method: 'PATCH',
      url: this.url(),
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(start) },
      body,
      onProgress: (n) => this.progress(start + n),
    });
    if (res.status !== 204) throw errorOf(res, `upload failed at byte ${start}`);
    const next = Number(res.header('upload-offset'));
    if (!Number.isSafeInteger(next) || next <= start || next > this.file.size) throw new ChorusError('internal', 'upload: bad Upload-Offset');
    this.offset = next;
    this.progress(next);
  }

  private finish(): void {
    this.setState('done');
    this.settle.resolve(this.id as string);
  }

  private fail(e: ChorusError): void {
    this.setState('failed');
    this.settle.reject(e);
  }
}
