/**
 * Entry of `dist/mesibo.js` (IIFE): defines the global `Mesibo` (`new Mesibo()`) and every
 * `MESIBO_*` / `MESIBOCALL_*` constant as a global, as Mesibo's own script does.
 *
 * @module mesibo/global
 */
import { MESIBO_CONSTANTS } from './constants.js';
import { Mesibo } from './mesibo.js';

const g = globalThis as unknown as Record<string, unknown>;
for (const [k, v] of Object.entries(MESIBO_CONSTANTS)) g[k] = v;
g.Mesibo = Mesibo;
