// Memory per idle session (issue 9): bare Aedes as shipped against tokenmq
// (memory store), each broker in its own child process, the connections from
// another process. Heap and RSS are read after forced GC before and after the
// sessions connect; the difference over the session count is the cost of one
// session. Prints one JSON line.
//   npm run bench:memory   (raises the open-files limit; BENCH_SESSIONS, BENCH_PER_TOKEN)
//
// tokenmq's sessions use ACL tokens of 10 entries (two with `${clientid}`, one
// with `${token_id}`), several sessions per token, `ips` on every other token;
// a second tokenmq run puts every session on one token.
import { writeHeapSnapshot } from 'node:v8';
import type { TokenInput } from '../src/tokens/types.js';
import { benchAcl, startBroker } from './brokers.js';
import {
  fileLimit, forkChild, onRequest, openClients, round, selfPath, settledMemory, tell, type ConnectSpec, type IdleClient, runAs } from './lib-pairs.js';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 10_000);
const PER_TOKEN = Number(process.env.BENCH_PER_TOKEN ?? 5);
const SELF = selfPath(import.meta.url);

type Kind = 'bare' | 'tokenmq' | 'tokenmq_one_token';

// ---- broker child ----

async function brokerChild(kind: Kind): Promise<void> {
  const perToken = kind === 'tokenmq_one_token' ? SESSIONS : PER_TOKEN;
  const tokens: TokenInput[] = kind === 'bare' ? [{}] : Array.from({ length: Math.ceil(SESSIONS / perToken) }, (_, i) => ({
    ttl: 86_400, info: `fleet ${i}`, access: { type: 2, acl: benchAcl() }, ips: i % 2 === 0 ? '127.0.0.0/8, 10.1.*.*' : '',
  }));
  const { broker, keys } = await startBroker(kind === 'bare' ? 'bare' : 'tokenmq', { tokens });
  const specs: ConnectSpec[] = [];
  for (let i = 0; i < SESSIONS; i++) specs.push({ clientId: `dev-${i}`, username: keys[kind === 'bare' ? 0 : Math.floor(i / perToken)]! });
  onRequest(async (msg) => {
    if (msg.type !== 'measure') return;
    const memory = await settledMemory();
    // BENCH_HEAP_SNAPSHOT=<dir>: a heap snapshot per measure, to see what a session holds.
    if (process.env.BENCH_HEAP_SNAPSHOT) writeHeapSnapshot(`${process.env.BENCH_HEAP_SNAPSHOT}/${kind}-${broker.sessions()}.heapsnapshot`);
    tell({ type: 'memory', sessions: broker.sessions(), ...memory });
  });
  tell({ type: 'ready', port: broker.port, specs });
}

// ---- client child ----

function clientChild(): void {
  let clients: IdleClient[] = [];
  onRequest(async (msg) => {
    if (msg.type !== 'open') return;
    clients = await openClients(msg.specs as ConnectSpec[], { port: msg.port as number, concurrency: 50 });
    tell({ type: 'opened', count: clients.length });
  });
}

// ---- main ----

interface Memory { type: string; sessions: number; heapUsed: number; rss: number; external: number }

async function measure(kind: Kind): Promise<Record<string, number>> {
  const broker = forkChild(SELF, ['broker', kind], { gc: true });
  const clients = forkChild(SELF, ['clients']);
  try {
    const ready = await broker.next<{ type: string; port: number; specs: ConnectSpec[] }>('ready');
    const before = await broker.ask<Memory>({ type: 'measure' }, 'memory');
    const started = Date.now();
    await clients.ask({ type: 'open', port: ready.port, specs: ready.specs }, 'opened', 300_000);
    const connectMs = Date.now() - started;
    const after = await broker.ask<Memory>({ type: 'measure' }, 'memory');
    if (after.sessions !== ready.specs.length) throw new Error(`${kind}: ${after.sessions} sessions of ${ready.specs.length}`);
    const n = ready.specs.length;
    return {
      sessions: n,
      heap_bytes_per_session: Math.round((after.heapUsed - before.heapUsed) / n),
      rss_bytes_per_session: Math.round((after.rss - before.rss) / n),
      external_bytes_per_session: Math.round((after.external - before.external) / n),
      heap_mb_before: round(before.heapUsed / 2 ** 20, 1),
      rss_mb_after: round(after.rss / 2 ** 20, 1),
      connect_s: round(connectMs / 1000, 1),
    };
  } finally {
    // The broker first: the sockets' TIME_WAIT then stays on its side, not on the clients' ports.
    await broker.kill();
    await clients.kill();
  }
}

async function main(): Promise<void> {
  const result: Record<string, unknown> = {
    bench: 'memory', node: process.version, sessions: SESSIONS, sessions_per_token: PER_TOKEN, acl_entries: benchAcl().length,
    open_files_limit: await fileLimit(),
  };
  const bare = await measure('bare');
  const ours = await measure('tokenmq');
  const one = await measure('tokenmq_one_token');
  result.bare_aedes = bare;
  result.tokenmq = ours;
  result.tokenmq_one_token = one;
  const over = (m: Record<string, number>, field: string): number => m[field]! - bare[field]!;
  result.over_bare_bytes = {
    heap: over(ours, 'heap_bytes_per_session'),
    rss: over(ours, 'rss_bytes_per_session'),
    heap_one_token: over(one, 'heap_bytes_per_session'),
    rss_one_token: over(one, 'rss_bytes_per_session'),
    target: 1024,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

runAs(SELF, { broker: ([kind]) => brokerChild(kind as Kind), clients: () => clientChild() }, main);
