// A PUBLISH topic must be a topic name: not empty [MQTT-4.7.3-1], no wildcard
// [MQTT-3.3.2-2], no NUL [MQTT-4.7.3-2]. A PUBLISH that breaks it is a protocol
// violation: the connection closes, nothing is delivered, and it is logged.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import type { MqttClient } from 'mqtt';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { RawClient, collect, connect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually, within } from '../helpers/wait.js';

let srv: TestServer;
let master: string;
let watcher: MqttClient;
let inbox: ReturnType<typeof collect>;
const logLines: string[] = [];

beforeAll(async () => {
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { logLines.push(chunk.toString()); cb(); } });
  srv = await startTestServer({ log: pino({ level: 'info' }, sink) });
  master = (await srv.token({ access: { type: 1 } })).key;
  watcher = await connect(srv.mqttUrl, master);
  inbox = collect(watcher);
  await watcher.subscribeAsync('#', { qos: 1 });
});
afterAll(async () => {
  await watcher.endAsync(true);
  await srv.close();
});

test.each([
  ['a NUL character', 'nul/a\u0000b'],
  ['only NUL', '\u0000'],
  ['a # wildcard', 'wild/#'],
  ['a + wildcard', 'wild/+/x'],
  ['nothing (empty)', ''],
])('[MQTT-4.7.3-2] [MQTT-3.3.2-2] [MQTT-4.7.3-1] a PUBLISH topic holding %s closes the connection, reaches no subscriber, and is logged', async (_what, topic) => {
  for (const qos of [0, 1] as const) {
    const before = logLines.length;
    const r = new RawClient(srv.ports.mqtt, { username: master });
    await r.wait((p) => p.cmd === 'connack');
    r.send({ cmd: 'publish', topic, payload: Buffer.from('bad'), qos, retain: false, dup: false, ...(qos ? { messageId: 1 } : {}) });
    await within(r.closed, 5000, 'the broker to close the connection');
    expect(r.packets.map((p) => p.cmd)).toEqual(['connack']);
    await eventually(() => logLines.slice(before).some((l) => l.includes('"protocol_error"') && l.includes('connection closed')), 5000, 'the log line');
  }
  // Nothing but the marker published after them reaches `#`.
  const pub = await connect(srv.mqttUrl, master);
  await pub.publishAsync('marker', 'end', { qos: 1 });
  expect(await inbox.next()).toMatchObject({ topic: 'marker' });
  expect(inbox.messages).toEqual([]);
  await pub.endAsync();
});
