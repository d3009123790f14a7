// SPEC §4: "A will whose topic was authorised at CONNECT is published ...
// including wills that the cluster publishes for a node that died." The wills
// of a dead node are written into Redis as aedes-persistence-redis stores them
// (a list `will` of `will:<broker>:<client>` keys holding msgpack'd packets),
// for a broker id that never heartbeats; a live node sweeps them (in process,
// with a short Aedes heartbeat so that its sweeper runs every 400 ms).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import type { RedisStore } from '../../src/store/redis-store.js';
import { connect, type Received } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

const require = createRequire(import.meta.url);
const msgpack = createRequire(require.resolve('aedes-persistence-redis'))('msgpack-lite') as { encode(value: unknown): Buffer };

describe("a dead node's wills (cluster mode)", () => {
  let srv: TestServer;
  let redis: Redis;
  let prefix: string;
  let master: MqttClient;
  const seen: Received[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ store: 'redis', cluster: true, heartbeatInterval: 100 });
    prefix = (srv.store as RedisStore).prefix;
    redis = new Redis(process.env.REDIS_URL!);
    master = await connect(srv.mqttUrl, (await srv.token({ access: { type: 1 } })).key);
    master.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString(), retain: false }));
    await master.subscribeAsync('lwt/#', { qos: 1 });
  });
  afterAll(async () => {
    await master.endAsync(true);
    redis.disconnect();
    await srv.close();
  });

  /** Stores wills (or raw values) in the dead broker's name, in this order. */
  async function storeWills(broker: string, wills: Array<{ clientId: string; value: Buffer }>): Promise<void> {
    const tx = redis.multi();
    for (const { clientId, value } of wills) {
      const entry = `will:${broker}:${encodeURIComponent(clientId)}`;
      tx.set(`${prefix}aedes:${entry}`, value).rpush(`${prefix}aedes:will`, entry);
    }
    await tx.exec();
  }

  const will = (broker: string, clientId: string, topic = `lwt/${clientId}`): { clientId: string; value: Buffer } => ({
    clientId,
    value: msgpack.encode({ topic, payload: Buffer.from(clientId), qos: 0, retain: false, clientId, brokerId: broker }),
  });

  async function noWillsLeft(broker: string): Promise<boolean> {
    const list = await redis.lrange(`${prefix}aedes:will`, 0, -1);
    return !list.some((entry) => entry.startsWith(`will:${broker}:`));
  }

  test('a will whose client id now has a session here, with other rights, still goes out, and the sweep completes', async () => {
    const broker = `dead-${randomBytes(3).toString('hex')}`;
    // The client reconnected here with a token that may not publish its old will topic.
    const t = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'other/#', actions: ['publish'] }] } });
    const back = await connect(srv.mqttUrl, t.key, { clientId: `${broker}-back` });
    try {
      const wills = [will(broker, `${broker}-back`), ...Array.from({ length: 20 }, (_, i) => will(broker, `${broker}-w${i}`))];
      await storeWills(broker, wills);
      const expected = wills.map((w) => w.clientId).sort();
      await eventually(() => expected.every((id) => seen.some((m) => m.payload === id)), 5000, 'all 21 wills')
        .catch(() => { throw new Error(`wills published: ${seen.filter((m) => m.payload.startsWith(broker)).length} of 21`); });
      expect(await eventually(() => noWillsLeft(broker), 2000, 'the stored wills to be deleted')).toBe(true);
      expect(back.connected).toBe(true);
    } finally {
      await back.endAsync(true);
    }
  });

  test('stored wills that cannot be published (undecodable, a topic too deep) are dropped; the others go out', async () => {
    const broker = `dead-${randomBytes(3).toString('hex')}`;
    await storeWills(broker, [
      { clientId: `${broker}-garbage`, value: Buffer.from([0xc1]) },
      will(broker, `${broker}-deep`, `lwt/${'x/'.repeat(120)}end`),
      will(broker, `${broker}-a`),
      will(broker, `${broker}-b`),
    ]);
    const want = [`${broker}-a`, `${broker}-b`];
    await eventually(() => want.every((id) => seen.some((m) => m.payload === id)), 5000, 'the two good wills')
      .catch(() => { throw new Error(`wills published: ${JSON.stringify(seen.filter((m) => m.payload.startsWith(broker)).map((m) => m.payload))}`); });
    expect(await eventually(() => noWillsLeft(broker), 2000, 'the bad entries to be removed')).toBe(true);
    expect(seen.filter((m) => m.payload === `${broker}-deep`)).toEqual([]);
  });
});
