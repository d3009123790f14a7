// Topics beginning with `$` (SPEC §3, §4; MQTT-4.7.2-1) on every delivery path
// (live, retained, offline queue of a persistent session), for every token
// type, with the in-memory persistence and with aedes-persistence-redis (the
// cluster mode of SPEC §6, built in-process as main.ts builds it); and will
// topics (SPEC §4; MQTT-3.3.2-2).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { Writable } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import { clientId, closed, collect, connect, refusedCode, WAIT_MS, within, type Received } from '../helpers/mqtt.js';
import { startTestServer, type TestServer, type TestServerOptions } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';
import type { AclEntry, AccessType } from '../../src/tokens/types.js';

const acl = (...entries: AclEntry[]) => ({ access: { type: 2 as const, acl: entries } });
const entry = (topic: string, ...actions: ('publish' | 'subscribe')[]): AclEntry => ({ uri: 'mqtt', topic, actions });

/** SUBACK return codes for the filters, in order (128 = refused). */
async function granted(client: MqttClient, filters: string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
  try {
    return (await within(client.subscribeAsync(filters, { qos }), WAIT_MS, 'SUBACK')).map((g) => g.qos);
  } catch (err) {
    // MQTT.js rejects when any filter is refused; the SUBACK rides on the error (PITFALLS).
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (packet?.granted) return packet.granted;
    throw err;
  }
}

interface Inbox {
  all: Received[];
  /** Resolves once `count` messages on `topic` have arrived (rejects after `ms`). */
  waitFor(topic: string, count?: number, ms?: number): Promise<void>;
  /** Whether `topic` arrived within `ms`: for a wait whose failure the test asserts. */
  arrives(topic: string, ms: number): Promise<boolean>;
  /** The messages on `$<root>...` topics. */
  dollar(root: string): Received[];
}

function inbox(client: MqttClient): Inbox {
  const all = collect(client).messages; // never `next()`: every message stays in `all`
  return {
    all,
    async waitFor(topic, count = 1, ms = 2 * WAIT_MS) {
      await eventually(() => all.filter((m) => m.topic === topic).length >= count, ms, `${count} × ${topic}`);
    },
    arrives(topic, ms) {
      return this.waitFor(topic, 1, ms).then(() => true, () => false);
    },
    dollar: (root) => all.filter((m) => m.topic.startsWith(`$${root}`)),
  };
}

/**
 * A client whose message listener is attached before CONNECT goes out, so that
 * the queued messages a persistent session gets right after CONNACK are not missed.
 */
async function connectCollecting(url: string, key: string, opts: IClientOptions) {
  const client = mqtt.connect(url, { username: key, reconnectPeriod: 0, connectTimeout: 15_000, ...opts });
  const box = inbox(client);
  await within(new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  }), 16_000, 'CONNACK');
  return { client, box };
}

/** The broker's first answer to `bytes`: its first packet, or none when it closes the socket first. */
function firstAnswer(port: number, bytes: Buffer): Promise<{ packet: mqttPacket.Packet | null; closed: boolean }> {
  return within(new Promise((resolve) => {
    const socket = netConnect({ port, host: '127.0.0.1' });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet) => { socket.destroy(); resolve({ packet, closed: false }); });
    parser.on('error', () => {});
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => {});
    socket.on('close', () => resolve({ packet: null, closed: true }));
    socket.on('connect', () => socket.write(bytes));
  }), WAIT_MS, 'answer to CONNECT');
}

/** A CONNECT (MQTT 3.1.1) with a username, clean session and a QoS 1 will on `willTopic`, whatever it is. */
function connectWithWill(username: string, willTopic: string): Buffer {
  const str = (text: string): Buffer => {
    const bytes = Buffer.from(text, 'utf8');
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const flags = 0x80 /* username */ | 0x08 /* will QoS 1 */ | 0x04 /* will */ | 0x02; /* clean session */
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, flags, 0, 30]), str(clientId('raw')), str(willTopic), str('bye'), str(username)]);
  const length: number[] = [];
  for (let n = body.length; ; ) {
    const digit = n % 128;
    n = Math.floor(n / 128);
    length.push(n > 0 ? digit | 0x80 : digit);
    if (n === 0) break;
  }
  return Buffer.concat([Buffer.from([0x10, ...length]), body]);
}

interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[]): Promise<Run> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise<Run>((resolve, reject) => {
    child.on('error', (err) => reject(new Error(`${cmd}: ${err.message} (apt-get install mosquitto-clients)`)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const TYPES = [['standard', 0], ['master', 1]] as const;
const MODES: [string, TestServerOptions][] = [
  ['in-memory persistence', {}],
  ['Redis cluster mode (aedes-persistence-redis)', { store: 'redis', cluster: true }],
];

describe.each(MODES)('$ topics with the %s', (_mode, serverOpts) => {
  let srv: TestServer;
  let master: string;
  const logLines: string[] = [];
  const clients: MqttClient[] = [];
  const open = async (key: string, opts: IClientOptions = {}): Promise<MqttClient> => {
    const c = await connect(srv.mqttUrl, key, { connectTimeout: 15_000, ...opts });
    clients.push(c);
    return c;
  };
  /** A fresh topic root per test, so tests never see each other's retained or queued messages. */
  let seq = 0;
  const root = (): string => `r${randomBytes(3).toString('hex')}${++seq}`;
  const tokenOf = async (type: AccessType): Promise<string> => (await srv.token({ access: { type } })).key;

  beforeAll(async () => {
    const sink = new Writable({ write(chunk: Buffer, _enc, cb) { logLines.push(chunk.toString()); cb(); } });
    srv = await startTestServer({ ...serverOpts, log: pino({ level: 'info' }, sink) });
    master = (await srv.token({ access: { type: 1 } })).key;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await srv.close();
  });

  /** Retained `$R/...` messages (QoS 0, 1 and 2) stored before a plain `R/status`; returns their cleanup. */
  async function retainDollarTopics(r: string): Promise<() => Promise<void>> {
    const pub = await open(master);
    await pub.publishAsync(`$${r}/status`, 'secret', { qos: 1, retain: true });
    await pub.publishAsync(`$${r}/q2`, 'secret', { qos: 2, retain: true });
    await pub.publishAsync(`$${r}/q0`, 'secret', { qos: 0, retain: true });
    await pub.publishAsync(`${r}/status`, 'plain', { qos: 1, retain: true });
    return async () => {
      for (const t of [`$${r}/status`, `$${r}/q2`, `$${r}/q0`, `${r}/status`]) await pub.publishAsync(t, '', { qos: 1, retain: true });
    };
  }

  /**
   * Subscribes a persistent session one filter per SUBSCRIBE: aedes-persistence-redis
   * loses all but one SUBACK of a multi-filter SUBSCRIBE of a persistent session
   * (its subscription broadcast keys the wait by the first filter only).
   */
  async function subscribeEach(client: MqttClient, filters: string[], qos: 0 | 1 | 2): Promise<number[]> {
    const codes: number[] = [];
    for (const f of filters) codes.push(...await granted(client, [f], qos));
    return codes;
  }

  /**
   * A master `#` subscriber: once it has a message, the broker has queued that message for the
   * offline sessions and emitted it. Tests reconnect a persistent session only after that, because
   * Aedes writes a live message matched by a restored subscription before CONNACK, which MQTT.js
   * never gets past (a race of Aedes' CONNECT handling, not the rule tested here).
   */
  async function delivered(): Promise<Inbox> {
    const watcher = await open(master);
    const box = inbox(watcher);
    await granted(watcher, ['#']);
    return box;
  }

  test.each(TYPES)('retained $ topics are not delivered through # or + to a %s token (MQTT-4.7.2-1, SPEC §4)', async (_name, type) => {
    const r = root();
    const clear = await retainDollarTopics(r);
    try {
      const key = await tokenOf(type);
      const pub = await open(master);
      for (const filter of ['#', '+/status', '+/+']) {
        const c = await open(key);
        const box = inbox(c);
        expect(await granted(c, [filter], 2)).toEqual([2]);
        await box.waitFor(`${r}/status`);
        // A live marker after the retained one: the retained stream of this SUBSCRIBE is over.
        await pub.publishAsync(`${r}/status`, 'marker', { qos: 1 });
        await box.waitFor(`${r}/status`, 2);
        expect([filter, box.dollar(r)]).toEqual([filter, []]);
      }
    } finally {
      await clear();
    }
  });

  test.each(TYPES)('retained $ topics reach a %s token through a filter naming their $ level, once beside # (MQTT-4.7.2-1)', async (_name, type) => {
    const r = root();
    const clear = await retainDollarTopics(r);
    try {
      const c = await open(await tokenOf(type));
      const box = inbox(c);
      expect(await granted(c, ['#', `$${r}/#`, `$${r}/+`], 2)).toEqual([2, 2, 2]);
      for (const t of [`$${r}/status`, `$${r}/q2`, `$${r}/q0`, `${r}/status`]) await box.waitFor(t);
      const pub = await open(master);
      await pub.publishAsync(`${r}/marker`, 'end', { qos: 2 });
      await box.waitFor(`${r}/marker`);
      // One SUBSCRIBE with overlapping filters: each `$` topic once, through the `$R/...` filters only.
      expect(box.dollar(r).map((m) => m.topic).sort()).toEqual([`$${r}/q0`, `$${r}/q2`, `$${r}/status`]);
    } finally {
      await clear();
    }
  });

  test.each(TYPES)('queued $ topics are not delivered to a persistent %s session through # or + (MQTT-4.7.2-1, SPEC §4)', async (_name, type) => {
    const r = root();
    const key = await tokenOf(type);
    const id = clientId('persist');
    const pub = await open(master);
    const first = await connectCollecting(srv.mqttUrl, key, { clientId: id, clean: false });
    expect(await subscribeEach(first.client, ['#', '+/secret', '+/+'], 1)).toEqual([1, 1, 1]);
    // While it is online: a `$` message must not be queued for its `#` either (it would come on reconnect).
    await pub.publishAsync(`$${r}/online`, 'secret', { qos: 1 });
    await pub.publishAsync(`${r}/online`, 'marker', { qos: 1 });
    await first.box.waitFor(`${r}/online`);
    await first.client.endAsync();
    // While it is offline: QoS 1 and 2 on `$` topics, then a plain one.
    const watcher = await delivered();
    await pub.publishAsync(`$${r}/secret`, 'secret', { qos: 1 });
    await pub.publishAsync(`$${r}/q2`, 'secret', { qos: 2 });
    await pub.publishAsync(`${r}/secret`, 'plain', { qos: 1 });
    await watcher.waitFor(`${r}/secret`);
    const again = await connectCollecting(srv.mqttUrl, key, { clientId: id, clean: false });
    clients.push(again.client);
    await again.box.waitFor(`${r}/secret`);
    await pub.publishAsync(`${r}/end`, 'marker', { qos: 2 });
    await again.box.waitFor(`${r}/end`);
    expect([...first.box.dollar(r), ...again.box.dollar(r)]).toEqual([]);
  });

  test.each(TYPES)('queued $ topics reach a persistent %s session through its $ filter once, beside # (MQTT-4.7.2-1)', async (_name, type) => {
    const r = root();
    const key = await tokenOf(type);
    const id = clientId('persist');
    const first = await connectCollecting(srv.mqttUrl, key, { clientId: id, clean: false });
    expect(await subscribeEach(first.client, ['#', `$${r}/#`], 2)).toEqual([2, 2]);
    await first.client.endAsync();
    const pub = await open(master);
    const watcher = await delivered();
    await pub.publishAsync(`$${r}/q1`, 'one', { qos: 1 });
    await pub.publishAsync(`$${r}/q2`, 'two', { qos: 2 });
    await pub.publishAsync(`${r}/last`, 'plain', { qos: 1 });
    await watcher.waitFor(`${r}/last`);
    const again = await connectCollecting(srv.mqttUrl, key, { clientId: id, clean: false });
    clients.push(again.client);
    // Queued in order: `$R/q1`, `$R/q2`, then `R/last` (which a doubly queued `$R/q2` used to hold back).
    const last = await again.box.arrives(`${r}/last`, WAIT_MS);
    await pub.publishAsync(`${r}/end`, 'marker', { qos: 2 });
    const end = await again.box.arrives(`${r}/end`, WAIT_MS);
    const dollar = again.box.dollar(r).map((m) => m.topic).sort();
    expect({ last, end, dollar }).toEqual({ last: true, end: true, dollar: [`$${r}/q1`, `$${r}/q2`] });
  });

  test('a retained QoS 1 will on a $ topic reaches $R/# live and retained, never #, + or a queued # (MQTT-4.7.2-1)', async () => {
    const r = root();
    const std = await tokenOf(0);
    const id = clientId('persist');
    const offline = await connectCollecting(srv.mqttUrl, std, { clientId: id, clean: false });
    expect(await granted(offline.client, ['#'], 1)).toEqual([1]);
    await offline.client.endAsync();
    const wide = await open(std);
    const wideBox = inbox(wide);
    expect(await granted(wide, ['#', '+/will'], 1)).toEqual([1, 1]);
    const named = await open(std);
    const namedBox = inbox(named);
    expect(await granted(named, [`$${r}/#`], 1)).toEqual([1]);
    const dying = await open(master, { will: { topic: `$${r}/will`, payload: Buffer.from('gone'), qos: 1, retain: true } });
    dying.stream.destroy(); // no DISCONNECT: the will goes out
    await namedBox.waitFor(`$${r}/will`);
    try {
      const late = await open(std);
      const lateBox = inbox(late);
      expect(await granted(late, ['#', `$${r}/+`], 1)).toEqual([1, 1]);
      await lateBox.waitFor(`$${r}/will`); // retained, through `$R/+` only
      const again = await connectCollecting(srv.mqttUrl, std, { clientId: id, clean: false });
      clients.push(again.client);
      const pub = await open(master);
      await pub.publishAsync(`${r}/end`, 'marker', { qos: 1 });
      for (const box of [wideBox, lateBox, again.box]) await box.waitFor(`${r}/end`);
      expect({
        wide: wideBox.dollar(r),
        late: lateBox.dollar(r).length,
        queued: again.box.dollar(r),
      }).toEqual({ wide: [], late: 1, queued: [] });
    } finally {
      const pub = await open(master);
      await pub.publishAsync(`$${r}/will`, '', { qos: 1, retain: true });
    }
  });

  test.each([['standard', 0], ['master', 1], ['ACL', 2]] as const)('a live # or + subscriber with a %s token never receives $ topics (MQTT-4.7.2-1)', async (_name, type) => {
    const r = root();
    const key = type === 2 ? (await srv.token(acl(entry('#', 'subscribe'), entry(`$${r}/#`, 'subscribe')))).key : await tokenOf(type);
    const c = await open(key);
    const box = inbox(c);
    expect(await granted(c, ['#', '+/x'])).toEqual([1, 1]);
    const pub = await open(master);
    await pub.publishAsync(`$${r}/x`, 'secret', { qos: 1 });
    await pub.publishAsync(`${r}/x`, 'plain', { qos: 1 });
    await box.waitFor(`${r}/x`);
    expect(box.dollar(r)).toEqual([]);
  });

  test('standard tokens may not subscribe to $SYS or $tokenmq; master and ACL entries naming them may (SPEC §3)', async () => {
    const filters = ['$SYS/#', '$tokenmq/#', '$SYS', '$SYS/+/new/clients', '$tokenmq/events/+/1', '$app/#', '#'];
    const standard = await open(await tokenOf(0));
    expect(await granted(standard, filters)).toEqual([128, 128, 128, 128, 128, 1, 1]);
    expect(standard.connected).toBe(true);
    const masterClient = await open(master);
    expect(await granted(masterClient, filters)).toEqual([1, 1, 1, 1, 1, 1, 1]);
    const sys = await open((await srv.token(acl(entry('$SYS/#', 'subscribe'), entry('#', 'subscribe')))).key);
    expect(await granted(sys, filters)).toEqual([1, 128, 1, 1, 128, 128, 1]);
  });

  test('$SYS announcements reach master and an ACL entry naming $SYS, never a standard token, even after a downgrade (SPEC §3)', async () => {
    const r = root();
    const watcher = await open(master);
    const sys = await open((await srv.token(acl(entry('$SYS/#', 'subscribe')))).key);
    const downgraded = await srv.token({ access: { type: 1 } });
    const down = await open(downgraded.key);
    const boxes = [inbox(watcher), inbox(sys), inbox(down)] as const;
    expect(await granted(watcher, ['$SYS/+/new/clients'])).toEqual([1]);
    expect(await granted(sys, ['$SYS/+/new/clients'])).toEqual([1]);
    expect(await granted(down, ['$SYS/+/new/clients', `${r}/#`])).toEqual([1, 1]);
    // Master becomes standard under a live `$SYS` subscription: the new rights apply (SPEC §4 enforcement).
    await srv.store.update([downgraded.id], { access: { type: 0 } }, Math.floor(Date.now() / 1000));
    await eventually(() => srv.broker.registry.forToken(downgraded.id).every((s) => s.rights.type === 0), WAIT_MS, 'rights refreshed');
    const announced = (box: Inbox): Received[] => box.all.filter((m) => m.payload.includes(`announce-${r}`));
    const newcomer = await open(master, { clientId: `announce-${r}` });
    await eventually(() => announced(boxes[0]).length > 0 && announced(boxes[1]).length > 0, WAIT_MS, '$SYS/+/new/clients');
    await newcomer.publishAsync(`${r}/marker`, 'end', { qos: 1 });
    await boxes[2].waitFor(`${r}/marker`);
    expect(announced(boxes[2])).toEqual([]);
  });

  test.each([['standard', 0], ['master', 1], ['ACL with a publish entry naming it', 2]] as const)(
    'PUBLISH to $tokenmq or $SYS closes the connection of a %s token (SPEC §3, MQTT-3.3.5-2)',
    async (_name, type) => {
      const key = type === 2
        ? (await srv.token(acl(entry('$tokenmq/#', 'publish'), entry('$SYS/#', 'publish'), entry('x/#', 'publish')))).key
        : await tokenOf(type);
      const watcher = await open(master);
      const box = inbox(watcher);
      expect(await granted(watcher, ['$tokenmq/#', '$SYS/fake/#'])).toEqual([1, 1]);
      for (const topic of ['$tokenmq/events/connected/1', '$SYS/fake/x', '$tokenmq']) {
        const c = await open(key);
        const outcome = await Promise.race([
          closed(c).then(() => 'closed'),
          c.publishAsync(topic, 'forged', { qos: 1 }).then(() => 'PUBACK', () => 'closed'),
        ]);
        expect([topic, outcome]).toEqual([topic, 'closed']);
      }
      // The broker's own events (SPEC §8: each of these connections' `connected` and `disconnected`)
      // reach a master's `$tokenmq/#`; nothing a client forged does.
      expect(box.all.filter((m) => m.payload === 'forged')).toEqual([]);
    },
  );

  test.each(['$tokenmq/events/disconnected/1', '$SYS/will', '$tokenmq'])('a will on %s is refused with CONNACK 5, even for master (SPEC §4)', async (topic) => {
    await expect(refusedCode(srv.mqttUrl, master, { will: { topic, payload: Buffer.from('x'), qos: 0, retain: false } })).resolves.toBe(5);
  });

  test.each(['devices/42/#', 'devices/42/+/x', 'devices/+', '#', '', 'devices/42/\u0000'])(
    'a will topic %j that is no valid topic name closes the connection without CONNACK, and is logged (MQTT-3.3.2-2, SPEC §4)',
    async (topic) => {
      const t = await srv.token(acl(entry('devices/42/#', 'publish')));
      const watcher = await open(master);
      const box = inbox(watcher);
      await granted(watcher, ['devices/#']);
      const answer = await firstAnswer(srv.ports.mqtt, connectWithWill(t.key, topic));
      expect(answer).toEqual({ packet: null, closed: true });
      if (topic !== '') {
        // MQTT.js itself refuses to send an empty will topic.
        const will = { topic, payload: Buffer.from('bye'), qos: 1 as const, retain: false };
        await expect(connect(srv.mqttUrl, t.key, { will, connectTimeout: 3000 })).rejects.toThrow();
      }
      await eventually(() => logLines.some((l) => l.includes('will topic') && l.includes('"protocol_error"')), WAIT_MS, 'log line');
      // No session existed, so no will with that topic goes out.
      const pub = await open(master);
      await pub.publishAsync('devices/42/marker', 'end', { qos: 1 });
      await box.waitFor('devices/42/marker');
      expect(box.all.filter((m) => m.topic !== 'devices/42/marker')).toEqual([]);
    },
  );

  describe('with mosquitto_sub', () => {
    const base = (): string[] => ['-h', '127.0.0.1', '-p', String(srv.ports.mqtt), '-V', 'mqttv311'];

    test('retained $ topics are not delivered through # to mosquitto_sub, but through $R/# (MQTT-4.7.2-1)', async () => {
      const r = root();
      const clear = await retainDollarTopics(r);
      try {
        await mosquittoRetained(r);
      } finally {
        await clear();
      }
    });

    async function mosquittoRetained(r: string): Promise<void> {
      const key = await tokenOf(0);
      // -C 1: the first message only. Retained messages stream in storage order, `$` ones first.
      const wide = await run('mosquitto_sub', [...base(), '-u', key, '-t', '#', '-C', '1', '-W', '5', '-v']);
      expect(wide.code).toBe(0);
      expect(wide.stdout.trim()).toBe(`${r}/status plain`);
      const plus = await run('mosquitto_sub', [...base(), '-u', key, '-t', '+/status', '-C', '1', '-W', '5', '-v']);
      expect(plus.stdout.trim()).toBe(`${r}/status plain`);
      const named = await run('mosquitto_sub', [...base(), '-u', key, '-t', `$${r}/#`, '-C', '3', '-W', '5', '-v']);
      expect(named.code).toBe(0);
      expect(named.stdout.trim().split('\n').sort()).toEqual([`$${r}/q0 secret`, `$${r}/q2 secret`, `$${r}/status secret`]);
    }

    test('queued $ topics are not delivered through # to a persistent mosquitto_sub session (MQTT-4.7.2-1)', async () => {
      const r = root();
      const key = await tokenOf(1);
      const id = clientId('mosq');
      // -c: clean session 0; -E: subscribe and leave.
      const setup = await run('mosquitto_sub', [...base(), '-u', key, '-i', id, '-c', '-q', '1', '-t', '#', '-E']);
      expect(setup.code).toBe(0);
      const pub = await open(master);
      const watcher = await delivered();
      await pub.publishAsync(`$${r}/secret`, 'secret', { qos: 1 });
      await pub.publishAsync(`${r}/plain`, 'plain', { qos: 1 });
      await watcher.waitFor(`${r}/plain`);
      const got = await run('mosquitto_sub', [...base(), '-u', key, '-i', id, '-c', '-q', '1', '-t', '#', '-C', '1', '-W', '10', '-v']);
      expect(got.code).toBe(0);
      expect(got.stdout.trim()).toBe(`${r}/plain plain`);
    });

    test('mosquitto_sub with a standard token gets SUBACK 0x80 for $SYS/# and $tokenmq/# (SPEC §3)', async () => {
      const res = await run('mosquitto_sub', [...base(), '-u', await tokenOf(0), '-t', '$SYS/#', '-t', '$tokenmq/#', '-t', 'a/b', '-E', '-d']);
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/Subscribed \(mid: \d+\): 128, 128, 0/);
    });
  });
});
