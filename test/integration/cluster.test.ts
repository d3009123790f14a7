// Cluster mode (SPEC §6, §7) with real processes on one Redis: messages,
// persistent sessions and retained messages cross nodes; token changes and
// kicks reach every node; dead nodes leave listings; duplicate client ids.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { closed, collect, connect } from '../helpers/mqtt.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/wait.js';

const now = (): number => Math.floor(Date.now() / 1000);

async function api(cluster: Cluster, node: number, method: string, path: string, body?: unknown): Promise<{ status: number; json: { result?: unknown[]; errors?: unknown[] } }> {
  const res = await fetch(`${cluster.http(node)}${path}`, {
    method,
    headers: { authorization: `FlespiToken ${cluster.masterKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: (await res.json()) as { result?: unknown[] } };
}


describe('a three-node cluster', () => {
  let cluster: Cluster;
  const clients: MqttClient[] = [];
  const open = async (url: string, key: string, opts = {}): Promise<MqttClient> => {
    const c = await connect(url, key, opts);
    clients.push(c);
    return c;
  };

  beforeAll(async () => { cluster = await startCluster(3); }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await cluster.close();
  });

  test('a message published on node 0 (TCP) reaches subscribers on nodes 1 (WebSocket) and 2 (TCP)', async () => {
    const t = await cluster.store.create([{ ttl: 3600 }], now());
    const key = t[0]!.key;
    const subWs = await open(cluster.ws(1), key);
    const subTcp = await open(cluster.mqtt(2), key);
    const a = collect(subWs);
    const b = collect(subTcp);
    await subWs.subscribeAsync('x/#', { qos: 1 });
    await subTcp.subscribeAsync('x/#', { qos: 1 });
    const pub = await open(cluster.mqtt(0), key);
    await pub.publishAsync('x/1', 'hello', { qos: 1 });
    expect(await a.next()).toMatchObject({ topic: 'x/1', payload: 'hello' });
    expect(await b.next()).toMatchObject({ topic: 'x/1', payload: 'hello' });
  });

  test('an ACL # subscriber on one node receives only its topics, and token changes do not reach the MQTT path', async () => {
    const [dash] = await cluster.store.create([{ ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'dev/1/#', actions: ['subscribe'] }] } }], now());
    const [std] = await cluster.store.create([{ ttl: 3600 }], now());
    const sub = await open(cluster.mqtt(1), dash!.key);
    const inbox = collect(sub);
    await sub.subscribeAsync('#');
    // Change-feed and kick traffic on the same Redis while a # subscriber exists (PITFALLS).
    const [victim] = await cluster.store.create([{ ttl: 3600 }], now());
    await cluster.store.update([victim!.id], { info: 'changed' }, now());
    await cluster.store.delete([victim!.id]);
    const pub = await open(cluster.mqtt(0), std!.key);
    await pub.publishAsync('dev/2/x', 'hidden', { qos: 1 });
    await pub.publishAsync('dev/1/x', 'shown', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'dev/1/x', payload: 'shown' });
    expect(inbox.messages).toEqual([]);
    // Every node is still alive.
    for (let i = 0; i < 3; i++) expect((await fetch(`${cluster.http(i)}/health`)).status).toBe(200);
  });

  test('retained messages are shared between nodes', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const pub = await open(cluster.mqtt(0), t!.key);
    await pub.publishAsync('ret/a', 'kept', { qos: 1, retain: true });
    const sub = await open(cluster.mqtt(2), t!.key);
    const inbox = collect(sub);
    await sub.subscribeAsync('ret/#', { qos: 1 });
    expect(await inbox.next()).toMatchObject({ topic: 'ret/a', payload: 'kept', retain: true });
    await pub.publishAsync('ret/a', '', { qos: 1, retain: true });
  });

  test('a persistent session resumes on another node with the QoS 1 messages queued while offline', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const id = `persist-${Date.now()}`;
    // Restoring a persistent session takes several Redis round trips per step; on a loaded
    // CI machine (three nodes, two jest workers, two cores) give CONNACK more time.
    const slow = { connectTimeout: 15_000 };
    const first = await connect(cluster.mqtt(0), t!.key, { clientId: id, clean: false, ...slow });
    await first.subscribeAsync('q/#', { qos: 1 });
    await first.endAsync();
    const pub = await open(cluster.mqtt(1), t!.key);
    await pub.publishAsync('q/1', 'while offline', { qos: 1 });
    const again = await connect(cluster.mqtt(2), t!.key, { clientId: id, clean: false, ...slow });
    clients.push(again);
    const inbox = collect(again);
    expect(await inbox.next()).toMatchObject({ topic: 'q/1', payload: 'while offline' });
  });

  test('deleting a token closes its sessions on every node within 1 s', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const cs = await Promise.all([0, 1, 2].map((i) => open(cluster.mqtt(i), t!.key)));
    const started = Date.now();
    await cluster.store.delete([t!.id]);
    await Promise.all(cs.map((c) => closed(c, 1500)));
    expect(Date.now() - started).toBeLessThan(1500);
  });

  test('disabling a token through REST on node 0 closes its session on node 2', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const c = await open(cluster.mqtt(2), t!.key);
    const res = await api(cluster, 0, 'PUT', `/platform/tokens/${t!.id}`, { enabled: false });
    expect(res.status).toBe(200);
    await closed(c, 1500);
  });

  test('GET /mqtt/sessions on any node lists every node\'s sessions; DELETE on node 0 kicks a session on node 1', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const ids = [`list-a-${Date.now()}`, `list-b-${Date.now()}`];
    const onNode1 = await open(cluster.mqtt(1), t!.key, { clientId: ids[0] });
    await open(cluster.mqtt(2), t!.key, { clientId: ids[1] });
    await eventually(async () => {
      const res = await api(cluster, 0, 'GET', `/mqtt/sessions/all?token_id=${t!.id}`);
      const got = (res.json.result ?? []) as { client_id: string; node: string }[];
      return got.length === 2 && got.some((s) => s.client_id === ids[0] && s.node === 'node-1');
    }, 5000, 'both sessions listed on node 0', 100);
    const del = await api(cluster, 0, 'DELETE', `/mqtt/sessions/${ids[0]}`);
    expect(del.status).toBe(200);
    await closed(onNode1, 1500);
    await eventually(async () => {
      const res = await api(cluster, 2, 'GET', `/mqtt/sessions/all?token_id=${t!.id}`);
      return ((res.json.result ?? []) as unknown[]).length === 1;
    }, 5000, 'kicked session gone from listings', 100);
  });

  test('a duplicate client id on a second node takes the session over (MQTT-3.1.4-2)', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const id = `dup-${Date.now()}`;
    const first = await open(cluster.mqtt(0), t!.key, { clientId: id });
    const gone = closed(first, 3000);
    await open(cluster.mqtt(1), t!.key, { clientId: id });
    await gone;
  });
});

describe('a node that dies', () => {
  let cluster: Cluster;
  beforeAll(async () => { cluster = await startCluster(2); }, 60_000);
  afterAll(async () => { await cluster.close(); });

  test('SIGKILL: its sessions leave the listing on the other node within 30 s', async () => {
    const [t] = await cluster.store.create([{ ttl: 3600 }], now());
    const c = await connect(cluster.mqtt(1), t!.key, { clientId: 'doomed' });
    c.on('error', () => {});
    const listed = async (): Promise<boolean> => {
      const res = await api(cluster, 0, 'GET', '/mqtt/sessions/doomed');
      return ((res.json.result ?? []) as unknown[]).length === 1;
    };
    await eventually(listed, 5000, 'session listed', 100);
    const killedAt = Date.now();
    await cluster.nodes[1]!.stop('SIGKILL');
    await eventually(async () => !(await listed()), 30_000, 'dead node dropped', 100);
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    c.end(true);
  }, 40_000);
});
