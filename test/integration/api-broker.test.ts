// The broker REST API (SPEC §5): publish over REST, retained messages, session
// subscriptions, ACL `ids` and `submodules` (SPEC §3), against real brokers:
// memory, Redis, and a two-node cluster where every call goes to the node that
// does NOT hold the session or the subscriber.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fc from 'fast-check';
import type { MqttClient } from 'mqtt';
import { clientId, closed, collect, connect } from '../helpers/mqtt.js';
import { eventually, reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Mode = 'memory' | 'redis' | 'cluster';

async function startNodes(mode: Mode): Promise<[TestServer, TestServer]> {
  if (mode === 'memory') {
    const a = await startTestServer({ store: 'memory' });
    return [a, a];
  }
  if (mode === 'redis') {
    const a = await startTestServer({ store: 'redis' });
    return [a, a];
  }
  const a = await startTestServer({ store: 'redis', cluster: true });
  const { RedisStore } = await import('../../src/store/redis-store.js');
  const prefix = (a.store as unknown as { prefix: string }).prefix;
  const b = await startTestServer({ store: new RedisStore({ url: process.env.REDIS_URL!, prefix }), cluster: true });
  return [a, b];
}

describe.each(['memory', 'redis', 'cluster'] as const)('broker REST API, %s', (mode) => {
  /** `a` answers REST; `b` holds the MQTT clients (the same node unless clustered). */
  let a: TestServer;
  let b: TestServer;
  let master: string;
  const clients: MqttClient[] = [];
  const open = async (key: string, id = clientId('rb')): Promise<MqttClient> => {
    const c = await connect(b.mqttUrl, key, { clientId: id });
    clients.push(c);
    return c;
  };
  const call = (method: string, path: string, body?: unknown, key = master) => rest(a.httpUrl, method, path, { key, body });
  const token = async (acl: unknown[]) => (await a.token({ ttl: 3600, access: { type: 2, acl } as never }));
  /** Waits until node `a`'s listing shows the session with these subscriptions (cluster: through Redis). */
  const listed = (id: string, topics: string[]) => eventually(async () => {
    const res = await call('GET', `/mqtt/sessions/${encodeURIComponent(id)}/subscriptions`);
    const got = (res.body.result as { topic: string }[]).map((s) => s.topic).sort();
    return JSON.stringify(got) === JSON.stringify([...topics].sort()) ? got : null;
  }, 10_000, `subscriptions of ${id} listed`);

  beforeAll(async () => {
    [a, b] = await startNodes(mode);
    master = (await a.token({ access: { type: 1 } })).key;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    if (b !== a) await b.close();
    await a.close();
  });

  describe('POST /mqtt/messages', () => {
    test('reaches subscribers on every node, utf8 and base64, and a retained one is stored (SPEC §5)', async () => {
      const sub = await open(master);
      const inbox = collect(sub);
      const base = clientId('pub');
      await sub.subscribeAsync(`${base}/#`, { qos: 1 });
      const res = await call('POST', '/mqtt/messages', { topic: `${base}/t`, payload: 'hello', qos: 1 });
      expect(res.status).toBe(200);
      expect(res.body.result).toEqual([{ topic: `${base}/t`, size: 5 }]);
      expect(await inbox.next()).toMatchObject({ topic: `${base}/t`, payload: 'hello', retain: false });
      const bin = Buffer.from([0, 1, 2, 255]);
      expect((await call('POST', '/mqtt/messages', { topic: `${base}/bin`, payload: bin.toString('base64'), encoding: 'base64', retain: true })).status).toBe(200);
      expect(await inbox.next()).toMatchObject({ topic: `${base}/bin`, payload: bin.toString() });
      const stored = await call('GET', `/mqtt/messages/${encodeURIComponent(`${base}/#`)}`);
      expect(stored.body.result).toEqual([{ topic: `${base}/bin`, payload: bin.toString('base64'), qos: 0, size: 4 }]);
    });

    test('same authorisation as an MQTT PUBLISH: 403 with a reason, 400 naming the field (SPEC §3, §5)', async () => {
      const acl = await token([{ uri: 'mqtt', topic: 'devices/42/#', actions: ['publish'] }, { uri: 'mqtt/messages', methods: ['POST'] }]);
      const ok = await call('POST', '/mqtt/messages', { topic: 'devices/42/x', payload: '1' }, acl.key);
      expect(ok.status).toBe(200);
      const other = await call('POST', '/mqtt/messages', { topic: 'devices/43/x', payload: '1' }, acl.key);
      expect(other.status).toBe(403);
      expect(reasonOf(other)).toMatch(/does not allow publishing to 'devices\/43\/x'/);
      // only the broker writes $SYS and $tokenmq, master included
      for (const topic of ['$SYS/x', '$tokenmq/events/x']) {
        const res = await call('POST', '/mqtt/messages', { topic, payload: 'x' });
        expect(res.status).toBe(403);
      }
      const wildcard = await call('POST', '/mqtt/messages', { topic: 'devices/+/x' });
      expect(wildcard.status).toBe(400);
      expect(reasonOf(wildcard)).toMatch(/^topic/);
      const cases: [unknown, RegExp][] = [
        [{ payload: 'x' }, /topic/],
        [{ topic: 'a', qos: 2 }, /qos/],
        [{ topic: 'a', encoding: 'hex' }, /encoding/],
        [{ topic: 'a', payload: '***', encoding: 'base64' }, /^payload/],
        [{ topic: 'a', extra: 1 }, /extra/],
        [{ topic: 'a/'.repeat(100) + 'b' }, /^topic: more than 100 levels/],
      ];
      for (const [body, field] of cases) {
        const res = await call('POST', '/mqtt/messages', body);
        expect(res.status).toBe(400);
        expect(reasonOf(res)).toMatch(field);
      }
      // an ACL token also needs POST on mqtt/messages
      const noRest = await token([{ uri: 'mqtt', topic: '#', actions: ['publish'] }]);
      const refused = await call('POST', '/mqtt/messages', { topic: 'a' }, noRest.key);
      expect(refused.status).toBe(403);
      expect(reasonOf(refused)).toBe('token access does not allow POST /mqtt/messages');
    });
  });

  test('the Mosquitto CLI: mosquitto_pub -r is read over REST, a REST retained publish reaches mosquitto_sub', async () => {
    const base = clientId('mosq');
    const mqtt = (srv: TestServer) => ['-h', '127.0.0.1', '-p', String(srv.ports.mqtt), '-V', 'mqttv311', '-u', master];
    await promisify(execFile)('mosquitto_pub', [...mqtt(b), '-t', `${base}/from-cli`, '-m', 'cli', '-r', '-q', '1']);
    const read = await call('GET', `/mqtt/messages/${encodeURIComponent(`${base}/#`)}`);
    expect(read.body.result).toEqual([{ topic: `${base}/from-cli`, payload: Buffer.from('cli').toString('base64'), qos: 1, size: 3 }]);
    await call('POST', '/mqtt/messages', { topic: `${base}/from-rest`, payload: 'rest', retain: true, qos: 1 });
    const { stdout } = await promisify(execFile)('mosquitto_sub', [...mqtt(b), '-t', `${base}/from-rest`, '-C', '1', '-W', '10', '-v']);
    expect(stdout.trim()).toBe(`${base}/from-rest rest`);
  });

  describe('GET and DELETE /mqtt/messages/{filter}', () => {
    test('a token reads only the retained messages it could receive; `$` topics only through a `$` filter (SPEC §5, MQTT-4.7.2-1)', async () => {
      const base = clientId('ret');
      for (const topic of [`${base}/42/a`, `${base}/43/a`, `$${base}/x`]) {
        expect((await call('POST', '/mqtt/messages', { topic, payload: topic, retain: true })).status).toBe(200);
      }
      const acl = await token([{ uri: 'mqtt', topic: `${base}/42/#`, actions: ['subscribe'] }, { uri: 'mqtt/messages', methods: ['GET'] }]);
      const mine = await call('GET', `/mqtt/messages/${encodeURIComponent(`${base}/#`)}`, undefined, acl.key);
      expect(mine.status).toBe(200);
      expect(mine.body.result.map((m: { topic: string }) => m.topic)).toEqual([`${base}/42/a`]);
      // paged like every listing, counted after the per-topic filter (the hidden ones are not even counted)
      expect(mine.body.pagination).toEqual({ offset: 0, limit: 1000, total: 1 });
      const second = await call('GET', `/mqtt/messages/${encodeURIComponent(`${base}/#`)}?limit=1&offset=1`);
      expect(second.body).toMatchObject({ result: [{ topic: `${base}/43/a` }], pagination: { offset: 1, limit: 1, total: 2 } });
      expect(Buffer.from(mine.body.result[0].payload, 'base64').toString()).toBe(`${base}/42/a`);
      // a filter the token could not subscribe to: 403, as SUBSCRIBE would be refused
      const outside = await call('GET', `/mqtt/messages/${encodeURIComponent('other/#')}`, undefined, acl.key);
      expect(outside.status).toBe(403);
      const all = await call('GET', `/mqtt/messages/${encodeURIComponent('#')}`);
      const topics = all.body.result.map((m: { topic: string }) => m.topic);
      expect(topics).toEqual(expect.arrayContaining([`${base}/42/a`, `${base}/43/a`]));
      expect(topics).not.toContain(`$${base}/x`);
      const dollar = await call('GET', `/mqtt/messages/${encodeURIComponent(`$${base}/#`)}`);
      expect(dollar.body.result.map((m: { topic: string }) => m.topic)).toEqual([`$${base}/x`]);
      for (const filter of ['a/#/b', `${'a/'.repeat(150)}#`]) {
        for (const method of ['GET', 'DELETE']) {
          const bad = await call(method, `/mqtt/messages/${encodeURIComponent(filter)}`);
          expect(bad.status).toBe(400);
          expect(reasonOf(bad)).toMatch(/^filter/);
        }
      }
    });

    test('DELETE clears, without delivering, only what the token may publish to, and names it (SPEC §5)', async () => {
      const base = clientId('clr');
      for (const topic of [`${base}/42/a`, `${base}/42/b`, `${base}/43/a`]) {
        await call('POST', '/mqtt/messages', { topic, payload: 'v', retain: true });
      }
      const watcher = await open(master);
      const inbox = collect(watcher);
      await watcher.subscribeAsync(`${base}/#`, { qos: 1 });
      for (let i = 0; i < 3; i++) expect((await inbox.next()).retain).toBe(true); // the retained ones on SUBSCRIBE
      const acl = await token([{ uri: 'mqtt', topic: `${base}/42/#`, actions: ['publish'] }, { uri: 'mqtt/messages', methods: ['DELETE'] }]);
      const res = await call('DELETE', `/mqtt/messages/${encodeURIComponent(`${base}/#`)}`, undefined, acl.key);
      expect(res.status).toBe(200);
      expect(res.body.result).toEqual([{ topic: `${base}/42/a` }, { topic: `${base}/42/b` }]);
      // nothing delivered: the next message the watcher sees is this marker
      await call('POST', '/mqtt/messages', { topic: `${base}/marker`, payload: 'm', qos: 1 });
      expect(await inbox.next()).toMatchObject({ topic: `${base}/marker` });
      const left = await call('GET', `/mqtt/messages/${encodeURIComponent(`${base}/#`)}`);
      expect(left.body.result.map((m: { topic: string }) => m.topic)).toEqual([`${base}/43/a`]);
      expect((await call('DELETE', `/mqtt/messages/${encodeURIComponent(`${base}/none/#`)}`)).body.result).toEqual([]);
    });
  });

  describe('session subscriptions', () => {
    test('listed and removed from a live session on whichever node holds it (SPEC §5)', async () => {
      const id = clientId('subs');
      const c = await open(master, id);
      const inbox = collect(c);
      await c.subscribeAsync({ [`${id}/x/+`]: { qos: 1 }, [`${id}/y/#`]: { qos: 0 } });
      await listed(id, [`${id}/x/+`, `${id}/y/#`]);
      const got = await call('GET', `/mqtt/sessions/${id}/subscriptions`);
      expect(got.body.result).toEqual([{ client_id: id, topic: `${id}/x/+`, qos: 1 }, { client_id: id, topic: `${id}/y/#`, qos: 0 }]);
      expect(got.body.pagination).toEqual({ offset: 0, limit: 1000, total: 2 });
      const del = await call('DELETE', `/mqtt/sessions/${id}/subscriptions/${encodeURIComponent(`${id}/x/+`)}`);
      expect(del.status).toBe(200);
      expect(del.body.result).toEqual([{ client_id: id, topic: `${id}/x/+`, qos: 1 }]);
      // the listing follows with no traffic from the client (the directory is told)
      await listed(id, [`${id}/y/#`]);
      await call('POST', '/mqtt/messages', { topic: `${id}/x/1`, payload: 'gone' });
      await call('POST', '/mqtt/messages', { topic: `${id}/y/1`, payload: 'kept' });
      expect(await inbox.next()).toMatchObject({ topic: `${id}/y/1` });
      expect(c.connected).toBe(true);
      const bad = await call('DELETE', `/mqtt/sessions/${id}/subscriptions/${encodeURIComponent('a/#/b')}`);
      expect(bad.status).toBe(400);
      expect(reasonOf(bad)).toMatch(/^filter/);
    });
  });

  describe('offline persistent session subscriptions', () => {
    test('read and removed in persistence, so the session no longer gets that filter when it returns (SPEC §5)', async () => {
      const id = clientId('offline');
      const first = await connect(b.mqttUrl, master, { clientId: id, clean: false });
      await first.subscribeAsync({ [`${id}/p/+`]: { qos: 1 }, [`${id}/q`]: { qos: 1 } });
      await first.endAsync();
      await eventually(async () => ((await call('GET', `/mqtt/sessions/${id}`)).body.result.length === 0 ? true : null), 10_000);
      const listed = await call('GET', `/mqtt/sessions/${id}/subscriptions`);
      expect(listed.body.result).toEqual([{ client_id: id, topic: `${id}/p/+`, qos: 1 }, { client_id: id, topic: `${id}/q`, qos: 1 }]);
      const del = await call('DELETE', `/mqtt/sessions/${id}/subscriptions/${encodeURIComponent(`${id}/p/+`)}`);
      expect(del.body.result).toEqual([{ client_id: id, topic: `${id}/p/+`, qos: 1 }]);
      expect((await call('DELETE', `/mqtt/sessions/${id}/subscriptions/${encodeURIComponent(`${id}/p/+`)}`)).body.result).toEqual([]);
      const again = await connect(b.mqttUrl, master, { clientId: id, clean: false });
      clients.push(again);
      const inbox = collect(again);
      await call('POST', '/mqtt/messages', { topic: `${id}/p/1`, payload: 'removed', qos: 1 });
      await call('POST', '/mqtt/messages', { topic: `${id}/q`, payload: 'kept', qos: 1 });
      expect(await inbox.next()).toMatchObject({ topic: `${id}/q`, payload: 'kept' });
    });
  });

  describe('session selector (SPEC §5: `all` or ONE client id)', () => {
    test('DELETE /mqtt/sessions/a%2Cb closes neither a nor b', async () => {
      const x = clientId('sa');
      const y = clientId('sb');
      const cx = await open(master, x);
      const cy = await open(master, y);
      await eventually(async () => ((await call('GET', `/mqtt/sessions/${y}`)).body.result.length === 1 ? true : null), 10_000);
      const res = await call('DELETE', `/mqtt/sessions/${encodeURIComponent(`${x},${y}`)}`);
      expect(res.status).toBe(200);
      expect(res.body.result).toEqual([]);
      // both still there: a kick sent now would have reached them before this one
      const z = await open(master, clientId('sz'));
      await call('DELETE', `/mqtt/sessions/${z.options.clientId}`);
      await closed(z, 10_000);
      expect(cx.connected && cy.connected).toBe(true);
    });
  });

  describe('ACL ids and submodules (SPEC §3)', () => {
    test('listings are filtered, kicks and named client ids outside the masks are 403', async () => {
      const tag = clientId('ids');
      const dev = await open(master, `${tag}-dev-1`);
      const other = await open(master, `${tag}-other`);
      await eventually(async () => ((await call('GET', `/mqtt/sessions/all?client_id=${tag}*`)).body.result.length === 2 ? true : null), 10_000);
      const acl = await token([
        { uri: 'mqtt/sessions', methods: ['GET', 'DELETE'], ids: [`${tag}-dev-*`], submodules: [{ name: 'subscriptions', methods: ['GET'] }] },
      ]);
      const list = await call('GET', `/mqtt/sessions/all?client_id=${tag}*`, undefined, acl.key);
      expect(list.status).toBe(200);
      expect(list.body.result.map((s: { client_id: string }) => s.client_id)).toEqual([`${tag}-dev-1`]);
      for (const id of [`${tag}-other`, `${tag}-never-connected`]) {
        const named = await call('GET', `/mqtt/sessions/${id}`, undefined, acl.key);
        expect(named.status).toBe(403);
        expect(reasonOf(named)).toMatch(/does not reach client id/);
        expect((await call('DELETE', `/mqtt/sessions/${id}`, undefined, acl.key)).status).toBe(403);
      }
      expect((await call('GET', `/mqtt/sessions/${tag}-other/subscriptions`, undefined, acl.key)).status).toBe(403);
      expect((await call('GET', `/mqtt/sessions/${tag}-dev-1/subscriptions`, undefined, acl.key)).status).toBe(200);
      // the submodule has GET only
      const unsub = await call('DELETE', `/mqtt/sessions/${tag}-dev-1/subscriptions/x`, undefined, acl.key);
      expect(unsub.status).toBe(403);
      // a kick of `all` closes the matching sessions only
      const kicked = await call('DELETE', `/mqtt/sessions/all?client_id=${tag}*`, undefined, acl.key);
      expect(kicked.body.result.map((s: { client_id: string }) => s.client_id)).toEqual([`${tag}-dev-1`]);
      await closed(dev, 10_000);
      expect(other.connected).toBe(true);
      // SPEC §3: a child token may not widen ids or submodules (POST /auth/tokens)
      const mint = (access: unknown) => rest(a.httpUrl, 'POST', '/auth/tokens', { key: acl.key, body: { ttl: 60, access } });
      const narrower = await mint({ type: 2, acl: [{ uri: 'mqtt/sessions', methods: ['GET'], ids: [`${tag}-dev-1`] }] });
      expect(narrower.status).toBe(200);
      for (const entry of [
        { uri: 'mqtt/sessions', methods: ['GET'] },
        { uri: 'mqtt/sessions', methods: ['GET'], ids: ['*'] },
        { uri: 'mqtt/sessions', methods: ['GET'], ids: [`${tag}-dev-*`], submodules: [{ name: 'subscriptions', methods: ['DELETE'] }] },
      ]) {
        const wider = await mint({ type: 2, acl: [entry] });
        expect(wider.status).toBe(403);
        expect(reasonOf(wider)).toMatch(/access\.acl\[0\]/);
      }
      // the child keeps its narrower ids: the other dev session is out of its reach
      const child = narrower.body.result[0].key as string;
      expect((await call('GET', `/mqtt/sessions/${tag}-dev-2`, undefined, child)).status).toBe(403);
      // item rights do not grant the submodule (flespi's rule)
      const itemsOnly = await token([{ uri: 'mqtt/sessions', methods: ['GET'] }]);
      const refused = await call('GET', `/mqtt/sessions/all/subscriptions`, undefined, itemsOnly.key);
      expect(refused.status).toBe(403);
    });
  });

  describe('listing filters and paging (SPEC §5)', () => {
    test('sessions: ?client_id and ?ip masks, ?token_id, pagination beside result, ordered by client id', async () => {
      const tag = clientId('pg');
      const t = await a.token({ ttl: 3600, access: { type: 0 } });
      const ids = [3, 1, 2].map((n) => `${tag}-${n}`);
      for (const id of ids) await open(t.key, id);
      const all = await eventually(async () => {
        const res = await call('GET', `/mqtt/sessions/all?client_id=${tag}-?&ip=127.0.0.*&token_id=${t.id}`);
        return res.body.result.length === 3 ? res : null;
      }, 10_000);
      expect(all.body.result.map((s: { client_id: string }) => s.client_id)).toEqual([...ids].sort());
      expect(all.body.pagination).toEqual({ offset: 0, limit: 1000, total: 3 });
      const page = await call('GET', `/mqtt/sessions/all?client_id=${tag}-*&limit=1&offset=1&fields=client_id`);
      expect(page.body).toEqual({ result: [{ client_id: `${tag}-2` }], pagination: { offset: 1, limit: 1, total: 3 } });
      expect((await call('GET', `/mqtt/sessions/all?ip=10.*&client_id=${tag}*`)).body.result).toEqual([]);
      for (const q of ['limit=0', 'limit=1001', 'offset=-1', 'limit=x']) {
        const res = await call('GET', `/mqtt/sessions/all?${q}`);
        expect(res.status).toBe(400);
        expect(reasonOf(res)).toMatch(/limit|offset/);
      }
    });

    test('tokens: field=value selectors with * and ?, PATCH like PUT', async () => {
      const tag = clientId('tk');
      const created = await call('POST', '/platform/tokens', [
        { ttl: 3600, info: `${tag} truck 1`, metadata: { customer: 'acme' } },
        { ttl: 3600, info: `${tag} truck 2`, metadata: { customer: 'acne' }, enabled: false },
        { ttl: 3600, info: `${tag} van`, metadata: {} },
      ]);
      const [t1, t2, t3] = created.body.result as { id: number }[];
      const ids = async (sel: string) => (await call('GET', `/platform/tokens/${sel}?fields=id`)).body.result.map((t: { id: number }) => t.id);
      expect(await ids(`info=${encodeURIComponent(`${tag} truck*`)}`)).toEqual([t1!.id, t2!.id]);
      expect(await ids(`info=${encodeURIComponent(`${tag} truck %3F`)}`)).toEqual([]);
      expect(await ids(`info=${encodeURIComponent(`${tag} truck `)}%3F`)).toEqual([t1!.id, t2!.id]);
      expect(await ids('metadata.customer=ac%3Fe')).toEqual(expect.arrayContaining([t1!.id, t2!.id]));
      expect(await ids('metadata.customer=acme')).toContain(t1!.id);
      expect(await ids('metadata.customer=acme')).not.toContain(t3!.id);
      expect(await ids(`enabled=false`)).toContain(t2!.id);
      expect(await ids(`enabled=false`)).not.toContain(t1!.id);
      const patched = await call('PATCH', `/platform/tokens/info=${encodeURIComponent(`${tag} van`)}`, { info: `${tag} lorry` });
      expect(patched.status).toBe(200);
      expect(patched.body.result).toEqual([expect.objectContaining({ id: t3!.id, info: `${tag} lorry` })]);
      const bad = await call('GET', '/platform/tokens/color=red');
      expect(bad.status).toBe(400);
      expect(reasonOf(bad)).toMatch(/sel/);
    });
  });

  test('paging through a listing returns every item exactly once, in order (SPEC §5, seeded property)', async () => {
    const tag = clientId('every');
    const made = await call('POST', '/platform/tokens', Array.from({ length: 23 }, (_, i) => ({ ttl: 3600, info: `${tag} ${i}` })));
    const tokenIds = (made.body.result as { id: number }[]).map((t) => t.id).sort((x, y) => x - y);
    const owner = await a.token({ ttl: 3600, access: { type: 0 } });
    const sessionIds = Array.from({ length: 9 }, (_, i) => `${tag}-${(i * 7) % 9}`);
    for (const id of sessionIds) await open(owner.key, id);
    await eventually(async () => ((await call('GET', `/mqtt/sessions/all?token_id=${owner.id}`)).body.result.length === 9 ? true : null), 10_000);
    /** Pages through `path` with these page sizes (the last repeated), from offset 0 to the end. */
    const walk = async (path: string, sizes: number[], key: (item: never) => string | number) => {
      const seen: (string | number)[] = [];
      let offset = 0;
      for (let i = 0; ; i++) {
        const limit = sizes[Math.min(i, sizes.length - 1)] as number;
        const res = await call('GET', `${path}&limit=${limit}&offset=${offset}`);
        expect(res.status).toBe(200);
        expect(res.body.pagination).toMatchObject({ offset, limit });
        const items = res.body.result as never[];
        expect(items.length).toBeLessThanOrEqual(limit);
        seen.push(...items.map(key));
        offset += limit;
        if (offset >= res.body.pagination.total) return seen;
      }
    };
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 5 }), async (sizes) => {
      const tokens = await walk(`/platform/tokens/info=${encodeURIComponent(`${tag} *`)}?fields=id`, sizes, (t: { id: number }) => t.id);
      expect(tokens).toEqual(tokenIds);
      const sessions = await walk(`/mqtt/sessions/all?token_id=${owner.id}&fields=client_id`, sizes, (s: { client_id: string }) => s.client_id);
      expect(sessions).toEqual([...sessionIds].sort());
    }), { seed: 5, numRuns: 15 });
  });

  test('a broker that cannot reach its store answers 503 on every new route (SPEC §5)', async () => {
    const { publisher, retained, sessions } = a.broker;
    const down = () => Promise.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false"));
    const saved = { publish: publisher.publish, list: retained.list, listSessions: sessions.list };
    publisher.publish = down;
    retained.list = down;
    sessions.list = down;
    try {
      expect((await call('POST', '/mqtt/messages', { topic: 'a', payload: 'b' })).status).toBe(503);
      expect((await call('GET', '/mqtt/messages/%23')).status).toBe(503);
      expect((await call('DELETE', '/mqtt/messages/%23')).status).toBe(503);
      expect((await call('GET', '/mqtt/sessions/all/subscriptions')).status).toBe(503);
      expect((await call('DELETE', '/mqtt/sessions/all/subscriptions/a')).status).toBe(503);
    } finally {
      publisher.publish = saved.publish;
      retained.list = saved.list;
      sessions.list = saved.listSessions;
    }
  });
});
