// A TokenStore whose answers the test can hold back: the store has already
// read (and so committed to) its answer, and the caller gets it only when the
// test releases the gate. This opens, on purpose, the window between a store
// read and what the caller does with it (SPEC §4 "no window").
import type { TokenStore } from '../../src/store/types.js';

export class Gate {
  private waiting: Array<() => void> = [];
  private reachedBy: Array<() => void> = [];
  private open = false;
  /** How many calls reached the gate so far. */
  reached = 0;

  /** Called by a held call: resolves when the test releases. */
  pass(): Promise<void> {
    this.reached++;
    for (const r of this.reachedBy.splice(0)) r();
    if (this.open) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Resolves once `n` calls have reached the gate. */
  async whenReached(n = 1): Promise<void> {
    while (this.reached < n) await new Promise<void>((resolve) => this.reachedBy.push(resolve));
  }

  /** Lets every held call (and every later one) through. */
  release(): void {
    this.open = true;
    for (const r of this.waiting.splice(0)) r();
  }
}

type Delay = () => Promise<void>;

export interface HeldStore {
  store: TokenStore;
  /** Holds the answers of the next findByKey calls (after the store read) until the gate is released. */
  holdLookups(): Gate;
  /** Delays every findByKey answer by what `delay` resolves after (randomized races); null: no delay. */
  delayLookups(delay: Delay | null): void;
}

export function holdable(inner: TokenStore): HeldStore {
  let gate: Gate | null = null;
  let delay: Delay | null = null;
  const findByKey = async (key: string): ReturnType<TokenStore['findByKey']> => {
    const token = await inner.findByKey(key);
    const g = gate;
    if (g) await g.pass();
    if (delay) await delay();
    return token;
  };
  // Redis mode's CONNECT reads through findByKeyAndAdmit (lookup and claim in one call): held alike.
  const findByKeyAndAdmit = inner.findByKeyAndAdmit === undefined ? undefined : async (
    ...args: Parameters<NonNullable<TokenStore['findByKeyAndAdmit']>>
  ): ReturnType<NonNullable<TokenStore['findByKeyAndAdmit']>> => {
    const answer = await inner.findByKeyAndAdmit!(...args);
    const g = gate;
    if (g) await g.pass();
    if (delay) await delay();
    return answer;
  };
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'findByKey') return findByKey;
      if (prop === 'findByKeyAndAdmit') return findByKeyAndAdmit;
      // The memory store's synchronous read would bypass the hold: every read goes through findByKey.
      if (prop === 'findByKeyNow') return undefined;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    store,
    holdLookups() {
      gate = new Gate();
      return gate;
    },
    delayLookups(d) {
      delay = d;
    },
  };
}
