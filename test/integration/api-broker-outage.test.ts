// SPEC §5: the broker routes answer 503 (not 500, not a hang) while the Redis of
// a cluster node is down, and work again once it is back (SPEC §7).
import { expect, test } from '@jest/globals';
import { rest, reasonOf } from '../helpers/rest.js';
import { startRedisServer } from '../helpers/redis-server.js';
import { startTestServer, uniquePrefix } from '../helpers/server.js';

test('with Redis down a cluster node answers 503 on the broker routes, then recovers (SPEC §5, §7)', async () => {
  let redis = await startRedisServer();
  const saved = process.env.REDIS_URL;
  process.env.REDIS_URL = redis.url; // the cluster parts of the test node follow REDIS_URL
  const { RedisStore } = await import('../../src/store/redis-store.js');
  const srv = await startTestServer({ store: new RedisStore({ url: redis.url, prefix: uniquePrefix() }), cluster: true, tokenCacheMs: 60_000 });
  process.env.REDIS_URL = saved;
  try {
    const key = (await srv.token({ access: { type: 1 } })).key;
    const call = (method: string, path: string, body?: unknown) => rest(srv.httpUrl, method, path, { key, body, timeoutMs: 20_000 });
    expect((await call('POST', '/mqtt/messages', { topic: 'o/a', payload: 'x', retain: true })).status).toBe(200);
    const port = redis.port;
    await redis.stop();
    const requests: [string, string, unknown?][] = [
      ['POST', '/mqtt/messages', { topic: 'o/a', payload: 'y' }],
      ['GET', '/mqtt/messages/o%2F%23'],
      ['DELETE', '/mqtt/messages/o%2F%23'],
      ['GET', '/mqtt/sessions/all/subscriptions'],
      ['DELETE', '/mqtt/sessions/x/subscriptions/a'],
    ];
    for (const [method, path, body] of requests) {
      const res = await call(method, path, body);
      expect([method, path, res.status]).toEqual([method, path, 503]);
      expect(reasonOf(res)).toMatch(/unavailable/);
    }
    redis = await startRedisServer({ port });
    await expect((async () => {
      for (;;) {
        const res = await call('GET', '/mqtt/messages/o%2F%23');
        if (res.status === 200) return res.status;
        await new Promise((r) => setTimeout(r, 200));
      }
    })()).resolves.toBe(200);
  } finally {
    process.env.REDIS_URL = saved;
    await srv.close();
    await redis.stop();
  }
}, 60_000);
