/**
 * Duck-typed listener dispatch, as Mesibo does it: a listener is any object; a callback is
 * invoked only if the object has a function of that name. Both capitalisations Mesibo used
 * (`Mesibo_onMessage` / gen-1 `Mesibo_OnMessage`, `MesiboGroupcall_OnVideo` /
 * `MesiboGroupcall_onVideo`) are accepted; an object is called once, with the first name found.
 *
 * @module mesibo/dispatch
 */

/** Any object with `Mesibo_on*` / `MesiboGroupcall_On*` methods. */
export type MesiboListener = object;

function alternate(name: string): string | null {
  const m = /^(Mesibo_|MesiboGroupcall_|MesiboGroupcallAdmin_)(on|On)(.*)$/.exec(name);
  if (!m) return null;
  return `${m[1]}${m[2] === 'on' ? 'On' : 'on'}${m[3]}`;
}

/** The callback `name` (or its other capitalisation) of `l`, if it has one. */
export function callbackOf(l: unknown, name: string): ((...args: unknown[]) => unknown) | null {
  if (!l || (typeof l !== 'object' && typeof l !== 'function')) return null;
  const o = l as Record<string, unknown>;
  const f = o[name];
  if (typeof f === 'function') return f as (...args: unknown[]) => unknown;
  const alt = alternate(name);
  const g = alt ? o[alt] : undefined;
  return typeof g === 'function' ? (g as (...args: unknown[]) => unknown) : null;
}

/** True if any listener handles `name`. */
export function handles(listeners: readonly unknown[], name: string): boolean {
  return listeners.some((l) => callbackOf(l, name) !== null);
}

/**
 * Calls `name(...args)` on every listener that has it (each listener at most once). A throwing
 * listener is reported with `console.error` and does not stop the others. Returns how many were
 * called.
 */
export function fire(listeners: readonly unknown[], name: string, ...args: unknown[]): number {
  let n = 0;
  const seen = new Set<unknown>();
  for (const l of listeners) {
    if (seen.has(l)) continue;
    seen.add(l);
    const f = callbackOf(l, name);
    if (!f) continue;
    n++;
    try {
      f.apply(l, args);
    } catch (e) {
      console.error(`mesibo: listener ${name} threw`, e);
    }
  }
  return n;
}
