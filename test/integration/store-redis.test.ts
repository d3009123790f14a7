// Redis-specific behaviour of RedisStore (SPEC §2, §6, §7): concurrency,
// what is (not) stored in clear, key expiry, corrupted data, several nodes on
// one prefix, and Redis going away and coming back. Real redis-servers only.

import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { Redis } from 'ioredis';
import { hashKey } from '../../src/store/key.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { StoreDataError, StoreUnavailableError } from '../../src/store/types.js';
import { ACCESS_ACL, ACCESS_MASTER, type CreatedToken } from '../../src/tokens/types.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { CapturingLogger, ChangeRecorder, StoreTracker, nowSec, openRedisStore, redisUrl, withTimeout } from './store-helpers.js';

const tracker = new StoreTracker();
let redis: Redis;

beforeAll(() => {
  redis = new Redis(redisUrl());
});
afterEach(() => tracker.cleanup());
afterAll(() => redis.quit());

/** A connected store on `prefix` (a new one when omitted), closed after the test. */
async function node(prefix: string, options: { logger?: CapturingLogger; sweepIntervalMs?: number } = {}): Promise<RedisStore> {
  return tracker.track(await openRedisStore({ prefix, ...options }));
}

/** Polls `check` until it holds; `ms` is an upper bound that fails the test. */
async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('concurrent updates from several nodes lose nothing (SPEC §7)', () => {
  test('four writers of four different fields, 100 updates in flight: every writer’s last value survives', async () => {
    const prefix = tracker.prefix();
    const writers = await Promise.all([node(prefix), node(prefix), node(prefix), node(prefix)]);
    const now = nowSec();
    const [token] = await writers[0]!.create([{ ttl: 1000, info: 'start', metadata: { v: 'start' } }], now);
    const id = token!.id;
    const rounds = 25;
    const calls: Array<Promise<unknown>> = [];
    for (let i = 1; i <= rounds; i++) {
      calls.push(writers[0]!.update([id], { info: `info-${i}` }, now));
      calls.push(writers[1]!.update([id], { ttl: 1000 + i }, now));
      calls.push(writers[2]!.update([id], { ips: `10.0.0.${i}` }, now));
      calls.push(writers[3]!.update([id], { metadata: { v: String(i) } }, now));
      calls.push(writers[i % 4]!.touch([id], now + i));
    }
    await Promise.all(calls);
    // Each writer's calls run in order on its own connection, so its last value is the final one.
    const [final] = await writers[0]!.get([id]);
    expect(final).toMatchObject({
      info: `info-${rounds}`, ttl: 1000 + rounds, ips: `10.0.0.${rounds}`, metadata: { v: String(rounds) }, accessed: now + rounds,
    });
  });

  test('100 concurrent updates of the same fields: each returns what it wrote, all are reported, one wins', async () => {
    const prefix = tracker.prefix();
    const writers = await Promise.all([node(prefix), node(prefix), node(prefix), node(prefix)]);
    const events = new ChangeRecorder(writers[0]!);
    const now = nowSec();
    const [token] = await writers[0]!.create([{ ttl: 1000, info: 'untouched' }], now);
    const id = token!.id;
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => writers[i % 4]!.update([id], { metadata: { n: String(i) }, expire: now + 1000 + i }, now)),
    );
    results.forEach(([updated], i) => {
      // Never torn: the two fields of one call travel together.
      expect(updated).toMatchObject({ metadata: { n: String(i) }, expire: now + 1000 + i, info: 'untouched', ttl: 1000 });
    });
    const [final] = await writers[0]!.get([id]);
    const n = Number(final!.metadata.n);
    expect(final!.expire).toBe(now + 1000 + n);
    const [sentinel] = await writers[1]!.create([{ ttl: 60 }], now);
    await events.wait(sentinel!.id, 'created');
    expect(events.count(id, 'updated')).toBe(100);
  });
});

describe('layout and data safety (SPEC §2, §7)', () => {
  test('the key never appears in clear anywhere in Redis, nor on the change feed', async () => {
    const prefix = tracker.prefix();
    const store = await node(prefix);
    const feed = new Redis(redisUrl());
    const published: string[] = [];
    feed.on('message', (_channel: string, message: string) => published.push(message));
    await feed.subscribe(`${prefix}changes`);
    try {
      const now = nowSec();
      const created: CreatedToken[] = await store.create(
        [{ ttl: 600, info: 'plain' }, { expire: now + 600, access: { type: ACCESS_ACL, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['publish'] }] } }],
        now,
      );
      created.push((await store.createWithKey({ ttl: 600 }, 'ChosenKey0123456789abcdef', now))!);
      created.push((await store.createMasterIfNone({ ttl: 600 }, now))!);
      await store.update(created.map((t) => t.id), { info: 'changed' }, now);
      await store.touch(created.map((t) => t.id), now + 1);
      const [sentinel] = await store.create([{ ttl: 60 }], now);
      created.push(sentinel!);
      await eventually(async () => published.some((m) => m.includes(`"id":${sentinel!.id},`)), 5000, 'the sentinel on the feed');

      const dump = await dumpEverything(redis);
      expect(dump.length).toBeGreaterThan(0);
      expect(dump.some((entry) => entry.includes(`${prefix}token:${created[0]!.id}`))).toBe(true);
      for (const token of created) {
        for (const entry of dump) expect(entry.includes(token.key)).toBe(false);
        for (const message of published) expect(message.includes(token.key)).toBe(false);
        // What is there instead: the SHA-256 in the key index and the token's `hash` field.
        expect(await redis.get(`${prefix}key:${hashKey(token.key)}`)).toBe(String(token.id));
        expect(await redis.hget(`${prefix}token:${token.id}`, 'hash')).toBe(hashKey(token.key));
      }
    } finally {
      feed.disconnect();
    }
  });

  test('a token is stored as one hash field per token field; the keys expire at its deadline; touch and update move it', async () => {
    const prefix = tracker.prefix();
    const store = await node(prefix);
    const now = nowSec();
    const [token] = await store.create([{ ttl: 600, info: 'i', metadata: { a: 'b' }, access: { type: ACCESS_MASTER } }], now);
    const tokenKey = `${prefix}token:${token!.id}`;
    const indexKey = `${prefix}key:${hashKey(token!.key)}`;
    expect(await redis.hgetall(tokenKey)).toEqual({
      info: 'i', enabled: '1', expire: '0', ttl: '600', created: String(now), accessed: String(now),
      access: '{"type":1}', ips: '', metadata: '{"a":"b"}', hash: hashKey(token!.key), parent: '0',
      clientids: '', limits: '{"sessions":0,"publish_rate":0}',
    });
    expect(await redis.smembers(`${prefix}masters`)).toEqual([String(token!.id)]);
    expect(await redis.get(`${prefix}next_id`)).toBe(String(token!.id));

    const expectDeadline = async (seconds: number): Promise<void> => {
      expect(await redis.pexpiretime(tokenKey)).toBe(seconds * 1000);
      expect(await redis.pexpiretime(indexKey)).toBe(seconds * 1000);
      expect(await redis.zscore(`${prefix}ids`, String(token!.id))).toBe(String(seconds * 1000));
    };
    await expectDeadline(now + 600);
    await store.touch([token!.id], now + 100);
    await expectDeadline(now + 700);
    await store.update([token!.id], { expire: now + 5000 }, now);
    await expectDeadline(now + 5000);
    await store.update([token!.id], { ttl: 0, access: { type: 0 } }, now);
    await expectDeadline(now + 5000);
    expect(await redis.smembers(`${prefix}masters`)).toEqual([]);
  });

  test('keys expire in Redis by themselves; the sweeper then reports the deletion once', async () => {
    const prefix = tracker.prefix();
    // This node never sweeps on its own: the test runs the sweep.
    const store = await node(prefix, { sweepIntervalMs: 3_600_000 });
    const events = new ChangeRecorder(store);
    const [token] = await store.create([{ expire: nowSec() + 1 }], nowSec());
    const tokenKey = `${prefix}token:${token!.id}`;
    await eventually(async () => (await redis.exists(tokenKey)) === 0, 5000, 'Redis to expire the token hash');
    expect(await redis.exists(`${prefix}key:${hashKey(token!.key)}`)).toBe(0);
    expect(events.of(token!.id)).toEqual(['created']);
    expect(await store.count()).toBe(0);
    expect(await store.sweep()).toBe(1);
    await events.wait(token!.id, 'deleted');
    expect(await store.sweep()).toBe(0);
    expect(await redis.zcard(`${prefix}ids`)).toBe(0);
  });
});

describe('corrupted or foreign data under the prefix (SPEC §7)', () => {
  const GOOD_FIELDS = {
    info: 'x', enabled: '1', expire: '0', ttl: '600', created: '1', accessed: String(nowSec()),
    access: '{"type":0}', ips: '', metadata: '{}', hash: 'a'.repeat(64),
  };

  async function plant(prefix: string, id: number, fields: Record<string, string> | string, deadlineMs = (nowSec() + 600) * 1000): Promise<void> {
    const key = `${prefix}token:${id}`;
    if (typeof fields === 'string') await redis.set(key, fields);
    else await redis.hset(key, fields);
    await redis.zadd(`${prefix}ids`, deadlineMs, String(id));
  }

  test.each([
    ['access', { access: 'not json' }, /token 900001: stored field 'access' is not valid JSON/],
    ['access', { access: '{"type":7}' }, /token 900001: stored field 'access' has an unknown access type/],
    ['access', { access: '{"type":2,"acl":[{"uri":"mqtt","actions":"publish"}]}' }, /'access' has acl\[0\].actions that is not an array/],
    ['expire', { expire: 'soon' }, /token 900001: stored field 'expire' is not a non-negative integer/],
    ['ttl', { ttl: '-5' }, /token 900001: stored field 'ttl' is not a non-negative integer/],
    ['enabled', { enabled: 'yes' }, /token 900001: stored field 'enabled' is not 0 or 1/],
    ['metadata', { metadata: '{"a":1}' }, /token 900001: stored field 'metadata' has a value that is not a string/],
    ['metadata', { metadata: '[]' }, /token 900001: stored field 'metadata' is not an object/],
    ['hash', { hash: 'short' }, /token 900001: stored field 'hash' is not a SHA-256/],
  ])('a garbled %s field %j: StoreDataError by id, skipped and logged in the listing', async (_field, garbage, message) => {
    const prefix = tracker.prefix();
    const logger = new CapturingLogger();
    const store = await node(prefix, { logger });
    const [good] = await store.create([{ ttl: 600 }], nowSec());
    await plant(prefix, 900001, { ...GOOD_FIELDS, ...garbage });
    const error = await store.get([900001]).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreDataError);
    expect((error as StoreDataError).message).toMatch(message);
    expect((error as StoreDataError).tokenId).toBe(900001);
    expect((await store.get('all')).map((t) => t.id)).toEqual([good!.id]);
    expect(logger.warnings).toEqual([expect.objectContaining({ obj: expect.objectContaining({ tokenId: 900001 }) })]);
  });

  test('a missing field, a string where a hash belongs, an id without a hash, a foreign id: by id an error or nothing, listing goes on', async () => {
    const prefix = tracker.prefix();
    const logger = new CapturingLogger();
    const store = await node(prefix, { logger });
    const [good] = await store.create([{ ttl: 600 }], nowSec());
    const { ips: _ips, ...missingIps } = GOOD_FIELDS;
    await plant(prefix, 900002, missingIps);
    await plant(prefix, 900003, 'a string');
    await redis.zadd(`${prefix}ids`, (nowSec() + 600) * 1000, '900004');
    await redis.zadd(`${prefix}ids`, (nowSec() + 600) * 1000, 'not-an-id');

    await expect(store.get([900002])).rejects.toThrow(/token 900002: stored field 'ips' is missing/);
    await expect(store.get([900003])).rejects.toThrow(StoreDataError);
    expect(await store.get([900004])).toEqual([]);
    expect((await store.get('all')).map((t) => t.id)).toEqual([good!.id]);
    expect(logger.warnings.map((w) => (w.obj as { tokenId?: number }).tokenId).sort()).toEqual([900002, 900003, undefined]);

    // Changes refuse what they cannot read, naming the token; deletion clears it.
    await expect(store.update([900003], { info: 'y' }, nowSec())).rejects.toThrow(/token 900003: the stored key holds a string/);
    await expect(store.update([good!.id, 900003], { info: 'y' }, nowSec())).rejects.toThrow(StoreDataError);
    expect((await store.get([good!.id]))[0]!.info).toBe('');
    await store.touch([900002, 900003, good!.id], nowSec() + 1);
    expect(await store.delete([900003])).toEqual([]);
    expect(await redis.exists(`${prefix}token:900003`)).toBe(0);
  });

  test('a token stored before clientids and limits existed reads with their defaults; a garbled limits field names the token', async () => {
    const prefix = tracker.prefix();
    const store = await node(prefix);
    await plant(prefix, 900010, GOOD_FIELDS);
    await plant(prefix, 900011, { ...GOOD_FIELDS, limits: '{"sessions":-1}' });
    expect((await store.get([900010]))[0]).toMatchObject({ clientids: '', limits: { sessions: 0, publish_rate: 0 } });
    await expect(store.get([900011])).rejects.toThrow(/token 900011: stored field 'limits'/);
  });

  test('update names the token and field when a stored clock is garbled', async () => {
    const prefix = tracker.prefix();
    const store = await node(prefix);
    await plant(prefix, 900005, { ...GOOD_FIELDS, created: 'yesterday' });
    const error = await store.update([900005], { info: 'y' }, nowSec()).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreDataError);
    expect((error as StoreDataError).tokenId).toBe(900005);
    expect((error as Error).message).toMatch(/token 900005: stored field 'created' is malformed/);
  });

  test('findByKey: an index naming garbage, a corrupt token or a token of another key is a StoreDataError', async () => {
    const prefix = tracker.prefix();
    const store = await node(prefix);
    const [other] = await store.create([{ ttl: 600 }], nowSec());
    await plant(prefix, 900006, { ...GOOD_FIELDS, access: '{' });
    await redis.set(`${prefix}key:${hashKey('garbage-index')}`, 'not an id');
    await redis.hset(`${prefix}key:${hashKey('hash-index')}`, 'a', 'b');
    await redis.set(`${prefix}key:${hashKey('corrupt-token')}`, '900006');
    await redis.set(`${prefix}key:${hashKey('stale-index')}`, String(other!.id));
    await expect(store.findByKey('garbage-index')).rejects.toThrow(/key index holds no token id/);
    await expect(store.findByKey('hash-index')).rejects.toThrow(/key index holds a hash/);
    await expect(store.findByKey('corrupt-token')).rejects.toThrow(/token 900006: stored field 'access'/);
    await expect(store.findByKey('stale-index')).rejects.toThrow(/names a token with another key/);
    expect((await store.findByKey(other!.key))?.id).toBe(other!.id);
  });

  test('the sweeper clears due garbage without failing, and malformed feed messages are ignored', async () => {
    const prefix = tracker.prefix();
    const logger = new CapturingLogger();
    const store = await node(prefix, { logger, sweepIntervalMs: 3_600_000 });
    const events = new ChangeRecorder(store);
    const past = Date.now() - 1000;
    await plant(prefix, 900007, 'a string', past);
    await plant(prefix, 900008, { ...GOOD_FIELDS, hash: 'nonsense' }, past);
    await redis.zadd(`${prefix}ids`, past, 'junk');
    expect(await store.sweep()).toBe(3);
    expect(await redis.keys(`${prefix}token:*`)).toEqual([]);
    expect(await redis.zcard(`${prefix}ids`)).toBe(0);
    await events.wait(900007, 'deleted');
    await events.wait(900008, 'deleted');

    for (const message of ['garbage', '{"id":-1,"kind":"deleted"}', '{"id":5,"kind":"exploded"}', 'null']) {
      await redis.publish(`${prefix}changes`, message);
    }
    const [token] = await store.create([{ ttl: 60 }], nowSec());
    await events.wait(token!.id, 'created');
    expect(events.changes.map((c) => c.kind)).toEqual(['deleted', 'deleted', 'created']);
    expect(logger.warnings.filter((w) => w.msg.includes('malformed message'))).toHaveLength(4);
    expect(logger.errors).toEqual([]);
  });
});

describe('several nodes on one prefix (SPEC §6)', () => {
  test('every node sees every change; an expiry is reported exactly once although every node sweeps', async () => {
    const prefix = tracker.prefix();
    const [a, b, c] = await Promise.all([node(prefix), node(prefix), node(prefix)]);
    const recorders = [a, b, c].map((store) => new ChangeRecorder(store));
    const now = nowSec();
    const [token] = await a!.create([{ ttl: 600 }], now);
    await b!.update([token!.id], { info: 'from b' }, now);
    await c!.delete([token!.id]);
    const [expiring] = await b!.create([{ expire: nowSec() + 1 }], now);
    for (const recorder of recorders) {
      await recorder.wait(token!.id, 'deleted');
      expect(recorder.of(token!.id)).toEqual(['created', 'updated', 'deleted']);
      await recorder.wait(expiring!.id, 'deleted', 8000);
    }
    // Any duplicate report would be published before the sentinel's `created`.
    await Promise.all([a!.sweep(), b!.sweep(), c!.sweep()]);
    const [sentinel] = await c!.create([{ ttl: 60 }], now);
    for (const recorder of recorders) {
      await recorder.wait(sentinel!.id, 'created');
      expect(recorder.count(expiring!.id, 'deleted')).toBe(1);
    }
  });

  test('createWithKey racing on two nodes creates one token per key', async () => {
    const prefix = tracker.prefix();
    const [a, b] = await Promise.all([node(prefix), node(prefix)]);
    const now = nowSec();
    for (let round = 0; round < 20; round++) {
      const key = `RaceKey${round}abcdefghijklmnop`;
      const results = await Promise.all([a!.createWithKey({ ttl: 600 }, key, now), b!.createWithKey({ ttl: 600 }, key, now)]);
      expect(results.filter((r) => r !== null)).toHaveLength(1);
    }
    expect(await a!.count()).toBe(20);
  });

  test('createMasterIfNone racing on three nodes creates one master', async () => {
    const prefix = tracker.prefix();
    const stores = await Promise.all([node(prefix), node(prefix), node(prefix)]);
    const results = await Promise.all(stores.map((s) => s.createMasterIfNone({ ttl: 600 }, nowSec())));
    expect(results.filter((r) => r !== null)).toHaveLength(1);
    expect(await stores[0]!.count()).toBe(1);
  });
});

describe('Redis unavailable and back (SPEC §7)', () => {
  const ALL_CALLS: Array<[string, (s: RedisStore) => Promise<unknown>]> = [
    ['ping', (s) => s.ping()],
    ['get', (s) => s.get([1])],
    ['get all', (s) => s.get('all')],
    ['findByKey', (s) => s.findByKey('SomeKey0123456789')],
    ['create', (s) => s.create([{ ttl: 60 }], nowSec())],
    ['createWithKey', (s) => s.createWithKey({ ttl: 60 }, 'SomeKey0123456789', nowSec())],
    ['update', (s) => s.update([1], { info: 'x' }, nowSec())],
    ['delete', (s) => s.delete([1])],
    ['touch', (s) => s.touch([1], nowSec())],
    ['count', (s) => s.count()],
    ['hasMaster', (s) => s.hasMaster()],
  ];

  async function expectAllUnavailable(store: RedisStore): Promise<void> {
    for (const [name, call] of ALL_CALLS) {
      const started = Date.now();
      const error = await call(store).catch((err: unknown) => err);
      const elapsed = Date.now() - started;
      expect([name, error instanceof StoreUnavailableError]).toEqual([name, true]);
      expect([name, elapsed < 1000]).toEqual([name, true]);
    }
  }

  test('a store pointed at a closed port fails fast with StoreUnavailableError and closes cleanly', async () => {
    const logger = new CapturingLogger();
    const store = tracker.track(new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, logger }));
    await expectAllUnavailable(store);
    await store.close();
    expect(logger.errors.length).toBeLessThanOrEqual(2);
  });

  describe('with its own redis-server', () => {
    let server: RedisServerHandle | undefined;
    const crashes: unknown[] = [];
    const onCrash = (err: unknown): void => {
      crashes.push(err);
    };

    beforeAll(async () => {
      server = await startRedisServer();
      process.on('uncaughtException', onCrash);
      process.on('unhandledRejection', onCrash);
    });
    afterAll(async () => {
      process.off('uncaughtException', onCrash);
      process.off('unhandledRejection', onCrash);
      await server?.stop();
    });

    test('calls fail fast while Redis is down; afterwards the store works again and the feed is resubscribed', async () => {
      const url = server!.url;
      const port = server!.port;
      const logger = new CapturingLogger();
      const store = tracker.track(await openRedisStore({ url, prefix: 'tokenmq:', logger }));
      const events = new ChangeRecorder(store);
      const [before] = await store.create([{ ttl: 600 }], nowSec());
      await events.wait(before!.id, 'created');

      await server!.stop();
      await expectAllUnavailable(store);
      // The sweeper and the reconnect attempts keep running while Redis is away; nothing escapes.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await expectAllUnavailable(store);

      server = await startRedisServer({ port });
      await eventually(async () => store.ping().then(() => true, () => false), 10000, 'the store to reconnect');
      await withTimeout(store.feedReady(), 10000, 'the change feed to be resubscribed');

      // A change made by another node reaches this one: the subscription is back.
      const other = tracker.track(await openRedisStore({ url, prefix: 'tokenmq:' }));
      const [after] = await other.create([{ ttl: 600 }], nowSec());
      await events.wait(after!.id, 'created');
      // Scripts are loaded again after the restart emptied Redis's script cache.
      expect((await store.findByKey(after!.key))?.id).toBe(after!.id);
      const [own] = await store.create([{ ttl: 600 }], nowSec());
      await events.wait(own!.id, 'created');

      expect(crashes).toEqual([]);
      // One error per connection and outage, not one per reconnect attempt.
      expect(logger.errors.length).toBeLessThanOrEqual(2);
      expect(logger.warnings.some((w) => w.msg.includes('restored'))).toBe(true);
    });
  });
});

/** Every key in Redis with its type and full value, as text. */
async function dumpEverything(client: Redis): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const type = await client.type(key);
      let value: unknown;
      switch (type) {
        case 'string': value = await client.get(key); break;
        case 'hash': value = await client.hgetall(key); break;
        case 'set': value = await client.smembers(key); break;
        case 'zset': value = await client.zrange(key, 0, '-1', 'WITHSCORES'); break;
        case 'list': value = await client.lrange(key, 0, -1); break;
        case 'stream': value = await client.xrange(key, '-', '+'); break;
        default: value = `(type ${type})`;
      }
      out.push(`${key} ${type} ${JSON.stringify(value)}`);
    }
  } while (cursor !== '0');
  return out;
}
