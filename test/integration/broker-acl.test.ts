// Topic rights over real MQTT clients, TCP and WebSocket (SPEC §3, §4).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { closed, collect, connect, within } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { AclEntry } from '../../src/tokens/types.js';

const acl = (...entries: AclEntry[]) => ({ access: { type: 2 as const, acl: entries } });
const sub = (topic: string): AclEntry => ({ uri: 'mqtt', topic, actions: ['subscribe'] });
const pub = (topic: string): AclEntry => ({ uri: 'mqtt', topic, actions: ['publish'] });

/** SUBACK return codes for the filters, in order (128 = refused). */
async function granted(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await within(client.subscribeAsync(filters, { qos: 1 }), 5000, 'SUBACK')).map((g) => g.qos);
  } catch (err) {
    // MQTT.js rejects when any filter is refused; the SUBACK rides on the error (PITFALLS).
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (packet?.granted) return packet.granted;
    throw err;
  }
}

describe.each(['tcp', 'ws'] as const)('ACL tokens over %s', (transport) => {
  let srv: TestServer;
  let master: string;
  const url = (): string => (transport === 'tcp' ? srv.mqttUrl : srv.wsUrl);
  const clients: MqttClient[] = [];
  const open = async (key: string, opts = {}): Promise<MqttClient> => {
    const c = await connect(url(), key, opts);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    srv = await startTestServer();
    master = (await srv.token({ access: { type: 1 } })).key;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await srv.close();
  });

  test('grants each filter on its own: intersecting ones granted, others 0x80, connection stays (SPEC §4)', async () => {
    const t = await srv.token(acl(sub('devices/42/#')));
    const c = await open(t.key);
    expect(await granted(c, ['#', 'devices/+/temp', 'test/x', 'devices/43/#', '+/42/a'])).toEqual([1, 1, 128, 128, 1]);
    expect(c.connected).toBe(true);
  });

  test('a # subscriber receives exactly the allowed topics, retained ones included (SPEC §3)', async () => {
    const publisher = await open(master);
    await publisher.publishAsync('devices/42/retained', 'r', { retain: true, qos: 1 });
    await publisher.publishAsync('devices/7/retained', 'hidden', { retain: true, qos: 1 });
    const t = await srv.token(acl(sub('devices/42/#')));
    const dash = await open(t.key);
    const inbox = collect(dash);
    expect(await granted(dash, ['#'])).toEqual([1]);
    const first = await inbox.next();
    expect(first).toMatchObject({ topic: 'devices/42/retained', payload: 'r', retain: true });
    await publisher.publishAsync('test/x', 'no', { qos: 1 });
    await publisher.publishAsync('devices/43/a', 'no', { qos: 1 });
    await publisher.publishAsync('devices/42', 'parent', { qos: 1 });
    await publisher.publishAsync('devices/42/a/b', 'deep', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'devices/42', payload: 'parent' });
    expect(await inbox.next()).toMatchObject({ topic: 'devices/42/a/b', payload: 'deep' });
    // A marker on an allowed topic proves nothing else arrived in between (delivery is in order per publisher).
    await publisher.publishAsync('devices/42/marker', 'end', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'devices/42/marker' });
    expect(inbox.messages).toEqual([]);
    await publisher.publishAsync('devices/42/retained', '', { retain: true, qos: 1 });
    await publisher.publishAsync('devices/7/retained', '', { retain: true, qos: 1 });
  });

  test('publish to an allowed topic is delivered; to another topic closes the connection (MQTT-3.3.5-2)', async () => {
    const t = await srv.token(acl(pub('devices/42/up'), sub('devices/42/down')));
    const dev = await open(t.key);
    const watcher = await open(master);
    const inbox = collect(watcher);
    await granted(watcher, ['devices/#']);
    await dev.publishAsync('devices/42/up', 'ok', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'devices/42/up', payload: 'ok' });
    const gone = closed(dev);
    dev.publish('devices/42/down', 'not mine', { qos: 0 });
    await gone;
    expect(srv.broker.stats.refusedPublishes).toBeGreaterThan(0);
  });

  test('$SYS publishes are refused even for a master token (SPEC §3)', async () => {
    const c = await open(master);
    const gone = closed(c);
    c.publish('$SYS/fake', 'x');
    await gone;
  });

  test('a + filter does not reach $ topics; a $-literal entry does (MQTT-4.7.2-1)', async () => {
    const t = await srv.token(acl(sub('+/x'), sub('$app/#')));
    const c = await open(t.key);
    expect(await granted(c, ['$app/status', '$other/x', 'a/x'])).toEqual([1, 128, 1]);
  });

  test('placeholders ${clientid} and ${token_id} expand per session', async () => {
    const t = await srv.token(acl(pub('clients/${clientid}/out'), sub('tokens/${token_id}/in')));
    const c = await open(t.key, { clientId: 'dev-7' });
    expect(await granted(c, [`tokens/${t.id}/in`, 'tokens/999999/in'])).toEqual([1, 128]);
    const watcher = await open(master);
    const inbox = collect(watcher);
    await granted(watcher, ['clients/#']);
    await c.publishAsync('clients/dev-7/out', 'mine', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'clients/dev-7/out' });
  });

  test('a client id with wildcards or / never matches a placeholder (injection guard)', async () => {
    const t = await srv.token(acl(pub('clients/${clientid}/out'), sub('clients/${clientid}/in'), sub('public/#')));
    for (const id of ['a/+', '#', 'x/y']) {
      const c = await open(t.key, { clientId: id });
      expect(await granted(c, ['clients/a/+/in', 'clients/#', 'clients/x/y/in'])).toEqual([128, 128, 128]);
      const gone = closed(c);
      c.publish(`clients/${id}/out`, 'x');
      await gone;
    }
  });

  test('standard and master tokens publish and subscribe anywhere except $SYS publish', async () => {
    for (const type of [0, 1] as const) {
      const t = await srv.token({ access: { type } });
      const c = await open(t.key);
      const inbox = collect(c);
      expect(await granted(c, ['#', 'any/+/x'])).toEqual([1, 1]);
      await c.publishAsync(`free/${type}`, 'y', { qos: 1 });
      expect(await inbox.next()).toMatchObject({ topic: `free/${type}` });
    }
  });
});
