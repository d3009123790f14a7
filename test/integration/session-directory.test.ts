// The cluster session directory (SPEC §5, §6) writes connects and disconnects
// in batches (issue 9). Whatever happens within a batch, the listing must end up
// as the registry is: tested here on a real Redis with a registry of stand-in
// sessions, and a heartbeat too slow to repair anything during a test.
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import type { Client } from 'aedes';
import type { Socket } from 'node:net';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RedisSessionDirectory } from '../../src/broker/session-directory.js';
import { SessionRegistry, type Session } from '../../src/broker/sessions.js';
import { uniquePrefix } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

/** What the registry and the listing read of a session (an object, so the test does not depend on the constructor). */
function standIn(clientId: string, tokenId: number): Session {
  const client = { id: clientId, subscriptions: {} } as unknown as Client;
  const conn = { ip: '127.0.0.1', transport: 'tcp' as const, socket: { bytesRead: 0, bytesWritten: 0 } as unknown as Socket };
  return {
    client, clientId, tokenId, conn, connected: 1, clean: true, keepalive: 30, msgsIn: 0, msgsOut: 0, dropReason: null,
  } as unknown as Session;
}

/** Waits until the directory has written what it was given (the batched version has `flush`). */
async function written(dir: RedisSessionDirectory): Promise<void> {
  await (dir as unknown as { flush?: () => Promise<void> }).flush?.();
}

describe('session directory batching (SPEC §5 listings, issue 9)', () => {
  let registry: SessionRegistry;
  let dir: RedisSessionDirectory;
  let prefix: string;

  beforeEach(async () => {
    registry = new SessionRegistry('node-a');
    prefix = uniquePrefix();
    dir = new RedisSessionDirectory({
      redisUrl: process.env.REDIS_URL!, prefix, nodeId: 'node-a', registry,
      localKick: () => 0, log: pino({ level: 'silent' }), heartbeatMs: 600_000, expireMs: 600_000,
    });
    // Until its connection is up and its first heartbeat has named the node, the directory lists nothing.
    const probe = standIn('probe', 0);
    registry.add(probe);
    await eventually(async () => {
      await written(dir);
      return (await dir.list().catch(() => [])).some((v) => v.client_id === 'probe');
    }, 5000, 'directory up');
    registry.remove(probe.client);
    await written(dir);
  });
  afterEach(() => dir.close());

  const listed = async (): Promise<Array<[string, number]>> =>
    (await dir.list()).map((v): [string, number] => [v.client_id, v.token_id]).sort((a, b) => a[0].localeCompare(b[0]));

  test('writes wait FLUSH_DELAY_MS: this node lists a new session at once, another node soon after, without a flush', async () => {
    const other = new RedisSessionDirectory({
      redisUrl: process.env.REDIS_URL!, prefix, nodeId: 'node-b', registry: new SessionRegistry('node-b'),
      localKick: () => 0, log: pino({ level: 'silent' }), heartbeatMs: 600_000, expireMs: 600_000,
    });
    try {
      registry.add(standIn('soon', 3));
      expect(await listed()).toEqual([['soon', 3]]);
      registry.add(standIn('later', 4));
      await eventually(async () => (await other.list().catch(() => [])).some((v) => v.client_id === 'later'), 5000, 'listed on node-b', 5);
    } finally {
      await other.close();
    }
  });

  test('a session that connects and disconnects within one tick is never listed', async () => {
    await written(dir);
    const s = standIn('brief', 1);
    registry.add(s);
    registry.remove(s.client);
    await written(dir);
    expect(await listed()).toEqual([]);
  });

  test('a listed session that disconnects and reconnects within one tick stays listed', async () => {
    const first = standIn('back', 1);
    registry.add(first);
    await written(dir);
    expect(await listed()).toEqual([['back', 1]]);
    registry.remove(first.client);
    registry.add(standIn('back', 1));
    await written(dir);
    expect(await listed()).toEqual([['back', 1]]);
  });

  test('a takeover on this node lists the new session, not nothing (SPEC §5, MQTT-3.1.4-2)', async () => {
    const old = standIn('taken', 1);
    registry.add(old);
    await written(dir);
    // Aedes admits the new connection first, then closes the old one with the same client id.
    registry.add(standIn('taken', 2));
    registry.remove(old.client);
    await written(dir);
    expect(await listed()).toEqual([['taken', 2]]);
  });

  test('many connects and disconnects in one tick leave exactly the live sessions listed', async () => {
    const sessions = Array.from({ length: 300 }, (_, i) => standIn(`s${i}`, i));
    for (const s of sessions) registry.add(s);
    for (const s of sessions.filter((_, i) => i % 3 === 0)) registry.remove(s.client);
    await written(dir);
    const want = sessions.filter((_, i) => i % 3 !== 0).map((s): [string, number] => [s.clientId, s.tokenId]).sort((a, b) => a[0].localeCompare(b[0]));
    expect(await listed()).toEqual(want);
    // And the next batch, from a later tick, on top of it.
    for (const s of sessions.filter((_, i) => i % 3 === 1)) registry.remove(s.client);
    await new Promise((resolve) => setImmediate(resolve));
    await written(dir);
    expect((await listed()).length).toBe(100);
  });
});

describe('session directory heartbeat (SPEC §6, issue 9 scale)', () => {
  test('a heartbeat renews counters of sessions with traffic and leaves idle entries alone; a restart of Redis data is repaired', async () => {
    const prefix = uniquePrefix();
    const registry = new SessionRegistry('node-h');
    const dir = new RedisSessionDirectory({
      redisUrl: process.env.REDIS_URL!, prefix, nodeId: 'node-h', registry,
      localKick: () => 0, log: pino({ level: 'silent' }), heartbeatMs: 50, expireMs: 5_000,
    });
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      const idle = standIn('idle', 1);
      const busy = standIn('busy', 2);
      registry.add(idle);
      registry.add(busy);
      const key = `${prefix}node:node-h`;
      await eventually(async () => (await redis.hlen(key)) === 2, 5000, 'both listed');
      await written(dir); // the connects' own batch too (it may land after a heartbeat listed them)
      // Mark the idle entry: a heartbeat that rewrote it would wipe the mark.
      const marked = JSON.stringify({ ...JSON.parse((await redis.hget(key, 'idle'))!), keepalive: 4242 });
      await redis.hset(key, 'idle', marked);
      (busy.conn.socket as { bytesRead: number }).bytesRead = 1234;
      busy.msgsIn = 7;
      await eventually(async () => JSON.parse((await redis.hget(key, 'busy'))!).msgs_in === 7, 5000, 'busy counters renewed');
      // A later heartbeat (it renews the busy entry again) still leaves the idle one as marked.
      (busy.conn.socket as { bytesRead: number }).bytesRead = 2000;
      busy.msgsIn = 8;
      await eventually(async () => JSON.parse((await redis.hget(key, 'busy'))!).msgs_in === 8, 5000, 'busy counters renewed again');
      expect(await redis.hget(key, 'idle')).toBe(marked);
      expect(await redis.pttl(key)).toBeGreaterThan(4000); // the expiry is renewed all the same
      // The hash lost (e.g. Redis restarted empty): the next heartbeat after a failure or reconnect rewrites all.
      await redis.del(key);
      (dir as unknown as { fullSnapshot: boolean }).fullSnapshot = true;
      await eventually(async () => (await redis.hlen(key)) === 2, 5000, 'snapshot rewritten');
    } finally {
      redis.disconnect();
      await dir.close();
    }
  });
});
