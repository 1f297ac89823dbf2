/**
 * Entry of `dist/mesibo.js` (IIFE): defines the global `Mesibo` (`new Mesibo()`) and every
 * `MESIBO_*` / `MESIBOCALL_*` constant as a global, as Mesibo's own script does, and makes the
 * server the bundle was loaded from the default server of every `Mesibo` (a page on another
 * origin that loads `https://chorus.example.org/sdk/mesibo.js` talks to chorus.example.org).
 *
 * @module mesibo/global
 */
import { MESIBO_CONSTANTS } from './constants.js';
import { Mesibo, _setBundleServer } from './mesibo.js';

const g = globalThis as unknown as Record<string, unknown>;
for (const [k, v] of Object.entries(MESIBO_CONSTANTS)) g[k] = v;
g.Mesibo = Mesibo;
// `currentScript` is only set while a classic script runs for the first time: read it now.
const script = (globalThis as { document?: { currentScript?: { src?: string } | null } }).document?.currentScript;
_setBundleServer(script?.src);
