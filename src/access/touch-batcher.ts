// SPEC §2: `accessed` becomes "now" on every authenticated REST request, at
// MQTT connect and disconnect, and periodically while a session is live, never
// per message. One batched `touch` per tick for every token due, whoever asked;
// failed ids are kept for the next tick (store away: SPEC §7).
import type { TokenStore } from '../store/types.js';
import { StoreUnavailableError } from '../store/types.js';

export const TOUCH_TICK_MS = 250;

/** Who else has tokens to touch (enforcement: its held tokens) and wants the outcome. */
export interface TouchParty {
  /** Adds the ids due at `nowMs` (every one it holds when `all`). */
  collectDue(ids: Set<number>, nowMs: number, all: boolean): void;
  /** The store answered: `missing` were not written (gone, unreadable or expired). */
  written(ids: readonly number[], missing: ReadonlySet<number>, nowMs: number): void;
}

export interface TouchBatcherOptions {
  onStoreError?(): void;
  /** A failure other than the store being away. */
  onError?(err: unknown, what: string): void;
}

export class TouchBatcher {
  private readonly pending = new Set<number>();
  private touching: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private party: TouchParty | null = null;

  constructor(private readonly store: Pick<TokenStore, 'touch'>, private readonly options: TouchBatcherOptions = {}) {}

  /** One party (the broker's enforcement) adds its due tokens and hears the outcome. */
  attach(party: TouchParty | null): void {
    this.party = party;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(false), TOUCH_TICK_MS);
    this.timer.unref();
  }

  /** Stops the tick and writes what is pending (SPEC §1 shutdown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush(true);
  }

  /** Writes `accessed = now` for this token at the next tick (≤ 250 ms), batched. */
  soon(tokenId: number): void {
    this.pending.add(tokenId);
  }

  flush(all: boolean): Promise<void> {
    if (this.touching) return all ? this.touching.then(() => this.flush(true)) : this.touching;
    const now = Date.now();
    const ids = new Set(this.pending);
    this.party?.collectDue(ids, now, all);
    if (ids.size === 0) return Promise.resolve();
    this.pending.clear();
    const list = [...ids];
    const party = this.party;
    this.touching = this.store.touch(list, Math.floor(now / 1000)).then((missing) => {
      party?.written(list, new Set(missing), now);
    }, (err: unknown) => {
      this.options.onStoreError?.();
      for (const id of list) this.pending.add(id);
      if (!(err instanceof StoreUnavailableError)) this.options.onError?.(err, 'touch failed');
    }).catch((err: unknown) => {
      this.options.onError?.(err, 'touch bookkeeping failed');
    }).finally(() => { this.touching = null; });
    return this.touching;
  }
}
