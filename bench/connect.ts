// Connect rate (issue 9): tokenmq against bare Aedes as shipped, memory store
// against Aedes' defaults and Redis mode against Aedes with
// aedes-persistence-redis + mqemitter-redis (no auth), on one throwaway Redis.
// Interleaved pairs (each broker in its own child process, started fresh,
// warmed up and measured from STEADY_AFTER_MS after its start), ratios with
// median and minimum; then Redis commands per CONNECT
// and per DISCONNECT from INFO commandstats. Prints one JSON line.
//   npm run bench:connect   (BENCH_ROUNDS, BENCH_CONNECTS, BENCH_CONCURRENCY, BENCH_PARTS=memory,redis,commands)
import { Redis } from 'ioredis';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { STARTUP_GRACE_MS } from '../src/broker/event-listeners.js';
import { benchAcl, sentCommands, startBroker, type BrokerKind } from './brokers.js';
import {
  closeClients, commandDelta, connectRate, fileLimit, forkChild, loopbackSources, median, onRequest, openClients, pairSummary, perOp,
  redisCommandCalls, round, selfPath, sumCounts, tell, type RateResult, runAs } from './lib-pairs.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const WARMUP = 300;
/**
 * Both brokers are measured in steady state: from this long after the child
 * started. A tokenmq node in cluster mode publishes every SPEC §8 event during
 * its first STARTUP_GRACE_MS, while the other nodes' answers about their
 * `$tokenmq/...` subscribers arrive (event-listeners.ts); a fresh child measured
 * at once measured that transient (a Redis PUBLISH per event).
 */
const STEADY_AFTER_MS = STARTUP_GRACE_MS + 200;
/** Which parts to run (default all): memory, redis, commands. */
const PARTS = new Set((process.env.BENCH_PARTS ?? 'memory,redis,commands').split(','));
const TOKENS = 200;
/** Idle sessions opened and closed while Redis commands are counted. */
const COUNTED = Number(process.env.BENCH_COUNTED ?? 500);
/** Batched writes (touch every 250 ms, the session directory per tick) land within this. */
const SETTLE_MS = 800;
const SELF = selfPath(import.meta.url);

// ---- broker child ----

async function brokerChild(kind: BrokerKind, redisUrl: string): Promise<void> {
  const tokens = Array.from({ length: TOKENS }, () => ({ ttl: 86_400, access: { type: 2 as const, acl: benchAcl() } }));
  const { broker, keys } = await startBroker(kind, { redisUrl, tokens });
  onRequest((msg) => {
    if (msg.type === 'state') tell({ type: 'state', sessions: broker.sessions(), noDelay: broker.noDelay() });
    if (msg.type === 'sent') tell({ type: 'sent', counts: [...sentCommands()] });
  });
  tell({ type: 'ready', port: broker.port, keys });
}

// ---- main ----

let runSeq = 0;
/** When the current broker child said it was ready. */
let readyAt = 0;

async function withBroker<T>(kind: BrokerKind, redisUrl: string, fn: (port: number, keys: string[], child: ReturnType<typeof forkChild>) => Promise<T>): Promise<T> {
  const child = forkChild(SELF, ['broker', kind, redisUrl]);
  try {
    const ready = await child.next<{ port: number; keys: string[] }>('ready');
    readyAt = Date.now();
    return await fn(ready.port, ready.keys, child);
  } finally {
    await child.kill();
  }
}

async function rate(kind: BrokerKind, redisUrl: string, sources: string[]): Promise<RateResult & { no_delay: boolean }> {
  const run = ++runSeq;
  return withBroker(kind, redisUrl, async (port, keys, child) => {
    const spec = (prefix: string) => (i: number) => ({ clientId: `${prefix}-${run}-${i}`, username: keys[i % keys.length]! });
    await connectRate(port, spec('w'), WARMUP, CONCURRENCY, sources);
    await sleep(readyAt + STEADY_AFTER_MS - Date.now());
    const result = await connectRate(port, spec('c'), CONNECTS, CONCURRENCY, sources);
    const state = await child.ask<{ noDelay: boolean }>({ type: 'state' }, 'state');
    return { ...result, no_delay: state.noDelay };
  });
}

async function pairs(bareKind: BrokerKind, ourKind: BrokerKind, redisUrl: string, sources: string[]): Promise<Record<string, unknown>> {
  const bare: RateResult[] = [];
  const ours: (RateResult & { no_delay: boolean })[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate who goes first, so that a drifting machine favours neither.
    if (r % 2 === 0) {
      bare.push(await rate(bareKind, redisUrl, sources));
      ours.push(await rate(ourKind, redisUrl, sources));
    } else {
      ours.push(await rate(ourKind, redisUrl, sources));
      bare.push(await rate(bareKind, redisUrl, sources));
    }
  }
  const ratio = pairSummary(ours.map((o) => o.per_s), bare.map((b) => b.per_s));
  return {
    concurrency: CONCURRENCY, connects: CONNECTS, pairs: ROUNDS, measured_from_ms_after_start: STEADY_AFTER_MS,
    per_s_bare_median: round(median(bare.map((b) => b.per_s)), 0),
    per_s_tokenmq_median: round(median(ours.map((o) => o.per_s)), 0),
    ratio_median: ratio.median, ratio_min: ratio.min, ratios: ratio.ratios,
    p50_ms_bare: round(median(bare.map((b) => b.p50_ms))), p50_ms_tokenmq: round(median(ours.map((o) => o.p50_ms))),
    p99_ms_bare: round(median(bare.map((b) => b.p99_ms))), p99_ms_tokenmq: round(median(ours.map((o) => o.p99_ms))),
    refused: ours.reduce((n, o) => n + o.refused, 0) + bare.reduce((n, b) => n + b.refused, 0),
    tokenmq_tcp_nodelay: ours[0]?.no_delay, bare_tcp_nodelay: false,
  };
}

/**
 * Redis commands per CONNECT and per DISCONNECT, idle traffic over the same time
 * subtracted: those the broker sends (round trips' worth, counted in its ioredis
 * clients) and those Redis runs (INFO commandstats: Lua scripts' inner commands too).
 */
async function commandsPer(kind: BrokerKind, redisUrl: string, redis: Redis, sources: string[]): Promise<Record<string, unknown>> {
  return withBroker(kind, redisUrl, async (port, keys, child) => {
    const counts = async (): Promise<{ sent: Map<string, number>; ran: Map<string, number> }> => ({
      sent: new Map((await child.ask<{ counts: [string, number][] }>({ type: 'sent' }, 'sent')).counts),
      ran: await redisCommandCalls(redis),
    });
    const deltas = (a: Awaited<ReturnType<typeof counts>>, b: Awaited<ReturnType<typeof counts>>) => ({
      sent: commandDelta(a.sent, b.sent), ran: commandDelta(a.ran, b.ran),
    });
    await connectRate(port, (i) => ({ clientId: `warm-${i}`, username: keys[i % keys.length]! }), WARMUP, CONCURRENCY, sources);
    await sleep(SETTLE_MS);
    const idleStart = Date.now();
    const idle0 = await counts();
    await sleep(2 * SETTLE_MS);
    const idle = deltas(idle0, await counts());
    const idleMs = Date.now() - idleStart;

    const specs = Array.from({ length: COUNTED }, (_, i) => ({ clientId: `counted-${i}`, username: keys[i % keys.length]! }));
    const c0 = await counts();
    const t0 = Date.now();
    const clients = await openClients(specs, { port, concurrency: CONCURRENCY, localAddresses: sources });
    await sleep(SETTLE_MS);
    const connected = deltas(c0, await counts());
    const connectMs = Date.now() - t0;

    const d0 = await counts();
    const t1 = Date.now();
    await closeClients(clients);
    await sleep(SETTLE_MS);
    const disconnected = deltas(d0, await counts());
    const disconnectMs = Date.now() - t1;

    const net = (d: Record<string, number>, base: Record<string, number>, ms: number): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(d)) {
        const n = v - ((base[k] ?? 0) * ms) / idleMs;
        if (n > 0.5) out[k] = n;
      }
      return out;
    };
    const summary = (d: Record<string, number>) => ({ total: round(sumCounts(d) / COUNTED, 2), by_command: perOp(d, COUNTED) });
    return {
      sessions: COUNTED,
      sent_per_connect: summary(net(connected.sent, idle.sent, connectMs)),
      sent_per_disconnect: summary(net(disconnected.sent, idle.sent, disconnectMs)),
      redis_ran_per_connect: summary(net(connected.ran, idle.ran, connectMs)),
      redis_ran_per_disconnect: summary(net(disconnected.ran, idle.ran, disconnectMs)),
      idle_sent_per_s: round((sumCounts(idle.sent) * 1000) / idleMs, 1),
    };
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  const server = await startRedisServer();
  const redis = new Redis(server.url);
  const sources = loopbackSources(8);
  const result: Record<string, unknown> = { bench: 'connect', node: process.version, open_files_limit: await fileLimit(), acl_entries: benchAcl().length, tokens: TOKENS };
  try {
    if (PARTS.has('memory')) result.memory_store = { ...(await pairs('bare', 'tokenmq', server.url, sources)), target: 0.9 };
    if (PARTS.has('redis')) result.redis_mode = { ...(await pairs('bare_redis', 'tokenmq_redis', server.url, sources)), target: 0.8 };
    if (PARTS.has('commands')) {
      result.redis_commands = {
        bare_aedes_redis: await commandsPer('bare_redis', server.url, redis, sources),
        tokenmq_redis: await commandsPer('tokenmq_redis', server.url, redis, sources),
      };
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

runAs(SELF, { broker: ([kind, redisUrl]) => brokerChild(kind as BrokerKind, redisUrl!) }, main);
