import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { clockProblem, deadline, isExpired, isValid, touchInterval, type TokenTimes } from '../../src/tokens/validity.js';

const T0 = 1764300000;

function token(fields: Partial<TokenTimes>): TokenTimes {
  return { enabled: true, expire: 0, ttl: 0, created: T0, accessed: T0, ...fields };
}

describe('validity at time t (SPEC §2)', () => {
  test('an expire token is valid strictly before expire', () => {
    const t = token({ expire: T0 + 100 });
    expect(isValid(t, T0 + 99)).toBe(true);
    expect(isValid(t, T0 + 100)).toBe(false);
    expect(isExpired(t, T0 + 100)).toBe(true);
    expect(deadline(t)).toBe(T0 + 100);
  });

  test('a ttl token is valid for ttl seconds after its last use (created or accessed)', () => {
    const t = token({ ttl: 60, accessed: T0 + 500 });
    expect(isValid(t, T0 + 559)).toBe(true);
    expect(isValid(t, T0 + 560)).toBe(false);
    expect(deadline(t)).toBe(T0 + 560);
    // `accessed` older than `created` (never used yet): counts from created.
    expect(deadline(token({ ttl: 60, accessed: 0 }))).toBe(T0 + 60);
  });

  test('with both clocks in use, the later one decides', () => {
    const t = token({ expire: T0 + 10, ttl: 100 });
    expect(isValid(t, T0 + 50)).toBe(true);
    expect(deadline(t)).toBe(T0 + 100);
    expect(deadline(token({ expire: T0 + 1000, ttl: 100 }))).toBe(T0 + 1000);
  });

  test('a disabled token is refused but not expired: it stays stored', () => {
    const t = token({ enabled: false, ttl: 60 });
    expect(isValid(t, T0)).toBe(false);
    expect(isExpired(t, T0)).toBe(false);
  });

  test('a token with neither clock is never valid, and has deadline 0', () => {
    expect(isValid(token({}), T0)).toBe(false);
    expect(isExpired(token({}), 0)).toBe(true);
    expect(deadline(token({}))).toBe(0);
  });

  test('accessed is refreshed at most every min(60 s, ttl/4) (SPEC §2)', () => {
    expect(touchInterval({ ttl: 86400 })).toBe(60);
    expect(touchInterval({ ttl: 40 })).toBe(10);
    expect(touchInterval({ ttl: 0 })).toBe(60);
  });
});

describe('validity properties (SPEC §2)', () => {
  const clock = fc.integer({ min: 0, max: 2 ** 32 });
  const tokenArb = fc.record({
    enabled: fc.boolean(),
    expire: fc.oneof(fc.constant(0), clock),
    ttl: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10 ** 6 })),
    created: clock,
    accessed: fc.oneof(fc.constant(0), clock),
  });
  const times = fc.integer({ min: 0, max: 2 ** 32 + 10 ** 6 });

  test('isValid is exactly the SPEC formula', () => {
    fc.assert(
      fc.property(tokenArb, times, (t, now) => {
        const byExpire = t.expire > 0 && now < t.expire;
        const byTtl = t.ttl > 0 && now < Math.max(t.created, t.accessed) + t.ttl;
        return isValid(t, now) === (t.enabled && (byExpire || byTtl)) && isExpired(t, now) === !(byExpire || byTtl);
      }),
      { numRuns: 1000 },
    );
  });

  test('valid by time iff now < deadline', () => {
    fc.assert(
      fc.property(tokenArb, times, (t, now) => isExpired(t, now) === !(now < deadline(t))),
      { numRuns: 1000 },
    );
  });

  test('validity only ends with time: valid at t2 implies valid at any earlier t1', () => {
    fc.assert(
      fc.property(tokenArb, times, times, (t, a, b) => {
        const [t1, t2] = a <= b ? [a, b] : [b, a];
        return !isValid(t, t2) || isValid(t, t1);
      }),
      { numRuns: 1000 },
    );
  });

  test('touching a ttl token at t keeps it valid until t + ttl', () => {
    fc.assert(
      fc.property(tokenArb, times, fc.nat(), (t, now, later) => {
        if (t.ttl === 0 || !t.enabled) return true;
        const touched = { ...t, accessed: now };
        return isValid(touched, now + (later % t.ttl));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('clockProblem: the one rule for "needs expire or ttl and not already expired" (SPEC §2)', () => {
  const t = (expire: number, ttl: number, created = 1000, accessed = 1000) => ({ expire, ttl, created, accessed });
  test('no clock, run out, fine', () => {
    expect(clockProblem(t(0, 0), 1000)).toBe('no_clock');
    expect(clockProblem(t(1000, 0), 1000)).toBe('expired');
    expect(clockProblem(t(0, 10, 900, 950), 960)).toBe('expired');
    expect(clockProblem(t(0, 10, 900, 955), 960)).toBeNull();
    expect(clockProblem(t(1001, 0), 1000)).toBeNull();
    expect(clockProblem(t(500, 600), 1000)).toBeNull();
  });
});
