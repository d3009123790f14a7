// End to end (SPEC §5 with §4 enforcement): tokens made over REST, used by real
// MQTT clients, changed and deleted over REST; /mqtt/sessions lists and kicks.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { clientId, closed, collect, connect } from '../helpers/mqtt.js';
import { eventually, reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ENFORCE_MS = 3000; // SPEC: within 1 s; the margin absorbs a loaded CI machine

interface SessionView {
  client_id: string;
  token_id: number;
  subscriptions: { topic: string; qos: number }[];
  [field: string]: unknown;
}

describe.each(['memory', 'redis'] as const)('REST and MQTT together with the %s store', (kind) => {
  let srv: TestServer;
  let master: string;
  let publisher: MqttClient;
  const clients: MqttClient[] = [];
  const open = async (key: string, id = clientId('api')): Promise<MqttClient> => {
    const c = await connect(srv.mqttUrl, key, { clientId: id });
    clients.push(c);
    return c;
  };
  const call = (method: string, path: string, body?: unknown) => rest(srv.httpUrl, method, path, { key: master, body });
  const sessions = async (sel: string): Promise<SessionView[]> => {
    const res = await call('GET', `/mqtt/sessions/${sel}`);
    expect(res.status).toBe(200);
    return res.body.result as SessionView[];
  };
  const createToken = async (body: unknown): Promise<{ id: number; key: string }> => {
    const res = await call('POST', '/platform/tokens', body);
    expect(res.status).toBe(200);
    return res.body.result[0];
  };

  beforeAll(async () => {
    srv = await startTestServer({ store: kind });
    master = (await srv.token({ access: { type: 1 } })).key;
    publisher = await open(master);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await srv.close();
  });

  test('a token created over REST connects; its session is listed with the SPEC §5 fields', async () => {
    const t = await createToken({ ttl: 3600, info: 'e2e' });
    const id = clientId('listed');
    const c = await open(t.key, id);
    await c.subscribeAsync('x/+', { qos: 1 });
    const [view] = await sessions(id);
    expect(view).toEqual({
      client_id: id,
      token_id: t.id,
      ip: '127.0.0.1',
      transport: 'tcp',
      node: srv.broker.registry.node,
      connected: expect.any(Number),
      clean: true,
      keepalive: 60,
      subscriptions: [{ topic: 'x/+', qos: 1 }],
      msgs_in: expect.any(Number),
      msgs_out: expect.any(Number),
      bytes_in: expect.any(Number),
      bytes_out: expect.any(Number),
    });
    expect((view!.bytes_in as number)).toBeGreaterThan(0);
    // ?token_id= and ?fields=
    const byToken = await call('GET', `/mqtt/sessions/all?token_id=${t.id}&fields=client_id,token_id`);
    expect(byToken.body.result).toEqual([{ client_id: id, token_id: t.id }]);
    // SPEC §5: one client id, a comma is part of it.
    expect((await call('GET', `/mqtt/sessions/${id},nobody`)).body.result).toEqual([]);
    expect((await call('GET', '/mqtt/sessions/nobody')).body.result).toEqual([]);
    const all = await sessions('all');
    expect(all.map((s) => s.client_id)).toEqual(expect.arrayContaining([id]));
    const badField = await call('GET', `/mqtt/sessions/${id}?fields=password`);
    expect(badField.status).toBe(400);
    expect(reasonOf(badField)).toMatch(/^fields: unknown field 'password'/);
    const badToken = await call('GET', '/mqtt/sessions/all?token_id=abc');
    expect(badToken.status).toBe(400);
    expect(reasonOf(badToken)).toMatch(/^token_id: /);
  });

  test('PUT a narrower ACL: the subscription disappears from /mqtt/sessions and deliveries stop (SPEC §4)', async () => {
    const t = await createToken({
      ttl: 3600,
      access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['subscribe'] }, { uri: 'mqtt', topic: 'b/#', actions: ['subscribe'] }] },
    });
    const id = clientId('narrowed');
    const c = await open(t.key, id);
    const inbox = collect(c);
    await c.subscribeAsync(['a/#', 'b/#'], { qos: 1 });
    const topics = async (): Promise<string[]> => ((await sessions(id))[0]?.subscriptions ?? []).map((s) => s.topic).sort();
    expect(await topics()).toEqual(['a/#', 'b/#']);
    await publisher.publishAsync('b/1', 'before', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'b/1', payload: 'before' });

    const put = await call('PUT', `/platform/tokens/${t.id}`, { access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['subscribe'] }] } });
    expect(put.status).toBe(200);
    await eventually(async () => !(await topics()).includes('b/#'), ENFORCE_MS, 'b/# to leave the session');
    expect(await topics()).toEqual(['a/#']);
    // In order from one publisher: had b/2 been delivered, it would arrive before a/2.
    await publisher.publishAsync('b/2', 'after', { qos: 1 });
    await publisher.publishAsync('a/2', 'marker', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'a/2', payload: 'marker' });
    expect(inbox.messages).toEqual([]);
  });

  test('DELETE the token over REST: its session closes', async () => {
    const t = await createToken({ ttl: 3600 });
    const c = await open(t.key);
    const gone = closed(c, ENFORCE_MS);
    const del = await call('DELETE', `/platform/tokens/${t.id}`);
    expect(del.body).toEqual({ result: [{ id: t.id }] });
    await gone;
    await eventually(async () => (await call('GET', `/mqtt/sessions/all?token_id=${t.id}`)).body.result.length === 0, ENFORCE_MS, 'session to leave the listing');
  });

  test('PUT enabled=false over REST closes the session', async () => {
    const t = await createToken({ ttl: 3600 });
    const c = await open(t.key);
    const gone = closed(c, ENFORCE_MS);
    expect((await call('PUT', `/platform/tokens/${t.id}`, { enabled: false })).status).toBe(200);
    await gone;
  });

  test('DELETE /mqtt/sessions/{client id} kicks that session only', async () => {
    const t = await createToken({ ttl: 3600 });
    const kickId = clientId('kick');
    const keepId = clientId('keep');
    const kicked = await open(t.key, kickId);
    const kept = await open(t.key, keepId);
    const gone = closed(kicked, ENFORCE_MS);
    const res = await call('DELETE', `/mqtt/sessions/${kickId}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ result: [{ client_id: kickId, token_id: t.id, node: srv.broker.registry.node }] });
    await gone;
    await eventually(async () => (await sessions(kickId)).length === 0, ENFORCE_MS, 'kicked session to leave the listing');
    expect(await sessions(keepId)).toHaveLength(1);
    expect(kept.connected).toBe(true);
    expect((await call('DELETE', '/mqtt/sessions/nobody')).body).toEqual({ result: [] });
  });

  test('DELETE /mqtt/sessions/all?token_id=N closes that token\'s sessions', async () => {
    const a = await createToken({ ttl: 3600 });
    const b = await createToken({ ttl: 3600 });
    const a1 = await open(a.key);
    const a2 = await open(a.key);
    const b1 = await open(b.key);
    const gone = Promise.all([closed(a1, ENFORCE_MS), closed(a2, ENFORCE_MS)]);
    const res = await call('DELETE', `/mqtt/sessions/all?token_id=${a.id}`);
    expect(res.body.result).toHaveLength(2);
    await gone;
    expect(b1.connected).toBe(true);
    expect(await sessions(b1.options.clientId!)).toHaveLength(1);
  });
});

describe('session directory failures', () => {
  test('a directory that cannot list or kick (Redis down in a cluster) answers 503, not 500', async () => {
    const srv = await startTestServer();
    try {
      const master = (await srv.token({ access: { type: 1 } })).key;
      const directory = srv.broker.sessions;
      const list = directory.list.bind(directory);
      directory.list = () => Promise.reject(new Error('Stream isn\'t writeable and enableOfflineQueue options is false'));
      const res = await rest(srv.httpUrl, 'GET', '/mqtt/sessions/all', { key: master });
      expect(res.status).toBe(503);
      expect(reasonOf(res)).toBe('session directory unavailable, try again later');
      directory.list = list;
      const c = await connect(srv.mqttUrl, master);
      directory.kick = () => Promise.reject(new Error('connection is closed'));
      const del = await rest(srv.httpUrl, 'DELETE', `/mqtt/sessions/${c.options.clientId}`, { key: master });
      expect(del.status).toBe(503);
      await c.endAsync(true);
    } finally {
      await srv.close();
    }
  });
});
