// SPEC §2 validity at time t. Pure: the caller passes `now` in UNIX seconds.

import type { Token } from './types.js';

/** The fields that decide validity. */
export type TokenTimes = Pick<Token, 'enabled' | 'expire' | 'ttl' | 'created' | 'accessed'>;

/** Since the last use, `created` or `accessed`: what a ttl counts from (SPEC §2). */
export function lastUse(token: Pick<Token, 'created' | 'accessed'>): number {
  return Math.max(token.created, token.accessed);
}

/**
 * SPEC §2: valid at t iff `enabled` and
 * (`expire > 0 && t < expire` or `ttl > 0 && t < max(created, accessed) + ttl`).
 */
export function isValid(token: TokenTimes, nowSec: number): boolean {
  return token.enabled && !isExpired(token, nowSec);
}

/**
 * Invalid by time alone, whatever `enabled` says: such a token is deleted
 * automatically (SPEC §2), whereas a disabled one stays stored.
 * A token with neither clock in use counts as expired.
 */
export function isExpired(token: Omit<TokenTimes, 'enabled'>, nowSec: number): boolean {
  if (token.expire > 0 && nowSec < token.expire) return false;
  if (token.ttl > 0 && nowSec < lastUse(token) + token.ttl) return false;
  return true;
}

/** Why a token's clocks keep it from being valid at `now`: neither in use, or both run out. */
export type ClockProblem = 'no_clock' | 'expired';

/**
 * SPEC §2, the one place for "a token needs a non-zero expire or ttl and must
 * not be already invalid by time": validation (create, PUT) and both stores'
 * own guards ask here. null: the clocks are fine at `now`.
 */
export function clockProblem(token: Omit<TokenTimes, 'enabled'>, nowSec: number): ClockProblem | null {
  if (token.expire === 0 && token.ttl === 0) return 'no_clock';
  return isExpired(token, nowSec) ? 'expired' : null;
}

/**
 * UNIX seconds from which the token is invalid by time if nothing touches it:
 * the later of the clocks in use (valid by time iff `now < deadline`).
 * Ignores `enabled`. 0 when neither clock is in use (never valid).
 */
export function deadline(token: Omit<TokenTimes, 'enabled'>): number {
  let end = 0;
  if (token.expire > 0) end = token.expire;
  if (token.ttl > 0) end = Math.max(end, lastUse(token) + token.ttl);
  return end;
}

/**
 * How often a live session should refresh `accessed` (SPEC §2: at most every
 * min(60 s, ttl/4), never per message), in seconds. Without a ttl, `accessed`
 * does not affect validity and 60 s is enough for listings.
 */
export function touchInterval(token: Pick<Token, 'ttl'>): number {
  return token.ttl > 0 ? Math.min(60, token.ttl / 4) : 60;
}
