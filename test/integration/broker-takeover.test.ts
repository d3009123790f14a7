// Client id takeover while the previous connection is still closing
// [MQTT-3.1.4-2]: Aedes' client table must follow identities (src/broker/client-table.ts).
// Found by the MQTT fuzz (broker-fuzz.test.ts): `aedes.connectedClients` stayed
// above the live count after streams reusing client ids. Each race is made
// deterministic by holding the Aedes step that keeps a close (or a CONNECT) in
// flight, as a slow mqemitter-redis unsubscribe or persistence call would.
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import mqtt, { type MqttClient } from 'mqtt';
import { closed, connect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

interface AedesInternals {
  clients: Record<string, { closed: boolean }>;
  connectedClients: number;
  unsubscribe(topic: string, fn: unknown, done: () => void): void;
  persistence: { delWill(client: unknown): Promise<unknown> };
}

/** Replaces `obj[name]` so that calls wait until `release()`; returns how many are waiting. */
function hold<T extends object, K extends keyof T>(obj: T, name: K) {
  const original = obj[name] as (...args: unknown[]) => unknown;
  const waiting: (() => void)[] = [];
  let held = true;
  obj[name] = ((...args: unknown[]) => {
    if (!held) return original.apply(obj, args);
    // Keeps a promise-returning step's shape: resolves with the original's result once released.
    return new Promise((resolve) => waiting.push(() => resolve(original.apply(obj, args))));
  }) as T[K];
  return {
    get waiting() { return waiting.length; },
    release() {
      held = false;
      obj[name] = original as T[K];
      for (const w of waiting.splice(0)) w();
    },
  };
}

describe('client id takeover during a close (MQTT-3.1.4-2)', () => {
  let srv: TestServer;
  let aedes: AedesInternals;
  let key: string;
  // A node per test: a leak in one must not show up in the next.
  beforeEach(async () => {
    srv = await startTestServer();
    aedes = srv.broker.aedes as unknown as AedesInternals;
    key = (await srv.token()).key;
  });
  afterEach(async () => { await srv.close(); });

  /** Waits (bounded) for a condition and says whether it came: the assertion that follows names what failed. */
  const came = (check: () => boolean, ms = 2000): Promise<boolean> => eventually(check, ms).then(() => true, () => false);
  const tableEmpty = (): boolean => Object.keys(aedes.clients).length === 0 && aedes.connectedClients === 0;

  test('a session that took over a closing one is itself taken over by the next CONNECT [MQTT-3.1.4-2]', async () => {
    const id = 'takeover-a';
    const a = await connect(srv.mqttUrl, key, { clientId: id });
    await a.subscribeAsync('t/a');
    // A's close unsubscribes first, then unregisters: keep it between the two.
    const unsub = hold(aedes, 'unsubscribe');
    a.stream.destroy();
    await eventually(() => unsub.waiting > 0, 5000, "A's close to start");
    const b = await connect(srv.mqttUrl, key, { clientId: id });
    unsub.release();
    await eventually(() => srv.broker.registry.byClientId(id).length === 1, 5000, 'A gone');
    const c = await connect(srv.mqttUrl, key, { clientId: id });
    // The takeover closes B: one live session per client id.
    const bClosed = await closed(b, 2000).then(() => true, () => false);
    expect(bClosed).toBe(true);
    expect(srv.broker.registry.byClientId(id)).toHaveLength(1);
    expect(aedes.connectedClients).toBe(1);
    await c.endAsync();
    b.end(true);
    expect(await came(tableEmpty)).toBe(true);
  });

  test('connectedClients returns to 0 when the successor leaves before the closing one has finished', async () => {
    const id = 'takeover-b';
    const h = await connect(srv.mqttUrl, key, { clientId: id });
    await h.subscribeAsync('t/b');
    const unsub = hold(aedes, 'unsubscribe');
    h.stream.destroy();
    await eventually(() => unsub.waiting > 0, 5000, "H's close to start");
    const s: MqttClient = await connect(srv.mqttUrl, key, { clientId: id });
    await s.endAsync();
    await eventually(() => srv.broker.registry.byClientId(id).length === 0, 5000, 'S gone');
    unsub.release();
    await came(tableEmpty);
    expect(aedes.connectedClients).toBe(0);
    expect(Object.keys(aedes.clients)).toEqual([]);
  });

  test('a client that closes while its CONNECT is in the persistence steps never enters the client table', async () => {
    const id = 'takeover-c';
    // storeWill runs after authenticate and before registerClient.
    const delWill = hold(aedes.persistence, 'delWill');
    const x = mqtt.connect(srv.mqttUrl, { username: key, clientId: id, reconnectPeriod: 0 });
    x.on('error', () => {});
    await eventually(() => delWill.waiting > 0, 5000, 'CONNECT in storeWill');
    x.end(true);
    await eventually(() => srv.broker.registry.size === 0, 5000, 'the connection to close');
    delWill.release();
    // The CONNECT's remaining steps (putWill, registerClient) run within a few turns of the loop.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(Object.keys(aedes.clients)).toEqual([]);
    expect(aedes.connectedClients).toBe(0);
  });
});
