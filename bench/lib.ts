// Shared pieces of the benches: percentiles, raw MQTT connects, bare Aedes.
import { Aedes } from 'aedes';
import { createServer as createHttpServer } from 'node:http';
import { createServer, connect as netConnect, type AddressInfo, type Server } from 'node:net';
import mqttPacket from 'mqtt-packet';
import mqtt, { type MqttClient } from 'mqtt';
import { WebSocketServer, createWebSocketStream } from 'ws';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** `--name=value` and `--flag` arguments of a bench command (an unknown shape throws). */
export function cliArgs(argv: readonly string[] = process.argv.slice(2)): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument ${a}`);
    out.set(m[1]!, m[2] ?? 'true');
  }
  return out;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/**
 * The baseline: a bare Aedes (no hooks) exactly as its README ships it, nothing
 * tuned: `net.createServer(aedes.handle)` on TCP (Nagle on), and ws 8
 * `createWebSocketStream` on /mqtt for WebSocket.
 */
export async function startBareAedes(): Promise<{ port: number; wsPort: number; close(): Promise<void> }> {
  const aedes = await Aedes.createBroker();
  const server: Server = createServer(aedes.handle);
  const http = createHttpServer();
  const wss = new WebSocketServer({ server: http, path: '/mqtt' });
  wss.on('connection', (ws, req) => aedes.handle(createWebSocketStream(ws), req));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    wsPort: (http.address() as AddressInfo).port,
    close: async () => {
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/** Per-pair ratios of interleaved runs (ours[i] / base[i]): their median and minimum. */
export function pairRatios(ours: readonly number[], base: readonly number[]): { ratio_median: number; ratio_min: number; ratios: number[] } {
  const ratios = ours.map((x, i) => x / base[i]!);
  return { ratio_median: round(median(ratios), 3), ratio_min: round(Math.min(...ratios), 3), ratios: ratios.map((r) => round(r, 3)) };
}

let seq = 0;
/** CONNECT → CONNACK → DISCONNECT on a raw socket; resolves with latency (ms) to CONNACK and its code. */
export function rawConnect(port: number, username: string): Promise<{ ms: number; code: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = netConnect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    const packet = mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30,
      clientId: `bench-${process.pid}-${++seq}`, username,
    });
    let buf = Buffer.alloc(0);
    socket.on('connect', () => socket.write(packet));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf[0] === 0x20) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const code = buf[3]!;
        socket.end(Buffer.from([0xe0, 0x00]));
        resolve({ ms, code });
      }
    });
    socket.on('error', reject);
  });
}

/** Runs `total` tasks with `concurrency` in flight; returns wall time (ms). */
export async function pool(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) await task(next++);
  }));
  return Date.now() - started;
}

export const PUBLISHERS = 10;
export const SUBSCRIBERS = 10;
export const PER_PUBLISHER = Number(process.env.BENCH_MESSAGES ?? 2000);
const PAYLOAD = Buffer.alloc(64, 'x');

export interface ThroughputTarget {
  pubUrl: string;
  subUrl: string;
  /** One key per publisher (publisher i publishes to bench/i/data). */
  pubKeys: string[];
  subKey: string;
}

/**
 * PUBLISHERS publishers × PER_PUBLISHER messages of 64 B, SUBSCRIBERS wildcard
 * subscribers (bench/#); returns deliveries per second until every subscriber has all.
 */
export async function throughput(target: ThroughputTarget, qos: 0 | 1): Promise<number> {
  const connect = (url: string, username: string): Promise<MqttClient> =>
    mqtt.connectAsync(url, { username, reconnectPeriod: 0, clientId: `b${Math.random().toString(36).slice(2)}` });
  const subs = await Promise.all(Array.from({ length: SUBSCRIBERS }, () => connect(target.subUrl, target.subKey)));
  const pubs = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => connect(target.pubUrl, target.pubKeys[i]!)));
  const expected = PUBLISHERS * PER_PUBLISHER;
  let done = 0;
  const allIn = new Promise<void>((resolve) => {
    for (const s of subs) {
      let n = 0;
      s.on('message', () => { if (++n === expected && ++done === SUBSCRIBERS) resolve(); });
    }
  });
  await Promise.all(subs.map((s) => s.subscribeAsync('bench/#', { qos })));
  const started = process.hrtime.bigint();
  await Promise.all(pubs.map(async (p, i) => {
    for (let k = 0; k < PER_PUBLISHER; k++) {
      // Await some writes so the client's buffer stays bounded.
      if (k % 50 === 49 || (qos === 1 && k % 10 === 9)) await p.publishAsync(`bench/${i}/data`, PAYLOAD, { qos });
      else p.publish(`bench/${i}/data`, PAYLOAD, { qos });
    }
  }));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('throughput run timed out')), 60_000); });
  try {
    await Promise.race([allIn, timeout]);
  } finally {
    clearTimeout(timer);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await Promise.all([...subs, ...pubs].map((c) => c.endAsync(true)));
  return (expected * SUBSCRIBERS) / seconds;
}
