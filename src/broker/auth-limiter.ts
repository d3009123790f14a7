// Brute-force guard of SPEC §4: attempts with an unknown or malformed key are
// counted per IP in a fixed window; while an IP is over the limit every attempt
// from it is refused before the store is asked. Shared by MQTT and REST.

interface Window {
  start: number;
  failures: number;
}

export class AuthLimiter {
  private readonly windows = new Map<string, Window>();
  private lastPrune = 0;

  /** limit 0 disables the guard. windowSec is the window length. */
  constructor(private readonly limit: number, private readonly windowSec: number) {}

  get enabled(): boolean {
    return this.limit > 0 && this.windowSec > 0;
  }

  /** True while `ip` has used up its failures in the current window. */
  blocked(ip: string, nowMs: number): boolean {
    if (!this.enabled) return false;
    const w = this.windows.get(ip);
    if (!w) return false;
    if (nowMs - w.start >= this.windowSec * 1000) {
      this.windows.delete(ip);
      return false;
    }
    return w.failures >= this.limit;
  }

  /** Counts one failed attempt (unknown or malformed key). */
  fail(ip: string, nowMs: number): void {
    if (!this.enabled) return;
    this.prune(nowMs);
    const w = this.windows.get(ip);
    if (!w || nowMs - w.start >= this.windowSec * 1000) this.windows.set(ip, { start: nowMs, failures: 1 });
    else w.failures++;
  }

  /** Number of IPs tracked (for metrics and tests). */
  get size(): number {
    return this.windows.size;
  }

  // Bounded memory under a spray from many addresses: drop finished windows once per window.
  private prune(nowMs: number): void {
    if (nowMs - this.lastPrune < this.windowSec * 1000) return;
    this.lastPrune = nowMs;
    for (const [ip, w] of this.windows) {
      if (nowMs - w.start >= this.windowSec * 1000) this.windows.delete(ip);
    }
  }
}
