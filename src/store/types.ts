import type { ChangeKind, CreatedToken, Token, TokenInput, TokenPatch } from '../tokens/types.js';

export type ChangeListener = (id: number, kind: ChangeKind) => void;

/** Raised when the backend cannot be reached (Redis down): MQTT answers CONNACK 3, REST 503. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

/** Raised when stored data under our prefix cannot be decoded (foreign or corrupted). */
export class StoreDataError extends Error {
  override name = 'StoreDataError';
  constructor(message: string, readonly tokenId?: number) {
    super(message);
  }
}

/**
 * The one backend interface (memory, Redis), checked by one contract suite
 * (test/integration/store-contract.test.ts). Inputs are already validated by
 * src/tokens/validate.ts; stores only persist.
 *
 * Time is passed in (`now`, UNIX seconds) so that tests and callers control it;
 * automatic expiry uses the real clock.
 */
export interface TokenStore {
  /** Creates tokens (ids assigned, keys generated); keys are returned only here. */
  create(inputs: TokenInput[], now: number): Promise<CreatedToken[]>;
  /** Tokens by id; missing ids are skipped. `'all'` lists every stored token. */
  get(ids: number[] | 'all'): Promise<Token[]>;
  /** The token whose key has this SHA-256, or null. Does not check validity. */
  findByKey(key: string): Promise<Token | null>;
  /** Partial, atomic update; returns the updated tokens (missing ids skipped). */
  update(ids: number[], patch: TokenPatch, now: number): Promise<Token[]>;
  /** Deletes; returns the ids that existed. */
  delete(ids: number[]): Promise<number[]>;
  /** Sets `accessed = max(accessed, now)` for many tokens in one round trip. */
  touch(ids: number[], now: number): Promise<void>;
  /** Token created/updated/deleted (including automatic expiry), on every node. Returns an unsubscribe. */
  onChange(listener: ChangeListener): () => void;
  /** Number of stored tokens. */
  count(): Promise<number>;
  /** Resolves when the backend answers; rejects with StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
