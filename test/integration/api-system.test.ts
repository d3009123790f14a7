// GET /health, /metrics, /openapi.json (SPEC §5) and the store outage path (SPEC §7).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createMetrics } from '../../src/metrics.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { connect, refusedCode } from '../helpers/mqtt.js';
import { startRedisServer } from '../helpers/redis-server.js';
import { eventually, reasonOf, rest } from '../helpers/rest.js';
import { startTestServer, uniquePrefix, type TestServer } from '../helpers/server.js';

/** The value of one sample in Prometheus text (labels given in the order printed), or undefined. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const head = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(head));
  return line === undefined ? undefined : Number(line.slice(head.length));
}

describe.each(['memory', 'redis'] as const)('system routes with the %s store', (kind) => {
  let srv: TestServer;
  let master: string;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ store: kind });
    master = (await srv.token({ access: { type: 1 } })).key;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await srv.close();
  });

  test('GET /health is 200 without a token while the store answers', async () => {
    const res = await rest(srv.httpUrl, 'GET', '/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      result: [{ status: 'ok', node: srv.broker.registry.node, store: 'ok', sessions: expect.any(Number), uptime: expect.any(Number) }],
    });
  });

  test('GET /metrics reports sessions, connects, messages, refusals, auth latency and tokens', async () => {
    const c = await connect(srv.mqttUrl, master);
    clients.push(c);
    const acl = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'ok/#', actions: ['subscribe', 'publish'] }] } });
    const limited = await connect(srv.mqttUrl, acl.key);
    clients.push(limited);
    await expect(limited.subscribeAsync('no/#')).rejects.toThrow();
    await limited.subscribeAsync('ok/#', { qos: 1 });
    const got = new Promise((resolve) => limited.once('message', resolve));
    await c.publishAsync('ok/1', 'x', { qos: 1 });
    await got;
    expect(await refusedCode(srv.mqttUrl, 'B'.repeat(64))).toBe(4);
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: master })).status).toBe(200);

    const res = await rest(srv.httpUrl, 'GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = res.text;
    expect(sample(text, 'tokenmq_sessions', 'transport="tcp"')).toBe(srv.broker.registry.countByTransport().tcp);
    expect(sample(text, 'tokenmq_sessions', 'transport="ws"')).toBe(0);
    expect(sample(text, 'tokenmq_connects_total', 'result="ok"')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'tokenmq_connects_total', 'result="bad_key"')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'tokenmq_publishes_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'tokenmq_deliveries_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'tokenmq_refused_subscribes_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'tokenmq_refused_publishes_total')).toBe(srv.broker.stats.refusedPublishes);
    expect(sample(text, 'tokenmq_store_errors_total')).toBe(srv.broker.stats.storeErrors);
    expect(sample(text, 'tokenmq_auth_duration_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'tokenmq_rest_auth_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'tokenmq_tokens')).toBe(await srv.store.count());
    expect(sample(text, 'tokenmq_store_up')).toBe(1);
    expect(sample(text, 'tokenmq_http_requests_total', 'route="/auth/info",method="GET",status="200"')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  });

  test('GET /openapi.json documents every route with its schemas', async () => {
    const res = await rest(srv.httpUrl, 'GET', '/openapi.json');
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual(
      ['/auth/check', '/auth/info', '/auth/tokens', '/health', '/metrics', '/mqtt/logs', '/mqtt/messages', '/mqtt/messages/{filter}',
        '/mqtt/sessions/{sel}', '/mqtt/sessions/{sel}/subscriptions', '/mqtt/sessions/{sel}/subscriptions/{filter}',
        '/platform/tokens', '/platform/tokens/{sel}', '/platform/tokens/{sel}/logs'],
    );
    // SPEC §5 broker routes: bodies, answers and paging are schemas.
    expect(doc.paths['/mqtt/messages'].post.requestBody.content['application/json'].schema.properties).toHaveProperty('encoding');
    expect(Object.keys(doc.paths['/mqtt/messages/{filter}']).sort()).toEqual(['delete', 'get']);
    expect(doc.paths['/mqtt/messages/{filter}'].get.responses['200'].content['application/json'].schema.properties.result.items.properties)
      .toHaveProperty('size');
    expect(doc.paths['/mqtt/sessions/{sel}/subscriptions'].get.responses['200'].content['application/json'].schema.properties)
      .toHaveProperty('pagination');
    expect(doc.paths['/mqtt/sessions/{sel}'].get.parameters.map((p: { name: string }) => p.name))
      .toEqual(expect.arrayContaining(['token_id', 'client_id', 'ip', 'limit', 'offset']));
    // SPEC §8 log routes: their query and answer are schemas, not free text.
    for (const path of ['/mqtt/logs', '/platform/tokens/{sel}/logs']) {
      const get = doc.paths[path].get;
      expect(get.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['since', 'event', 'client_id', 'limit']));
      expect(get.responses['200'].content['application/json'].schema.properties.result.items.properties).toHaveProperty('reason');
    }
    expect(Object.keys(doc.paths['/platform/tokens/{sel}']).sort()).toEqual(['delete', 'get', 'patch', 'put']);
    expect(Object.keys(doc.paths['/mqtt/sessions/{sel}']).sort()).toEqual(['delete', 'get']);
    expect(doc.components.schemas.TokenInput).toMatchObject({ type: 'object', additionalProperties: false });
    expect(Object.keys(doc.components.schemas.TokenInput.properties).sort())
      .toEqual(['access', 'clientids', 'enabled', 'expire', 'info', 'ips', 'limits', 'metadata', 'ttl']);
    expect(doc.components.schemas.Token.properties).not.toHaveProperty('key');
    expect(doc.components.schemas.CreatedToken.properties).toHaveProperty('key');
    expect(doc.components.securitySchemes.FlespiToken).toMatchObject({ type: 'apiKey', in: 'header', name: 'Authorization' });
    expect(doc.paths['/platform/tokens'].post.security).toEqual([{ FlespiToken: [] }]);
  });
});

describe('metrics switched off and several registries', () => {
  test('without metrics, GET /metrics is a 404 in the envelope', async () => {
    const srv = await startTestServer({ metrics: false });
    try {
      const res = await rest(srv.httpUrl, 'GET', '/metrics');
      expect(res.status).toBe(404);
      expect(reasonOf(res)).toBe('no route GET /metrics');
    } finally {
      await srv.close();
    }
  });

  test('each createMetrics has its own registry (no "already registered" clash)', async () => {
    const srv = await startTestServer();
    try {
      const a = createMetrics({ broker: srv.broker, store: srv.store, defaultMetrics: false });
      const b = createMetrics({ broker: srv.broker, store: srv.store, defaultMetrics: false });
      expect(a.registry).not.toBe(b.registry);
      expect(sample(await a.render(), 'tokenmq_tokens')).toBe(await srv.store.count());
      expect(sample(await b.render(), 'tokenmq_tokens')).toBe(await srv.store.count());
    } finally {
      await srv.close();
    }
  });
});

describe('a Redis outage and its recovery (SPEC §7: REST answers 503, then recovers by itself)', () => {
  test('/health and authenticated requests are 503 while Redis is down, 200 once it is back', async () => {
    const redis = await startRedisServer();
    let restarted: Awaited<ReturnType<typeof startRedisServer>> | null = null;
    const store = new RedisStore({ url: redis.url, prefix: uniquePrefix(), logger: pino({ level: 'silent' }) });
    const srv = await startTestServer({ store });
    try {
      const t = await srv.token({ access: { type: 1 } });
      expect((await rest(srv.httpUrl, 'GET', '/health')).status).toBe(200);

      await redis.stop();
      const health = await eventually(async () => {
        const res = await rest(srv.httpUrl, 'GET', '/health');
        return res.status === 503 ? res : null;
      }, 10_000, '/health to report the outage');
      expect(reasonOf(health)).toBe('token store unavailable');
      const auth = await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key });
      expect(auth.status).toBe(503);
      expect(reasonOf(auth)).toBe('token store unavailable, try again later');
      const metrics = await rest(srv.httpUrl, 'GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(sample(metrics.text, 'tokenmq_store_up')).toBe(0);

      // Redis keeps no data here (no persistence): the token is gone after the restart,
      // so recovery shows as /health 200 and an "unknown token" 401 rather than a 503.
      restarted = await startRedisServer({ port: redis.port });
      await eventually(async () => (await rest(srv.httpUrl, 'GET', '/health')).status === 200, 15_000, 'store to recover');
      const after = await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key });
      expect(after.status).toBe(401);
    } finally {
      await srv.close();
      await restarted?.stop();
      await redis.stop();
    }
  }, 40_000);
});
