// REST authentication and authorisation (SPEC §5 auth header, §4 brute-force
// guard and client IP, §3 access types), over real HTTP on ephemeral ports.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { BlockList } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { StoreUnavailableError, type TokenStore } from '../../src/store/types.js';
import { refusedCode } from '../helpers/mqtt.js';
import { eventually, reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, storedTokens, uniquePrefix, type TestServer } from '../helpers/server.js';

const now = (): number => Math.floor(Date.now() / 1000);
const WRONG_KEY = 'A'.repeat(64);

describe.each(['memory', 'redis'] as const)('REST auth with the %s store (SPEC §5)', (kind) => {
  let srv: TestServer;
  let master: string;
  const get = (path: string, key?: string, headers?: Record<string, string>) => rest(srv.httpUrl, 'GET', path, { key, headers });

  beforeAll(async () => {
    srv = await startTestServer({ store: kind });
    master = (await srv.token({ access: { type: 1 } })).key;
  });
  afterAll(async () => {
    await srv.close();
  });

  test('a valid token gets 200 with FlespiToken and with Bearer', async () => {
    const t = await srv.token({ info: 'me' });
    const a = await get('/auth/info', t.key);
    expect(a.status).toBe(200);
    expect(a.body.result).toEqual([expect.objectContaining({ id: t.id, info: 'me' })]);
    expect(a.body.result[0]).not.toHaveProperty('key');
    const b = await get('/auth/info', undefined, { authorization: `Bearer ${t.key}` });
    expect(b.status).toBe(200);
    const c = await get('/auth/info', undefined, { authorization: `flespitoken   ${t.key}` });
    expect(c.status).toBe(200);
  });

  test('401 for a missing, malformed or unknown key, with a WWW-Authenticate challenge', async () => {
    const missing = await get('/auth/info');
    expect(missing.status).toBe(401);
    expect(reasonOf(missing)).toMatch(/missing Authorization/);
    expect(missing.headers.get('www-authenticate')).toMatch(/FlespiToken/);
    const basic = await get('/auth/info', undefined, { authorization: 'Basic dXNlcjpwYXNz' });
    expect(basic.status).toBe(401);
    expect(reasonOf(basic)).toMatch(/malformed token/);
    const short = await get('/auth/info', 'abc');
    expect(reasonOf(short)).toMatch(/malformed token/);
    const unknown = await get('/auth/info', WRONG_KEY);
    expect(unknown.status).toBe(401);
    expect(reasonOf(unknown)).toBe('unknown token');
  });

  test('401 for an expired token, 401 for a disabled one', async () => {
    // Created 100 s ago with a 50 s ttl: invalid by time now, whether or not expiry has removed it yet.
    const [expired] = await srv.store.create([{ ttl: 50 }], now() - 100);
    if (expired) {
      const res = await get('/auth/info', expired.key);
      expect(res.status).toBe(401);
      expect(['token expired', 'unknown token']).toContain(reasonOf(res));
    }
    const soon = await srv.token({ expire: now() + 1, ttl: 0 });
    await eventually(async () => (await get('/auth/info', soon.key)).status === 401, 5000, 'token to expire');
    const res = await get('/auth/info', soon.key);
    expect(['token expired', 'unknown token']).toContain(reasonOf(res));

    const disabled = await srv.token({ enabled: false });
    const d = await get('/auth/info', disabled.key);
    expect(d.status).toBe(401);
    expect(reasonOf(d)).toBe('token disabled');
  });

  test('401 "using token from unauthorized location" when ips excludes the caller (SPEC §5)', async () => {
    const t = await srv.token({ ips: '10.*' });
    const res = await get('/auth/info', t.key);
    expect(res.status).toBe(401);
    expect(reasonOf(res)).toBe('using token from unauthorized location');
    // X-Forwarded-For from an untrusted peer is ignored (it could be forged).
    const forged = await get('/auth/info', t.key, { 'x-forwarded-for': '10.1.2.3' });
    expect(reasonOf(forged)).toBe('using token from unauthorized location');
    const ok = await srv.token({ ips: '127.0.0.1, 10.*' });
    expect((await get('/auth/info', ok.key)).status).toBe(200);
  });

  test('403 for a standard token on /platform/tokens; 200 on /mqtt/sessions (SPEC §3)', async () => {
    const t = await srv.token({ access: { type: 0 } });
    const res = await get('/platform/tokens/all', t.key);
    expect(res.status).toBe(403);
    expect(reasonOf(res)).toMatch(/does not allow GET \/platform\/tokens\/all/);
    expect((await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: t.key, body: { ttl: 60, access: { type: 1 } } })).status).toBe(403);
    expect((await get('/mqtt/sessions/all', t.key)).status).toBe(200);
    // Case games on the path do not reach /platform either (the router is case-sensitive).
    expect((await get('/PLATFORM/tokens/all', t.key)).status).toBe(404);
  });

  test('an ACL token with GET on mqtt/sessions may list but not close sessions', async () => {
    const t = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt/sessions', methods: ['GET'] }] } });
    const list = await get('/mqtt/sessions/all', t.key);
    expect(list.status).toBe(200);
    expect(Array.isArray(list.body.result)).toBe(true);
    const del = await rest(srv.httpUrl, 'DELETE', '/mqtt/sessions/all', { key: t.key });
    expect(del.status).toBe(403);
    expect(reasonOf(del)).toMatch(/does not allow DELETE/);
    // /auth/info is open to every valid token, whatever its ACL.
    expect((await get('/auth/info', t.key)).status).toBe(200);
  });

  test('an ACL token cannot create a master token nor reach /platform, whatever its ACL says', async () => {
    const t = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', methods: ['GET', 'POST', 'PUT', 'DELETE'] }] } });
    const before = await storedTokens(srv.store);
    const create = await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: t.key, body: { ttl: 60, access: { type: 1 } } });
    expect(create.status).toBe(403);
    const escalate = await rest(srv.httpUrl, 'PUT', `/platform/tokens/${t.id}`, { key: t.key, body: { access: { type: 1 } } });
    expect(escalate.status).toBe(403);
    expect(await storedTokens(srv.store)).toEqual(before);
    // Nor can a master hand an ACL token /platform rights (SPEC §3).
    const grant = await rest(srv.httpUrl, 'PUT', `/platform/tokens/${t.id}`, {
      key: master, body: { access: { type: 2, acl: [{ uri: 'platform/tokens', methods: ['GET'] }] } },
    });
    expect(grant.status).toBe(400);
    expect(reasonOf(grant)).toMatch(/access\.acl\[0\]\.uri: ACL tokens can never be granted \/platform/);
  });

  test('every authenticated request refreshes accessed (SPEC §2)', async () => {
    const [t] = await srv.store.create([{ ttl: 3600 }], now() - 100);
    expect(t!.accessed).toBe(now() - 100);
    const started = now();
    expect((await get('/auth/info', t!.key)).status).toBe(200);
    await eventually(async () => ((await srv.store.get([t!.id]))[0]?.accessed ?? 0) >= started, 5000, 'accessed to move');
  });
});

describe('client IP behind a trusted proxy (SPEC §4 "Client IP")', () => {
  let srv: TestServer;
  beforeAll(async () => {
    const trusted = new BlockList();
    trusted.addAddress('127.0.0.1');
    srv = await startTestServer({ trustProxy: trusted });
  });
  afterAll(async () => {
    await srv.close();
  });

  test('the right-most untrusted X-Forwarded-For hop is the caller', async () => {
    const t = await srv.token({ ips: '10.*' });
    const headers = (xff: string) => ({ authorization: `FlespiToken ${t.key}`, 'x-forwarded-for': xff });
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { headers: headers('10.1.2.3') })).status).toBe(200);
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { headers: headers('10.1.2.3, 192.168.1.1') })).status).toBe(401);
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status).toBe(401);
  });
});

describe('brute-force guard shared with MQTT (SPEC §4)', () => {
  let srv: TestServer;
  let lookups = 0;
  beforeAll(async () => {
    const memory = new MemoryStore();
    const counting = new Proxy(memory, {
      get(target, prop, receiver) {
        if (prop === 'findByKey') {
          return (key: string) => {
            lookups++;
            return target.findByKey(key);
          };
        }
        if (prop === 'findByKeyNow') return undefined; // every read counted, through findByKey
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    srv = await startTestServer({ store: counting, authFailLimit: 3, authFailWindow: 60 });
  });
  afterAll(async () => {
    await srv.close();
  });

  test('refusals for other causes do not count; unknown keys do, then 429 without asking the store', async () => {
    const disabled = await srv.token({ enabled: false });
    const elsewhere = await srv.token({ ips: '10.*' });
    for (let i = 0; i < 4; i++) {
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: disabled.key })).status).toBe(401);
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: elsewhere.key })).status).toBe(401);
    }
    const valid = await srv.token();
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: valid.key })).status).toBe(200);

    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: WRONG_KEY })).status).toBe(401);
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: 'short' })).status).toBe(401);
    // The third failure comes over MQTT: one limiter for both (CONNACK 4, then the IP is over).
    expect(await refusedCode(srv.mqttUrl, WRONG_KEY)).toBe(4);

    const asked = lookups;
    const blocked = await rest(srv.httpUrl, 'GET', '/auth/info', { key: valid.key });
    expect(blocked.status).toBe(429);
    expect(reasonOf(blocked)).toMatch(/too many failed authentication attempts/);
    expect((await rest(srv.httpUrl, 'GET', '/mqtt/sessions/all', { key: WRONG_KEY })).status).toBe(429);
    expect(lookups).toBe(asked);
    // And MQTT is refused too (CONNACK 5) while the window lasts.
    expect(await refusedCode(srv.mqttUrl, valid.key)).toBe(5);
    // Unauthenticated routes are not behind the guard.
    expect((await rest(srv.httpUrl, 'GET', '/health')).status).toBe(200);
  });
});

/** A memory store that can be switched to "unreachable" (every call rejects with StoreUnavailableError). */
function switchableStore(): { store: TokenStore; setDown(down: boolean): void } {
  const memory = new MemoryStore();
  let down = false;
  const store = new Proxy(memory, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'close' || prop === 'onChange') return value.bind(target);
      return (...args: unknown[]) => (down
        ? Promise.reject(new StoreUnavailableError('token store unavailable: test switch'))
        : (value as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
  return { store, setDown: (d) => { down = d; } };
}

describe('the key → token cache never outlives a change', () => {
  test('a change written by another node (its own store client, Redis pub/sub) is honoured at once', async () => {
    const prefix = uniquePrefix();
    const url = process.env.REDIS_URL!;
    const quiet = pino({ level: 'silent' });
    const srv = await startTestServer({ store: new RedisStore({ url, prefix, logger: quiet }) });
    const otherNode = new RedisStore({ url, prefix, logger: quiet });
    try {
      const t = await srv.token();
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status).toBe(200);
      await otherNode.update([t.id], { enabled: false }, now());
      // Within the change feed's delay, well under the cache lifetime (1 s).
      await eventually(async () => (await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status === 401, 900, 'the disable to reach this node');
      const u = await srv.token();
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: u.key })).status).toBe(200);
      await otherNode.delete([u.id]);
      await eventually(async () => (await rest(srv.httpUrl, 'GET', '/auth/info', { key: u.key })).status === 401, 900, 'the delete to reach this node');
    } finally {
      await otherNode.close();
      await srv.close();
    }
  });

  test('a cached token stops working within the cache lifetime when the store goes away (then 503)', async () => {
    const { store, setDown } = switchableStore();
    const srv = await startTestServer({ store, tokenCacheMs: 300 });
    try {
      const t = await srv.token();
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status).toBe(200);
      setDown(true);
      const started = Date.now();
      await eventually(async () => (await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status === 503, 3000, '503');
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      setDown(false);
      await srv.close();
    }
  });

  test('with the cache off, every request asks the store', async () => {
    const { store, setDown } = switchableStore();
    const srv = await startTestServer({ store, tokenCacheMs: 0 });
    try {
      const t = await srv.token();
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status).toBe(200);
      setDown(true);
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status).toBe(503);
    } finally {
      setDown(false);
      await srv.close();
    }
  });
});

describe('store failures', () => {
  test('503 with a clear reason while the store is unreachable; 500 without internals for other errors', async () => {
    const { store, setDown } = switchableStore();
    const srv = await startTestServer({ store });
    try {
      const t = await srv.token({ access: { type: 1 } });
      setDown(true);
      const res = await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key });
      expect(res.status).toBe(503);
      expect(reasonOf(res)).toBe('token store unavailable, try again later');
      expect((await rest(srv.httpUrl, 'GET', '/health')).status).toBe(503);
      setDown(false);
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key })).status).toBe(200);
      expect((await rest(srv.httpUrl, 'GET', '/health')).status).toBe(200);
      expect(srv.broker.stats.storeErrors).toBeGreaterThan(0);
    } finally {
      await srv.close();
    }
  });

  test('an unexpected store error is a 500 that leaks nothing', async () => {
    const memory = new MemoryStore();
    const broken = new Proxy(memory, {
      get(target, prop, receiver) {
        if (prop === 'get') return () => Promise.reject(new Error('secret internal detail at /srv/db:42'));
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const srv = await startTestServer({ store: broken });
    try {
      const t = await srv.token({ access: { type: 1 } });
      const res = await rest(srv.httpUrl, 'GET', '/platform/tokens/all', { key: t.key });
      expect(res.status).toBe(500);
      expect(reasonOf(res)).toBe('internal server error');
      expect(res.text).not.toMatch(/secret|srv\/db/);
    } finally {
      await srv.close();
    }
  });
});

describe('logging', () => {
  test('request logs carry method, url, status and refusal reasons, never the key', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const srv = await startTestServer({ log: pino({ level: 'trace' }, sink) });
    try {
      const t = await srv.token({ access: { type: 1 } });
      await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key });
      await rest(srv.httpUrl, 'GET', '/platform/tokens/all', { headers: { authorization: `Bearer ${t.key}` } });
      await rest(srv.httpUrl, 'GET', '/auth/info', { key: WRONG_KEY });
      const created = await rest(srv.httpUrl, 'POST', '/platform/tokens', { key: t.key, body: { ttl: 60 } });
      const newKey = created.body.result[0].key as string;
      await eventually(() => lines.filter((l) => l.includes('request completed')).length >= 4, 5000, 'request log lines');
      const all = lines.join('');
      expect(all).toContain('"url":"/auth/info"');
      expect(all).toContain('unknown token');
      for (const secret of [t.key, WRONG_KEY, newKey]) expect(all).not.toContain(secret);
      expect(all).not.toContain('"headers"');
    } finally {
      await srv.close();
    }
  });
});
