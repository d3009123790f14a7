// Listeners (SPEC §1): TCP_NODELAY, and MQTT over WebSocket (ws-stream.ts):
// framing both ways, one frame per batch of packets, backpressure for slow
// readers (QoS 0 dropped and counted past the cap, QoS 1 waits), over WS and WSS.
import { afterAll, afterEach, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Duplex } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { WebSocket } from 'ws';
import { ConfigError, loadConfig } from '../../src/config.js';
import { clientId, connect, connectPacket, WAIT_MS, within } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

/** A raw MQTT-over-WebSocket client: every frame and packet it gets, byte-exact control of what it sends. */
interface RawWs {
  ws: WebSocket;
  id: string;
  packets: mqttPacket.Packet[];
  /** Binary messages (frames) received. */
  frames: number;
  /** Resolves with the first packet received (now or later) that matches. */
  next(match: (p: mqttPacket.Packet) => boolean, ms?: number): Promise<mqttPacket.Packet>;
  /** Each argument goes out as one WebSocket frame. */
  send(...frames: Buffer[]): void;
  closed: Promise<number>;
}

function rawWs(url: string, opts: { autoAck?: boolean } = {}): Promise<RawWs> {
  const ws = new WebSocket(url, 'mqtt', { rejectUnauthorized: false });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  const waiters: { match: (p: mqttPacket.Packet) => boolean; resolve: (p: mqttPacket.Packet) => void }[] = [];
  const client: RawWs = {
    ws,
    id: clientId('raw-ws'),
    packets,
    frames: 0,
    next(match, ms = WAIT_MS) {
      const found = packets.find(match);
      if (found) return Promise.resolve(found);
      return within(new Promise((resolve) => waiters.push({ match, resolve })), ms, 'packet over WebSocket');
    },
    send(...frames) {
      for (const f of frames) ws.send(f, { binary: true });
    },
    closed: new Promise((resolve) => ws.once('close', (code) => resolve(code))),
  };
  parser.on('packet', (p) => {
    packets.push(p);
    if (opts.autoAck && p.cmd === 'publish' && p.qos === 1) ws.send(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId! }));
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.match(p)) waiters.splice(i, 1)[0]!.resolve(p);
    }
  });
  ws.on('message', (data: Buffer) => {
    client.frames++;
    parser.parse(data);
  });
  ws.on('error', () => {});
  return within(new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('error', reject);
  }), WAIT_MS, 'WebSocket open');
}

async function mqttOverWs(url: string, key: string, opts: { autoAck?: boolean } = {}): Promise<RawWs> {
  const c = await rawWs(url, opts);
  c.send(connectPacket({ clientId: c.id, username: key }));
  const connack = await c.next((p) => p.cmd === 'connack');
  expect((connack as mqttPacket.IConnackPacket).returnCode).toBe(0);
  return c;
}

async function subscribe(c: RawWs, topic: string, qos: 0 | 1, messageId: number): Promise<void> {
  c.send(mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] }));
  const suback = await c.next((p) => p.cmd === 'suback' && p.messageId === messageId);
  expect((suback as mqttPacket.ISubackPacket).granted).toEqual([qos]);
}

function publishes(c: RawWs): mqttPacket.IPublishPacket[] {
  return c.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');
}

/** The broker side of a client: its Aedes stream and the TCP socket under it. */
function brokerSide(srv: TestServer, id: string): { stream: Duplex; socket: Socket } {
  const [session] = srv.broker.registry.byClientId(id);
  if (!session) throw new Error(`no session ${id}`);
  return { stream: (session.client as unknown as { conn: Duplex }).conn, socket: session.conn.socket };
}

/** Bytes the broker holds in Node for one client: its stream's write buffer and its socket's. */
function held(side: { stream: Duplex; socket: Socket }): number {
  return side.stream.writableLength + side.socket.writableLength;
}

/** A message numbered `n` with a payload of `size` bytes (the number in its first 4 bytes). */
function numbered(n: number, size: number): Buffer {
  const b = Buffer.alloc(size, 0x61);
  b.writeUInt32BE(n, 0);
  return b;
}

const seqOf = (p: mqttPacket.IPublishPacket): number => (p.payload as Buffer).readUInt32BE(0);

async function metric(srv: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${srv.httpUrl}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describe('TCP_NODELAY (SPEC §1)', () => {
  // setNoDelay calls with the local port of the socket at call time (a closed socket forgets it).
  const calls: { port: number | undefined; noDelay: boolean | undefined }[] = [];
  const original = Socket.prototype.setNoDelay;
  let srv: TestServer | undefined;
  beforeAll(() => {
    jest.spyOn(Socket.prototype, 'setNoDelay').mockImplementation(function (this: Socket, noDelay?: boolean) {
      calls.push({ port: this.localPort, noDelay });
      return original.call(this, noDelay);
    });
  });
  afterEach(async () => {
    await srv?.close();
    srv = undefined;
  });
  afterAll(() => { jest.restoreAllMocks(); });

  /** setNoDelay calls made on the broker's side of MQTT connections to `port`. */
  const brokerCalls = (port: number): (boolean | undefined)[] => calls.filter((c) => c.port === port).map((c) => c.noDelay);

  test('is off by default: the broker leaves Nagle on for MQTT sockets, like Mosquitto and bare Aedes (SPEC §1)', async () => {
    srv = await startTestServer();
    calls.length = 0;
    const t = await srv.token();
    const c = await connect(srv.mqttUrl, t.key);
    await c.endAsync();
    expect(brokerCalls(srv.ports.mqtt)).toEqual([]);
  });

  test('TCP_NODELAY=true disables Nagle on each MQTT socket (SPEC §1)', async () => {
    srv = await startTestServer({ tcpNoDelay: true });
    calls.length = 0;
    const t = await srv.token();
    const c = await connect(srv.mqttUrl, t.key);
    await c.endAsync();
    expect(brokerCalls(srv.ports.mqtt)).toEqual([true]);
  });

  test('config: TCP_NODELAY defaults to false in config/default.json, reads booleans, and a bad value names the variable (SPEC §1)', () => {
    const file = fileURLToPath(new URL('../../config/default.json', import.meta.url));
    expect((JSON.parse(readFileSync(file, 'utf8')) as { tcpNoDelay: unknown }).tcpNoDelay).toBe(false);
    expect(loadConfig({}, file).tcpNoDelay).toBe(false);
    expect(loadConfig({ TCP_NODELAY: 'true' }, file).tcpNoDelay).toBe(true);
    expect(loadConfig({ TCP_NODELAY: 'off' }, file).tcpNoDelay).toBe(false);
    expect(() => loadConfig({ TCP_NODELAY: 'fast' }, file)).toThrow(ConfigError);
    expect(() => loadConfig({ TCP_NODELAY: 'fast' }, file)).toThrow(/^TCP_NODELAY: /);
  });
});

describe('MQTT over WebSocket (SPEC §1, MQTT 3.1.1 §6)', () => {
  let srv: TestServer;
  let dir: string;
  let pub: MqttClient;
  let fast: MqttClient;
  const CAP = 256 * 1024;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tokenmq-ws-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    srv = await startTestServer({
      wsSendBufferCap: CAP,
      tls: { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) },
    });
    const t = await srv.token();
    pub = await connect(srv.mqttUrl, t.key);
    fast = await connect(srv.mqttUrl, t.key);
  });
  afterAll(async () => {
    await Promise.all([pub.endAsync(true), fast.endAsync(true)]);
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const url = (transport: 'ws' | 'wss'): string => (transport === 'ws' ? srv.wsUrl : srv.wssUrl!);

  describe.each(['ws', 'wss'] as const)('over %s', (transport) => {
    test('packets split over several frames and several packets in one frame are understood [MQTT-6.0.0-2]', async () => {
      const t = await srv.token();
      const c = await rawWs(url(transport));
      // CONNECT in three frames, cut inside its fixed header and inside its payload.
      const conn = connectPacket({ clientId: c.id, username: t.key });
      c.send(conn.subarray(0, 1), conn.subarray(1, 7), conn.subarray(7));
      expect((await c.next((p) => p.cmd === 'connack') as mqttPacket.IConnackPacket).returnCode).toBe(0);
      // SUBSCRIBE + PUBLISH QoS 1 + PINGREQ in one frame.
      const sub = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `split/${transport}/#`, qos: 1 }] });
      const p1 = mqttPacket.generate({ cmd: 'publish', topic: `split/${transport}/a`, payload: Buffer.from('one'), qos: 1, messageId: 2, retain: false, dup: false });
      const ping = mqttPacket.generate({ cmd: 'pingreq' });
      c.send(Buffer.concat([sub, p1, ping]));
      await c.next((p) => p.cmd === 'suback');
      await c.next((p) => p.cmd === 'puback' && p.messageId === 2);
      await c.next((p) => p.cmd === 'pingresp');
      await c.next((p) => p.cmd === 'publish' && p.topic === `split/${transport}/a`);
      // A packet whose end shares a frame with the start of the next one.
      const p2 = mqttPacket.generate({ cmd: 'publish', topic: `split/${transport}/b`, payload: Buffer.alloc(300, 'b'), qos: 0, retain: false, dup: false });
      const p3 = mqttPacket.generate({ cmd: 'publish', topic: `split/${transport}/c`, payload: Buffer.from('three'), qos: 0, retain: false, dup: false });
      c.send(p2.subarray(0, 5), Buffer.concat([p2.subarray(5), p3.subarray(0, 3)]), p3.subarray(3));
      const b = await c.next((p) => p.cmd === 'publish' && p.topic === `split/${transport}/b`) as mqttPacket.IPublishPacket;
      const cc = await c.next((p) => p.cmd === 'publish' && p.topic === `split/${transport}/c`) as mqttPacket.IPublishPacket;
      expect(Buffer.from(b.payload as Buffer)).toEqual(Buffer.alloc(300, 'b'));
      expect(cc.payload.toString()).toBe('three');
      c.ws.close();
      await c.closed;
    });

    test('deliveries are not cut into one WebSocket frame per chunk: a frame carries whole packets (SPEC §1 throughput)', async () => {
      const t = await srv.token();
      const c = await mqttOverWs(url(transport), t.key);
      await subscribe(c, `frames/${transport}/#`, 0, 1);
      const before = c.frames;
      const N = 50;
      for (let i = 0; i < N; i++) await pub.publishAsync(`frames/${transport}/x`, numbered(i, 64), { qos: 0 });
      await eventually(() => publishes(c).length === N, WAIT_MS, `${N} deliveries`);
      // createWebSocketStream sent each of mqtt-packet's 4-5 chunks of a PUBLISH as a frame of its own.
      expect(c.frames - before).toBeLessThanOrEqual(N);
      expect(publishes(c).map(seqOf)).toEqual(Array.from({ length: N }, (_, i) => i));
      c.ws.close();
      await c.closed;
    });

    test('a text frame closes the connection without an answer [MQTT-6.0.0-1]', async () => {
      const c = await rawWs(url(transport));
      // A CONNECT that is valid UTF-8 (no username flag), sent as text.
      c.ws.send(connectPacket({ clientId: c.id }).toString('latin1'));
      await within(c.closed, WAIT_MS, 'close');
      expect(c.packets).toEqual([]);
    });

    test('every way a connection ends closes the broker\'s stream and ends the session; the broker keeps serving (as with createWebSocketStream)', async () => {
      const t = await srv.token();
      const gone = (id: string): Promise<unknown> => eventually(() => srv.broker.registry.byClientId(id).length === 0, WAIT_MS, `session ${id} to end`);
      // The client sends a close frame.
      const a = await mqttOverWs(url(transport), t.key);
      a.ws.close();
      await a.closed;
      await gone(a.id);
      // The client's socket just goes away.
      const b = await mqttOverWs(url(transport), t.key);
      b.ws.terminate();
      await gone(b.id);
      // A WebSocket protocol error (reserved opcode 0x3): ws closes with 1002, the stream is destroyed, no crash.
      const c = await mqttOverWs(url(transport), t.key);
      (c.ws as unknown as { _socket: Socket })._socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]));
      expect(await within(c.closed, WAIT_MS, 'close')).toBe(1002);
      await gone(c.id);
      // The broker ends it (kick) and the client ends it (DISCONNECT).
      const d = await mqttOverWs(url(transport), t.key);
      expect(srv.broker.kick(d.id, 'test')).toBe(1);
      await within(d.closed, WAIT_MS, 'close');
      await gone(d.id);
      const e = await mqttOverWs(url(transport), t.key);
      e.send(mqttPacket.generate({ cmd: 'disconnect' }));
      await within(e.closed, WAIT_MS, 'close');
      await gone(e.id);
      // Still serving.
      const f = await mqttOverWs(url(transport), t.key);
      await subscribe(f, `alive/${transport}`, 0, 1);
      await pub.publishAsync(`alive/${transport}`, 'yes');
      await f.next((p) => p.cmd === 'publish');
      f.ws.close();
      await f.closed;
    });

    test('a slow reader gets QoS 0 dropped past the send buffer cap, counted in /metrics; the broker holds at most the cap and others are served', async () => {
      const t = await srv.token();
      const slow = await mqttOverWs(url(transport), t.key);
      const topic = `flood0/${transport}`;
      await subscribe(slow, `${topic}/#`, 0, 1);
      let fastGot = 0;
      const onFast = (tp: string): void => { if (tp.startsWith(`${topic}/`)) fastGot++; };
      fast.on('message', onFast);
      await fast.subscribeAsync(`${topic}/#`, { qos: 0 });
      const side = brokerSide(srv, slow.id);
      const droppedBefore = srv.broker.stats.wsDropped;
      const SIZE = 16 * 1024;
      slow.ws.pause(); // stops reading its socket: the kernel buffers fill, then the broker's

      let sent = 0;
      let maxHeld = 0;
      let firstDrop = -1;
      // Until drops have gone on for a while (bounded: 64 MB in all).
      while (sent < 4000 && (firstDrop < 0 || sent < firstDrop + 300)) {
        for (let i = 0; i < 19; i++) pub.publish(`${topic}/m`, numbered(sent++, SIZE), { qos: 0 });
        const ok = await within(pub.publishAsync(`${topic}/m`, numbered(sent++, SIZE), { qos: 0 }), WAIT_MS, 'publish').then(() => true, () => false);
        maxHeld = Math.max(maxHeld, held(side));
        if (!ok) break;
        if (firstDrop < 0 && srv.broker.stats.wsDropped > droppedBefore) firstDrop = sent;
      }
      await eventually(() => fastGot === sent, 10_000, 'the fast subscriber\'s messages').catch(() => {});
      expect(fastGot).toBe(sent);
      const dropped = srv.broker.stats.wsDropped - droppedBefore;
      expect(dropped).toBeGreaterThan(0);
      // The cap, plus the one packet that may start just under it.
      expect(maxHeld).toBeLessThanOrEqual(CAP + SIZE + 64);
      expect(await metric(srv, 'tokenmq_ws_dropped_total')).toBe(srv.broker.stats.wsDropped);

      // Resumed: every message not dropped arrives, in order, once.
      slow.ws.resume();
      await eventually(() => publishes(slow).length + dropped === sent, 15_000, 'the slow reader to catch up');
      const seqs = publishes(slow).map(seqOf);
      expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!)).toBe(true);
      fast.off('message', onFast);
      await fast.unsubscribeAsync(`${topic}/#`);
      slow.ws.close();
      await slow.closed;
    });

    test('QoS 1 to a slow reader waits instead of dropping: nothing lost once it reads again, broker buffers bounded', async () => {
      const t = await srv.token();
      const slow = await mqttOverWs(url(transport), t.key, { autoAck: true });
      const topic = `flood1/${transport}`;
      await subscribe(slow, `${topic}/#`, 1, 1);
      const side = brokerSide(srv, slow.id);
      const droppedBefore = srv.broker.stats.wsDropped;
      const SIZE = 16 * 1024;
      const N = 1000; // 16 MB: more than the kernel's socket buffers and the cap
      slow.ws.pause();
      let maxHeld = 0;
      const acked = Array.from({ length: N }, (_, i) => pub.publishAsync(`${topic}/m`, numbered(i, SIZE), { qos: 1 })
        .finally(() => { maxHeld = Math.max(maxHeld, held(side)); }));
      // The broker reaches the cap for this client and stops there.
      await eventually(() => {
        maxHeld = Math.max(maxHeld, held(side));
        return (side.stream as Duplex & { bufferedAmount?: number }).bufferedAmount! >= CAP;
      }, 15_000, 'the send buffer to reach its cap');
      for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        maxHeld = Math.max(maxHeld, held(side));
      }
      // The cap, one frame past it and what Aedes keeps writing before it sees write() return false.
      expect(maxHeld).toBeLessThan(CAP + 128 * SIZE);
      expect(maxHeld).toBeLessThan(N * SIZE / 4);

      slow.ws.resume();
      await within(Promise.all(acked), 30_000, 'every PUBACK to the publisher');
      await eventually(() => publishes(slow).length >= N, 15_000, 'every QoS 1 message');
      expect(publishes(slow).map(seqOf)).toEqual(Array.from({ length: N }, (_, i) => i));
      expect(srv.broker.stats.wsDropped - droppedBefore).toBe(0);
      slow.ws.close();
      await slow.closed;
    });

    test('a QoS 1 reader that goes away while the broker waits on it releases the wait: publishers are answered, others served', async () => {
      const t = await srv.token();
      const slow = await mqttOverWs(url(transport), t.key, { autoAck: true });
      const topic = `gone1/${transport}`;
      await subscribe(slow, `${topic}/#`, 1, 1);
      const side = brokerSide(srv, slow.id);
      slow.ws.pause();
      const acked = Array.from({ length: 1000 }, (_, i) => pub.publishAsync(`${topic}/m`, numbered(i, 16 * 1024), { qos: 1 }));
      await eventually(() => (side.stream as Duplex & { bufferedAmount?: number }).bufferedAmount! >= CAP, 15_000, 'the send buffer to reach its cap');
      slow.ws.terminate();
      await eventually(() => srv.broker.registry.byClientId(slow.id).length === 0, WAIT_MS, 'the session to end');
      await within(Promise.all(acked), 30_000, 'every PUBACK to the publisher');
      const other = await mqttOverWs(url(transport), t.key);
      await subscribe(other, `${topic}/#`, 1, 1);
      await pub.publishAsync(`${topic}/after`, 'x', { qos: 1 });
      await other.next((p) => p.cmd === 'publish' && p.topic === `${topic}/after`);
      other.ws.close();
      await other.closed;
    });
  });
});
