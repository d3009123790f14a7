// REST benchmark of issue 4: authenticated `GET /auth/info` against the Redis
// store, and a bare Fastify route with no auth in the same run; prints one JSON
// object with requests/s, p99 latency and the ratio authenticated/bare
// (target >= 0.6). Loopback only, bounded in time.
//   node dist/bench/rest.js            (npm run bench:rest)
//   BENCH_DURATION=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=50 BENCH_WORKERS=1 to change the defaults
// Bare and authenticated runs alternate in rounds and the ratio is the median
// of the rounds' ratios, so that a burst of load from elsewhere on the machine
// skews one round rather than the result.
import autocannon, { type Result } from 'autocannon';
import Fastify from 'fastify';
import { cpus } from 'node:os';
import { pino } from 'pino';
import { localConfig, startTokenmq } from '../src/start.js';
import { RedisStore } from '../src/store/redis-store.js';
import { startRedisServer } from '../test/helpers/redis-server.js';
import { median, round } from './lib.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
/** autocannon in a worker thread, so the load generator does not share the servers' event loop. */
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);

const log = pino({ level: 'silent' });

interface Summary {
  requests_per_s: number;
  p99_ms: number;
  non_2xx: number;
  errors: number;
}

async function load(url: string, headers: Record<string, string>, duration: number): Promise<Result> {
  return autocannon({ url, connections: CONNECTIONS, duration, headers, ...(WORKERS > 0 ? { workers: WORKERS } : {}) });
}

function summary(r: Result): Summary {
  return {
    requests_per_s: round(r.requests.average, 0),
    p99_ms: round(r.latency.p99, 2),
    non_2xx: r.non2xx,
    errors: r.errors,
  };
}

/** One tokenmq REST API on its own RedisStore, as main.ts builds it; `tokenCacheMs` as in ApiDeps. */
async function startApi(url: string, prefix: string, tokenCacheMs?: number) {
  const store = new RedisStore({ url, prefix, logger: log });
  const node = await startTokenmq({ config: localConfig({ nodeId: `bench-${prefix}` }), log, store, cluster: false, tokenCacheMs });
  const [token] = await store.create([{ ttl: 3600, info: 'bench' }], Math.floor(Date.now() / 1000));
  return {
    url: `http://127.0.0.1:${node.ports.http}/auth/info`,
    token: token!,
    close: () => node.close(),
  };
}

function pick(runs: Summary[]) {
  return {
    requests_per_s: median(runs.map((r) => r.requests_per_s)),
    p99_ms: median(runs.map((r) => r.p99_ms)),
    non_2xx: runs.reduce((n, r) => n + r.non_2xx, 0),
    errors: runs.reduce((n, r) => n + r.errors, 0),
  };
}

/** Median over rounds of each round's ratio to the bare run of the same round. */
function ratioTo(runs: Summary[], bareRuns: Summary[]): { ratio: number; min: number; rounds: number[] } {
  const ratios = runs.map((r, i) => (bareRuns[i]!.requests_per_s > 0 ? r.requests_per_s / bareRuns[i]!.requests_per_s : 0));
  return { ratio: round(median(ratios), 2), min: round(Math.min(...ratios), 2), rounds: ratios.map((r) => round(r, 2)) };
}

async function main(): Promise<void> {
  const redis = await startRedisServer();
  // As main.ts runs it, and with the key → token cache off: every request is one Redis round trip.
  const plain = await startApi(redis.url, 'bench:rest:a:');
  const uncached = await startApi(redis.url, 'bench:rest:b:', 0);
  const { key: _key, ...shown } = plain.token;

  // The baseline: the same answer, no auth, same logger, same process.
  const bare = Fastify({ loggerInstance: log });
  bare.get('/bare', async () => ({ result: [shown] }));
  await bare.listen({ port: 0, host: '127.0.0.1' });
  const bareUrl = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}/bare`;
  const authOf = (key: string) => ({ authorization: `FlespiToken ${key}` });
  try {
    if (WARMUP > 0) {
      await load(bareUrl, {}, WARMUP);
      await load(plain.url, authOf(plain.token.key), WARMUP);
      await load(uncached.url, authOf(uncached.token.key), WARMUP);
    }
    const bareRuns: Summary[] = [];
    const authRuns: Summary[] = [];
    const uncachedRuns: Summary[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      bareRuns.push(summary(await load(bareUrl, {}, DURATION)));
      authRuns.push(summary(await load(plain.url, authOf(plain.token.key), DURATION)));
      uncachedRuns.push(summary(await load(uncached.url, authOf(uncached.token.key), DURATION)));
    }
    const auth = ratioTo(authRuns, bareRuns);
    const cold = ratioTo(uncachedRuns, bareRuns);
    process.stdout.write(`${JSON.stringify({
      bench: 'rest',
      store: 'redis',
      cores: cpus().length,
      duration_s: DURATION,
      rounds: ROUNDS,
      connections: CONNECTIONS,
      workers: WORKERS,
      bare: { route: 'GET /bare (no auth)', ...pick(bareRuns) },
      authenticated: { route: 'GET /auth/info', ...pick(authRuns) },
      ratio: auth.ratio,
      ratio_min: auth.min,
      round_ratios: auth.rounds,
      authenticated_uncached: { route: 'GET /auth/info, tokenCacheMs 0 (a Redis round trip per request)', ...pick(uncachedRuns) },
      ratio_uncached: cold.ratio,
      ratio_min_uncached: cold.min,
      round_ratios_uncached: cold.rounds,
      target_ratio: 0.6,
      meets_target: auth.ratio >= 0.6,
    })}\n`);
    if ([...authRuns, ...uncachedRuns].some((r) => r.non_2xx > 0 || r.errors > 0)) process.exitCode = 1;
  } finally {
    await bare.close();
    await plain.close();
    await uncached.close();
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/rest: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
