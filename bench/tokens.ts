// Token store and rights benchmark. Prints ONE JSON object on stdout.
//   npm run bench:tokens        (builds, then node dist/bench/tokens.js)
// Starts its own redis-server on 127.0.0.1 (or uses REDIS_URL, loopback only),
// stores BENCH_TOKENS tokens (default 100,000) under a throwaway prefix, then
// measures findByKey (one at a time, and 64 in flight) against a raw GET of one
// key on the same Redis in the same run, and publish-authorisation checks for a
// token with 256 ACL entries. Every phase is bounded in time and count.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { MemoryStore } from '../src/store/memory-store.js';
import { RedisStore } from '../src/store/redis-store.js';
import type { TokenStore } from '../src/store/types.js';
import { ACCESS_ACL, type AclEntry, type TokenInput } from '../src/tokens/types.js';
import { deleteByPrefix, startRedisServer, type RedisServerHandle } from '../test/helpers/redis-server.js';
import { percentile, round } from './lib.js';

const TOKENS = Number(process.env.BENCH_TOKENS ?? 100_000);
/** Tokens per create call: one script run each. */
const BATCH = 1000;
/** Create calls in flight while filling the store. */
const CREATE_CONCURRENCY = 4;
const IN_FLIGHT = 64;
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 5000);
const SEQUENTIAL_MAX_OPS = 20_000;
const CONCURRENT_MAX_OPS = 200_000;
const ACL_ENTRIES = 256;
/** The whole run must end well within a minute. */
const HARD_LIMIT_MS = 58_000;

interface Rate {
  ops: number;
  seconds: number;
  ops_per_s: number;
}

interface LatencyRate extends Rate {
  p50_us: number;
  p99_us: number;
}


function rate(ops: number, ms: number): Rate {
  return { ops, seconds: round(ms / 1000, 2), ops_per_s: Math.round((ops * 1000) / ms) };
}

/** One call at a time until the time or count bound; with per-call latency. */
async function sequential(op: (i: number) => Promise<unknown>, maxOps: number): Promise<LatencyRate> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + PHASE_MS;
  let i = 0;
  while (i < maxOps) {
    const t0 = performance.now();
    await op(i++);
    const t1 = performance.now();
    latencies.push(t1 - t0);
    if (t1 > end) break;
  }
  const elapsed = performance.now() - start;
  latencies.sort((a, b) => a - b);
  return { ...rate(i, elapsed), p50_us: round(percentile(latencies, 50) * 1000, 1), p99_us: round(percentile(latencies, 99) * 1000, 1) };
}

/** `IN_FLIGHT` workers, each one call at a time, sharing the bounds. */
async function concurrent(op: (i: number) => Promise<unknown>, maxOps: number): Promise<Rate & { in_flight: number }> {
  const start = performance.now();
  const end = start + PHASE_MS;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < maxOps && performance.now() < end) await op(next++);
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { ...rate(next, performance.now() - start), in_flight: IN_FLIGHT };
}

/** SPEC §2 "truck"-like tokens with a few ACL entries, as a realistic stored size. */
function tokenInput(i: number): TokenInput {
  return {
    info: `bench device ${i}`,
    ttl: 86400,
    access: {
      type: ACCESS_ACL,
      acl: [
        { uri: 'mqtt', topic: `devices/${i}/#`, actions: ['publish', 'subscribe'] },
        { uri: 'mqtt', topic: 'broadcast/#', actions: ['subscribe'] },
      ],
    },
    metadata: { fleet: String(i % 100) },
  };
}

/** Fills a store; returns the keys, in id order. */
async function fill(store: TokenStore, count: number): Promise<{ keys: string[]; seconds: number }> {
  const keys: string[] = [];
  const now = Math.floor(Date.now() / 1000);
  const start = performance.now();
  let nextBatch = 0;
  const batches = Math.ceil(count / BATCH);
  const results: string[][] = new Array<string[]>(batches);
  const worker = async (): Promise<void> => {
    while (nextBatch < batches) {
      const b = nextBatch++;
      const size = Math.min(BATCH, count - b * BATCH);
      const created = await store.create(Array.from({ length: size }, (_, j) => tokenInput(b * BATCH + j)), now);
      results[b] = created.map((t) => t.key);
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
  for (const batch of results) keys.push(...batch);
  return { keys, seconds: round((performance.now() - start) / 1000, 2) };
}

/** A fixed, shuffled order of lookups, so each run reads keys all over the store. */
function lookupOrder(keys: string[], n: number): string[] {
  const out: string[] = new Array<string>(n);
  const random = randomBytes(n * 4);
  for (let i = 0; i < n; i++) out[i] = keys[random.readUInt32LE(i * 4) % keys.length] as string;
  return out;
}

async function benchRights(): Promise<Record<string, unknown>> {
  // Skipped, not failed, when the rights module is not there (it is written separately).
  let rightsModule: typeof import('../src/tokens/rights.js');
  try {
    rightsModule = await import('../src/tokens/rights.js');
  } catch (err) {
    return { skipped: `src/tokens/rights.js not available: ${(err as Error).message}` };
  }
  const acl: AclEntry[] = [];
  for (let i = 0; i < ACL_ENTRIES - 1; i++) {
    acl.push({ uri: 'mqtt', topic: i % 3 === 0 ? `site/${i}/+/telemetry` : i % 3 === 1 ? `site/${i}/#` : `site/${i}/alarm`, actions: ['publish'] });
  }
  acl.push({ uri: 'mqtt', topic: 'devices/${clientid}/+/data', actions: ['publish', 'subscribe'] });
  const access = { type: ACCESS_ACL, acl } as const;
  const ctx = { clientId: 'truck42', tokenId: 7 };

  const compileRuns = 200;
  const c0 = performance.now();
  let rights = rightsModule.compileRights(access, ctx);
  for (let i = 1; i < compileRuns; i++) rights = rightsModule.compileRights(access, ctx);
  const compileUs = round(((performance.now() - c0) * 1000) / compileRuns);

  // Topics prepared up front: the measured loop allocates nothing.
  const cases: Record<string, string[]> = {
    match_last_entry: Array.from({ length: 64 }, (_, i) => `devices/truck42/s${i}/data`),
    match_early_entry: Array.from({ length: 64 }, (_, i) => `site/1/${i}/deep`),
    match_none: Array.from({ length: 64 }, (_, i) => `elsewhere/${i}/x/y`),
  };
  const out: Record<string, unknown> = { acl_entries: ACL_ENTRIES, compile_us: compileUs };
  const budgetMs = Math.min(1000, PHASE_MS / 3);
  // Issue 9: the broker shares one compiled Rights per access and asks with the session as
  // context (placeholders compared in place); measured alike, so the two can be compared.
  const shared = rightsModule.compileSharedRights(access);
  const session = { clientId: ctx.clientId, tokenId: ctx.tokenId, tokenIdText: String(ctx.tokenId) };
  for (const [name, topics] of Object.entries(cases)) {
    for (const [suffix, ask] of [
      ['', (t: string) => rights.canPublish(t)],
      ['_shared', (t: string) => shared.canPublish(t, session)],
    ] as const) {
      let allowed = 0;
      let ops = 0;
      const start = performance.now();
      let now = start;
      while (now - start < budgetMs) {
        for (let i = 0; i < 10_000; i++) if (ask(topics[i & 63] as string)) allowed++;
        ops += 10_000;
        now = performance.now();
      }
      out[`${name}${suffix}`] = { checks_per_s: Math.round((ops * 1000) / (now - start)), ns_per_check: round(((now - start) * 1e6) / ops), allowed_ratio: round(allowed / ops, 2) };
    }
  }
  return out;
}

function assertLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
    throw new Error(`bench/tokens runs against a loopback Redis only; REDIS_URL names ${host}`);
  }
}


async function main(): Promise<void> {
  const limit = setTimeout(() => {
    process.stderr.write(`bench/tokens: over the ${HARD_LIMIT_MS} ms budget, giving up\n`);
    process.exit(2);
  }, HARD_LIMIT_MS);
  limit.unref();
  const started = performance.now();

  let server: RedisServerHandle | undefined;
  let url = process.env.REDIS_URL;
  if (!url) {
    server = await startRedisServer();
    url = server.url;
  }
  assertLoopback(url);
  const prefix = `tokenmq-bench:${randomBytes(4).toString('hex')}:`;
  // The sweeper has nothing to do here (day-long ttls); keep it out of the measurements.
  const store = new RedisStore({ url, prefix, sweepIntervalMs: 3_600_000, readyTimeoutMs: 5000 });
  const raw = new Redis(url);
  try {
    await store.ping();
    const filled = await fill(store, TOKENS);
    const order = lookupOrder(filled.keys, Math.max(SEQUENTIAL_MAX_OPS, CONCURRENT_MAX_OPS));
    const probe = await store.findByKey(filled.keys[0] as string);
    if (!probe) throw new Error('a stored token was not found by its key');

    // Warm-up: JIT and connection, not measured.
    for (let i = 0; i < 500; i++) await store.findByKey(order[i] as string);
    const findSeq = await sequential((i) => store.findByKey(order[i] as string), SEQUENTIAL_MAX_OPS);
    const findConc = await concurrent((i) => store.findByKey(order[i] as string), CONCURRENT_MAX_OPS);

    // Baseline: the cheapest possible round trip on the same Redis, one small string.
    const rawKey = `${prefix}bench:raw`;
    await raw.set(rawKey, '12345');
    for (let i = 0; i < 500; i++) await raw.get(rawKey);
    const getSeq = await sequential(() => raw.get(rawKey), SEQUENTIAL_MAX_OPS);
    const getConc = await concurrent(() => raw.get(rawKey), CONCURRENT_MAX_OPS);

    const memory = new MemoryStore();
    const memoryFill = await fill(memory, TOKENS);
    const memoryOrder = lookupOrder(memoryFill.keys, SEQUENTIAL_MAX_OPS);
    const memorySeq = await sequential((i) => memory.findByKey(memoryOrder[i] as string), SEQUENTIAL_MAX_OPS);
    await memory.close();

    const rights = await benchRights();
    const info = await raw.info('server');
    const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';

    const result = {
      bench: 'tokens',
      node: process.version,
      redis: { version: redisVersion, own_server: server !== undefined },
      tokens: TOKENS,
      create: { batch: BATCH, in_flight: CREATE_CONCURRENCY, seconds: filled.seconds, tokens_per_s: Math.round(TOKENS / filled.seconds) },
      find_by_key: { sequential: findSeq, concurrent: findConc },
      raw_get: { sequential: getSeq, concurrent: getConc },
      find_by_key_vs_raw_get: {
        sequential: round(findSeq.ops_per_s / getSeq.ops_per_s, 2),
        concurrent: round(findConc.ops_per_s / getConc.ops_per_s, 2),
      },
      memory_store: { create_seconds: memoryFill.seconds, find_by_key_sequential: memorySeq },
      publish_authorisation: rights,
      total_seconds: round((performance.now() - started) / 1000, 1),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    if (!server) await deleteByPrefix(raw, prefix).catch(() => undefined);
    await store.close();
    raw.disconnect();
    await server?.stop();
    clearTimeout(limit);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/tokens failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
