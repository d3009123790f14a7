// SPEC §4 client id ownership: a client id held by another token's live session
// or stored persistent session is refused with CONNACK 2 on every node (no
// hijacking a device's session or its queue); master may take over; a token
// takes its own session over as MQTT says; deleting a token deletes the
// persistent sessions it owns. In memory, on Redis (one node), and on two
// cluster nodes sharing one Redis.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { ACCESS_MASTER } from '../../src/tokens/types.js';
import { clientId, closed, collect, connect, refusedCode } from '../helpers/mqtt.js';
import { type TestServer, NODE_MODES } from '../helpers/server.js';
import { eventually, within } from '../helpers/wait.js';

const modes = NODE_MODES;

describe.each(modes)('client id ownership (SPEC §4) %s', (_mode, start) => {
  let nodes: TestServer[];
  const clients: MqttClient[] = [];
  /** Node i (the single node when there is one). */
  const node = (i: number): TestServer => nodes[i % nodes.length]!;
  const open = async (srv: TestServer, key: string, opts: Parameters<typeof connect>[2] = {}): Promise<MqttClient> => {
    const c = await connect(srv.mqttUrl, key, opts);
    clients.push(c);
    return c;
  };
  const token = async (master = false): Promise<{ id: number; key: string }> =>
    node(0).token(master ? { ttl: 3600, access: { type: ACCESS_MASTER } } : { ttl: 3600 });

  beforeAll(async () => {
    nodes = await start();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    for (const n of nodes) await n.close();
  });

  /** Token `victim` leaves a persistent session subscribed to `topic` with one QoS 1 message queued. */
  const queuedSession = async (victim: string, id: string, topic: string): Promise<void> => {
    const device = await open(node(0), victim, { clientId: id, clean: false });
    await device.subscribeAsync(topic, { qos: 1 });
    await device.endAsync();
    const publisher = await open(node(0), (await token()).key);
    await publisher.publishAsync(topic, 'secret', { qos: 1 });
  };

  test('a CONNECT refused after its token was read (ips) keeps no client id: another token takes it next (SPEC §4)', async () => {
    // Redis mode reads the token and claims the client id in one call: the claim of a
    // CONNECT refused by a later check must be given back before the refusal is answered.
    const fenced = await node(0).token({ ttl: 3600, ips: '10.9.9.9', clientids: '' });
    const other = await token();
    for (let round = 0; round < 5; round++) {
      const id = clientId(`refused-${round}`);
      for (const i of [0, 1]) {
        expect(await refusedCode(node(i).mqttUrl, fenced.key, { clientId: id, clean: false })).toBe(5);
        const c = await open(node(1 - i), other.key, { clientId: id, clean: round % 2 === 0 });
        expect(c.connected).toBe(true);
        await c.endAsync();
      }
    }
  });

  test('a persistent session of another token cannot be taken over, nor its queue read (CONNACK 2)', async () => {
    const victim = await token();
    const attacker = await token();
    const id = clientId('owned');
    const topic = `owner/${id}`;
    await queuedSession(victim.key, id, topic);
    // The attack: another token, same client id, clean: false, on each node.
    for (const i of [0, 1]) {
      expect(await refusedCode(node(i).mqttUrl, attacker.key, { clientId: id, clean: false })).toBe(2);
      expect(await refusedCode(node(i).mqttUrl, attacker.key, { clientId: id, clean: true })).toBe(2);
    }
    // The queue is intact: its owner gets the message.
    const device = await open(node(1), victim.key, { clientId: id, clean: false });
    const got = collect(device);
    expect(device.connected).toBe(true);
    expect((await got.next()).payload).toBe('secret');
  });

  test.each([
    ['first token', 0],
    ['second token', 1],
  ])('a live clean session holds its client id against another token until it ends (%s connects first)', async (_which, first) => {
    const tokens = [await token(), await token()];
    const holder = tokens[first]!;
    const other = tokens[1 - first]!;
    const id = clientId('live');
    const live = await open(node(0), holder.key, { clientId: id, clean: true });
    expect(await refusedCode(node(1).mqttUrl, other.key, { clientId: id, clean: true })).toBe(2);
    expect(await refusedCode(node(0).mqttUrl, other.key, { clientId: id, clean: false })).toBe(2);
    expect(live.connected).toBe(true);
    await live.endAsync();
    // Released when the clean session ends: now the other token may use it.
    const next = await eventually(async () => {
      try {
        return await open(node(1), other.key, { clientId: id, clean: true });
      } catch {
        return null;
      }
    }, 5000, 'client id released');
    expect(next.connected).toBe(true);
  });

  test('the same token takes its own session over (MQTT-3.1.4-2), and a late disconnect does not free the successor\'s claim', async () => {
    const own = await token();
    const other = await token();
    const id = clientId('takeover');
    const first = await open(node(0), own.key, { clientId: id, clean: true });
    const firstClosed = closed(first);
    const second = await open(node(1), own.key, { clientId: id, clean: true });
    await firstClosed;
    expect(second.connected).toBe(true);
    // The first session's end has been handled; the second still holds the id.
    await eventually(() => nodes.reduce((n, srv) => n + srv.broker.registry.byClientId(id).length, 0) === 1, 5000, 'first session gone');
    expect(await refusedCode(node(0).mqttUrl, other.key, { clientId: id })).toBe(2);
    expect(await node(0).store.owners.owner(id)).toBe(own.id);
  });

  test('two tokens racing for one client id on two nodes: exactly one is admitted, the other gets CONNACK 2', async () => {
    const [a, b] = [await token(), await token()];
    const attempt = async (i: number, key: string, id: string): Promise<number> => {
      try {
        await open(node(i), key, { clientId: id, clean: i === 0 });
        return 0;
      } catch (err) {
        return (err as { code?: number }).code ?? -1;
      }
    };
    for (let round = 0; round < 20; round++) {
      const id = clientId('race');
      const codes = await Promise.all([attempt(0, a.key, id), attempt(1, b.key, id)]);
      expect(codes.sort()).toEqual([0, 2]);
    }
  });

  test('master may take over another token\'s session', async () => {
    const victim = await token();
    const master = await token(true);
    const id = clientId('master');
    const topic = `owner/${id}`;
    await queuedSession(victim.key, id, topic);
    const c = await open(node(1), master.key, { clientId: id, clean: false });
    expect(c.connected).toBe(true);
    expect(await node(0).store.owners.owner(id)).toBe(master.id);
  });

  test('deleting a token deletes the persistent sessions it owns; the client id is free again', async () => {
    const victim = await token();
    const heir = await token();
    const id = clientId('deleted');
    const topic = `owner/${id}`;
    await queuedSession(victim.key, id, topic);
    await node(0).store.delete([victim.id]);
    await eventually(async () => (await node(1).store.owners.owner(id)) === null, 5000, 'ownership record removed');
    const c = await open(node(1), heir.key, { clientId: id, clean: false });
    const got = collect(c);
    // No subscription, no queued message inherited: publish again and nothing arrives on the old filter.
    const publisher = await open(node(0), (await token()).key);
    await publisher.publishAsync(topic, 'after', { qos: 1 });
    await expect(within(got.next(300), 1000)).rejects.toThrow();
    expect(got.messages).toEqual([]);
  });
});
