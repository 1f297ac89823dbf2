/**
 * A small typed event emitter. `E` maps event names to the payload type.
 * Listener exceptions are caught and reported with `console.error` so one
 * faulty listener never breaks the protocol handling.
 */
export type Listener<T> = (event: T) => void;

export class Emitter<E extends object> {
  private listeners = new Map<keyof E, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(name: K, fn: Listener<E[K]>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => this.off(name, fn);
  }

  /** Adds a listener called at most once. */
  once<K extends keyof E>(name: K, fn: Listener<E[K]>): () => void {
    const off = this.on(name, (e) => {
      off();
      fn(e);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof E>(name: K, fn: Listener<E[K]>): void {
    this.listeners.get(name)?.delete(fn as Listener<never>);
  }

  /** Removes every listener (of one event, or of all). */
  removeAllListeners(name?: keyof E): void {
    if (name === undefined) this.listeners.clear();
    else this.listeners.delete(name);
  }

  protected emit<K extends keyof E>(name: K, event: E[K]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as Listener<E[K]>)(event);
      } catch (e) {
        console.error(`chorus: "${String(name)}" listener threw`, e);
      }
    }
  }
}
