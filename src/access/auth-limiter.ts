// Brute-force guard of SPEC §4: attempts with an unknown or malformed key are
// counted per address in a fixed window; while an address is over the limit
// every attempt from it is refused before the store is asked. Shared by MQTT
// and REST, which may hand the same client over in different textual forms:
// the guard normalises itself, so both count under one key.
import { isIP } from 'node:net';
import { normalizeIp } from '../tokens/index.js';

/** SPEC §4: at most this many addresses are tracked; the oldest are forgotten first. */
export const MAX_TRACKED_ADDRESSES = 100_000;

/**
 * The unit counted (SPEC §4): an IPv4 address (IPv4-mapped IPv6 included), or
 * the /64 of an IPv6 address, since one subscriber routinely holds a whole /64
 * and could otherwise take a fresh address for every attempt.
 */
export function limiterKey(ip: string): string {
  const address = normalizeIp(ip);
  if (isIP(address) !== 6) return address;
  // normalizeIp gives RFC 5952 text: hex groups and at most one "::", no dotted tail.
  const gap = address.indexOf('::');
  let groups: string[];
  if (gap === -1) {
    groups = address.split(':');
  } else {
    const head = gap === 0 ? [] : address.slice(0, gap).split(':');
    const tail = gap + 2 === address.length ? [] : address.slice(gap + 2).split(':');
    groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  }
  return `${groups.slice(0, 4).join(':')}::/64`;
}

interface Window {
  key: string;
  start: number;
  failures: number;
}

export class AuthLimiter {
  /** Key → its current window. */
  private readonly windows = new Map<string, Window>();
  /**
   * The windows in the order they started, oldest at `head`: expired ones are
   * dropped from the front and, at the bound, the oldest goes first. An entry
   * is stale once its key holds another window or none (restarted, or dropped
   * by `blocked`); stale entries are skipped. A separate queue, because
   * iterating a Map from its start after many deletes walks over their holes
   * (quadratic under a spray).
   */
  private order: Window[] = [];
  private head = 0;
  private readonly windowMs: number;

  /** limit 0 disables the guard. windowSec is the window length. */
  constructor(private readonly limit: number, windowSec: number, private readonly maxTracked = MAX_TRACKED_ADDRESSES) {
    this.windowMs = windowSec * 1000;
  }

  get enabled(): boolean {
    return this.limit > 0 && this.windowMs > 0;
  }

  /** True while `ip` (its /64 for IPv6) has used up its failures in the current window. */
  blocked(ip: string, nowMs: number): boolean {
    if (!this.enabled) return false;
    const key = limiterKey(ip);
    const w = this.windows.get(key);
    if (!w) return false;
    if (nowMs - w.start >= this.windowMs) {
      this.windows.delete(key);
      return false;
    }
    return w.failures >= this.limit;
  }

  /** Counts one failed attempt (unknown or malformed key). */
  fail(ip: string, nowMs: number): void {
    if (!this.enabled) return;
    this.forgetExpired(nowMs);
    const key = limiterKey(ip);
    const w = this.windows.get(key);
    if (w && nowMs - w.start < this.windowMs) {
      w.failures++; // same window: its place in the order is unchanged
      return;
    }
    // Bounded memory under a spray from many addresses: forget the oldest window.
    if (!w && this.windows.size >= this.maxTracked) this.forgetOldest();
    const fresh: Window = { key, start: nowMs, failures: 1 };
    this.windows.set(key, fresh);
    this.order.push(fresh);
    this.compact();
  }

  /** Number of addresses tracked (for metrics and tests). */
  get size(): number {
    return this.windows.size;
  }

  private live(w: Window): boolean {
    return this.windows.get(w.key) === w;
  }

  // Windows start in queue order, so the expired ones are at the front. Amortised O(1) per call.
  private forgetExpired(nowMs: number): void {
    while (this.head < this.order.length) {
      const w = this.order[this.head]!;
      if (this.live(w)) {
        if (nowMs - w.start < this.windowMs) return;
        this.windows.delete(w.key);
      }
      this.head++;
    }
  }

  private forgetOldest(): void {
    while (this.head < this.order.length) {
      const w = this.order[this.head++]!;
      if (this.live(w)) {
        this.windows.delete(w.key);
        return;
      }
    }
  }

  // Drops the consumed front, and stale entries once they outnumber the live ones: the queue stays O(tracked).
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    if (this.order.length > 2 * this.windows.size + 1024) {
      this.order = this.order.slice(this.head).filter((w) => this.live(w));
      this.head = 0;
    }
  }
}
