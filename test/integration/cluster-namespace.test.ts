// SPEC §6: every MQTT topic is legal in a cluster. A topic that begins with
// REDIS_PREFIX or names one of tokenmq's own Redis channels is delivered like any
// other, Redis glob characters in topics and filters mean nothing special, two
// deployments on one Redis never mix their traffic, and no MQTT PUBLISH reaches,
// disturbs or floods tokenmq's own channels (change feed, kicks).
//
// In-process nodes wired as main.ts wires them (RedisStore, createClusterParts,
// RedisSessionDirectory) so that the test can count what reaches the internal
// listeners and capture every warning.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createClusterParts, createTokenBroker, RedisSessionDirectory } from '../../src/broker/index.js';
import { AuthLimiter } from '../../src/access/auth-limiter.js';
import { AccessGate } from '../../src/access/gate.js';
import { TouchBatcher } from '../../src/access/touch-batcher.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { collect, connect, type Received } from '../helpers/mqtt.js';
import { deleteByPrefix, startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { eventually, within } from '../helpers/wait.js';

const redisUrl = (): string => {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set (jest global setup starts redis-server)');
  return url;
};
const now = (): number => Math.floor(Date.now() / 1000);

/** Every log line at warn or above, from every node of the test. */
const warnings: string[] = [];
const log = pino({ level: 'warn' }, new Writable({
  write(chunk: Buffer, _enc, done) {
    warnings.push(chunk.toString());
    done();
  },
}));

interface Node {
  url: string;
  store: RedisStore;
  /** Calls that reached the internal listeners: token changes and kicks. */
  seen: { changes: number; kicks: number };
  close(): Promise<void>;
}

async function startNode(prefix: string, nodeId: string, url = redisUrl()): Promise<Node> {
  const store = new RedisStore({ url, prefix, logger: log });
  await within(store.feedReady(), 5000, 'change feed subscription');
  const seen = { changes: 0, kicks: 0 };
  store.onChange(() => { seen.changes++; });
  const parts = createClusterParts({ redisUrl: url, prefix, log });
  const broker = await createTokenBroker({
    store, log, gate: new AccessGate({ limiter: new AuthLimiter(0, 10), touch: new TouchBatcher(store) }), nodeId,
    mq: parts.mq as never,
    persistence: parts.persistence as never,
    directory: (registry, localKick) => new RedisSessionDirectory({
      redisUrl: url, prefix, nodeId, registry, log,
      localKick: (clientId, reason) => {
        seen.kicks++;
        return localKick(clientId, reason);
      },
    }),
  });
  const ports = await broker.listen({ host: '127.0.0.1', mqttPort: 0, wsPort: 0, proxyProtocol: false });
  return {
    url: `mqtt://127.0.0.1:${ports.mqtt}`,
    store,
    seen,
    async close() {
      await broker.close();
      await parts.close();
      await store.close();
    },
  };
}

/** The messages received once `count` have arrived or `ms` have passed, whichever comes first (then asserted on). */
async function settle(inbox: ReturnType<typeof collect>, count: number, ms = 5000): Promise<Received[]> {
  await eventually(() => inbox.messages.length >= count, ms, `${count} messages`).catch(() => {});
  return inbox.messages;
}

/** Every message until (and without) the sentinel topic; the sentinel proves nothing else is on its way. */
async function untilSentinel(inbox: ReturnType<typeof collect>, sentinel: string): Promise<Received[]> {
  const got: Received[] = [];
  for (;;) {
    const m = await inbox.next();
    if (m.topic === sentinel) return got;
    got.push(m);
  }
}

describe('MQTT topics on a cluster (SPEC §6)', () => {
  const prefix = `tmqns${randomBytes(3).toString('hex')}:`;
  const other = `tmqns${randomBytes(3).toString('hex')}:`;
  let a: Node;
  let b: Node;
  let foreign: Node;
  let key: string;
  let foreignKey: string;
  const clients: MqttClient[] = [];
  const open = async (url: string, k = key): Promise<MqttClient> => {
    const c = await connect(url, k);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    a = await startNode(prefix, 'ns-a');
    b = await startNode(prefix, 'ns-b');
    foreign = await startNode(other, 'ns-foreign');
    key = (await a.store.create([{ ttl: 3600 }], now()))[0]!.key;
    foreignKey = (await foreign.store.create([{ ttl: 3600 }], now()))[0]!.key;
  }, 30_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    for (const n of [a, b, foreign]) await n?.close();
    const redis = new Redis(redisUrl());
    await deleteByPrefix(redis, prefix);
    await deleteByPrefix(redis, other);
    redis.disconnect();
  });

  test('a # subscriber receives topics that begin with REDIS_PREFIX, published on its own node and on another (SPEC §6)', async () => {
    const sub = await open(a.url);
    const inbox = collect(sub);
    await sub.subscribeAsync('#');
    const exact = await open(b.url);
    const exactInbox = collect(exact);
    await exact.subscribeAsync([`${prefix}data/x`, 'sentinel/0']);
    const pubA = await open(a.url);
    const pubB = await open(b.url);
    await pubA.publishAsync(`${prefix}data/x`, 'from a', { qos: 1 });
    await pubB.publishAsync(`${prefix}data/x`, 'from b', { qos: 1 });
    await pubB.publishAsync('sentinel/0', '', { qos: 1 });
    const got = (await untilSentinel(inbox, 'sentinel/0')).map((m) => `${m.topic} ${m.payload}`).sort();
    expect(got).toEqual([`${prefix}data/x from a`, `${prefix}data/x from b`]);
    const gotExact = (await untilSentinel(exactInbox, 'sentinel/0')).map((m) => m.payload).sort();
    expect(gotExact).toEqual(['from a', 'from b']);
  });

  test('topics named like tokenmq\'s own channels are delivered as MQTT and trigger nothing internal, not even a warning (SPEC §6)', async () => {
    const internal = [`${prefix}changes`, `${prefix}kicks`, `${prefix}nodes`, `${prefix}mqtt/x`, '__sentinel__:hello', `${other}changes`, `${other}kicks`];
    const sub = await open(b.url);
    const inbox = collect(sub);
    await sub.subscribeAsync(['#', 'sentinel/1']);
    // Raw listeners on the internal channels: nothing MQTT may arrive there.
    const spy = new Redis(redisUrl());
    const onInternal: string[] = [];
    spy.on('message', (channel: string) => onInternal.push(channel));
    await spy.subscribe(`${prefix}changes`, `${prefix}kicks`, `${other}changes`, `${other}kicks`);
    const before = { a: { ...a.seen }, b: { ...b.seen }, foreign: { ...foreign.seen } };
    warnings.length = 0;
    try {
      const pub = await open(a.url);
      for (const topic of internal) {
        // A payload that would parse as a change or a kick if it got there.
        const payload = topic.endsWith('kicks') ? JSON.stringify({ clientIds: [sub.options.clientId], reason: 'x' }) : '{"id":1,"kind":"deleted"}';
        await pub.publishAsync(topic, payload, { qos: 1 });
      }
      await pub.publishAsync('sentinel/1', '', { qos: 1 });
      const got = await untilSentinel(inbox, 'sentinel/1');
      expect(got.map((m) => m.topic)).toEqual(internal);
      await spy.ping(); // anything published before is in by now
      expect(onInternal).toEqual([]);
      expect({ a: a.seen, b: b.seen, foreign: foreign.seen }).toEqual(before);
      expect(warnings).toEqual([]);
      expect(sub.connected).toBe(true);
    } finally {
      spy.disconnect();
    }
  });

  test('Redis glob characters in topics and filters are literal, across nodes (SPEC §6)', async () => {
    // Nodes of their own: a node receives a channel for all its clients once one
    // of them subscribes to it (and every channel for a `#`), and its exact local
    // matching would then hide a Redis pattern that misses.
    const d = await startNode(prefix, 'ns-d');
    const e = await startNode(prefix, 'ns-e');
    try {
      const topics = ['a[1]/b', 'a*b/c', 'a?/x', 'a\\b', 'x/*'];
      // Topics that the unescaped glob patterns of the filters below would match.
      const decoys = ['a1/b', 'aXb/c', 'aa/x', 'ab', 'x/y'];
      const subscribers: [string, string, string[], string[]][] = [
        ['exact', d.url, ['a[1]/b', 'a*b/c', 'a?/x', 'a\\b', 'x/*'], topics],
        ['other', d.url, ['a1/+', 'aXb/+', 'aa/+', 'ab/#'], ['a1/b', 'aXb/c', 'aa/x', 'ab']],
        // On e, the literal `x/*` first: the filter `x/+` on the same node must still get `x/y`.
        ['literal x/*', e.url, ['x/*'], ['x/*']],
        ['wildcard', e.url, ['a[1]/+', 'a*b/+', 'a?/+', 'a\\b/#', 'x/+'], [...topics, 'x/y']],
        ['all', a.url, ['#'], [...topics, ...decoys]],
      ];
      const inboxes: ReturnType<typeof collect>[] = [];
      for (const [, url, filters] of subscribers) {
        const c = await open(url);
        inboxes.push(collect(c));
        await c.subscribeAsync([...filters, 'sentinel/2']);
      }
      const pub = await open(b.url);
      for (const topic of [...topics, ...decoys]) await pub.publishAsync(topic, topic, { qos: 1 });
      await pub.publishAsync('sentinel/2', '', { qos: 1 });
      for (const [i, [name, , , expected]] of subscribers.entries()) {
        const got = await untilSentinel(inboxes[i]!, 'sentinel/2');
        expect({ name, topics: got.map((m) => m.topic).sort() }).toEqual({ name, topics: [...expected].sort() });
      }
    } finally {
      await d.close();
      await e.close();
    }
  });

  test('two deployments with different REDIS_PREFIX on one Redis never see each other\'s messages (SPEC §6)', async () => {
    const mine = await open(a.url);
    const mineInbox = collect(mine);
    await mine.subscribeAsync('#');
    const theirs = await open(foreign.url, foreignKey);
    const theirsInbox = collect(theirs);
    await theirs.subscribeAsync('#');
    const pubMine = await open(b.url);
    const pubTheirs = await open(foreign.url, foreignKey);
    await pubMine.publishAsync('shared/topic', 'mine', { qos: 1 });
    await pubTheirs.publishAsync('shared/topic', 'theirs', { qos: 1 });
    // Each # subscriber got its own message; a sentinel on each side then proves nothing else came.
    expect(await mineInbox.next()).toMatchObject({ topic: 'shared/topic', payload: 'mine' });
    expect(await theirsInbox.next()).toMatchObject({ topic: 'shared/topic', payload: 'theirs' });
    await pubMine.publishAsync('sentinel/3', '', { qos: 1 });
    await pubTheirs.publishAsync('sentinel/3', '', { qos: 1 });
    expect(await untilSentinel(mineInbox, 'sentinel/3')).toEqual([]);
    expect(await untilSentinel(theirsInbox, 'sentinel/3')).toEqual([]);
  });

  test('a storm of PUBLISH on topics equal to the internal channels is delivered and never reaches the internal listeners (SPEC §6)', async () => {
    const sub = await open(a.url);
    const inbox = collect(sub);
    await sub.subscribeAsync('#');
    // Everything MQTT traffic puts on this Redis, seen from outside.
    const spy = new Redis(redisUrl());
    const channels = new Set<string>();
    spy.on('pmessage', (_pattern: string, channel: string) => channels.add(channel));
    await spy.psubscribe('*');
    const before = { a: { ...a.seen }, b: { ...b.seen } };
    warnings.length = 0;
    const n = 300;
    try {
      const pub = await open(b.url);
      for (let i = 0; i < n; i++) {
        pub.publish(`${prefix}changes`, '{"id":1,"kind":"deleted"}');
        pub.publish(`${prefix}kicks`, '{"clientIds":["x"],"reason":"x"}');
      }
      await pub.publishAsync('sentinel/4', '', { qos: 1 });
      const got = await untilSentinel(inbox, 'sentinel/4');
      expect(got.length).toBe(2 * n);
      await spy.ping();
      expect({ a: a.seen, b: b.seen }).toEqual(before);
      expect(warnings).toEqual([]);
      // No MQTT traffic outside this deployment's MQTT namespace.
      expect([...channels].filter((c) => c.startsWith(prefix) && !c.startsWith(`${prefix}mqtt/`))).toEqual([]);
      expect(channels.has(`${prefix}changes`)).toBe(false);
      expect(channels.has(`${prefix}kicks`)).toBe(false);
    } finally {
      spy.disconnect();
    }
  });

  test('retained messages on topics with glob characters reach wildcard subscribers on another node (SPEC §6)', async () => {
    const pub = await open(a.url);
    const retained = ['r[1]/b', 'r\\b/c', 'r\\b', 'r*x/y'];
    for (const topic of retained) await pub.publishAsync(topic, topic, { qos: 1, retain: true });
    const cases: [string[], string[]][] = [
      [['r[1]/+'], ['r[1]/b']],
      [['r\\b/#'], ['r\\b', 'r\\b/c']],
      [['r*x/+'], ['r*x/y']],
      // Several wildcard filters in one SUBSCRIBE: the library scans by their common prefix.
      [['r[1]/+', 'r\\b/+'], ['r[1]/b', 'r\\b/c']],
    ];
    try {
      for (const [filters, topics] of cases) {
        const sub = await open(b.url);
        const inbox = collect(sub);
        await sub.subscribeAsync(filters);
        const got = await settle(inbox, topics.length);
        expect({ filters, topics: got.map((m) => m.topic).sort() }).toEqual({ filters, topics: [...topics].sort() });
      }
    } finally {
      for (const topic of retained) await pub.publishAsync(topic, '', { qos: 1, retain: true });
    }
  });

  test('retained messages under filters whose common prefix ends inside a UTF-16 surrogate pair are found (SPEC §6)', async () => {
    const pub = await open(a.url);
    try {
      await pub.publishAsync('\u{1F600}/r', 'grin', { qos: 1, retain: true });
      await pub.publishAsync('\u{1F601}/r', 'beam', { qos: 1, retain: true });
      const sub = await open(b.url);
      const inbox = collect(sub);
      await sub.subscribeAsync(['\u{1F600}/+', '\u{1F601}/+']);
      const got = await settle(inbox, 2);
      expect(got.map((m) => m.payload).sort()).toEqual(['beam', 'grin']);
    } finally {
      await pub.publishAsync('\u{1F600}/r', '', { qos: 1, retain: true });
      await pub.publishAsync('\u{1F601}/r', '', { qos: 1, retain: true });
    }
  });
});

describe('wildcard filters and the cost of every Redis PUBLISH (SPEC §6)', () => {
  // A Redis of its own, so that PUBSUB NUMPAT counts this node's patterns only.
  let redis: RedisServerHandle;
  let admin: Redis;
  let node: Node;
  let key: string;
  const numpat = async (): Promise<number> => Number(await admin.call('PUBSUB', 'NUMPAT'));

  beforeAll(async () => {
    redis = await startRedisServer();
    admin = new Redis(redis.url);
    node = await startNode(`tmqbudget${randomBytes(3).toString('hex')}:`, 'ns-budget', redis.url);
    key = (await node.store.create([{ ttl: 3600 }], now()))[0]!.key;
  }, 30_000);
  afterAll(async () => {
    await node?.close();
    admin?.disconnect();
    await redis?.stop();
  });

  test('thousands of wildcard filters leave Redis a bounded set of patterns, and delivery stays exact (SPEC §6)', async () => {
    // Redis matches every PUBLISH on it (tokenmq's change feed and kicks included)
    // against every pattern: one per distinct filter would let clients slow them all.
    const before = await numpat(); // Aedes' own `$SYS/+/...` listeners
    const c = await connect(node.url, key);
    try {
      const inbox = collect(c);
      const filters = Array.from({ length: 2000 }, (_, i) => `dev/+/${i}`);
      await c.subscribeAsync([...filters, 'sentinel/5']);
      expect(await numpat()).toBeLessThanOrEqual(256); // channel-namespace.ts DEFAULT_PATTERN_BUDGET
      const pub = await connect(node.url, key);
      try {
        for (const topic of ['dev/x/5', 'dev/x/2000', 'dev/x/5/y', 'dev/x/1999', 'other/x/1']) await pub.publishAsync(topic, topic, { qos: 1 });
        await pub.publishAsync('sentinel/5', '', { qos: 1 });
        expect((await untilSentinel(inbox, 'sentinel/5')).map((m) => m.topic)).toEqual(['dev/x/5', 'dev/x/1999']);
        // Back under the budget: one pattern per filter again, still exact.
        await c.unsubscribeAsync(filters.slice(3));
        await eventually(async () => (await numpat()) === before + 3, 5000, 'individual patterns again');
        for (const topic of ['dev/x/1', 'dev/x/10', 'dev/x/2']) await pub.publishAsync(topic, topic, { qos: 1 });
        await pub.publishAsync('sentinel/5', '', { qos: 1 });
        expect((await untilSentinel(inbox, 'sentinel/5')).map((m) => m.topic)).toEqual(['dev/x/1', 'dev/x/2']);
      } finally {
        await pub.endAsync(true);
      }
    } finally {
      await c.endAsync(true);
    }
  });
});
