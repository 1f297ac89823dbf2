import type { ErrorCode, ErrorFrame } from './protocol.js';

/**
 * Codes of errors the SDK itself raises (not sent by the server):
 * `disconnected` (the connection dropped while the request was pending),
 * `closed` (the client was closed), `timeout` (no answer in time),
 * `network` (a REST request failed to reach the server), `webrtc` (a
 * peer-connection operation failed), `state` (the operation is not possible
 * in the current state, e.g. not in a call).
 */
export type LocalErrorCode = 'disconnected' | 'closed' | 'timeout' | 'network' | 'webrtc' | 'state';

/** Any error code a `ChorusError` carries. */
export type ChorusErrorCode = ErrorCode | LocalErrorCode;

/**
 * The one error type the SDK rejects with: a server `error` frame or REST
 * error body (`code` from the server's list), or a local failure.
 */
export class ChorusError extends Error {
  /** Stable machine-readable code. */
  readonly code: ChorusErrorCode;
  /** HTTP status, for REST errors. */
  readonly httpStatus?: number;
  /** For a failed `send`: the client message id. */
  readonly id?: string;
  /** For a failed `send`: the Mesibo message status (≥ 0x80). */
  readonly status?: number;

  constructor(code: ChorusErrorCode, message: string, extra?: { httpStatus?: number; id?: string; status?: number }) {
    super(message);
    this.name = 'ChorusError';
    this.code = code;
    if (extra?.httpStatus !== undefined) this.httpStatus = extra.httpStatus;
    if (extra?.id !== undefined) this.id = extra.id;
    if (extra?.status !== undefined) this.status = extra.status;
  }

  /** The error of a server `error` frame. */
  static fromFrame(f: ErrorFrame): ChorusError {
    return new ChorusError(f.code, f.message, { id: f.id, status: f.status });
  }
}
