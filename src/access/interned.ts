// One compiled object per distinct value among live sessions (issue 9: memory
// per session). Fleets give thousands of tokens the same access (placeholders
// make that possible) and the same `ips`; each token's sessions, and every
// token alike, then share one compiled Rights and one IpMatcher instead of
// holding a trie and a BlockList each. An entry lives while something holds
// its value: it is weakly referenced and forgotten once collected.

export class Interned<T extends object> {
  private readonly values = new Map<string, WeakRef<T>>();
  private readonly cleanup = new FinalizationRegistry<string>((key) => {
    // A newer value may have taken the key since: drop the entry only if it is the dead one.
    if (this.values.get(key)?.deref() === undefined) this.values.delete(key);
  });

  /** The value for `key`, built by `build` (which may throw) when none is alive. */
  get(key: string, build: () => T): T {
    const alive = this.values.get(key)?.deref();
    if (alive !== undefined) return alive;
    const value = build();
    this.values.set(key, new WeakRef(value));
    this.cleanup.register(value, key);
    return value;
  }

  /** Distinct values currently known (tests, metrics). */
  get size(): number {
    return this.values.size;
  }
}
