// Cluster benchmark of issue 5: publish throughput with publishers on node A and
// subscribers on node B, against one node in the same run, and the p99 of
// revocation latency across nodes (REST DELETE on A → socket close on B).
// Issue 9: the QoS 0 cross-node throughput against two bare Aedes processes with
// mqemitter-redis as shipped (same Redis, no auth), in interleaved pairs, so
// that what the cluster costs is told apart: tokenmq's share or the emitter's.
// Prints one JSON line. Loopback only, bounded.
import { cpus } from 'node:os';
import mqtt from 'mqtt';
import { startCluster } from '../test/helpers/cluster.js';
import { startProcess } from '../test/helpers/process.js';
import { startBroker } from './brokers.js';
import { forkChild, onRequest, pairSummary, selfPath, tell, type Child, runAs } from './lib-pairs.js';
import { median, pairRatios, percentile, round, throughput, PUBLISHERS } from './lib.js';

// Interleaved pairs (single node, then cluster); ratios per pair, median and minimum printed.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** Pairs for the ratio against bare Aedes (issue 9 asks at least 5). */
const PAIRS = Number(process.env.BENCH_PAIRS ?? 5);
const SELF = selfPath(import.meta.url);

/** A bare Aedes node with mqemitter-redis, in its own process. */
async function bareNode(redisUrl: string): Promise<{ child: Child; url: string }> {
  const child = forkChild(SELF, ['bare-node', redisUrl]);
  const ready = await child.next<{ port: number }>('ready');
  return { child, url: `mqtt://127.0.0.1:${ready.port}` };
}

async function bareNodeChild(redisUrl: string): Promise<void> {
  const { broker } = await startBroker('bare_mq', { redisUrl });
  onRequest(() => {});
  tell({ type: 'ready', port: broker.port });
}

async function main(): Promise<void> {
  const result: Record<string, unknown> = { bench: 'cluster', node: process.version, cores: cpus().length, rounds: ROUNDS };
  const cluster = await startCluster(2);
  const single = await startProcess({ MASTER_TOKEN: cluster.masterKey, LOG_LEVEL: 'info' });
  const keys = Array.from({ length: PUBLISHERS }, () => cluster.masterKey);
  try {
    for (const qos of [0, 1] as const) {
      const one: number[] = [];
      const two: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const url = `mqtt://127.0.0.1:${single.ports.mqtt}`;
        one.push(await throughput({ pubUrl: url, subUrl: url, pubKeys: keys, subKey: cluster.masterKey }, qos));
        two.push(await throughput({ pubUrl: cluster.mqtt(0), subUrl: cluster.mqtt(1), pubKeys: keys, subKey: cluster.masterKey }, qos));
      }
      result[`publish_qos${qos}`] = {
        deliveries_per_s_single_node: round(median(one), 0),
        deliveries_per_s_across_nodes: round(median(two), 0),
        ...pairRatios(two, one),
        samples_single: one.map((x) => round(x, 0)),
        samples_cluster: two.map((x) => round(x, 0)),
      };
    }

    // QoS 0 across nodes: tokenmq's two nodes against two bare Aedes nodes with mqemitter-redis.
    const bare = await Promise.all([bareNode(cluster.redis.url), bareNode(cluster.redis.url)]);
    try {
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let r = 0; r < PAIRS; r++) {
        const runOurs = async (): Promise<void> => {
          ours.push(await throughput({ pubUrl: cluster.mqtt(0), subUrl: cluster.mqtt(1), pubKeys: keys, subKey: cluster.masterKey }, 0));
        };
        const runBare = async (): Promise<void> => {
          theirs.push(await throughput({ pubUrl: bare[0]!.url, subUrl: bare[1]!.url, pubKeys: keys.map(() => 'x'), subKey: 'x' }, 0));
        };
        // Alternate who goes first, so that a drifting machine favours neither.
        if (r % 2 === 0) { await runBare(); await runOurs(); } else { await runOurs(); await runBare(); }
      }
      const ratio = pairSummary(ours, theirs);
      result.cross_node_qos0_vs_bare_aedes = {
        pairs: PAIRS,
        deliveries_per_s_bare_median: round(median(theirs), 0),
        deliveries_per_s_tokenmq_median: round(median(ours), 0),
        ratio_median: ratio.median, ratio_min: ratio.min, ratios: ratio.ratios,
        samples_bare: theirs.map((x) => round(x, 0)), samples_tokenmq: ours.map((x) => round(x, 0)),
        baseline: 'two bare Aedes processes, mqemitter-redis({connectionString}) on the same Redis, default persistence, net.createServer(aedes.handle)',
      };
    } finally {
      await Promise.all(bare.map((b) => b.child.kill()));
    }

    const lat: number[] = [];
    const auth = { authorization: `FlespiToken ${cluster.masterKey}`, 'content-type': 'application/json' };
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${cluster.http(0)}/platform/tokens`, { method: 'POST', headers: auth, body: JSON.stringify({ ttl: 3600 }) });
      const [token] = ((await res.json()) as { result: { id: number; key: string }[] }).result;
      const c = await mqtt.connectAsync(cluster.mqtt(1), { username: token!.key, reconnectPeriod: 0 });
      const closedAt = new Promise<bigint>((resolve) => c.stream.once('close', () => resolve(process.hrtime.bigint())));
      const started = process.hrtime.bigint();
      const del = await fetch(`${cluster.http(0)}/platform/tokens/${token!.id}`, { method: 'DELETE', headers: { authorization: auth.authorization } });
      if (del.status !== 200) throw new Error(`DELETE answered ${del.status}`);
      lat.push(Number((await closedAt) - started) / 1e6);
      c.end(true);
    }
    lat.sort((a, b) => a - b);
    result.revocation_across_nodes_ms = { sessions: 100, p50: round(percentile(lat, 50)), p99: round(percentile(lat, 99)), max: round(lat[lat.length - 1]!), target_p99: 1000 };
  } finally {
    await single.stop('SIGKILL');
    await cluster.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

runAs(SELF, { 'bare-node': ([redisUrl]) => bareNodeChild(redisUrl!) }, main);
