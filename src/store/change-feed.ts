// Listener bookkeeping for `TokenStore.onChange`, shared by both stores. A
// listener that throws is logged and the others still run: one faulty
// consumer must not stop session enforcement (SPEC §4) in another.

import type { ChangeKind } from '../tokens/types.js';
import type { ChangeListener, StoreLogger } from './types.js';

export class ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();

  constructor(private readonly logger: StoreLogger) {}

  /** Adds a listener; the returned function removes it (idempotent). */
  add(listener: ChangeListener): () => void {
    // A wrapper, so the same function added twice is called twice and removed once per unsubscribe.
    const entry: ChangeListener = (id, kind) => listener(id, kind);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /** Calls every listener now. Callers make sure this is never inside a store call. */
  dispatch(id: number, kind: ChangeKind): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(id, kind);
      } catch (err) {
        this.logger.error({ err, tokenId: id, kind }, 'token change listener threw');
      }
    }
  }

  /** Dispatches in a microtask, once the store call that changed something has returned (memory store). */
  dispatchLater(id: number, kind: ChangeKind): void {
    queueMicrotask(() => this.dispatch(id, kind));
  }

  clear(): void {
    this.listeners.clear();
  }
}

/** A logger that drops everything: the default when none is given. */
export const SILENT_LOGGER: StoreLogger = {
  warn: () => {},
  error: () => {},
};
