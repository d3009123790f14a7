// SPEC §8: events on `$tokenmq/events/<event>/<token_id>` and the broker log
// behind GET /mqtt/logs and GET /platform/tokens/{sel}/logs, in memory and
// with Redis (cluster mode), one node and two.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { Redis } from 'ioredis';
import { RawClient, clientId, closed, connect, refusedCode } from '../helpers/mqtt.js';
import { eventually, reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, type TestServer, type TestServerOptions } from '../helpers/server.js';
import { within } from '../helpers/wait.js';
import type { BrokerEvent } from '../../src/events/types.js';

const WAIT = 5000;

interface Seen { topic: string; record: BrokerEvent; raw: string }

/** Every event a client receives, parsed; `find` waits for the first that passes. */
function watch(client: MqttClient) {
  const seen: Seen[] = [];
  const waiters: { test: (s: Seen) => boolean; resolve: (s: Seen) => void }[] = [];
  client.on('message', (topic, payload) => {
    const raw = payload.toString();
    let record = {} as BrokerEvent;
    try {
      record = JSON.parse(raw) as BrokerEvent;
    } catch {
      // not an event (the test's own markers)
    }
    const s = { topic, record, raw };
    seen.push(s);
    for (let i = 0; i < waiters.length; i++) {
      if (waiters[i]!.test(s)) waiters.splice(i--, 1)[0]!.resolve(s);
    }
  });
  return {
    seen,
    find(test: (r: BrokerEvent, topic: string) => boolean, what = 'event', ms = WAIT): Promise<Seen> {
      const hit = seen.find((s) => test(s.record, s.topic));
      if (hit) return Promise.resolve(hit);
      return within(new Promise<Seen>((resolve) => waiters.push({ test: (s) => test(s.record, s.topic), resolve })), ms, what);
    },
  };
}

const MODES: [string, TestServerOptions][] = [
  ['memory', { store: 'memory' }],
  ['redis cluster mode', { store: 'redis', cluster: true }],
];

describe.each(MODES)('events and the broker log (SPEC §8), %s', (_name, options) => {
  let srv: TestServer;
  let master: { id: number; key: string };
  let observer: MqttClient;
  let events: ReturnType<typeof watch>;
  const clients: MqttClient[] = [];
  const call = (method: string, path: string, body?: unknown, key = master.key) => rest(srv.httpUrl, method, path, { key, body });
  const open = async (key: string, opts: Parameters<typeof connect>[2] = {}): Promise<MqttClient> => {
    const c = await connect(srv.mqttUrl, key, { clientId: clientId('ev'), ...opts });
    clients.push(c);
    return c;
  };
  /** Waits for `event` of this client id. */
  const eventOf = (event: string, client: string, what = `${event} of ${client}`) => events.find((r) => r.event === event && r.client_id === client, what);

  beforeAll(async () => {
    srv = await startTestServer({ ...options, tokenCacheMs: 0 });
    master = await srv.token({ ttl: 3600, access: { type: 1 } });
    observer = await connect(srv.mqttUrl, master.key, { clientId: clientId('observer') });
    events = watch(observer);
    await observer.subscribeAsync('$tokenmq/events/#');
  });

  afterAll(async () => {
    for (const c of [...clients, observer]) c.end(true);
    await srv.close();
  });

  test('connected, then disconnected with reason client, with their fields and never a key (SPEC §8)', async () => {
    const t = await srv.token({ ttl: 3600, access: { type: 0 } });
    const id = clientId('plain');
    const c = await open(t.key, { clientId: id });
    const connected = await eventOf('connected', id);
    expect(connected.topic).toBe(`$tokenmq/events/connected/${t.id}`);
    expect(connected.record).toMatchObject({ event: 'connected', node: srv.nodeId, client_id: id, token_id: t.id, ip: '127.0.0.1', transport: 'tcp' });
    expect(typeof connected.record.time).toBe('number');
    expect(Math.abs(connected.record.time - Date.now() / 1000)).toBeLessThan(60);
    await c.endAsync();
    const gone = await eventOf('disconnected', id);
    expect(gone.topic).toBe(`$tokenmq/events/disconnected/${t.id}`);
    expect(gone.record).toMatchObject({ client_id: id, token_id: t.id, reason: 'client', transport: 'tcp' });
    for (const s of events.seen) expect(s.raw).not.toContain(t.key);
  });

  test('refused: CONNACK code and reason, under token 0 for an unknown key (SPEC §8)', async () => {
    const unknown = 'x'.repeat(64);
    const id = clientId('refused');
    expect(await refusedCode(srv.mqttUrl, unknown, { clientId: id })).toBe(4);
    const r = await eventOf('refused', id);
    expect(r.topic).toBe('$tokenmq/events/refused/0');
    expect(r.record).toMatchObject({ code: 4, reason: 'bad_key', token_id: 0, ip: '127.0.0.1' });
    expect(r.raw).not.toContain(unknown);
    const disabled = await srv.token({ ttl: 3600, enabled: false });
    const id2 = clientId('refused');
    expect(await refusedCode(srv.mqttUrl, disabled.key, { clientId: id2 })).toBe(5);
    const r2 = await eventOf('refused', id2);
    expect(r2.topic).toBe(`$tokenmq/events/refused/${disabled.id}`);
    expect(r2.record).toMatchObject({ code: 5, reason: 'disabled', token_id: disabled.id });
    expect(r2.raw).not.toContain(disabled.key);
  });

  test('kicked over REST: `kicked` by the kicking token under the kicked token, then disconnected `kicked` (SPEC §8)', async () => {
    const t = await srv.token({ ttl: 3600 });
    const id = clientId('kick');
    const c = await open(t.key, { clientId: id });
    await eventOf('connected', id);
    const res = await call('DELETE', `/mqtt/sessions/${encodeURIComponent(id)}`);
    expect(res.status).toBe(200);
    await closed(c);
    const kicked = await eventOf('kicked', id);
    expect(kicked.topic).toBe(`$tokenmq/events/kicked/${t.id}`);
    expect(kicked.record).toMatchObject({ token_id: t.id, by: master.id });
    expect((await eventOf('disconnected', id)).record.reason).toBe('kicked');
  });

  test('token_created, token_updated (fields), token_deleted with `by`; sessions end token_disabled, ip_denied, token_deleted (SPEC §8)', async () => {
    const created = await call('POST', '/platform/tokens', [{ ttl: 3600, info: 'a' }, { ttl: 3600 }, { ttl: 3600 }]);
    expect(created.status).toBe(200);
    const [a, b, d] = created.body.result as { id: number; key: string }[];
    for (const t of [a!, b!, d!]) {
      const e = await events.find((r) => r.event === 'token_created' && r.token_id === t.id);
      expect(e.topic).toBe(`$tokenmq/events/token_created/${t.id}`);
      expect(e.record.by).toBe(master.id);
      expect(e.raw).not.toContain(t.key);
    }
    const ids = [clientId('dis'), clientId('ip'), clientId('del')];
    await open(a!.key, { clientId: ids[0] });
    await open(b!.key, { clientId: ids[1] });
    await open(d!.key, { clientId: ids[2] });
    expect((await call('PUT', `/platform/tokens/${a!.id}`, { enabled: false, info: 'b' })).status).toBe(200);
    const updated = await events.find((r) => r.event === 'token_updated' && r.token_id === a!.id);
    expect(updated.record.by).toBe(master.id);
    expect([...updated.record.fields!].sort()).toEqual(['enabled', 'info']);
    expect((await eventOf('disconnected', ids[0]!)).record.reason).toBe('token_disabled');
    expect((await call('PUT', `/platform/tokens/${b!.id}`, { ips: '10.1.2.3' })).status).toBe(200);
    expect((await eventOf('disconnected', ids[1]!)).record.reason).toBe('ip_denied');
    expect((await call('DELETE', `/platform/tokens/${d!.id}`)).status).toBe(200);
    expect((await events.find((r) => r.event === 'token_deleted' && r.token_id === d!.id)).record.by).toBe(master.id);
    expect((await eventOf('disconnected', ids[2]!)).record.reason).toBe('token_deleted');
  });

  test('disconnect reasons: token_expired, rights_changed, publish_denied, takeover, keepalive, protocol_error (SPEC §8)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const soon = await srv.token({ expire: now + 2, ttl: 0 });
    const acl = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'ok/#', actions: ['publish', 'subscribe'] }] } });
    const std = await srv.token({ ttl: 3600 });
    const [expId, rightsId, pubId, takeId, kaId, protoId] = ['exp', 'rights', 'pub', 'take', 'ka', 'proto'].map((p) => clientId(p)) as [string, string, string, string, string, string];
    await open(soon.key, { clientId: expId });
    await open(acl.key, { clientId: rightsId });
    const pub = await open(acl.key, { clientId: pubId });
    await open(std.key, { clientId: takeId });
    await open(std.key, { clientId: takeId });
    const ka = new RawClient(srv.ports.mqtt, { username: std.key, clientId: kaId, keepalive: 1 });
    const proto = new RawClient(srv.ports.mqtt, { username: std.key, clientId: protoId });
    await ka.wait((p) => p.cmd === 'connack');
    await proto.wait((p) => p.cmd === 'connack');
    proto.send({ cmd: 'publish', topic: 'a/#', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
    pub.publish('not/allowed', 'x');
    expect((await srv.store.update([acl.id], { access: { type: 2, acl: [{ uri: 'mqtt/sessions', methods: ['GET'] }] } }, now)).length).toBe(1);
    expect((await eventOf('disconnected', takeId)).record.reason).toBe('takeover');
    expect((await eventOf('disconnected', protoId)).record.reason).toBe('protocol_error');
    expect((await eventOf('disconnected', pubId)).record.reason).toMatch(/^(publish_denied|rights_changed)$/);
    expect((await eventOf('disconnected', rightsId)).record.reason).toBe('rights_changed');
    expect((await eventOf('disconnected', kaId)).record.reason).toBe('keepalive');
    expect((await eventOf('disconnected', expId)).record.reason).toBe('token_expired');
    // Once, from the node whose store swept it.
    const expired = await events.find((r) => r.event === 'token_expired' && r.token_id === soon.id);
    expect(expired.topic).toBe(`$tokenmq/events/token_expired/${soon.id}`);
    expect(expired.record).not.toHaveProperty('by');
    ka.destroy();
    proto.destroy();
  });

  test('packet_too_large: a packet over MAX_PACKET_SIZE closes with that reason (SPEC §1, §8)', async () => {
    const t = await srv.token({ ttl: 3600 });
    const id = clientId('big');
    const raw = new RawClient(srv.ports.mqtt, { username: t.key, clientId: id });
    await raw.wait((p) => p.cmd === 'connack');
    raw.send({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(1024 * 1024 + 1), qos: 0, retain: false, dup: false });
    expect((await eventOf('disconnected', id)).record.reason).toBe('packet_too_large');
    raw.destroy();
  });

  test('publish_denied closes with that reason (MQTT-3.3.5-2, SPEC §8)', async () => {
    const acl = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'ok/#', actions: ['publish'] }] } });
    const id = clientId('deny');
    const c = await open(acl.key, { clientId: id });
    c.publish('not/allowed', 'x');
    expect((await eventOf('disconnected', id)).record.reason).toBe('publish_denied');
  });

  test('only `$tokenmq/` subscriptions of master or a granting ACL entry receive events; `#` never (SPEC §3, §8, MQTT-4.7.2-1)', async () => {
    const std = await srv.token({ ttl: 3600 });
    const target = await srv.token({ ttl: 3600 });
    const other = await srv.token({ ttl: 3600 });
    const narrow = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: `$tokenmq/events/+/${target.id}`, actions: ['subscribe'] }] } });
    const wide = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: '$tokenmq/events/#', actions: ['subscribe'] }] } });
    const hashAcl = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: '#', actions: ['subscribe'] }] } });
    const masterHash = watch(await open(master.key));
    await clients.at(-1)!.subscribeAsync('#');
    const stdHash = watch(await open(std.key));
    await clients.at(-1)!.subscribeAsync('#');
    const aclHash = watch(await open(hashAcl.key));
    await clients.at(-1)!.subscribeAsync('#');
    // A standard token may not subscribe to the broker's topics at all (SPEC §3).
    const stdEvents = await open(std.key);
    await expect(stdEvents.subscribeAsync('$tokenmq/events/#')).rejects.toThrow();
    const narrowW = watch(await open(narrow.key));
    await clients.at(-1)!.subscribeAsync('$tokenmq/events/#');
    const wideW = watch(await open(wide.key));
    await clients.at(-1)!.subscribeAsync('$tokenmq/events/#');

    const idT = clientId('target');
    const idO = clientId('other');
    (await open(target.key, { clientId: idT })).end(true);
    (await open(other.key, { clientId: idO })).end(true);
    await wideW.find((r) => r.event === 'disconnected' && r.client_id === idT);
    await wideW.find((r) => r.event === 'disconnected' && r.client_id === idO);
    await narrowW.find((r) => r.event === 'disconnected' && r.client_id === idT);
    // A marker after the events: every subscriber has had its chance to receive them.
    const marker = `marker/${clientId('m')}`;
    await observer.publishAsync(marker, 'x');
    await masterHash.find((_r, topic) => topic === marker).catch(() => undefined);
    for (const w of [masterHash, stdHash, aclHash]) expect(w.seen.filter((s) => s.topic.startsWith('$'))).toEqual([]);
    expect(narrowW.seen.every((s) => s.record.token_id === target.id)).toBe(true);
  });

  test('GET /mqtt/logs: newest first, filters, limit; standard and ACL without the entry get 403; bad input 400 (SPEC §3, §5, §8)', async () => {
    const t = await srv.token({ ttl: 3600 });
    const since = (Date.now() / 1000 - 0.001).toFixed(3);
    const ids = [clientId('log'), clientId('log'), clientId('log')];
    for (const id of ids) {
      const c = await open(t.key, { clientId: id });
      await eventOf('connected', id);
      await c.endAsync();
      await eventOf('disconnected', id);
    }
    const all = await eventually(async () => {
      const res = await call('GET', `/mqtt/logs?token_id=${t.id}&since=${since}`);
      expect(res.status).toBe(200);
      return res.body.result.length === 6 ? res.body.result as BrokerEvent[] : null;
    }, WAIT, 'six records in the log');
    expect(all.map((r) => `${r.event} ${r.client_id}`)).toEqual([
      `disconnected ${ids[2]}`, `connected ${ids[2]}`, `disconnected ${ids[1]}`, `connected ${ids[1]}`, `disconnected ${ids[0]}`, `connected ${ids[0]}`,
    ]);
    for (let i = 1; i < all.length; i++) expect(all[i - 1]!.time).toBeGreaterThanOrEqual(all[i]!.time);
    expect(JSON.stringify(all)).not.toContain(t.key);
    const limited = await call('GET', `/mqtt/logs?token_id=${t.id}&limit=2&event=connected`);
    expect(limited.body.result.map((r: BrokerEvent) => r.client_id)).toEqual([ids[2], ids[1]]);
    const byClient = await call('GET', `/mqtt/logs?client_id=${encodeURIComponent(ids[0]!)}`);
    expect(byClient.body.result.map((r: BrokerEvent) => r.event)).toEqual(['disconnected', 'connected']);
    const later = await call('GET', `/mqtt/logs?token_id=${t.id}&since=${all[0]!.time + 1}`);
    expect(later.body.result).toEqual([]);
    const platform = await call('GET', `/platform/tokens/${t.id},999999/logs?limit=3`);
    expect(platform.status).toBe(200);
    expect(platform.body.result.map((r: BrokerEvent) => r.client_id)).toEqual([ids[2], ids[2], ids[1]]);

    const std = await srv.token({ ttl: 3600 });
    expect((await call('GET', '/mqtt/logs', undefined, std.key)).status).toBe(403);
    expect((await call('GET', '/mqtt/sessions/all', undefined, std.key)).status).toBe(200);
    const noEntry = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt/sessions', methods: ['GET'] }] } });
    expect((await call('GET', '/mqtt/logs', undefined, noEntry.key)).status).toBe(403);
    const reader = await srv.token({ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt/logs', methods: ['GET'] }] } });
    expect((await call('GET', `/mqtt/logs?token_id=${t.id}&limit=1`, undefined, reader.key)).status).toBe(200);
    expect((await call('GET', `/platform/tokens/${t.id}/logs`, undefined, reader.key)).status).toBe(403);

    for (const [query, field] of [['limit=0', 'limit'], ['limit=1001', 'limit'], ['limit=x', 'limit'], ['event=nope', 'event'], ['since=yesterday', 'since'], ['token_id=-1', 'token_id'], ['what=1', 'what']]) {
      const res = await call('GET', `/mqtt/logs?${query}`);
      expect(res.status).toBe(400);
      expect(reasonOf(res)).toContain(field);
    }
  });
});

describe('events and the log across two nodes (SPEC §6, §8)', () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    a = await startTestServer({ store: 'redis', cluster: true });
    const { RedisStore } = await import('../../src/store/redis-store.js');
    const prefix = (a.store as unknown as { prefix: string }).prefix;
    b = await startTestServer({ store: new RedisStore({ url: process.env.REDIS_URL!, prefix }), cluster: true });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  test('an event of node B reaches a subscriber on node A, and both nodes read one log', async () => {
    const master = await a.token({ ttl: 3600, access: { type: 1 } });
    const observer = await connect(a.mqttUrl, master.key);
    const w = watch(observer);
    await observer.subscribeAsync('$tokenmq/events/#');
    const t = await b.token({ ttl: 3600 });
    const id = clientId('remote');
    // The subscription reaches node B through the emitter: retry until an event crosses.
    await eventually(async () => {
      const c = await connect(b.mqttUrl, t.key, { clientId: id });
      await c.endAsync();
      return w.find((r) => r.event === 'disconnected' && r.client_id === id).then(() => true, () => false);
    }, 20_000, 'an event from node B');
    const seen = w.seen.find((s) => s.record.client_id === id)!;
    expect(seen.record.node).toBe(b.nodeId);
    const res = await eventually(async () => {
      const r = await rest(a.httpUrl, 'GET', `/mqtt/logs?client_id=${encodeURIComponent(id)}&event=connected&limit=1`, { key: master.key });
      return r.body.result?.length === 1 ? r : null;
    }, WAIT, 'the record in the shared log');
    expect(res.body.result[0]).toMatchObject({ node: b.nodeId, token_id: t.id });
    observer.end(true);
  });

  /** `$tokenmq/events/` messages node `srv` publishes from now on. */
  function countPublished(srv: TestServer): { readonly count: number; stop(): void } {
    const aedes = srv.broker.aedes as unknown as { publish: (packet: { topic: string }, done?: unknown) => void };
    const publish = aedes.publish;
    const counter = { count: 0, stop: () => { aedes.publish = publish; } };
    aedes.publish = function counted(this: unknown, packet, done) {
      if (packet.topic.startsWith('$tokenmq/events/')) counter.count++;
      return publish.call(this, packet, done);
    };
    return counter;
  }

  test('nobody subscribed on any node: events are logged, not published; a SUBACK on node A is enough for node B to publish the next (issue 11 cost, SPEC §8)', async () => {
    const master = await a.token({ ttl: 3600, access: { type: 1 } });
    const t = await b.token({ ttl: 3600 });
    const published = countPublished(b);
    try {
      // Once node B knows nobody listens (its startup grace over, earlier tests' observers gone):
      // a session's events reach the log and nobody else.
      const quiet = await eventually(async () => {
        const before = published.count;
        const id = clientId('quiet');
        const c = await connect(b.mqttUrl, t.key, { clientId: id });
        await c.endAsync();
        return published.count === before ? id : null;
      }, WAIT, 'node B publishing nothing');
      const before = published.count;
      await eventually(async () => {
        const r = await rest(a.httpUrl, 'GET', `/mqtt/logs?client_id=${encodeURIComponent(quiet)}&event=disconnected&limit=1`, { key: master.key });
        return r.body.result?.length === 1 ? r : null;
      }, WAIT, 'the disconnect in the log');
      expect(published.count).toBe(before);
      // Each round starts with no listener anywhere, so the SUBSCRIBE turns node A into a listening node:
      // the event node B emits right after the SUBACK reaches the subscriber, without any retry.
      for (let round = 0; round < 8; round++) {
        const observer = await connect(a.mqttUrl, master.key);
        const w = watch(observer);
        await observer.subscribeAsync(round % 2 === 0 ? '$tokenmq/events/#' : `$tokenmq/events/connected/${t.id}`);
        const id = clientId(`suback-${round}`);
        const device = await connect(b.mqttUrl, t.key, { clientId: id });
        await w.find((r) => r.event === 'connected' && r.client_id === id, `round ${round}: connected from node B`);
        device.end(true);
        await observer.endAsync();
      }
      expect(published.count).toBeGreaterThanOrEqual(before + 8);
      // Last listener gone: node B stops publishing once node A's word arrives.
      await eventually(async () => {
        const before = published.count;
        const d = await connect(b.mqttUrl, t.key, { clientId: clientId('after') });
        await d.endAsync();
        return published.count === before ? true : null;
      }, WAIT, 'node B publishing no more');
    } finally {
      published.stop();
    }
  });

  test('a node that starts after a subscriber on another node publishes its events to it (SPEC §6, §8)', async () => {
    const master = await a.token({ ttl: 3600, access: { type: 1 } });
    const observer = await connect(a.mqttUrl, master.key);
    const w = watch(observer);
    await observer.subscribeAsync('$tokenmq/events/+/#');
    const { RedisStore } = await import('../../src/store/redis-store.js');
    const prefix = (a.store as unknown as { prefix: string }).prefix;
    const c = await startTestServer({ store: new RedisStore({ url: process.env.REDIS_URL!, prefix }), cluster: true });
    try {
      const t = await c.token({ ttl: 3600 });
      const id = clientId('late-node');
      const device = await connect(c.mqttUrl, t.key, { clientId: id });
      const seen = await w.find((r) => r.event === 'connected' && r.client_id === id, 'connected from the new node');
      expect(seen.record.node).toBe(c.nodeId);
      device.end(true);
    } finally {
      observer.end(true);
      await c.close();
    }
  });

  test('a takeover from another node ends the old session with reason takeover (MQTT-3.1.4-2, SPEC §8)', async () => {
    const master = await a.token({ ttl: 3600, access: { type: 1 } });
    const t = await a.token({ ttl: 3600 });
    const id = clientId('cross-take');
    const old = await connect(b.mqttUrl, t.key, { clientId: id });
    const fresh = await connect(a.mqttUrl, t.key, { clientId: id });
    await closed(old);
    const records = await eventually(async () => {
      const r = await rest(a.httpUrl, 'GET', `/mqtt/logs?client_id=${id}&event=disconnected`, { key: master.key });
      return r.body.result?.length === 1 ? r.body.result as BrokerEvent[] : null;
    }, WAIT, 'the old session\'s disconnect');
    expect(records[0]).toMatchObject({ node: b.nodeId, reason: 'takeover', token_id: t.id });
    fresh.end(true);
    old.end(true);
  });

  test('a kick through node A of a session on node B: kicked (by) and disconnected come from node B', async () => {
    const master = await a.token({ ttl: 3600, access: { type: 1 } });
    const t = await b.token({ ttl: 3600 });
    const id = clientId('remote-kick');
    const c = await connect(b.mqttUrl, t.key, { clientId: id });
    await eventually(async () => (await rest(a.httpUrl, 'GET', `/mqtt/sessions/${id}`, { key: master.key })).body.result?.length === 1, WAIT, 'listing');
    expect((await rest(a.httpUrl, 'DELETE', `/mqtt/sessions/${id}`, { key: master.key })).status).toBe(200);
    await closed(c);
    const records = await eventually(async () => {
      const r = await rest(a.httpUrl, 'GET', `/mqtt/logs?client_id=${id}`, { key: master.key });
      return r.body.result?.length === 3 ? r.body.result as BrokerEvent[] : null;
    }, WAIT, 'kick records');
    expect(records.map((r) => r.event)).toEqual(['disconnected', 'kicked', 'connected']);
    expect(records[1]).toMatchObject({ by: master.id, node: b.nodeId, token_id: t.id });
    expect(records[0]!.reason).toBe('kicked');
  });
});

describe('the Redis log while Redis is away (SPEC §8)', () => {
  test('GET /mqtt/logs answers 503 within 2 s and never hangs', async () => {
    const srv = await startTestServer({ store: 'redis', tokenCacheMs: 60_000 });
    const admin = new Redis(process.env.REDIS_URL!);
    try {
      const master = await srv.token({ ttl: 3600, access: { type: 1 } });
      expect((await rest(srv.httpUrl, 'GET', '/mqtt/logs', { key: master.key })).status).toBe(200);
      await admin.call('CLIENT', 'PAUSE', '3000', 'ALL');
      const started = Date.now();
      const res = await rest(srv.httpUrl, 'GET', '/mqtt/logs', { key: master.key });
      expect(res.status).toBe(503);
      expect(reasonOf(res)).toContain('log');
      expect(Date.now() - started).toBeLessThan(2500);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => {});
      admin.disconnect();
      await srv.close();
    }
  });

  test('records wait in a bounded buffer; the oldest are dropped and counted in /metrics', async () => {
    const srv = await startTestServer({ store: 'redis', logBufferLimit: 5 });
    const admin = new Redis(process.env.REDIS_URL!);
    try {
      await admin.call('CLIENT', 'PAUSE', '2000', 'WRITE');
      for (let i = 0; i < 20; i++) srv.broker.events.emit({ event: 'refused', client_id: `buffered-${i}`, token_id: 0, reason: 'test' });
      // One batch may be in flight (held by the pause), five wait; the rest are dropped.
      expect(srv.brokerLog.dropped).toBeGreaterThanOrEqual(14);
      await admin.call('CLIENT', 'UNPAUSE');
      const metrics = await rest(srv.httpUrl, 'GET', '/metrics');
      expect(metrics.text).toMatch(new RegExp(`tokenmq_log_dropped_total ${srv.brokerLog.dropped}\\b`));
      const kept = await eventually(async () => {
        const r = await srv.brokerLog.query({ event: 'refused', limit: 100 });
        return r.length >= 5 ? r : null;
      }, WAIT, 'the buffered records written');
      expect(kept.slice(0, 5).map((r) => r.client_id)).toEqual([19, 18, 17, 16, 15].map((i) => `buffered-${i}`));
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => {});
      admin.disconnect();
      await srv.close();
    }
  });

  test('the memory log keeps LOG_RETENTION records, newest first', async () => {
    const srv = await startTestServer({ logRetention: 3 });
    try {
      for (let i = 0; i < 10; i++) srv.broker.events.emit({ event: 'refused', client_id: `m-${i}`, token_id: 0, reason: 'test' });
      expect((await srv.brokerLog.query({ limit: 100 })).map((r) => r.client_id)).toEqual(['m-9', 'm-8', 'm-7']);
    } finally {
      await srv.close();
    }
  });
});

test('shutdown: sessions end with reason shutdown in the log (SPEC §1, §8)', async () => {
  const srv = await startTestServer();
  const t = await srv.token({ ttl: 3600 });
  const id = clientId('shut');
  const c = await connect(srv.mqttUrl, t.key, { clientId: id });
  await srv.close();
  await closed(c);
  const records = await srv.brokerLog.query({ clientId: id, limit: 10 });
  expect(records.map((r) => `${r.event} ${r.reason ?? ''}`)).toEqual(['disconnected shutdown', 'connected ']);
  c.end(true);
});

test('sessions of a node that died get `disconnected` with `node_down`, once, from the node that notices (SPEC §8)', async () => {
  const srv = await startTestServer({ store: 'redis', cluster: true });
  const admin = new Redis(process.env.REDIS_URL!);
  try {
    const master = await srv.token({ ttl: 3600, access: { type: 1 } });
    const observer = await connect(srv.mqttUrl, master.key);
    const w = watch(observer);
    await observer.subscribeAsync('$tokenmq/events/#');
    const prefix = (srv.store as unknown as { prefix: string }).prefix;
    // A node that stopped its heartbeat 12 s ago (the directory layout: `nodes` ZSET, `node:<id>` HASH).
    const ghost = `ghost-${clientId('n')}`;
    const view = { client_id: 'ghost-client', token_id: 42, ip: '10.0.0.9', transport: 'ws', node: ghost, connected: 1 };
    await admin.multi()
      .zadd(`${prefix}nodes`, Date.now() - 12_000, ghost)
      .hset(`${prefix}node:${ghost}`, 'ghost-client', JSON.stringify(view))
      .exec();
    // The directory's heartbeat (every 5 s) notices it.
    const down = await w.find((r) => r.event === 'disconnected' && r.client_id === 'ghost-client', 'node_down', 10_000);
    expect(down.topic).toBe('$tokenmq/events/disconnected/42');
    expect(down.record).toMatchObject({ reason: 'node_down', token_id: 42, ip: '10.0.0.9', transport: 'ws', node: srv.nodeId });
    expect(await admin.exists(`${prefix}node:${ghost}`)).toBe(0);
    observer.end(true);
  } finally {
    admin.disconnect();
    await srv.close();
  }
}, 20_000);
