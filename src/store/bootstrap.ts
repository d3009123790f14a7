// Start-up master token (SPEC §1): with MASTER_TOKEN, a master token with
// exactly that key exists afterwards; without it, the first start on an empty
// store creates one and hands its key back once, for main.ts to print.
// Both paths are safe when several nodes start together on one Redis.

import { ACCESS_MASTER } from '../tokens/types.js';
import { KEY_MAX_LENGTH, KEY_MIN_LENGTH } from '../tokens/key-shape.js';
import type { TokenStore } from './types.js';

/** SPEC §1: bootstrap masters live a year from their last use. */
export const MASTER_TTL = 31536000;
export const MASTER_KEY_MIN_LENGTH = KEY_MIN_LENGTH;
/** An upper bound that no sane secret reaches; keeps a pasted file out of the key index. */
export const MASTER_KEY_MAX_LENGTH = KEY_MAX_LENGTH;
const MASTER_KEY_CHARS = /^[A-Za-z0-9]+$/;

/** MASTER_TOKEN is unusable. The message never contains the key. */
export class MasterKeyError extends Error {
  override name = 'MasterKeyError';
}

export interface EnsureMasterResult {
  /** The new key, only when a master was generated (no MASTER_TOKEN): print it once. */
  key?: string;
  created: boolean;
  /** The master's id; unknown when a master already existed and no MASTER_TOKEN was given. */
  id?: number;
  /** Set when the MASTER_TOKEN token exists but is not an enabled master (left as the operator made it). */
  warning?: string;
}

/** Throws MasterKeyError unless `key` is 16..256 characters of [A-Za-z0-9]. */
export function checkMasterKey(key: string): void {
  if (key.length < MASTER_KEY_MIN_LENGTH || key.length > MASTER_KEY_MAX_LENGTH) {
    throw new MasterKeyError(
      `MASTER_TOKEN must be ${MASTER_KEY_MIN_LENGTH} to ${MASTER_KEY_MAX_LENGTH} characters long (it has ${key.length})`,
    );
  }
  if (!MASTER_KEY_CHARS.test(key)) throw new MasterKeyError('MASTER_TOKEN may contain only the characters A-Z, a-z and 0-9');
}

export async function ensureMasterToken(
  store: TokenStore,
  options: { masterKey?: string; now: number },
): Promise<EnsureMasterResult> {
  const { masterKey, now } = options;
  // An empty variable counts as unset, as in config files.
  if (masterKey === undefined || masterKey === '') {
    const created = await store.createMasterIfNone({ info: 'bootstrap master', ttl: MASTER_TTL }, now);
    return created ? { key: created.key, created: true, id: created.id } : { created: false };
  }
  checkMasterKey(masterKey);
  const existing = await store.findByKey(masterKey);
  // Idempotent: left as it is, only its ttl clock restarted (SPEC §2 `accessed`). A token that
  // the touch finds gone (expired, or deleted since the lookup) does not count: create it below.
  if (existing && (await store.touch([existing.id], now)).length === 0) {
    const intact = existing.enabled && existing.access.type === ACCESS_MASTER;
    return intact
      ? { created: false, id: existing.id }
      : { created: false, id: existing.id, warning: `the MASTER_TOKEN token ${existing.id} is not an enabled master token; left unchanged` };
  }
  const input = { info: 'bootstrap master (MASTER_TOKEN)', ttl: MASTER_TTL, access: { type: ACCESS_MASTER } } as const;
  const created = await store.createWithKey(input, masterKey, now);
  if (created) return { created: true, id: created.id };
  // Another node created it between our lookup and our create.
  const raced = await store.findByKey(masterKey);
  if (!raced) throw new Error('MASTER_TOKEN: the token was neither created nor found (deleted during start-up?)');
  return { created: false, id: raced.id };
}
