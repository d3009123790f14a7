// Broker benchmarks of issues 3 and 9, each against a bare Aedes as shipped (no
// hooks, nothing tuned: bench/lib.ts startBareAedes) started in the same run.
// Prints one JSON line. Loopback only, bounded in count.
//   node dist/bench/broker.js            (npm run bench:broker)
//   BENCH_ONLY=tcp,ws BENCH_ROUNDS=7 BENCH_MESSAGES=2000 to narrow or lengthen it
//   BENCH_ONLY=events: QoS 0 throughput and connect rate with SPEC §8 events and log on and off
import { cpus } from 'node:os';
import mqtt from 'mqtt';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { TokenBroker } from '../src/broker/index.js';
import { localConfig, startTokenmq as startNode } from '../src/start.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { RedisStore } from '../src/store/redis-store.js';
import type { TokenStore } from '../src/store/types.js';
import type { AclEntry } from '../src/tokens/types.js';
import { startRedisServer } from '../test/helpers/redis-server.js';
import type { BrokerLog } from '../src/events/types.js';
import { MemoryLog } from '../src/events/memory-log.js';
import { RedisLog } from '../src/events/redis-log.js';
import { PUBLISHERS, median, pairRatios, percentile, pool, rawConnect, round, startBareAedes, throughput } from './lib.js';

const log = pino({ level: 'silent' });

const PAYLOAD = Buffer.alloc(64, 'x');
const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 2000);
// Throughput on a shared 2-core machine swings ±30 % between runs: interleave and take medians.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

async function startTokenmq(store: TokenStore, tcpNoDelay = false, events?: { brokerLog: BrokerLog } | false): Promise<{ broker: TokenBroker; port: number; wsPort: number; close(): Promise<void> }> {
  // SPEC §8 events and log: on (a memory log, or the caller's) unless `false` switches them off.
  const node = await startNode({
    config: localConfig({ nodeId: 'bench', tcpNoDelay }), log, store, cluster: false, api: false, closeStore: false,
    events: events !== false, brokerLog: events ? events.brokerLog : undefined,
  });
  return { broker: node.broker, port: node.ports.mqtt, wsPort: node.ports.ws, close: () => node.close() };
}

/** BENCH_ONLY=throughput,tcp,ws,connect,redis,revocation runs those parts only (default: all). */
const ONLY = (process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
function only(part: string): boolean {
  if (ONLY.length === 0 || ONLY.includes(part)) return true;
  // A mode of the throughput part (tcp, ws) selects the part; the part selects all its modes.
  if (part === 'throughput') return ONLY.includes('tcp') || ONLY.includes('ws');
  if (part === 'tcp' || part === 'ws') return ONLY.includes('throughput');
  return false;
}

/** Ten ACL entries, as the issue asks; the last ones are the ones that match. */
function aclFor(kind: 'pub' | 'sub', i: number): AclEntry[] {
  const entries: AclEntry[] = [];
  for (let j = 0; j < 9; j++) entries.push({ uri: 'mqtt', topic: `other/${j}/+/data`, actions: ['publish', 'subscribe'] });
  entries.push(kind === 'pub'
    ? { uri: 'mqtt', topic: `bench/${i}/data`, actions: ['publish'] }
    : { uri: 'mqtt', topic: 'bench/+/data', actions: ['subscribe'] });
  return entries;
}

async function connectRate(port: number, username: () => string): Promise<{ perSecond: number; p50: number; p99: number; refused: number }> {
  const latencies: number[] = [];
  let refused = 0;
  const ms = await pool(CONNECTS, 50, async () => {
    const r = await rawConnect(port, username());
    if (r.code !== 0) refused++;
    latencies.push(r.ms);
  });
  latencies.sort((a, b) => a - b);
  return { perSecond: (CONNECTS * 1000) / ms, p50: percentile(latencies, 50), p99: percentile(latencies, 99), refused };
}

async function redisCommandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

function delta(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0 && k !== 'info') out[k] = d;
  }
  return out;
}

async function main(): Promise<void> {
  const result: Record<string, unknown> = { bench: 'broker', node: process.version, cores: cpus().length, rounds: ROUNDS };
  if (only('throughput')) await throughputPart(result);
  if (only('connect') || only('redis') || only('revocation')) await redisParts(result);
  if (ONLY.includes('events')) await eventsPart(result);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

async function throughputPart(result: Record<string, unknown>): Promise<void> {
  // 1. Publish throughput, memory store (store is not on the message path anyway).
  // TCP: publishers and subscribers over TCP. WS: publishers over TCP, subscribers over
  // WebSocket (the dashboard case). Each round runs every contender once, in an order
  // that rotates per round; a ratio is taken within a round (interleaved pair) and the
  // median and minimum over rounds are printed.
  const memStore = new MemoryStore();
  const now = Math.floor(Date.now() / 1000);
  const pubTokens = await memStore.create(Array.from({ length: PUBLISHERS }, (_, i) => ({ ttl: 3600, access: { type: 2 as const, acl: aclFor('pub', i) } })), now);
  const [subToken] = await memStore.create([{ ttl: 3600, access: { type: 2, acl: aclFor('sub', 0) } }], now);
  const ours = { pubKeys: pubTokens.map((p) => p.key), subKey: subToken!.key };
  const bareKeys = { pubKeys: pubTokens.map(() => 'x'), subKey: 'x' };
  type Contender = (qos: 0 | 1) => Promise<number>;
  const bareRun = (ws: boolean): Contender => async (qos) => {
    const b = await startBareAedes();
    try {
      return await throughput({ pubUrl: `mqtt://127.0.0.1:${b.port}`, subUrl: ws ? `ws://127.0.0.1:${b.wsPort}/mqtt` : `mqtt://127.0.0.1:${b.port}`, ...bareKeys }, qos);
    } finally {
      await b.close();
    }
  };
  const oursRun = (ws: boolean, tcpNoDelay = false): Contender => async (qos) => {
    const t = await startTokenmq(memStore, tcpNoDelay);
    try {
      return await throughput({ pubUrl: `mqtt://127.0.0.1:${t.port}`, subUrl: ws ? `ws://127.0.0.1:${t.wsPort}/mqtt` : `mqtt://127.0.0.1:${t.port}`, ...ours }, qos);
    } finally {
      await t.close();
    }
  };
  const modes: { name: 'tcp' | 'ws'; runs: Record<string, Contender>; target: Record<0 | 1, number> }[] = [
    // TCP_NODELAY differs from bare Aedes only when switched on: both figures are printed.
    { name: 'tcp', runs: { bare: bareRun(false), tokenmq: oursRun(false), tokenmq_tcp_nodelay: oursRun(false, true) }, target: { 0: 0.95, 1: 0.95 } },
    { name: 'ws', runs: { bare: bareRun(true), tokenmq: oursRun(true) }, target: { 0: 3, 1: 1.8 } },
  ];
  for (const mode of modes) {
    if (!only(mode.name)) continue;
    for (const qos of [0, 1] as const) {
      const names = Object.keys(mode.runs);
      const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
      for (let r = 0; r < ROUNDS; r++) {
        for (let j = 0; j < names.length; j++) {
          const name = names[(r + j) % names.length]!;
          samples[name]!.push(await mode.runs[name]!(qos));
        }
      }
      const out: Record<string, unknown> = {};
      for (const n of names) out[`deliveries_per_s_${n}`] = round(median(samples[n]!), 0);
      for (const n of names) {
        if (n === 'bare') continue;
        const suffix = n === 'tokenmq' ? '' : `_${n.replace('tokenmq_', '')}`;
        const r = pairRatios(samples[n]!, samples.bare!);
        out[`ratio_median${suffix}`] = r.ratio_median;
        out[`ratio_min${suffix}`] = r.ratio_min;
        out[`ratios${suffix}`] = r.ratios;
      }
      out.target = mode.target[qos];
      for (const n of names) out[`samples_${n}`] = samples[n]!.map((x) => round(x, 0));
      result[`publish_${mode.name}_qos${qos}`] = out;
    }
  }
  await memStore.close();
}

async function redisParts(result: Record<string, unknown>): Promise<void> {
  const redisServer = process.env.REDIS_URL ? null : await startRedisServer();
  const redisUrl = process.env.REDIS_URL ?? redisServer!.url;
  try {
    // 2. Connect rate with the Redis store, 3. Redis commands per 10,000 PUBLISH, 4. revocation latency.
    // The expiry sweeper (one script a second) is switched off here so that the command
    // count below shows what PUBLISH costs; it is periodic work, not per message.
    const store = new RedisStore({ url: redisUrl, prefix: `bench:${Date.now()}:`, logger: log, sweepIntervalMs: 3_600_000 });
    const redis = new Redis(redisUrl);
    const keys = (await store.create(Array.from({ length: 200 }, () => ({ ttl: 3600 })), Math.floor(Date.now() / 1000))).map((t) => t.key);
    let k = 0;
    type Run = Awaited<ReturnType<typeof connectRate>>;
    const bareRuns: Run[] = [];
    const ourRuns: Run[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const b = await startBareAedes();
      bareRuns.push(await connectRate(b.port, () => 'anything'));
      await b.close();
      const t = await startTokenmq(store);
      ourRuns.push(await connectRate(t.port, () => keys[k++ % keys.length]!));
      await t.close();
    }
    const ratios = pairRatios(ourRuns.map((r) => r.perSecond), bareRuns.map((r) => r.perSecond));
    const pick = (runs: Run[]): Run => [...runs].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(runs.length / 2)]!;
    const cb = pick(bareRuns);
    const co = pick(ourRuns);
    result.connect_redis_store = {
      concurrency: 50, connects: CONNECTS,
      per_s_bare: round(cb.perSecond, 0), per_s_tokenmq: round(co.perSecond, 0), ...ratios, target: 0.7,
      p50_ms_bare: round(cb.p50), p99_ms_bare: round(cb.p99), p50_ms_tokenmq: round(co.p50), p99_ms_tokenmq: round(co.p99),
      refused: co.refused,
    };

    const t = await startTokenmq(store);
    const [pubT] = await store.create([{ ttl: 3600, access: { type: 2, acl: aclFor('pub', 0) } }], Math.floor(Date.now() / 1000));
    const [subT] = await store.create([{ ttl: 3600, access: { type: 2, acl: aclFor('sub', 0) } }], Math.floor(Date.now() / 1000));
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${t.port}`, { username: pubT!.key, reconnectPeriod: 0 });
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${t.port}`, { username: subT!.key, reconnectPeriod: 0 });
    await sub.subscribeAsync('bench/#', { qos: 0 });
    let got = 0;
    const all = new Promise<void>((resolve) => sub.on('message', () => { if (++got === 10_000) resolve(); }));
    // The connect-time `accessed` writes are done before counting starts; an idle window
    // of the same length afterwards shows what the node sends anyway (periodic touch).
    await t.broker.enforcement.flushTouches(true);
    const t0 = Date.now();
    const before = await redisCommandCalls(redis);
    for (let i = 0; i < 10_000; i++) {
      if (i % 100 === 99) await pub.publishAsync('bench/0/data', PAYLOAD, { qos: 0 });
      else pub.publish('bench/0/data', PAYLOAD, { qos: 0 });
    }
    await all;
    const after = await redisCommandCalls(redis);
    const busyMs = Date.now() - t0;
    const idleBefore = await redisCommandCalls(redis);
    await new Promise((r) => setTimeout(r, busyMs));
    const idleAfter = await redisCommandCalls(redis);
    const busy = delta(before, after);
    const idle = delta(idleBefore, idleAfter);
    const sum = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0);
    result.redis_commands_per_10k_publish = {
      during_publish: busy, total_during_publish: sum(busy),
      idle_same_duration: idle, total_idle: sum(idle),
      attributable_to_publish: Math.max(0, sum(busy) - sum(idle)), window_ms: busyMs, target: 0,
    };
    await Promise.all([pub.endAsync(true), sub.endAsync(true)]);

    // Revocation: DELETE (store call) → socket close, 100 sessions one after another.
    const victims = await store.create(Array.from({ length: 100 }, () => ({ ttl: 3600 })), Math.floor(Date.now() / 1000));
    const lat: number[] = [];
    for (const v of victims) {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${t.port}`, { username: v.key, reconnectPeriod: 0 });
      const closedAt = new Promise<bigint>((resolve) => c.stream.once('close', () => resolve(process.hrtime.bigint())));
      const started = process.hrtime.bigint();
      await store.delete([v.id]);
      lat.push(Number((await closedAt) - started) / 1e6);
      c.end(true);
    }
    lat.sort((a, b) => a - b);
    result.revocation_latency_ms = { sessions: 100, p50: round(percentile(lat, 50)), p99: round(percentile(lat, 99)), max: round(lat[lat.length - 1]!), target_p99: 1000 };
    await t.close();
    await store.close();
    redis.disconnect();
  } finally {
    await redisServer?.stop();
  }
}

/**
 * SPEC §8: what events and the log cost. QoS 0 throughput (memory store, memory log)
 * and connect rate (Redis store, Redis log: each CONNECT and disconnect is a record),
 * events on and off, interleaved per round; medians and per-round ratios (target ≥ 0.97,
 * within the noise of a shared machine).
 */
async function eventsPart(result: Record<string, unknown>): Promise<void> {
  const memStore = new MemoryStore();
  const now = Math.floor(Date.now() / 1000);
  const pubTokens = await memStore.create(Array.from({ length: PUBLISHERS }, (_, i) => ({ ttl: 3600, access: { type: 2 as const, acl: aclFor('pub', i) } })), now);
  const [subToken] = await memStore.create([{ ttl: 3600, access: { type: 2, acl: aclFor('sub', 0) } }], now);
  const keys = { pubKeys: pubTokens.map((p) => p.key), subKey: subToken!.key };
  const run = async (on: boolean): Promise<number> => {
    const t = await startTokenmq(memStore, false, on ? undefined : false);
    try {
      return await throughput({ pubUrl: `mqtt://127.0.0.1:${t.port}`, subUrl: `mqtt://127.0.0.1:${t.port}`, ...keys }, 0);
    } finally {
      await t.close();
    }
  };
  const tp: Record<'on' | 'off', number[]> = { on: [], off: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const on of r % 2 === 0 ? [true, false] : [false, true]) tp[on ? 'on' : 'off'].push(await run(on));
  }
  result.events_publish_tcp_qos0 = {
    deliveries_per_s_events_on: round(median(tp.on), 0), deliveries_per_s_events_off: round(median(tp.off), 0),
    ...pairRatios(tp.on, tp.off), target: 0.97,
    samples_on: tp.on.map((x) => round(x, 0)), samples_off: tp.off.map((x) => round(x, 0)),
  };
  await memStore.close();

  const redisServer = process.env.REDIS_URL ? null : await startRedisServer();
  const redisUrl = process.env.REDIS_URL ?? redisServer!.url;
  try {
    const prefix = `bench:${Date.now()}:`;
    const store = new RedisStore({ url: redisUrl, prefix, logger: log, sweepIntervalMs: 3_600_000 });
    // BENCH_EVENTS_LOG=memory: the same with the memory log, to tell publishing from the Redis writes.
    const brokerLog: BrokerLog = process.env.BENCH_EVENTS_LOG === 'memory' ? new MemoryLog(100_000) : new RedisLog({ redisUrl, prefix, retention: 100_000, log });
    const ckeys = (await store.create(Array.from({ length: 200 }, () => ({ ttl: 3600 })), Math.floor(Date.now() / 1000))).map((t) => t.key);
    let k = 0;
    const cr: Record<'on' | 'off', number[]> = { on: [], off: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const on of r % 2 === 0 ? [true, false] : [false, true]) {
        const t = await startTokenmq(store, false, on ? { brokerLog } : false);
        cr[on ? 'on' : 'off'].push((await connectRate(t.port, () => ckeys[k++ % ckeys.length]!)).perSecond);
        await t.close();
      }
    }
    await brokerLog.close();
    result.events_connect_redis = {
      concurrency: 50, connects: CONNECTS,
      log: process.env.BENCH_EVENTS_LOG === 'memory' ? 'memory' : 'redis',
      per_s_events_on: round(median(cr.on), 0), per_s_events_off: round(median(cr.off), 0),
      ...pairRatios(cr.on, cr.off), target: 0.97, log_dropped: brokerLog.dropped,
    };
    await store.close();
  } finally {
    await redisServer?.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${String(err instanceof Error ? err.stack : err)}\n`);
  process.exit(1);
});
