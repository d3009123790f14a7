// The token store's public API (SPEC §1: memory without REDIS_URL, Redis with it).

import { MemoryStore } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { StoreLogger, TokenStore } from './types.js';

export * from './types.js';
export { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
export { RedisStore, type RedisStoreOptions } from './redis-store.js';
export { generateKey, hashKey, KEY_LENGTH } from './key.js';
export { checkAncestors, type AncestorRefusal } from './ancestors.js';
export {
  ensureMasterToken,
  checkMasterKey,
  MasterKeyError,
  MASTER_TTL,
  type EnsureMasterResult,
} from './bootstrap.js';

export interface CreateStoreOptions {
  /** Unset or empty: the in-memory store (single node). */
  redisUrl?: string;
  prefix?: string;
  logger?: StoreLogger;
}

export function createStore(options: CreateStoreOptions = {}): TokenStore {
  const { redisUrl, prefix, logger } = options;
  if (!redisUrl) return new MemoryStore(logger ? { logger } : {});
  return new RedisStore({ url: redisUrl, ...(prefix !== undefined ? { prefix } : {}), ...(logger ? { logger } : {}) });
}
