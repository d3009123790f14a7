// The cluster session directory (SPEC §5, §6) writes connects and disconnects
// in batches (issue 9). Whatever happens within a batch, the listing must end up
// as the registry is: tested here on a real Redis with a registry of stand-in
// sessions, and a heartbeat too slow to repair anything during a test.
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import type { Client } from 'aedes';
import type { Socket } from 'node:net';
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

  beforeEach(async () => {
    registry = new SessionRegistry('node-a');
    dir = new RedisSessionDirectory({
      redisUrl: process.env.REDIS_URL!, prefix: uniquePrefix(), nodeId: 'node-a', registry,
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
