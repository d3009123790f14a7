// Redis outage (SPEC §7): while Redis is down new connects get CONNACK 3, REST
// answers 503, live sessions stay up; when Redis returns on the same port
// everything recovers without a restart.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { Redis } from 'ioredis';
import { closed, collect, connect, refusedCode, within } from '../helpers/mqtt.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/wait.js';
import { startProcess } from '../helpers/process.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';

const now = (): number => Math.floor(Date.now() / 1000);


describe('Redis outage and recovery', () => {
  let cluster: Cluster;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tokenmq-aof-'));
    cluster = await startCluster(2, {}, { redisDir: dir });
  }, 60_000);
  afterAll(async () => {
    await cluster.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('outage: CONNACK 3, REST 503, live sessions stay; recovery: connects, change feed, listings, accessed', async () => {
    const [t, victim] = await cluster.store.create([{ ttl: 3600 }, { ttl: 3600 }], now());
    const live: MqttClient = await connect(cluster.mqtt(0), t!.key, { clientId: 'outage-live', keepalive: 1 });
    const doomed = await connect(cluster.mqtt(1), victim!.key, { clientId: 'outage-doomed' });
    const accessedBefore = (await cluster.store.get([t!.id]))[0]!.accessed;
    let liveClosed = false;
    live.on('close', () => { liveClosed = true; });

    await cluster.redis.stop(); // SIGKILL by PID
    expect(await refusedCode(cluster.mqtt(0), t!.key)).toBe(3);
    expect(await refusedCode(cluster.mqtt(1), t!.key)).toBe(3);
    const rest = await fetch(`${cluster.http(0)}/platform/tokens/all`, { headers: { authorization: `FlespiToken ${cluster.masterKey}` } });
    expect(rest.status).toBe(503);
    const body = (await rest.json()) as { errors: { reason: string }[] };
    expect(body.errors[0]!.reason).toMatch(/unavailable|redis|store/i);
    expect((await fetch(`${cluster.http(1)}/health`)).status).toBe(503);
    // Keepalive 1 s: three PINGREQ/PINGRESP round trips while Redis is away.
    await new Promise((r) => setTimeout(r, 3000));
    expect(liveClosed).toBe(false);
    expect(cluster.nodes.every((n) => n.child.exitCode === null)).toBe(true);

    await cluster.restartRedis();
    // Connects work again (the token survived in the AOF).
    await eventually(() => connect(cluster.mqtt(1), t!.key).then((c) => c.endAsync()).then(() => true, () => false),
      15_000, 'connects after recovery', 100);
    // Each node's connections retry on their own backoff: node 0 may be back a little after node 1.
    await eventually(async () => (await fetch(`${cluster.http(0)}/health`)).status === 200, 15_000, 'node 0 healthy after recovery', 100);
    // The change feed was resubscribed: a deletion closes the session on node 1.
    await cluster.store.delete([victim!.id]);
    await closed(doomed, 3000);
    // Heartbeats resumed: node 0 lists its live session again.
    await eventually(async () => {
      const res = await fetch(`${cluster.http(1)}/mqtt/sessions/outage-live`, { headers: { authorization: `FlespiToken ${cluster.masterKey}` } });
      return ((await res.json()) as { result?: unknown[] }).result?.length === 1;
    }, 10_000, 'session listed after recovery', 100);
    // Pending `accessed` updates were written.
    await eventually(async () => (await cluster.store.get([t!.id]))[0]!.accessed > accessedBefore, 10_000, 'accessed flushed', 100);
    // Messages flow again between nodes through the live session.
    const inbox = collect(live);
    await live.subscribeAsync('back/#');
    const pub = await connect(cluster.mqtt(1), t!.key);
    await pub.publishAsync('back/1', 'ok', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'back/1' });
    await Promise.all([pub.endAsync(), live.endAsync()]);
  }, 60_000);

  test('a change made while the nodes\' subscribers are cut off is applied when they resubscribe', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const c = await connect(cluster.mqtt(1), t!.key);
    const admin = new Redis(cluster.redis.url);
    try {
      // Drop every pub/sub connection, then delete while they reconnect: the event is lost.
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await cluster.store.delete([t!.id]);
      await closed(c, 5000);
    } finally {
      admin.disconnect();
    }
  });

  test('SIGTERM while Redis is down still exits 0 within 10 s (SPEC §1)', async () => {
    await cluster.redis.stop();
    const code = await within(cluster.nodes[1]!.stop('SIGTERM'), 10_000, 'exit after SIGTERM');
    expect(code).toBe(0);
    await cluster.restartRedis();
  });
});

describe('start-up while Redis is down', () => {
  test('the node waits for Redis, then serves', async () => {
    const port = await freePort();
    const env = { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_PREFIX: 'late:', MASTER_TOKEN: 'LateMasterKey0123456789abc' };
    let redis: RedisServerHandle | undefined;
    const [node] = await Promise.all([
      startProcess(env),
      new Promise((r) => setTimeout(r, 1500)).then(async () => { redis = await startRedisServer({ port }); }),
    ]);
    try {
      expect(node.stdout()).toContain('token store unavailable, retrying');
      const c = await connect(`mqtt://127.0.0.1:${node.ports.mqtt}`, env.MASTER_TOKEN);
      await c.endAsync();
    } finally {
      await node.stop('SIGKILL');
      await redis?.stop();
    }
  }, 30_000);
});

