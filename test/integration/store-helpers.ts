// Shared by the store-*.test.ts suites: store factories with cleanup, an
// event recorder that lets a test await a change (with an upper bound that
// fails the test, never a blind sleep), and a log capture.

import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis-store.js';
import type { StoreLogger, TokenStore } from '../../src/store/types.js';
import type { ChangeKind } from '../../src/tokens/types.js';
import { deleteByPrefix } from '../helpers/redis-server.js';
import { within } from '../helpers/wait.js';

export const nowSec = (): number => Math.floor(Date.now() / 1000);

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set (jest global setup starts a redis-server)');
  return url;
}

export function uniquePrefix(): string {
  return `tokenmq-test:${randomBytes(6).toString('hex')}:`;
}

/** A Redis store that is connected and subscribed before the test uses it. */
export async function openRedisStore(options: RedisStoreOptions = {}): Promise<RedisStore> {
  const store = new RedisStore({ url: redisUrl(), sweepIntervalMs: 100, readyTimeoutMs: 5000, ...options });
  await store.ping();
  await within(store.feedReady(), 5000, 'change feed subscription');
  return store;
}

/** Rejects when `promise` takes longer than `ms`: the upper bound of an awaited event. */
export { within as withTimeout };

export interface Change {
  id: number;
  kind: ChangeKind;
}

/** Records every change a store reports; `next` awaits one that is not yet consumed. */
export class ChangeRecorder {
  readonly changes: Change[] = [];
  private waiters: Array<{ match: (c: Change) => boolean; resolve: (c: Change) => void }> = [];
  readonly stop: () => void;

  constructor(store: TokenStore) {
    this.stop = store.onChange((id, kind) => {
      const change = { id, kind };
      this.changes.push(change);
      for (const waiter of [...this.waiters]) {
        if (waiter.match(change)) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve(change);
        }
      }
    });
  }

  /** The first change (already recorded or still to come) for `id` of `kind`. */
  wait(id: number, kind: ChangeKind, ms = 5000): Promise<Change> {
    const match = (c: Change): boolean => c.id === id && c.kind === kind;
    const seen = this.changes.find(match);
    if (seen) return Promise.resolve(seen);
    return within(new Promise<Change>((resolve) => this.waiters.push({ match, resolve })), ms, `change ${kind} of token ${id}`);
  }

  count(id: number, kind: ChangeKind): number {
    return this.changes.filter((c) => c.id === id && c.kind === kind).length;
  }

  of(id: number): ChangeKind[] {
    return this.changes.filter((c) => c.id === id).map((c) => c.kind);
  }
}

/** A logger that keeps what it is told. */
export class CapturingLogger implements StoreLogger {
  readonly warnings: Array<{ obj: object; msg: string }> = [];
  readonly errors: Array<{ obj: object; msg: string }> = [];
  warn(obj: object, msg: string): void {
    this.warnings.push({ obj, msg });
  }
  error(obj: object, msg: string): void {
    this.errors.push({ obj, msg });
  }
}

/** Stores opened by a test and the Redis prefixes it used: closed and removed after it. */
export class StoreTracker {
  private stores: TokenStore[] = [];
  private prefixes: string[] = [];

  track<T extends TokenStore>(store: T): T {
    this.stores.push(store);
    return store;
  }

  prefix(): string {
    const prefix = uniquePrefix();
    this.prefixes.push(prefix);
    return prefix;
  }

  async cleanup(): Promise<void> {
    const stores = this.stores.splice(0);
    await Promise.all(stores.map((s) => s.close()));
    const prefixes = this.prefixes.splice(0);
    if (prefixes.length === 0) return;
    const redis = new Redis(redisUrl());
    try {
      for (const prefix of prefixes) await deleteByPrefix(redis, prefix);
    } finally {
      redis.disconnect();
    }
  }
}


export type StoreFactory = (options?: { prefix?: string; logger?: StoreLogger }) => Promise<TokenStore>;

/** The two backends of the contract (mosquitto-go-auth style: one suite, every backend). */
export function backends(tracker: StoreTracker): Array<[string, StoreFactory]> {
  return [
    ['MemoryStore', async (options = {}) => tracker.track(new MemoryStore(options.logger ? { logger: options.logger } : {}))],
    [
      'RedisStore',
      async (options = {}) =>
        tracker.track(
          await openRedisStore({ prefix: options.prefix ?? tracker.prefix(), ...(options.logger ? { logger: options.logger } : {}) }),
        ),
    ],
  ];
}
