/**
 * The Mesibo compatibility layer: Mesibo's JavaScript API on top of the Chorus SDK.
 * Bundled as `dist/mesibo.js` (see `global.ts`).
 *
 * @module mesibo
 */
export { MESIBO_CONSTANTS } from './constants.js';
export { fire, callbackOf } from './dispatch.js';
export type { MesiboListener } from './dispatch.js';
export { Mesibo } from './mesibo.js';
export type { MesiboOptions } from './mesibo.js';
export { MesiboProfile, MesiboMember, groupError } from './profile.js';
export type { MesiboGroupSettings, MesiboMemberPermissions } from './profile.js';
export { MesiboMessage, MesiboReadSession, failureStatus } from './messages.js';
export { MesiboHttpRequest, formEncode } from './http.js';
export type { MesiboHttpCallback } from './http.js';
export type { MesiboParams } from './messages.js';
export { MesiboGroupCall, MesiboParticipant, MesiboGroupCallAdmin, MesiboParticipantAdmin } from './groupcall.js';
export type { MesiboSubscriber, Gen1CallOptions } from './groupcall.js';
