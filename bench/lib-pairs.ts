// Helpers of the issue 9 benches (memory, connect, scale, cluster): brokers and
// clients in child processes, idle MQTT connections on raw sockets, interleaved
// pairs with median and minimum, Redis command counts. bench/lib.ts holds the
// throughput helpers and the statistics both use.
import { fork, type ChildProcess } from 'node:child_process';
import { connect as netConnect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { pairRatios, percentile, round } from './lib.js';

export { median, percentile, round } from './lib.js';

/** Ratio summary of interleaved pairs: each pair ran back to back, so each ratio saw the same machine. */
export function pairSummary(ours: readonly number[], bare: readonly number[]): { median: number; min: number; max: number; ratios: number[] } {
  const r = pairRatios(ours, bare);
  return { median: r.ratio_median, min: r.ratio_min, max: Math.max(...r.ratios), ratios: r.ratios };
}

/** The open-files limit this process runs with (the package scripts raise it to the hard limit). */
export async function fileLimit(): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const m = /Max open files\s+(\d+)/.exec(text);
  return m ? Number(m[1]) : NaN;
}

// ---- child processes ----

type Message = Record<string, unknown> & { type: string };

export interface Child {
  process: ChildProcess;
  /** Sends `msg` and resolves with the first reply of type `reply`. */
  ask<T>(msg: Message, reply: string, timeoutMs?: number): Promise<T>;
  next<T>(type: string, timeoutMs?: number): Promise<T>;
  kill(): Promise<void>;
}

/** Forks `file` (a compiled bench) with `args`; the child talks through IPC messages `{type, ...}`. */
export function forkChild(file: string, args: string[], opts: { gc?: boolean; env?: Record<string, string> } = {}): Child {
  // BENCH_BROKER_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`) goes to broker children, to look inside one.
  const extra = args[0] === 'broker' ? (process.env.BENCH_BROKER_NODE_ARGS ?? '').split(' ').filter(Boolean) : [];
  const child = fork(file, args, {
    execArgv: [...(opts.gc ? ['--expose-gc'] : []), ...extra],
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const inbox: Message[] = [];
  const waiters: { type: string; resolve: (m: Message) => void }[] = [];
  let exited = false;
  const failures: ((err: Error) => void)[] = [];
  child.on('message', (m: Message) => {
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i === -1) inbox.push(m);
    else waiters.splice(i, 1)[0]!.resolve(m);
  });
  child.once('exit', (code, signal) => {
    exited = true;
    for (const fail of failures.splice(0)) fail(new Error(`${args[0] ?? 'child'} exited (${code ?? signal})`));
  });
  const next = <T>(type: string, timeoutMs = 120_000): Promise<T> => {
    const i = inbox.findIndex((m) => m.type === type);
    if (i !== -1) return Promise.resolve(inbox.splice(i, 1)[0] as unknown as T);
    if (exited) return Promise.reject(new Error(`${args[0] ?? 'child'} has exited`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${type}' from ${args[0] ?? 'child'} within ${timeoutMs} ms`)), timeoutMs);
      waiters.push({ type, resolve: (m) => { clearTimeout(timer); resolve(m as unknown as T); } });
      failures.push((err) => { clearTimeout(timer); reject(err); });
    });
  };
  return {
    process: child,
    next,
    ask: (msg, reply, timeoutMs) => {
      const answer = next(reply, timeoutMs);
      child.send(msg);
      return answer as never;
    },
    // Disconnecting lets the child exit by itself (and write a --cpu-prof profile); SIGKILL if it lingers.
    kill: () => new Promise<void>((resolve) => {
      if (exited) return resolve();
      child.once('exit', () => { clearTimeout(timer); resolve(); });
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      if (child.connected) child.disconnect();
      else child.kill('SIGKILL');
    }),
  };
}

/** In a child: sends a message to the parent. */
export function tell(msg: Message): void {
  process.send?.(msg);
}

/** In a child: calls `handler` for each message from the parent; an error ends the child. */
export function onRequest(handler: (msg: Message) => Promise<void> | void): void {
  process.on('message', (msg: Message) => {
    Promise.resolve(handler(msg)).catch((err: unknown) => {
      process.stderr.write(`child failed: ${String(err instanceof Error ? err.stack : err)}\n`);
      process.exit(1);
    });
  });
  // The parent is gone: so is the bench.
  process.on('disconnect', () => process.exit(0));
}

export function selfPath(url: string): string {
  return fileURLToPath(url);
}

/** Heap and RSS after forced GC (the child runs with --expose-gc). */
export async function settledMemory(): Promise<{ heapUsed: number; rss: number; external: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 5; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss, external: m.external };
}

// ---- raw MQTT clients ----

export interface ConnectSpec {
  clientId: string;
  username: string;
}

/**
 * Loopback source addresses for the clients (127.0.0.x, picked at random):
 * one address has ~28k ephemeral ports, and the sockets an earlier run left in
 * TIME_WAIT make the kernel search longer and longer for a free one.
 */
export function loopbackSources(count: number): string[] {
  const start = 2 + Math.floor(Math.random() * (250 - count));
  return Array.from({ length: count }, (_, i) => `127.0.0.${start + i}`);
}

export interface OpenOptions {
  port: number;
  /** Local source addresses to spread connections over (source ports run out past ~28k per address). */
  localAddresses?: string[];
  concurrency?: number;
  keepalive?: number;
  /** Called with each packet after CONNACK (PUBLISH for the scale run). */
  onPacket?: (client: IdleClient, packet: Packet) => void;
}

export class IdleClient {
  readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  code = -1;
  constructor(readonly socket: Socket, readonly spec: ConnectSpec, readonly index: number) {}

  write(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet));
  }
}

/**
 * Opens one connection per spec (CONNECT → CONNACK) with `concurrency` in
 * flight and keeps them open; rejects on a refused CONNACK.
 */
export async function openClients(specs: readonly ConnectSpec[], opts: OpenOptions): Promise<IdleClient[]> {
  const clients: IdleClient[] = new Array<IdleClient>(specs.length);
  const locals = opts.localAddresses ?? loopbackSources(Math.max(1, Math.ceil(specs.length / 10_000)) + 1);
  let next = 0;
  const one = (i: number): Promise<void> => new Promise((resolve, reject) => {
    const spec = specs[i]!;
    const socket = netConnect({ port: opts.port, host: '127.0.0.1', localAddress: locals[i % locals.length] });
    const client = new IdleClient(socket, spec, i);
    clients[i] = client;
    socket.once('error', reject);
    client.parser.on('packet', (packet) => {
      if (packet.cmd === 'connack') {
        client.code = packet.returnCode ?? 0;
        if (client.code !== 0) reject(new Error(`CONNACK ${client.code} for ${spec.clientId}`));
        else resolve();
        return;
      }
      opts.onPacket?.(client, packet);
    });
    socket.on('data', (d: Buffer) => client.parser.parse(d));
    socket.on('connect', () => client.write({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: opts.keepalive ?? 600,
      clientId: spec.clientId, username: spec.username,
    }));
  });
  await Promise.all(Array.from({ length: opts.concurrency ?? 100 }, async () => {
    while (next < specs.length) await one(next++);
  }));
  return clients;
}

/** Closes the clients with DISCONNECT, and waits for their sockets to close. */
export async function closeClients(clients: readonly IdleClient[]): Promise<void> {
  await Promise.all(clients.map((c) => new Promise<void>((resolve) => {
    if (c.socket.destroyed) return resolve();
    c.socket.once('close', () => resolve());
    c.socket.end(Buffer.from([0xe0, 0x00]));
  })));
}

// ---- Redis command counts ----

export async function redisCommandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Per-command call deltas (INFO itself left out). */
export function commandDelta(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0 && k !== 'info') out[k] = d;
  }
  return out;
}

export function sumCounts(o: Record<string, number>): number {
  return Object.values(o).reduce((a, b) => a + b, 0);
}

export function perOp(o: Record<string, number>, ops: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) out[k] = round(v / ops, 3);
  return out;
}

// ---- connect rate ----

/**
 * CONNECT → CONNACK → DISCONNECT on a raw socket; resolves with the CONNACK
 * latency (ms) and code once the broker has closed the connection (it closes
 * first, so TIME_WAIT stays on its side, not on our ephemeral ports).
 */
export function connectOnce(port: number, spec: ConnectSpec, localAddress: string): Promise<{ ms: number; code: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = netConnect({ port, host: '127.0.0.1', localAddress });
    let ms = 0;
    let code = -1;
    let buf: Buffer = Buffer.alloc(0);
    socket.on('connect', () => socket.write(mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: spec.clientId, username: spec.username,
    })));
    socket.on('data', (d: Buffer) => {
      if (code !== -1) return;
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (buf.length < 4 || buf[0] !== 0x20) return;
      ms = Number(process.hrtime.bigint() - started) / 1e6;
      code = buf[3]!;
      socket.write(Buffer.from([0xe0, 0x00])); // DISCONNECT: the broker closes
    });
    socket.on('error', reject);
    socket.on('close', () => (code === -1 ? reject(new Error('closed before CONNACK')) : resolve({ ms, code })));
  });
}

export interface RateResult {
  per_s: number;
  p50_ms: number;
  p99_ms: number;
  refused: number;
}

/** `total` connects, `concurrency` in flight, spread over `sources`. */
export async function connectRate(port: number, spec: (i: number) => ConnectSpec, total: number, concurrency: number, sources: string[]): Promise<RateResult> {
  const latencies: number[] = [];
  let refused = 0;
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const r = await connectOnce(port, spec(i), sources[i % sources.length]!);
      if (r.code !== 0) refused++;
      latencies.push(r.ms);
    }
  }));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { per_s: round(total / seconds, 0), p50_ms: round(percentile(latencies, 50)), p99_ms: round(percentile(latencies, 99)), refused };
}

/**
 * Runs a bench file as what its command line says: the child role `argv[2]`
 * names (given the arguments after it), else the main run (exit 0 when done);
 * nothing when the file is imported. A failure prints its stack and exits 1.
 */
export function runAs(self: string, roles: Record<string, (args: string[]) => unknown>, main: () => Promise<void>): void {
  if (process.argv[1] !== self) return;
  const fail = (what: string) => (err: unknown): void => {
    process.stderr.write(`${what} failed: ${String(err instanceof Error ? err.stack : err)}\n`);
    process.exit(1);
  };
  const role = process.argv[2];
  const child = role === undefined ? undefined : roles[role];
  if (child) Promise.resolve().then(() => child(process.argv.slice(3))).catch(fail(`${role} child`));
  else main().then(() => process.exit(0), fail('bench'));
}
