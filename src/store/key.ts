// Token keys (SPEC §2): 64 random characters [A-Za-z0-9], stored only as their
// SHA-256. Neither function logs; callers must not log a key either (SPEC §4).

import * as crypto from 'node:crypto';
import { createHash, randomFillSync } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const KEY_LENGTH = 64;
/**
 * Largest multiple of the alphabet size that fits in a byte (62 * 4 = 248).
 * Bytes at or above it are thrown away: `byte % 62` over 0..255 would make the
 * first 8 characters more likely than the others (modulo bias).
 */
const ACCEPT_BELOW = 256 - (256 % ALPHABET.length);

/**
 * CSPRNG bytes fetched 4 KiB at a time: one randomFillSync per key costs more
 * than the rest of creating a token. Each byte is used once, then zeroed.
 */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

function randomByte(): number {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const byte = pool[poolOffset] as number;
  pool[poolOffset++] = 0;
  return byte;
}

/** A new random key: 64 characters [A-Za-z0-9] from the CSPRNG, without modulo bias. */
export function generateKey(): string {
  let key = '';
  while (key.length < KEY_LENGTH) {
    const byte = randomByte();
    if (byte < ACCEPT_BELOW) key += ALPHABET[byte % ALPHABET.length];
  }
  return key;
}

const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

/** SHA-256 of the key, lowercase hex: the only form in which a key is stored (SPEC §2, §7). */
export function hashKey(key: string): string {
  // One-shot crypto.hash (Node ≥ 20.12) skips a Hash object per call: it runs at every CONNECT.
  return oneShot !== undefined ? oneShot('sha256', key, 'hex') : createHash('sha256').update(key, 'utf8').digest('hex');
}

/** What `hashKey` returns; used to check stored data. */
export const KEY_HASH = /^[0-9a-f]{64}$/;
