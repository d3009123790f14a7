// SPEC §2: "A stored token that a node cannot read (corrupt data, a field from
// an incompatible version) never stops the node: its CONNECTs get CONNACK 5 and
// its REST calls 401, its live sessions are closed, and an error naming the
// token id (never the key) is logged; GET /platform/tokens still lists it with
// what could be read." The records are corrupted behind the store's back, as
// another program or an older version would leave them.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Redis } from 'ioredis';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { RedisStore } from '../../src/store/redis-store.js';
import { closed, connect, refusedCode, within } from '../helpers/mqtt.js';
import { rest } from '../helpers/rest.js';
import { startTestServer, uniquePrefix, type TestServer } from '../helpers/server.js';

const ENFORCE_MS = 1500;
const ACL = { type: 2 as const, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['publish' as const, 'subscribe' as const] }] };

describe('a stored token that cannot be read (redis store)', () => {
  let srv: TestServer;
  let redis: Redis;
  let prefix: string;
  let masterKey: string;
  const lines: string[] = [];

  beforeAll(async () => {
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(...chunk.toString().split('\n').filter(Boolean)); done(); } });
    const log = pino({ level: 'info' }, sink);
    prefix = uniquePrefix();
    const store = new RedisStore({ url: process.env.REDIS_URL!, prefix, logger: log, readyTimeoutMs: 5000 });
    await within(store.feedReady(), 5000, 'change feed');
    srv = await startTestServer({ store, log });
    redis = new Redis(process.env.REDIS_URL!);
    masterKey = (await srv.token({ access: { type: 1 } })).key;
  });
  afterAll(async () => {
    redis.disconnect();
    await srv.close();
  });

  /** A token created through the store, then one field overwritten in Redis. */
  async function corrupted(field: string, value: string): Promise<{ id: number; key: string }> {
    const t = await srv.token({ access: ACL });
    await redis.hset(`${prefix}token:${t.id}`, field, value);
    return t;
  }

  /** The node still serves: a good token connects and publishes. */
  async function stillServing(): Promise<void> {
    const c = await connect(srv.mqttUrl, masterKey);
    await c.publishAsync('a/alive', 'yes', { qos: 1 });
    await c.endAsync();
  }

  function errorsNaming(id: number, key: string): string[] {
    const found = lines.filter((l) => l.includes('"level":50') && l.includes(`"tokenId":${id}`));
    for (const l of lines) expect(l).not.toContain(key);
    return found;
  }

  test('ips that do not compile (10.0.0.0/33): CONNACK 5, an error naming the id, and the node goes on', async () => {
    const t = await corrupted('ips', '10.0.0.0/33');
    expect(await refusedCode(srv.mqttUrl, t.key)).toBe(5);
    expect(errorsNaming(t.id, t.key).length).toBeGreaterThan(0);
    await stillServing();
  });

  test('a field that does not decode (access not JSON): CONNACK 5, not 3 (the store is up)', async () => {
    const t = await corrupted('access', '{not json');
    expect(await refusedCode(srv.mqttUrl, t.key)).toBe(5);
    expect(errorsNaming(t.id, t.key).length).toBeGreaterThan(0);
    await stillServing();
  });

  test('a live session whose token becomes unreadable is closed at its next refresh; the node goes on', async () => {
    const t = await srv.token({ access: ACL });
    const c = await connect(srv.mqttUrl, t.key);
    await redis.hset(`${prefix}token:${t.id}`, 'ips', '10.0.0.0/33');
    // Another field changes through the store: the change event makes every node re-read the token.
    await srv.store.update([t.id], { info: 'touched' }, Math.floor(Date.now() / 1000));
    await closed(c, ENFORCE_MS);
    expect(errorsNaming(t.id, t.key).length).toBeGreaterThan(0);
    await stillServing();
  });

  test('a live session whose token stops decoding is closed at its next refresh', async () => {
    const t = await srv.token({ access: ACL });
    const c = await connect(srv.mqttUrl, t.key);
    await redis.hset(`${prefix}token:${t.id}`, 'metadata', '[]');
    // The store cannot decode it either, so the change event is sent as another node would.
    await redis.publish(`${prefix}changes`, JSON.stringify({ id: t.id, kind: 'updated' }));
    await closed(c, ENFORCE_MS);
    await stillServing();
  });

  test('REST: 401 for either kind of unreadable token; listings still list both, with what could be read (SPEC §2)', async () => {
    const badIps = await corrupted('ips', '10.0.0.0/33');
    const badAccess = await corrupted('access', '{not json');
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: badIps.key })).status).toBe(401);
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: badAccess.key })).status).toBe(401);
    const list = await rest(srv.httpUrl, 'GET', '/platform/tokens/all', { key: masterKey });
    expect(list.status).toBe(200);
    const listed = new Map((list.body.result as { id: number }[]).map((t) => [t.id, t as Record<string, unknown>]));
    expect(listed.get(badIps.id)).toBeDefined();
    expect(listed.get(badIps.id)!.unreadable).toBeUndefined(); // its ips are a string: readable, refused only when compiled
    expect(listed.get(badAccess.id)).toMatchObject({ id: badAccess.id, enabled: true, unreadable: ['access'] });
    expect(listed.get(badAccess.id)!.ttl).toBeGreaterThan(0);
    // By id and by field selector too; `?fields=` may ask for it.
    const byId = await rest(srv.httpUrl, 'GET', `/platform/tokens/${badAccess.id}?fields=id,unreadable`, { key: masterKey });
    expect(byId.status).toBe(200);
    expect(byId.body.result).toEqual([{ id: badAccess.id, unreadable: ['access'] }]);
    // A change of every token passes over it (its stored data is never rewritten from a guess); a deletion removes it.
    const put = await rest(srv.httpUrl, 'PUT', '/platform/tokens/all', { key: masterKey, body: { info: 'after' } });
    expect(put.status).toBe(200);
    expect((put.body.result as { id: number }[]).map((t) => t.id)).not.toContain(badAccess.id);
    expect(await redis.hget(`${prefix}token:${badAccess.id}`, 'access')).toBe('{not json');
    const del = await rest(srv.httpUrl, 'DELETE', `/platform/tokens/${badAccess.id}`, { key: masterKey });
    expect(del.status).toBe(200);
  });

  test('REST and MQTT agree on ips that do not compile: unreadable (401 / CONNACK 5), logged by id, not "unauthorized location" (SPEC §2)', async () => {
    const t = await corrupted('ips', '10.0.0.0/33');
    const before = errorsNaming(t.id, t.key).length;
    const res = await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key });
    expect(res.status).toBe(401);
    expect(res.body.errors[0].reason).toBe('stored token cannot be read');
    expect(errorsNaming(t.id, t.key).length).toBeGreaterThan(before);
    expect(await refusedCode(srv.mqttUrl, t.key)).toBe(5);
  });
});
