// N tokenmq processes on one throwaway redis-server: a cluster as operators run it.
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { RedisStore } from '../../src/store/redis-store.js';
import { startProcess, type ServerProcess } from './process.js';
import { startRedisServer, type RedisServerHandle } from './redis-server.js';
import { eventually } from './wait.js';

export interface Cluster {
  redis: RedisServerHandle;
  prefix: string;
  masterKey: string;
  nodes: ServerProcess[];
  /** A store on the same Redis and prefix: token changes reach the nodes through its change feed. */
  store: RedisStore;
  mqtt(i: number): string;
  ws(i: number): string;
  http(i: number): string;
  /** Restarts Redis on the same port after `redis.stop()`; its data survives only with `redisDir`. */
  restartRedis(): Promise<void>;
  close(): Promise<void>;
}

export async function startCluster(n: number, env: Record<string, string> = {}, opts: { redisDir?: string } = {}): Promise<Cluster> {
  let redis = await startRedisServer({ dir: opts.redisDir });
  const prefix = `tmq${randomBytes(3).toString('hex')}:`;
  const masterKey = `Master${randomBytes(16).toString('hex')}`;
  const nodes: ServerProcess[] = [];
  try {
    for (let i = 0; i < n; i++) {
      nodes.push(await startProcess({
        REDIS_URL: redis.url, REDIS_PREFIX: prefix, MASTER_TOKEN: masterKey, NODE_ID: `node-${i}`, LOG_LEVEL: 'info', ...env,
      }));
    }
  } catch (err) {
    await Promise.all(nodes.map((p) => p.stop('SIGKILL')));
    await redis.stop();
    throw err;
  }
  const store = new RedisStore({ url: redis.url, prefix, logger: pino({ level: 'silent' }) });
  const cluster: Cluster = {
    get redis() { return redis; },
    prefix,
    masterKey,
    nodes,
    store,
    mqtt: (i) => `mqtt://127.0.0.1:${nodes[i]!.ports.mqtt}`,
    ws: (i) => `ws://127.0.0.1:${nodes[i]!.ports.ws}/mqtt`,
    http: (i) => `http://127.0.0.1:${nodes[i]!.ports.http}`,
    async restartRedis() {
      redis = await startRedisServer({ port: redis.port, dir: opts.redisDir });
      // The test's own store reconnects with back-off: wait for it, so that callers
      // use it only once it answers (a loaded machine can take seconds).
      await eventually(() => store.ping().then(() => true, () => false), 15_000, 'test store reconnected to Redis', 50);
    },
    async close() {
      await Promise.all(nodes.map((p) => p.stop('SIGKILL')));
      await store.close();
      await redis.stop();
    },
  };
  return cluster;
}
