// The gate's cause tables (SPEC §4 CONNACK codes, SPEC §5 HTTP statuses) and
// its order of checks, without sockets: one table per protocol, one row per cause.
import { describe, expect, test } from '@jest/globals';
import { CONNACK_BY_CAUSE, HTTP_BY_CAUSE, LOG_REASON, REFUSAL_CAUSES, UNAUTHORIZED_LOCATION } from '../../src/access/causes.js';
import { AccessGate } from '../../src/access/gate.js';
import { AuthLimiter } from '../../src/access/auth-limiter.js';
import { TouchBatcher } from '../../src/access/touch-batcher.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { StoreUnavailableError } from '../../src/store/types.js';
import type { Token } from '../../src/tokens/types.js';

describe('cause tables (SPEC §4, §5)', () => {
  test('every cause has a CONNACK code, an HTTP status with a reason, and a log reason', () => {
    for (const cause of REFUSAL_CAUSES) {
      expect([2, 3, 4, 5]).toContain(CONNACK_BY_CAUSE[cause]);
      expect(HTTP_BY_CAUSE[cause].status).toBeGreaterThanOrEqual(400);
      expect(HTTP_BY_CAUSE[cause].reason.length).toBeGreaterThan(0);
      expect(LOG_REASON[cause].length).toBeGreaterThan(0);
    }
  });

  test('SPEC §4: 4 for unknown, malformed or expired; 5 for disabled, ips, rights, will, guard, unreadable; 2 client id; 3 store', () => {
    expect(CONNACK_BY_CAUSE.bad_key).toBe(4);
    expect(CONNACK_BY_CAUSE.expired).toBe(4);
    for (const c of ['disabled', 'ip_denied', 'no_mqtt_rights', 'will_denied', 'rate_limited', 'token_unreadable'] as const) {
      expect(CONNACK_BY_CAUSE[c]).toBe(5);
    }
    expect(CONNACK_BY_CAUSE.client_id_rejected).toBe(2);
    expect(CONNACK_BY_CAUSE.store_unavailable).toBe(3);
  });

  test('SPEC §5: 401 for unknown, expired, disabled, unreadable and ips (fixed reason); 429 for the guard; 503 store', () => {
    for (const c of ['bad_key', 'expired', 'disabled', 'token_unreadable', 'ip_denied'] as const) expect(HTTP_BY_CAUSE[c].status).toBe(401);
    expect(HTTP_BY_CAUSE.ip_denied.reason).toBe(UNAUTHORIZED_LOCATION);
    expect(UNAUTHORIZED_LOCATION).toBe('using token from unauthorized location');
    expect(HTTP_BY_CAUSE.rate_limited.status).toBe(429);
    expect(HTTP_BY_CAUSE.store_unavailable.status).toBe(503);
  });
});

describe('AccessGate order (SPEC §4)', () => {
  const now = Math.floor(Date.now() / 1000);
  const base: Token = {
    id: 7, info: '', enabled: true, expire: 0, ttl: 3600, created: now, accessed: now,
    access: { type: 0 }, ips: '', metadata: {}, parent: 0, clientids: '', limits: { sessions: 0, publish_rate: 0 },
  };
  function gate(limit = 0) {
    const limiter = new AuthLimiter(limit, 60);
    return new AccessGate({ limiter, touch: new TouchBatcher(new MemoryStore()) });
  }
  const KEY = 'k'.repeat(64);

  test('unknown and expired count toward the guard; disabled and ips do not', async () => {
    const g = gate(2);
    expect(g.judge({ ...base, enabled: false }, '1.2.3.4')).toMatchObject({ ok: false, cause: 'disabled' });
    expect(g.judge({ ...base, ips: '10.*' }, '1.2.3.4')).toMatchObject({ ok: false, cause: 'ip_denied' });
    expect(g.limiter.blocked('1.2.3.4', Date.now())).toBe(false);
    expect(g.judge(null, '1.2.3.4')).toMatchObject({ ok: false, cause: 'bad_key', key: 'unknown' });
    expect(g.judge({ ...base, ttl: 10, created: now - 100, accessed: now - 100 }, '1.2.3.4')).toMatchObject({ ok: false, cause: 'expired' });
    // Over the limit: refused before the lookup is asked.
    let asked = 0;
    const d = await g.authorize(KEY, '1.2.3.4', { lookup: async () => { asked++; return base; } });
    expect(d).toMatchObject({ ok: false, cause: 'rate_limited' });
    expect(asked).toBe(0);
  });

  test('expiry is judged before enabled, enabled before ips, ips before the caller checks (first refusal wins)', async () => {
    const g = gate();
    const expiredDisabled = { ...base, enabled: false, ttl: 10, created: now - 100, accessed: now - 100 };
    expect(g.judge(expiredDisabled, '1.2.3.4')).toMatchObject({ cause: 'expired' });
    expect(g.judge({ ...base, enabled: false, ips: '10.*' }, '1.2.3.4')).toMatchObject({ cause: 'disabled' });
    const calls: string[] = [];
    const checks = [
      () => { calls.push('a'); return null; },
      async () => { calls.push('b'); return 'client_id_rejected' as const; },
      () => { calls.push('c'); return 'no_mqtt_rights' as const; },
    ];
    const KEYED = 'q'.repeat(64);
    expect(await g.authorize(KEYED, '1.2.3.4', { lookup: async () => ({ ...base, ips: '10.*' }), checks })).toMatchObject({ cause: 'ip_denied' });
    expect(calls).toEqual([]);
    expect(await g.authorize(KEYED, '1.2.3.4', { lookup: async () => base, checks })).toMatchObject({ cause: 'client_id_rejected', tokenId: 7 });
    expect(calls).toEqual(['a', 'b']);
    // A check that hits the store when it is away: CONNACK 3 / 503, as the lookup would.
    const down = [async () => { throw new StoreUnavailableError('down'); }];
    expect(await g.authorize(KEYED, '1.2.3.4', { lookup: async () => base, checks: down })).toMatchObject({ cause: 'store_unavailable' });
  });

  test('a missing key is refused without counting; a malformed one counts', async () => {
    const g = gate(1);
    const lookup = async () => base;
    expect(await g.authorize(undefined, '1.2.3.5', { lookup })).toMatchObject({ cause: 'bad_key', key: 'missing' });
    expect(g.limiter.blocked('1.2.3.5', Date.now())).toBe(false);
    expect(await g.authorize('short', '1.2.3.5', { lookup })).toMatchObject({ cause: 'bad_key', key: 'malformed' });
    expect(g.limiter.blocked('1.2.3.5', Date.now())).toBe(true);
    // An MQTT CONNECT with an empty username and password is a (malformed) guess: counted.
    const h = gate(1);
    expect(await h.authorize('', '1.2.3.6', { lookup })).toMatchObject({ cause: 'bad_key', key: 'malformed' });
    expect(h.limiter.blocked('1.2.3.6', Date.now())).toBe(true);
  });

  test('access that does not compile is unreadable (SPEC §2), and two tokens with equal access share compiled rights', () => {
    const g = gate();
    const bad = { ...base, ips: '300.1.1.1/99' };
    expect(g.judge(bad, '1.2.3.4')).toMatchObject({ cause: 'token_unreadable', tokenId: 7 });
    const a = g.judge({ ...base, id: 1, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['publish'] }] } }, '1.2.3.4');
    const b = g.judge({ ...base, id: 2, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['publish'] }] } }, '1.2.3.4');
    expect(a.ok && b.ok && a.compiled.rights === b.compiled.rights).toBe(true);
  });
});
