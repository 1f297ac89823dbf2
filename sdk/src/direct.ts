/**
 * 1:1 calls (docs/protocol.md §17): ringing on every session of the callee, answer, decline,
 * hang up; the media of an answered call through the SFU as a two-party `GroupCall`.
 *
 * ```ts
 * // Caller
 * const call = await client.call('uB', { video: true });
 * call.on('status', async (s) => {
 *   if (s.status === 'answered') {
 *     const media = await call.join();
 *     await media.publish(0, { audio: mic, video: camera });
 *   }
 * });
 * // Callee
 * client.on('incoming-call', async (call) => {
 *   const media = await call.answer(); // or call.decline()
 *   await media.publish(0, { audio: mic, video: camera });
 * });
 * ```
 *
 * `call.on('status')` reports every change with Mesibo's call status number in `code`; once
 * `call.ended` is true the call is over (and its media room closed by the server).
 *
 * @module direct
 */
import { Emitter } from './emitter.js';
import { ChorusError } from './errors.js';
import type { ChorusClient } from './client.js';
import type { GroupCall, GroupCallOptions } from './call.js';
import type { CallIncomingFrame, CallStatusFrame, DirectCallStatus } from './protocol.js';

/** Events of a `DirectCall`. */
export interface DirectCallEvents {
  /** The call changed (`ringing`, `answered`, or how it ended). */
  status: CallStatusFrame;
  /** The call is over; the frame says how. */
  ended: CallStatusFrame;
}

/** Whether a 1:1 call in `status` is over. */
export function directCallEnded(status: DirectCallStatus): boolean {
  return status !== 'ringing' && status !== 'answered';
}

/** A 1:1 call, placed (`client.call`) or ringing (`incoming-call`). */
export class DirectCall extends Emitter<DirectCallEvents> {
  /** The call id. */
  readonly id: number;
  /** The other side's address. */
  readonly peer: string;
  /** The caller's display name (incoming calls; the address for placed ones). */
  readonly name: string;
  /** A video call. */
  readonly video: boolean;
  /** Ringing on this session (`true`) or placed from it. */
  readonly incoming: boolean;
  private _status: DirectCallStatus = 'ringing';
  private _code = 3;
  private _by: string | undefined;
  private _media: GroupCall | null = null;
  private _heard = false;

  /** @internal */
  constructor(
    private readonly client: ChorusClient,
    init: { id: number; peer: string; name: string; video: boolean; incoming: boolean },
  ) {
    super();
    this.id = init.id;
    this.peer = init.peer;
    this.name = init.name;
    this.video = init.video;
    this.incoming = init.incoming;
  }

  /** Where the call stands. */
  get status(): DirectCallStatus {
    return this._status;
  }
  /** Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`). */
  get code(): number {
    return this._code;
  }
  /** Who hung up (`ended`) or whose session was lost (`lost`). */
  get by(): string | undefined {
    return this._by;
  }
  /** A `call_status` of this call has arrived (before it, `status` is the assumed `ringing`). */
  get heard(): boolean {
    return this._heard;
  }
  /** The call is over. */
  get ended(): boolean {
    return directCallEnded(this._status);
  }
  /** The call's media room, once joined. */
  get media(): GroupCall | null {
    return this._media;
  }
  /** The `gid` of the call's media room (`-id`). */
  get room(): number {
    return -this.id;
  }

  /**
   * Answers a ringing incoming call from this session and joins its media room; the callee's
   * other sessions stop ringing. Rejects with `ChorusError` (`not_found`, `conflict`).
   */
  async answer(options: GroupCallOptions = {}): Promise<GroupCall> {
    if (!this.incoming) throw new ChorusError('bad_request', 'only the callee answers');
    await this.client.request({ type: 'call_accept', call: this.id });
    return this.join(options);
  }

  /** Declines a ringing incoming call. */
  async decline(): Promise<void> {
    await this.client.request({ type: 'call_decline', call: this.id });
  }

  /** Hangs up (cancels while ringing, declines an incoming one); the media room closes. */
  async hangup(): Promise<void> {
    if (this.ended) return;
    await this.client.request({ type: 'call_hangup', call: this.id });
  }

  /**
   * Joins the media room of the answered call (the caller after `answered`; `answer()` does it
   * for the callee). Publish and subscribe on the returned `GroupCall`; the other side's streams
   * come as `stream-published` (or pass `autoSubscribe: true`).
   */
  async join(options: GroupCallOptions = {}): Promise<GroupCall> {
    if (this._media?.active) return this._media;
    // A 1:1 call ends with its WebSocket: its media room is not joined again by itself.
    const media = await this.client.joinCall(this.room, { recover: false, ...options });
    this._media = media;
    return media;
  }

  /** @internal Applies a `call_status` frame. */
  _update(f: CallStatusFrame): void {
    if (this.ended) return;
    this._heard = true;
    this._status = f.status;
    this._code = f.code;
    this._by = f.by;
    this.emit('status', f);
    if (this.ended) this.emit('ended', f);
  }

  /** @internal An incoming call from its `call_incoming` frame. */
  static _incoming(client: ChorusClient, f: CallIncomingFrame): DirectCall {
    return new DirectCall(client, { id: f.call, peer: f.from, name: f.name, video: f.video, incoming: true });
  }
}
