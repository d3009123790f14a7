// Offline queues (broker/offline-queue.ts) where the pipeline shortcut is surely
// live: in a real Node process (Jest's module registry may hand Aedes its own
// copy of `pipeline`). Queues still arrive whole, in order, after each
// reconnect, with the memory store and in Redis mode.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { collect, connect, within } from '../helpers/mqtt.js';
import { startProcess } from '../helpers/process.js';

const OFFLINE_QUEUE = resolve(process.cwd(), 'dist/src/broker/offline-queue.js');

/**
 * A CONNECT listening from before its CONNACK (a queue may come in the same read as
 * it), and everything queued for it: it then publishes a marker to itself, which
 * comes after whatever its CONNECT delivered (Aedes sends the queue before it
 * handles the SUBSCRIBE).
 */
async function connectWithQueue(url: string, key: string, clientId: string, clean: boolean): Promise<{ client: MqttClient; queued: string[] }> {
  const client = mqtt.connect(url, { username: key, clientId, clean, reconnectPeriod: 0 });
  const payloads: string[] = [];
  const marker = `q/marker/${clientId}`;
  const marked = new Promise<void>((res) => client.on('message', (topic, payload) => (topic === marker ? res() : payloads.push(payload.toString()))));
  await within(new Promise((res, rej) => {
    client.once('connect', res);
    client.once('error', rej);
  }), 5000, `CONNACK for ${clientId}`);
  await client.subscribeAsync(marker, { qos: 1 });
  await client.publishAsync(marker, 'marker', { qos: 1 });
  await within(marked, 5000, `marker for ${clientId}`);
  return { client, queued: payloads };
}

describe('offline queues in a real process', () => {
  test('an ES module importing pipeline from stream sees the shortcut once it is installed', () => {
    const script = `
      import { pipeline as live } from 'stream';
      const before = live; // the binding's value now; the binding itself is what Aedes calls
      const { skipEmptyQueues } = await import(${JSON.stringify(OFFLINE_QUEUE)});
      const { createMemoryPersistence } = await import(${JSON.stringify(resolve(process.cwd(), 'dist/src/broker/dollar-guard.js'))});
      const p = skipEmptyQueues(createMemoryPersistence());
      const after = live;
      const { PassThrough } = await import('stream');
      const t = new PassThrough();
      after(p.outgoingStream({ id: 'fresh' }), t, (err) => {
        console.log(JSON.stringify({ changed: before !== after, err: err ?? null }));
      });
    `;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(res.stderr).toBe('');
    expect(JSON.parse(res.stdout.trim())).toEqual({ changed: true, err: null });
  });

  test.each([
    ['memory store', {}],
    ['Redis mode', { REDIS_URL: process.env.REDIS_URL ?? '', REDIS_PREFIX: `oq${process.pid}:` }],
  ])('%s: persistent sessions get their whole queue after each reconnect; clean sessions start empty', async (_mode, env) => {
    // MASTER_TOKEN rather than the banner: stderr may come after the listening line on stdout.
    const key = `OfflineQueue${process.pid}Master0123456789`;
    const srv = await startProcess({ ...env, MASTER_TOKEN: key });
    try {
      const url = `mqtt://127.0.0.1:${srv.ports.mqtt}`;
      const pub = await connect(url, key, { clientId: 'pub' });
      // Nothing ever queued for this id: subscribe and publish right after CONNECT.
      const fresh = await connect(url, key, { clientId: 'fresh-1' });
      const freshGot = collect(fresh);
      await fresh.subscribeAsync('q/fresh', { qos: 1 });
      await pub.publishAsync('q/fresh', 'f1', { qos: 1 });
      expect((await freshGot.next()).payload).toBe('f1');
      await fresh.endAsync();

      const dev = await connect(url, key, { clientId: 'dev-1', clean: false });
      await dev.subscribeAsync('q/dev', { qos: 1 });
      await dev.endAsync();
      for (let round = 0; round < 3; round++) {
        const sent = [1, 2, 3].map((i) => `r${round}-m${i}`);
        for (const m of sent) await pub.publishAsync('q/dev', m, { qos: 1 });
        const back = await connectWithQueue(url, key, 'dev-1', false);
        expect(back.queued).toEqual(sent);
        await back.client.endAsync();
      }
      // A clean CONNECT with that id drops the stored session: nothing arrives.
      await pub.publishAsync('q/dev', 'dropped', { qos: 1 });
      const clean = await connectWithQueue(url, key, 'dev-1', true);
      expect(clean.queued).toEqual([]);
      await clean.client.endAsync();
      // ... and its queue with it: a persistent CONNECT after it finds nothing, then queues anew.
      const after = await connectWithQueue(url, key, 'dev-1', false);
      expect(after.queued).toEqual([]);
      /** Subscribes `session` (persistent) to `topic`, goes offline, gets one message queued, and reconnects for it. */
      const queuesOne = async (session: MqttClient, topic: string, payload: string): Promise<void> => {
        await session.subscribeAsync(topic, { qos: 1 });
        await session.endAsync();
        await pub.publishAsync(topic, payload, { qos: 1 });
        const back = await connectWithQueue(url, key, session.options.clientId as string, false);
        expect(back.queued).toEqual([payload]);
        await back.client.endAsync();
      };
      await queuesOne(after.client, 'q/dev', 'anew');
      // A client id a clean session used (its queue known empty) queues for a later persistent session.
      await queuesOne(await connect(url, key, { clientId: 'fresh-1', clean: false }), 'q/was', 'queued');
      // A clean CONNECT with a will (nothing stored before it): the will goes out when the connection drops.
      const watcher = await connect(url, key, { clientId: 'will-watch' });
      const wills = collect(watcher);
      await watcher.subscribeAsync('q/will', { qos: 1 });
      const mortal = await connect(url, key, { clientId: 'will-1', will: { topic: 'q/will', payload: Buffer.from('gone'), qos: 1, retain: false } });
      mortal.stream.destroy();
      expect((await wills.next()).payload).toBe('gone');
      await watcher.endAsync();
      await pub.endAsync();
    } finally {
      await srv.stop('SIGKILL');
    }
  });
});
