/**
 * Profiles and groups of the Mesibo layer: `MesiboProfile` (a user or a group, with Mesibo's
 * real-time group management: pins, join, settings, members) and `MesiboMember`.
 *
 * @module mesibo/profile
 */
import type { ChorusClient } from '../client.js';
import { ChorusError } from '../errors.js';
import type { EditPinOptions, Group, Member, Pin } from '../rest.js';
import type { Conversation, PresenceFrame } from '../protocol.js';
import { C } from './constants.js';
import { fire } from './dispatch.js';
import type { Mesibo } from './mesibo.js';
import { MesiboMessage, MesiboReadSession } from './messages.js';

/** Mesibo group settings (`Mesibo_onGroupSettings`, `createGroup`). */
export interface MesiboGroupSettings {
  name: string;
  flags: number;
  callFlags: number;
  callDuration: number;
  videoResolution: number;
  expiry: number;
}

/** Mesibo member permissions (`addPin`, `Mesibo_onGroupSettings`). */
export interface MesiboMemberPermissions {
  flags: number;
  adminFlags: number;
  callFlags: number;
  callDuration: number;
  videoResolution: number;
  expiry: number;
}

/** A group member (`Mesibo_onGroupMembers`). */
export class MesiboMember {
  constructor(
    private readonly mesibo: Mesibo,
    readonly address: string,
    readonly name: string,
    readonly flags: number,
    readonly adminFlags: number,
  ) {}
  getAddress(): string {
    return this.address;
  }
  getProfile(): MesiboProfile {
    return this.mesibo.getProfile(this.address);
  }
  getName(): string {
    return this.name;
  }
  getFlags(): number {
    return this.flags;
  }
  getAdminFlags(): number {
    return this.adminFlags;
  }
  isAdmin(): boolean {
    return (this.adminFlags & ~C.MESIBO_ADMINFLAG_OWNER) !== 0 || (this.flags & C.MESIBO_MEMBERFLAG_ADMIN) !== 0;
  }
  isOwner(): boolean {
    return (this.adminFlags & C.MESIBO_ADMINFLAG_OWNER) !== 0;
  }
}

/** Mesibo's group error for a Chorus error. */
export function groupError(e: unknown, pinOp = false): number {
  const code = e instanceof ChorusError ? e.code : 'internal';
  switch (code) {
    case 'pin_invalid':
      return C.MESIBO_GROUPERR_BADPIN;
    case 'forbidden':
      return pinOp ? C.MESIBO_GROUPERR_BADPIN : C.MESIBO_GROUPERR_PERMISSION;
    case 'not_found':
      return pinOp ? C.MESIBO_GROUPERR_BADPIN : C.MESIBO_GROUPERR_NOTMEMBER;
    case 'bad_request':
    case 'rate_limited':
      return pinOp ? C.MESIBO_GROUPERR_BADPIN : C.MESIBO_GROUPERR_GENERAL;
    case 'unauthorized':
      return C.MESIBO_GROUPERR_ACCESSDENIED;
    default:
      return C.MESIBO_GROUPERR_GENERAL;
  }
}

function settingsOf(g: Group): MesiboGroupSettings {
  return {
    name: g.name,
    flags: g.flags,
    callFlags: g.call_flags,
    callDuration: g.call_duration,
    videoResolution: g.video_resolution,
    expiry: 0,
  };
}

function permissionsOf(g: Group | null, flags: number, adminFlags: number): MesiboMemberPermissions {
  return {
    flags,
    adminFlags,
    callFlags: g?.call_flags ?? 0,
    callDuration: g?.call_duration ?? 0,
    videoResolution: g?.video_resolution ?? 0,
    expiry: 0,
  };
}

type Target = unknown;

/**
 * A user or group profile (`getProfile(address)`, `getProfile(null, gid)`, `getGroupProfile(gid)`).
 * Group profiles have the real-time group-management methods (`addPin`, `join`, `getSettings`,
 * `getMembers`, `addMembers`, `removeMembers`, `leave`, ...).
 */
export class MesiboProfile {
  address: string;
  groupid: number;
  name: string;
  /** Group: the last settings fetched. */
  settings: MesiboGroupSettings | null = null;
  /** Group: your permissions, as last fetched. */
  permissions: MesiboMemberPermissions | null = null;
  /** Presence as last seen on this connection. */
  online = false;
  typing = false;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  /** `getMembers` paging: the list read at the last restart, and how much of it was given. */
  private memberList: MesiboMember[] | null = null;
  private memberCursor = 0;

  /** @internal */
  constructor(
    private readonly mesibo: Mesibo,
    address: string,
    groupid: number,
    name = '',
  ) {
    this.address = address;
    this.groupid = groupid;
    this.name = name;
  }

  getAddress(): string {
    return this.address;
  }
  getGroupId(): number {
    return this.groupid;
  }
  /** The display name, when known (from the session, group listings, call rosters); else the address or `Group <gid>`. */
  getName(): string {
    return this.name || (this.groupid ? `Group ${this.groupid}` : this.address);
  }
  setName(name: string): void {
    this.name = name;
  }
  isGroup(): boolean {
    return this.groupid > 0;
  }
  isSelfProfile(): boolean {
    return !this.groupid && this.address === this.mesibo.getAddress();
  }
  /** The group profile (this object for a group), else null. */
  getGroupProfile(): MesiboProfile | null {
    return this.groupid > 0 ? this : null;
  }
  isOnline(): boolean {
    return this.online;
  }
  isTyping(): boolean {
    return this.typing;
  }

  /** A new outgoing message to this user or group; set `message` (and more), then `send()`. */
  newMessage(id?: number | string): MesiboMessage {
    const m = new MesiboMessage(this.mesibo);
    m.id = id ?? this.mesibo.random();
    if (this.groupid) m.groupid = this.groupid;
    else m.peer = this.address;
    m.profile = this.groupid ? null : this;
    m.groupProfile = this.groupid ? this : null;
    return m;
  }

  /**
   * A read session over this conversation (see `MesiboReadSession`): `listener` an object (its
   * `Mesibo_onMessage` gets what `read()` reads) or a function `on_read(count)` (what is read goes
   * only to the session's list, `getMessages()`).
   */
  createReadSession(listener?: unknown): MesiboReadSession {
    if (typeof listener === 'function') return new MesiboReadSession(this.mesibo, this.conv(), null, listener as (n: number) => void);
    return new MesiboReadSession(this.mesibo, this.conv(), listener ?? null);
  }

  /** Typing started (`presence 3` for the peer or the group's members). */
  sendTyping(): void {
    this.mesibo._typing(this.conv(), true);
  }
  /** Typing stopped. */
  sendTypingCleared(): void {
    this.mesibo._typing(this.conv(), false);
  }

  // ---------------------------------------------------------------- groups

  /**
   * Adds a pin carrying `permissions` (`{flags, adminFlags}`); then `Mesibo_onGroupSettings`
   * with all pins. `expiry` (seconds) and `count` (uses) map to the pin's expiry and use limit.
   */
  addPin(permissions: Partial<MesiboMemberPermissions> | number, listener?: Target, expiry?: number, count?: number): void {
    const p = typeof permissions === 'number' ? { flags: permissions } : (permissions ?? {});
    void this.groupOp('addPin', listener, true, async (client) => {
      const opts: { flags: number; admin_flags?: number; expires_in?: number; uses?: number } = {
        flags: p.flags ?? C.MESIBO_MEMBERFLAG_ALL,
      };
      if (p.adminFlags) opts.admin_flags = p.adminFlags;
      const exp = expiry ?? (p.expiry || undefined);
      if (exp) opts.expires_in = exp;
      if (count) opts.uses = count;
      await client.rest.createPin(this.groupid, opts);
      await this.reportSettings(listener);
    });
  }

  /** Revokes a pin; then `Mesibo_onGroupSettings`. */
  removePin(pin: string | number, listener?: Target): void {
    void this.groupOp('removePin', listener, false, async (client) => {
      await client.rest.revokePin(this.groupid, String(pin));
      await this.reportSettings(listener);
    });
  }

  /**
   * Changes a pin: `permissions` (`{flags, adminFlags}`, or the flags as a number) as for
   * `addPin`, `expiry` (seconds from now) and `count` (uses from now); what is not given (or 0)
   * is kept. Then `Mesibo_onGroupSettings` with all pins; a refusal (e.g. admin rights the caller
   * may not grant) is `Mesibo_onGroupError`.
   */
  editPin(pin: string | number, permissions?: Partial<MesiboMemberPermissions> | number, expiry?: number, count?: number, listener?: Target): void {
    const p = typeof permissions === 'number' ? { flags: permissions } : (permissions ?? {});
    void this.groupOp('editPin', listener, false, async (client) => {
      const opts: EditPinOptions = {};
      if (p.flags !== undefined) opts.flags = p.flags;
      if (p.adminFlags !== undefined) opts.admin_flags = p.adminFlags;
      const exp = expiry || p.expiry || undefined;
      if (exp) opts.expires_in = exp;
      if (count) opts.uses = count;
      await client.rest.editPin(this.groupid, String(pin), opts);
      await this.reportSettings(listener);
    });
  }

  /** Joins the group with a pin → `Mesibo_onGroupJoined(profile)`; a bad pin → `Mesibo_onGroupError(profile, MESIBO_GROUPERR_BADPIN)`. */
  join(pin: string | number, listener?: Target): void {
    void this.groupOp('join', listener, true, async (client) => {
      const g = await client.joinGroup(this.groupid, String(pin));
      this.applyGroup(g);
      this.mesibo._rememberGroup(this);
      fire(this.mesibo._targets(listener), 'Mesibo_onGroupJoined', this);
    });
  }

  /** Leaves the group → `Mesibo_onGroupLeft(profile)`. */
  leave(listener?: Target): void {
    void this.groupOp('leave', listener, false, async (client) => {
      await client.rest.leaveGroup(this.groupid);
      this.mesibo._forgetGroup(this.groupid);
      fire(this.mesibo._targets(listener), 'Mesibo_onGroupLeft', this);
    });
  }

  /** Deletes the group (owner) → `Mesibo_onGroupLeft(profile)`. */
  deleteGroup(listener?: Target): void {
    void this.groupOp('deleteGroup', listener, false, async (client) => {
      await client.rest.deleteGroup(this.groupid);
      this.mesibo._forgetGroup(this.groupid);
      fire(this.mesibo._targets(listener), 'Mesibo_onGroupLeft', this);
    });
  }

  /** `Mesibo_onGroupSettings(profile, settings, permissions, pins)`. Pins are listed only to members who may list them. */
  getSettings(listener?: Target): void {
    void this.groupOp('getSettings', listener, false, () => this.reportSettings(listener));
  }

  /** Changes name, flags, callFlags, videoResolution, callDuration; then `Mesibo_onGroupSettings`. */
  setProperties(settings: Partial<MesiboGroupSettings>, listener?: Target): void {
    void this.groupOp('setProperties', listener, false, async (client) => {
      const s: { name?: string; flags?: number; call_flags?: number; video_resolution?: number; call_duration?: number } = {};
      if (settings.name !== undefined) s.name = settings.name;
      if (settings.flags !== undefined) s.flags = settings.flags;
      if (settings.callFlags !== undefined) s.call_flags = settings.callFlags;
      if (settings.videoResolution !== undefined) s.video_resolution = settings.videoResolution;
      if (settings.callDuration !== undefined) s.call_duration = settings.callDuration;
      await client.rest.updateGroup(this.groupid, s);
      await this.reportSettings(listener);
    });
  }

  /**
   * `Mesibo_onGroupMembers(profile, members[])`, Mesibo's paging: up to `count` members per call
   * (`count` ≤ 0: all), the next ones on the next call, from the first again with `restart`; past
   * the end an empty list. The list is read from the server (all its pages) on the first call
   * and on each `restart`, so a page shows the members as they were then.
   */
  getMembers(count?: number, restart?: boolean, listener?: Target): void {
    void this.groupOp('getMembers', listener, false, async (client) => {
      if (restart || !this.memberList) {
        const list: Member[] = await client.members(this.groupid);
        this.memberList = list.map((m) => {
          this.mesibo._learnName(m.address, m.name);
          return new MesiboMember(this.mesibo, m.address, m.name, m.flags, m.admin_flags);
        });
        this.memberCursor = 0;
      }
      const n = Number(count) > 0 ? Number(count) : this.memberList.length;
      const members = this.memberList.slice(this.memberCursor, this.memberCursor + n);
      this.memberCursor += members.length;
      fire(this.mesibo._targets(listener), 'Mesibo_onGroupMembers', this, members);
    });
  }

  /**
   * Adds (or updates) members: `addMembers(addresses, memberFlags, adminFlags)` or
   * `addMembers(addresses, {flags, adminFlags})`. A pin as the third argument is not supported
   * (Mesibo's shared-pin form): it gives `Mesibo_onGroupError(profile, MESIBO_GROUPERR_NOTSHAREDPIN)`.
   * Success → `Mesibo_onGroupMembersJoined(profile, addresses)` from the server's group event.
   */
  addMembers(addresses: string[] | string, flags?: number | Partial<MesiboMemberPermissions>, adminFlags?: number | string, listener?: Target): void {
    const list = Array.isArray(addresses) ? addresses : String(addresses).split(',').map((s) => s.trim()).filter(Boolean);
    let f: number | undefined;
    let a: number | undefined;
    if (typeof flags === 'object' && flags) {
      f = flags.flags;
      a = flags.adminFlags;
      if (adminFlags !== undefined) {
        fire(this.mesibo._targets(listener), 'Mesibo_onGroupError', this, C.MESIBO_GROUPERR_NOTSHAREDPIN);
        return;
      }
    } else {
      f = flags;
      a = typeof adminFlags === 'number' ? adminFlags : undefined;
    }
    void this.groupOp('addMembers', listener, false, async (client) => {
      const perms: { flags?: number; admin_flags?: number } = {};
      if (f !== undefined) perms.flags = f;
      if (a !== undefined) perms.admin_flags = a;
      await client.rest.addMembers(this.groupid, list, perms);
    });
  }

  /** Removes members (one REST call each). */
  removeMembers(addresses: string[] | string, listener?: Target): void {
    const list = Array.isArray(addresses) ? addresses : String(addresses).split(',').map((s) => s.trim()).filter(Boolean);
    void this.groupOp('removeMembers', listener, false, async (client) => {
      for (const a of list) await client.rest.removeMember(this.groupid, a);
    });
  }

  /** @internal */
  applyGroup(g: Group): void {
    this.name = g.name;
    this.settings = settingsOf(g);
    if (g.membership) this.permissions = permissionsOf(g, g.membership.flags, g.membership.admin_flags);
  }

  private conv(): Conversation {
    return this.groupid ? { gid: this.groupid } : { peer: this.address };
  }

  private async reportSettings(listener: Target): Promise<void> {
    const client = await this.mesibo._client();
    const g = await client.group(this.groupid);
    this.applyGroup(g);
    let pins: Pin[] = [];
    try {
      pins = await client.pins(this.groupid);
    } catch (e) {
      if (!(e instanceof ChorusError && (e.code === 'forbidden' || e.code === 'not_found'))) throw e;
    }
    const list = pins.map((p) => ({ pin: p.pin, label: p.label, permissions: permissionsOf(g, p.flags, p.admin_flags) }));
    fire(this.mesibo._targets(listener), 'Mesibo_onGroupSettings', this, this.settings, this.permissions, list);
  }

  private async groupOp(op: string, listener: Target, pinOp: boolean, fn: (c: ChorusClient) => Promise<void>): Promise<void> {
    if (!this.groupid) {
      fire(this.mesibo._targets(listener), 'Mesibo_onGroupError', this, C.MESIBO_GROUPERR_GENERAL);
      return;
    }
    try {
      await fn(await this.mesibo._client());
    } catch (e) {
      console.warn(`mesibo: ${op} failed:`, e);
      fire(this.mesibo._targets(listener), 'Mesibo_onGroupError', this, groupError(e, pinOp && op === 'join'));
    }
  }

  /** @internal */
  _presence(f: PresenceFrame): void {
    if (f.presence === 1) this.online = true;
    if (f.presence === 2) this.online = false;
    if (f.presence === 3 || f.presence === 4 || f.presence === 2) {
      this.typing = f.presence === 3;
      clearTimeout(this.typingTimer);
      // The server never clears typing by itself (docs/protocol.md §8): expire it after 5 s.
      if (this.typing) this.typingTimer = setTimeout(() => (this.typing = false), 5000);
    }
  }
}

