// A short-lived cache of key → token for REST authentication, as a layer around
// TokenStore.findByKey (STYLE: caching is a layer around the interface). A
// client that polls the API with one token then costs one store round trip per
// `ttlMs` instead of one per request.
//
// Freshness (SPEC §4/§5 revocation): an entry is dropped as soon as the store's
// change feed reports its token created/updated/deleted (on every node, Redis
// pub/sub), and this node's own PUT/DELETE drop theirs synchronously before
// answering. An entry never lives longer than `ttlMs`, which also bounds how
// long a lost change event or a store outage can go unnoticed (after that,
// lookups reach the store again and an unreachable store answers 503).
// Keys are held only as their SHA-256, like the store holds them.
import { createHash } from 'node:crypto';
import type { TokenStore } from '../store/types.js';
import type { Token } from '../tokens/index.js';

interface Entry {
  token: Token;
  /** Epoch ms when it was read from the store. */
  at: number;
}

export interface TokenCacheOptions {
  /** How long an entry is used, ms; 0 disables the cache. */
  ttlMs: number;
  /** Entries kept at most (oldest dropped first). */
  maxEntries?: number;
}

function digest(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export class TokenCache {
  private readonly byHash = new Map<string, Entry>();
  private readonly hashById = new Map<number, string>();
  private readonly maxEntries: number;
  /** Bumped by every invalidation: a lookup that started before one does not fill the cache. */
  private epoch = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly store: TokenStore, private readonly options: TokenCacheOptions) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.unsubscribe = options.ttlMs > 0 ? store.onChange((id) => this.invalidate([id])) : () => {};
  }

  /**
   * The token with this key, from the cache while fresh, else from the store.
   * `fresh: true` skips the cache (e.g. a cached token looks expired, but its
   * `accessed` may have moved elsewhere since).
   */
  async find(key: string, nowMs: number, fresh = false): Promise<Token | null> {
    if (this.options.ttlMs <= 0) return this.store.findByKey(key);
    const hash = digest(key);
    const cached = this.byHash.get(hash);
    if (!fresh && cached && nowMs - cached.at < this.options.ttlMs) return cached.token;
    const epoch = this.epoch;
    const token = await this.store.findByKey(key);
    if (token === null) {
      this.drop(hash);
    } else if (epoch === this.epoch) {
      this.put(hash, token, Date.now());
    }
    return token;
  }

  /** Drops the entries of these tokens (their change is about to be, or was, written). */
  invalidate(ids: readonly number[]): void {
    this.epoch++;
    for (const id of ids) {
      const hash = this.hashById.get(id);
      if (hash !== undefined) this.drop(hash);
    }
  }

  close(): void {
    this.unsubscribe();
    this.byHash.clear();
    this.hashById.clear();
  }

  get size(): number {
    return this.byHash.size;
  }

  private put(hash: string, token: Token, at: number): void {
    this.drop(hash);
    const previous = this.hashById.get(token.id);
    if (previous !== undefined) this.drop(previous);
    while (this.byHash.size >= this.maxEntries) {
      const oldest = this.byHash.keys().next().value;
      if (oldest === undefined) break;
      this.drop(oldest);
    }
    this.byHash.set(hash, { token, at });
    this.hashById.set(token.id, hash);
  }

  private drop(hash: string): void {
    const entry = this.byHash.get(hash);
    if (!entry) return;
    this.byHash.delete(hash);
    if (this.hashById.get(entry.token.id) === hash) this.hashById.delete(entry.token.id);
  }
}
