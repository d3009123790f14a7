// Persistent sessions (clean session 0) off Aedes' tested path, in memory and in
// cluster mode (two in-process nodes on one Redis): packet order on reconnect,
// SUBACKs that must come, offline queues that must drain (src/broker/aedes-fixes.ts).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { RawClient, clientId, collect, connect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer, secondNode } from '../helpers/server.js';
import { eventually, within } from '../helpers/wait.js';

interface Persistence {
  delWill(client: { id: string }): Promise<unknown>;
  subscriptionsByClient(client: { id: string }): Promise<{ topic: string; qos: number }[]>;
  subscriptionsByTopic(topic: string): Promise<{ clientId: string }[]>;
  outgoingStream(client: { id: string }): AsyncIterable<{ topic: string }>;
}

const persistence = (srv: TestServer): Persistence => (srv.broker.aedes as unknown as { persistence: Persistence }).persistence;

const publishes = (raw: RawClient, topic: string): mqttPacket.IPublishPacket[] => raw.publishes().filter((p) => p.topic === topic);

async function queued(srv: TestServer, id: string): Promise<string[]> {
  const topics: string[] = [];
  for await (const p of persistence(srv).outgoingStream({ id })) topics.push(p.topic);
  return topics;
}

const modes = [
  ['in memory', async (): Promise<TestServer[]> => [await startTestServer()]],
  ['in cluster mode', async (): Promise<TestServer[]> => {
    const a = await startTestServer({ store: 'redis', cluster: true });
    return [a, await secondNode(a)];
  }],
] as const;

describe.each(modes)('persistent sessions %s', (_mode, start) => {
  let nodes: TestServer[];
  let key: string;
  const clients: MqttClient[] = [];
  const raws: RawClient[] = [];
  /** Node i (the single node in memory mode). */
  const node = (i: number): TestServer => nodes[i % nodes.length]!;
  const open = async (srv: TestServer, opts = {}): Promise<MqttClient> => {
    const c = await connect(srv.mqttUrl, key, opts);
    clients.push(c);
    return c;
  };
  const raw = (srv: TestServer, id: string, clean = false): RawClient => {
    const r = new RawClient(srv.ports.mqtt, { clientId: id, clean, username: key });
    raws.push(r);
    return r;
  };
  /** A persistent session with these subscriptions, left offline. */
  const session = async (srv: TestServer, id: string, subscriptions: { topic: string; qos: 0 | 1 | 2 }[]): Promise<void> => {
    const r = raw(srv, id);
    await r.wait((p) => p.cmd === 'connack', undefined, 'CONNACK');
    expect(await r.subscribe(subscriptions)).toEqual(subscriptions.map((s) => s.qos));
    await r.end();
  };

  beforeAll(async () => {
    nodes = await start();
    key = (await nodes[0]!.token({ ttl: 3600 })).key;
  });
  afterAll(async () => {
    for (const r of raws) r.destroy();
    await Promise.all(clients.map((c) => c.endAsync(true)));
    for (const n of nodes) await n.close();
  });

  test('[MQTT-3.2.0-1] CONNACK is the first packet of a resumed session, even when messages arrive while it is restored', async () => {
    const srv = node(0);
    const id = clientId('first');
    await session(srv, id, [{ topic: 'first/#', qos: 1 }]);
    const watcher = collect(await open(srv));
    await clients.at(-1)!.subscribeAsync('first/#', { qos: 0 });

    // Hold the CONNECT series after the subscriptions are restored, before CONNACK (storeWill's delWill).
    const p = persistence(srv);
    let entered!: () => void;
    let release!: () => void;
    const inWindow = new Promise<void>((resolve) => { entered = resolve; });
    const released = new Promise<void>((resolve) => { release = resolve; });
    const delWill = p.delWill.bind(p);
    p.delWill = async (client) => {
      if (client.id === id) {
        entered();
        await released;
      }
      return delWill(client);
    };
    try {
      const again = raw(srv, id);
      await within(inWindow, 5000, 'the CONNECT series to restore the subscriptions');
      const pub = await open(srv);
      await pub.publishAsync('first/0', 'qos 0', { qos: 0 });
      await pub.publishAsync('first/1', 'qos 1', { qos: 1 });
      // Both reached this node's subscribers (and, before the fix, the session's socket).
      expect((await watcher.next()).topic).toBe('first/0');
      expect((await watcher.next()).topic).toBe('first/1');
      release();
      await again.wait((p) => p.cmd === 'publish' && p.topic === 'first/0', 5000, 'first/0');
      await again.wait((p) => p.cmd === 'publish' && p.topic === 'first/1', 5000, 'first/1');
      expect(again.packets[0]?.cmd).toBe('connack');
      expect((again.packets[0] as mqttPacket.IConnackPacket).sessionPresent).toBe(true);
      // The QoS 1 message was queued and arrived live: it goes out once.
      await eventually(async () => (await queued(srv, id)).length === 0, 5000, 'the offline queue to drain');
      expect(publishes(again, 'first/1')).toHaveLength(1);
      expect(publishes(again, 'first/0')).toHaveLength(1);
      await again.end();
    } finally {
      release();
      delete (p as Partial<Persistence>).delWill;
    }
  });

  test('[MQTT-3.8.4-1] a SUBSCRIBE of three filters on a persistent session is acknowledged, and all three deliver from the other node', async () => {
    const c = await open(node(0), { clientId: clientId('three'), clean: false });
    const inbox = collect(c);
    const granted = await within(c.subscribeAsync({ 'three/a': { qos: 1 }, 'three/b/+': { qos: 1 }, 'three/c/#': { qos: 0 } }), 5000, 'SUBACK');
    expect(granted.map((g) => g.qos)).toEqual([1, 1, 0]);
    const pub = await open(node(1));
    for (const topic of ['three/a', 'three/b/1', 'three/c/d/e']) await pub.publishAsync(topic, topic, { qos: 1 });
    const got = [await inbox.next(), await inbox.next(), await inbox.next()].map((m) => m.topic).sort();
    expect(got).toEqual(['three/a', 'three/b/1', 'three/c/d/e']);
    // Stored once each, as granted; the QoS 1 filters reach the offline queue on every node.
    const stored = await persistence(node(1)).subscriptionsByClient({ id: c.options.clientId! });
    expect(stored.map((s) => [s.topic, s.qos]).sort()).toEqual([['three/a', 1], ['three/b/+', 1], ['three/c/#', 0]]);
    for (const n of nodes) {
      expect((await persistence(n).subscriptionsByTopic('three/b/1')).map((s) => s.clientId)).toEqual([c.options.clientId]);
    }
  });

  test('[MQTT-3.8.4-1] [MQTT-3.10.4-4] SUBSCRIBEs and UNSUBSCRIBEs of one persistent session sent back to back are all acknowledged', async () => {
    const r = raw(node(0), clientId('burst'));
    await r.wait((p) => p.cmd === 'connack');
    // Same first filter each time: the subscription broadcast keys its waits by it.
    r.send({ cmd: 'subscribe', messageId: 101, subscriptions: [{ topic: 'burst/a', qos: 1 }] });
    r.send({ cmd: 'subscribe', messageId: 102, subscriptions: [{ topic: 'burst/a', qos: 0 }, { topic: 'burst/b', qos: 1 }] });
    r.send({ cmd: 'subscribe', messageId: 103, subscriptions: [{ topic: 'burst/a', qos: 1 }] });
    for (const messageId of [101, 102, 103]) await r.wait((p) => p.cmd === 'suback' && p.messageId === messageId, 5000, `SUBACK ${messageId}`);
    r.send({ cmd: 'unsubscribe', messageId: 104, unsubscriptions: ['burst/a', 'burst/b'] });
    r.send({ cmd: 'unsubscribe', messageId: 105, unsubscriptions: ['burst/a'] });
    for (const messageId of [104, 105]) await r.wait((p) => p.cmd === 'unsuback' && p.messageId === messageId, 5000, `UNSUBACK ${messageId}`);
    await r.end();
  });

  test('[MQTT-3.9.3-1] SPEC §4: a filter refused with 0x80 is not part of the persistent session, even after the token\'s rights grow', async () => {
    const srv = node(0);
    const acl = (...topics: string[]) => ({ type: 2 as const, acl: topics.map((topic) => ({ uri: 'mqtt', topic, actions: ['subscribe' as const] })) });
    const t = await srv.token({ ttl: 3600, access: acl('granted/#') });
    const id = clientId('refused');
    const r = new RawClient(srv.ports.mqtt, { clientId: id, clean: false, username: t.key });
    raws.push(r);
    await r.wait((p) => p.cmd === 'connack');
    expect(await r.subscribe([{ topic: 'granted/1', qos: 1 }, { topic: 'refused/1', qos: 1 }])).toEqual([1, 0x80]);
    await r.end();
    expect((await persistence(srv).subscriptionsByClient({ id })).map((s) => s.topic)).toEqual(['granted/1']);
    expect(await persistence(srv).subscriptionsByTopic('refused/1')).toEqual([]);
    // Now the token may subscribe to it: the session still holds only what SUBACK granted.
    await srv.store.update([t.id], { access: acl('granted/#', 'refused/#') }, Math.floor(Date.now() / 1000));
    const again = new RawClient(node(1).ports.mqtt, { clientId: id, clean: false, username: t.key });
    raws.push(again);
    await again.wait((p) => p.cmd === 'connack');
    const pub = await open(node(1));
    await pub.publishAsync('refused/1', 'not subscribed', { qos: 1 });
    await pub.publishAsync('granted/1', 'subscribed', { qos: 1 });
    await again.wait((p) => p.cmd === 'publish' && p.topic === 'granted/1', 5000, 'granted/1');
    expect(again.publishes().map((p) => p.topic)).toEqual(['granted/1']);
    await again.end();
  });

  test('SPEC §4: a stored subscription the token lost while the session was offline is removed on return, and does not come back with the rights', async () => {
    const acl = (...topics: string[]) => ({ type: 2 as const, acl: topics.map((topic) => ({ uri: 'mqtt', topic, actions: ['subscribe' as const] })) });
    const t = await node(0).token({ ttl: 3600, access: acl('kept/#', 'lost/#') });
    const id = clientId('lost');
    const first = new RawClient(node(0).ports.mqtt, { clientId: id, clean: false, username: t.key });
    raws.push(first);
    await first.wait((p) => p.cmd === 'connack');
    expect(await first.subscribe([{ topic: 'kept/1', qos: 1 }, { topic: 'lost/1', qos: 1 }])).toEqual([1, 1]);
    await first.end();
    const now = (): number => Math.floor(Date.now() / 1000);
    await node(0).store.update([t.id], { access: acl('kept/#') }, now());
    const back = new RawClient(node(1).ports.mqtt, { clientId: id, clean: false, username: t.key });
    raws.push(back);
    await back.wait((p) => p.cmd === 'connack');
    await eventually(async () => (await persistence(node(1)).subscriptionsByClient({ id })).length === 1, 5000, 'the lost subscription to be removed');
    expect((await persistence(node(1)).subscriptionsByClient({ id })).map((s) => s.topic)).toEqual(['kept/1']);
    await back.end();
    // The rights come back: the session holds only what it still had.
    await node(0).store.update([t.id], { access: acl('kept/#', 'lost/#') }, now());
    const again = new RawClient(node(0).ports.mqtt, { clientId: id, clean: false, username: t.key });
    raws.push(again);
    await again.wait((p) => p.cmd === 'connack');
    const pub = await open(node(1));
    await pub.publishAsync('lost/1', 'not subscribed', { qos: 1 });
    await pub.publishAsync('kept/1', 'subscribed', { qos: 1 });
    await again.wait((p) => p.cmd === 'publish' && p.topic === 'kept/1', 5000, 'kept/1');
    expect(again.publishes().map((p) => p.topic)).toEqual(['kept/1']);
    await again.end();
  });

  test.each([
    ['QoS 2 and QoS 2, QoS 2 messages', 2, 2, 2, 2],
    ['QoS 1 and QoS 1, QoS 1 messages', 1, 1, 1, 1],
    ['QoS 1 and QoS 1, QoS 2 messages', 1, 1, 2, 1],
    ['QoS 1 and QoS 2, QoS 2 messages', 1, 2, 2, 2],
    ['QoS 2 and QoS 1, QoS 2 messages', 2, 1, 2, 2],
  ] as const)('[MQTT-3.3.5-1] overlapping subscriptions (%s): a queued message goes out once, at the highest QoS, and the queue drains', async (_name, wide, narrow, sent, qos) => {
    const id = clientId('overlap');
    await session(node(0), id, [{ topic: 'ov/#', qos: wide }, { topic: 'ov/x/#', qos: narrow }]);
    const pub = await open(node(1));
    for (let i = 1; i <= 3; i++) await pub.publishAsync('ov/x/y', String(i), { qos: sent });
    const again = raw(node(1), id);
    await again.wait((p) => p.cmd === 'publish' && p.payload.toString() === '3', 5000, 'the third message');
    await eventually(async () => (await queued(node(1), id)).length === 0, 5000, 'the offline queue to drain');
    expect(again.publishes().map((p) => [p.payload.toString(), p.qos])).toEqual([['1', qos], ['2', qos], ['3', qos]]);
    if (qos === 2) {
      // Each PUBREL releases the message its PUBREC acknowledged [MQTT-4.3.3-1].
      const ids = again.publishes().map((p) => p.messageId);
      await again.wait(() => again.packets.filter((p) => p.cmd === 'pubrel').length === 3, 5000, 'three PUBRELs');
      expect(again.packets.filter((p) => p.cmd === 'pubrel').map((p) => (p as mqttPacket.IPubrelPacket).messageId).sort()).toEqual([...ids].sort());
    }
    await again.end();
  });

  test('[MQTT-3.3.5-1] [MQTT-3.8.4-6] live: once per message at the highest matching QoS, never above the message\'s, and the session stays', async () => {
    const id = clientId('live');
    const r = raw(node(0), id);
    await r.wait((p) => p.cmd === 'connack');
    expect(await r.subscribe([{ topic: 'lv/#', qos: 0 }, { topic: 'lv/x/#', qos: 1 }, { topic: 'lv/w/+', qos: 1 }])).toEqual([0, 1, 1]);
    const pub = await open(node(1));
    const sent: [string, 0 | 1 | 2][] = [['lv/x/1', 1], ['lv/x/2', 2], ['lv/z', 1], ['lv/w/1', 2], ['lv/x/3', 0], ['lv/end', 0]];
    for (const [topic, qos] of sent) await pub.publishAsync(topic, topic, { qos });
    await r.wait((p) => p.cmd === 'publish' && p.topic === 'lv/end', 5000, 'lv/end');
    expect(r.publishes().map((p) => [p.topic, p.qos])).toEqual([['lv/x/1', 1], ['lv/x/2', 1], ['lv/z', 0], ['lv/w/1', 1], ['lv/x/3', 0], ['lv/end', 0]]);
    await eventually(async () => (await queued(node(0), id)).length === 0, 5000, 'the queue to drain');
    // A retained QoS 2 message through a QoS 1 wildcard subscription comes at QoS 1.
    await pub.publishAsync('lv/ret/a', 'kept', { qos: 2, retain: true });
    expect(await r.subscribe([{ topic: 'lv/ret/+', qos: 1 }])).toEqual([1]);
    const retained = await r.wait((p) => p.cmd === 'publish' && p.topic === 'lv/ret/a' && p.retain, 5000, 'the retained message');
    expect((retained as mqttPacket.IPublishPacket).qos).toBe(1);
    await r.end();
  });

  test('SPEC §3: a persistent ACL session subscribed to # gets only its topics, and what it may not receive leaves its queue', async () => {
    const acl = { type: 2 as const, acl: [{ uri: 'mqtt', topic: 'acl/1/#', actions: ['subscribe' as const] }] };
    const t = await node(0).token({ ttl: 3600, access: acl });
    const id = clientId('dash');
    const r = new RawClient(node(0).ports.mqtt, { clientId: id, clean: false, username: t.key });
    raws.push(r);
    await r.wait((p) => p.cmd === 'connack');
    expect(await r.subscribe([{ topic: '#', qos: 1 }])).toEqual([1]);
    const pub = await open(node(1));
    for (let i = 1; i <= 10; i++) await pub.publishAsync(`acl/${i % 2}/x`, String(i), { qos: 1 });
    await pub.publishAsync('acl/1/end', 'end', { qos: 1 });
    await r.wait((p) => p.cmd === 'publish' && p.topic === 'acl/1/end', 5000, 'acl/1/end');
    expect(r.publishes().map((p) => p.payload.toString())).toEqual(['1', '3', '5', '7', '9', 'end']);
    await eventually(async () => (await queued(node(0), id)).length === 0, 5000, 'the refused messages to leave the queue');
    await r.end();
  });

  test('[MQTT-4.3.2-1] a QoS 1 message is not lost when a later message of the same node overtakes it (it waited for the offline queue)', async () => {
    // A persistent session offline on `ot/q` makes every QoS 1 message there wait for its queue;
    // messages to `ot/z` do not. Both reach a clean subscriber of `ot/#` on the other node.
    await session(node(0), clientId('ot-offline'), [{ topic: 'ot/q', qos: 1 }]);
    const sub = await open(node(1));
    const inbox = collect(sub);
    await sub.subscribeAsync('ot/#', { qos: 1 });
    const pub = await open(node(0));
    const sent: string[] = [];
    await Promise.all(Array.from({ length: 40 }, (_, i) => {
      const topic = i % 2 ? 'ot/z' : 'ot/q';
      sent.push(`${topic} ${i}`);
      return pub.publishAsync(topic, String(i), { qos: 1 });
    }));
    await pub.publishAsync('ot/end', 'end', { qos: 1 });
    await eventually(() => inbox.messages.some((m) => m.topic === 'ot/end'), 5000, 'ot/end');
    const got = inbox.messages.filter((m) => m.topic !== 'ot/end').map((m) => `${m.topic} ${m.payload}`);
    expect(got.sort()).toEqual(sent.sort());
  });

  test('[MQTT-4.3.3-1] QoS 2 to a persistent session: each PUBREL carries its own packet id, a PUBREL owed is sent again on reconnect, the queue drains', async () => {
    const id = clientId('pubrel');
    await session(node(0), id, [{ topic: 'rel/#', qos: 2 }]);
    const pub = await open(node(1));
    for (let i = 1; i <= 3; i++) await pub.publishAsync('rel/x', `offline ${i}`, { qos: 2 });
    const r = raw(node(0), id);
    // PUBREC each message, but leave before any PUBCOMP.
    r.autoAck = false;
    r.packets.length = 0;
    const pubrels = (c: RawClient): number[] => c.packets.filter((p) => p.cmd === 'pubrel').map((p) => (p as mqttPacket.IPubrelPacket).messageId!);
    await r.wait(() => r.publishes().length === 3, 5000, 'three messages');
    const ids = r.publishes().map((p) => p.messageId!);
    for (const messageId of ids) r.send({ cmd: 'pubrec', messageId });
    await r.wait(() => pubrels(r).length === 3, 5000, 'three PUBRELs');
    expect(pubrels(r).sort()).toEqual([...ids].sort());
    r.destroy();
    await r.closed;
    // [MQTT-4.4.0-1]: on reconnect the PUBRELs go out again, not the messages.
    const again = raw(node(1), id);
    await again.wait(() => pubrels(again).length === 3, 5000, 'three PUBRELs again');
    expect(pubrels(again).sort()).toEqual([...ids].sort());
    expect(again.publishes()).toEqual([]);
    await eventually(async () => (await queued(node(1), id)).length === 0, 5000, 'the offline queue to drain');
    // Live, several in flight at once.
    for (let i = 1; i <= 3; i++) await pub.publishAsync('rel/x', `live ${i}`, { qos: 2 });
    await again.wait(() => pubrels(again).length === 6, 5000, 'three more PUBRELs');
    expect(pubrels(again).slice(3).sort()).toEqual(again.publishes().map((p) => p.messageId!).sort());
    await eventually(async () => (await queued(node(1), id)).length === 0, 5000, 'the queue to drain again');
    await again.end();
  });

  test('[MQTT-3.2.0-1] randomized: reconnects while QoS 1 messages keep coming: CONNACK first every time, nothing lost, in order', async () => {
    const id = clientId('loop');
    await session(node(1), id, [{ topic: 'loop/#', qos: 1 }]);
    const pub = await open(node(0));
    let published = 0;
    let stop = false;
    const publishing = (async () => {
      while (!stop && published < 400) await pub.publishAsync('loop/x', String(++published), { qos: 1 });
    })();
    const seen: number[] = [];
    const firsts: string[] = [];
    try {
      for (let round = 0; round < 15; round++) {
        const r = raw(node(round), id);
        const connack = await r.wait((p) => p.cmd === 'connack', 10_000, `CONNACK (round ${round}, first packets: ${r.packets.map((p) => p.cmd).join(',')})`);
        firsts.push(r.packets[0]!.cmd);
        expect((connack as mqttPacket.IConnackPacket).returnCode).toBe(0);
        // Stay a random while (a few deliveries), then leave cleanly or drop the connection.
        const stay = 1 + Math.floor(Math.random() * 5);
        await r.wait(() => r.publishes().length >= stay, 10_000, 'deliveries').catch(() => undefined);
        if (Math.random() < 0.5) await r.end();
        else {
          r.destroy();
          await r.closed;
        }
        seen.push(...r.publishes().map((p) => Number(p.payload.toString())));
      }
    } finally {
      stop = true;
      await publishing;
    }
    // Back once more and take the rest.
    const last = raw(node(0), id);
    await last.wait((p) => p.cmd === 'connack', 10_000, 'last CONNACK');
    firsts.push(last.packets[0]!.cmd);
    await last.wait((p) => p.cmd === 'publish' && Number(p.payload.toString()) === published, 10_000, `message ${published}`)
      .catch(() => undefined);
    seen.push(...last.publishes().map((p) => Number(p.payload.toString())));
    await last.end();

    expect(firsts.every((cmd) => cmd === 'connack')).toBe(true);
    const missing = Array.from({ length: published }, (_, i) => i + 1).filter((n) => !seen.includes(n));
    expect(missing).toEqual([]);
    // [MQTT-4.6.0-6]: first deliveries in publishing order (a QoS 1 redelivery may repeat one).
    const order = seen.filter((n, i) => seen.indexOf(n) === i);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  }, 60_000);
});
