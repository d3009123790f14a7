// An in-process tokenmq (store + broker + REST API) on ephemeral loopback ports,
// as main.ts wires it, for integration tests.
import { randomBytes } from 'node:crypto';
import type { BlockList } from 'node:net';
import { pino, type Logger } from 'pino';
import {
  AuthLimiter, RedisSessionDirectory, createClusterParts, createTokenBroker, type ClusterParts, type TokenBroker,
} from '../../src/broker/index.js';
import { buildApi } from '../../src/api/index.js';
import { createMetrics } from '../../src/metrics.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/store/types.js';
import type { CreatedToken, Token, TokenInput } from '../../src/tokens/types.js';

export interface TestServer {
  store: TokenStore;
  nodeId: string;
  broker: TokenBroker;
  limiter: AuthLimiter;
  ports: { mqtt: number; ws: number; http: number; mqtts?: number; wss?: number };
  mqttUrl: string;
  wsUrl: string;
  /** With `tls`: the secure WebSocket URL. */
  wssUrl?: string;
  httpUrl: string;
  /** Creates one token directly in the store. */
  token(input?: TokenInput): Promise<CreatedToken>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** 'redis' uses process.env.REDIS_URL with a fresh prefix. */
  store?: 'memory' | 'redis' | TokenStore;
  authFailLimit?: number;
  authFailWindow?: number;
  proxyProtocol?: boolean;
  trustProxy?: BlockList;
  /** Time a trusted peer has to complete its PROXY header (listener default when unset). */
  proxyHeaderTimeoutMs?: number;
  logLevel?: string;
  maxPacketSize?: number;
  /** A logger of the caller's (e.g. writing to a capture stream); overrides logLevel. */
  log?: Logger;
  /** false: no metrics, `/metrics` answers 404 (METRICS=false). */
  metrics?: boolean;
  /** REST key → token cache lifetime, ms (buildApi's default when unset; 0 disables). */
  tokenCacheMs?: number;
  /**
   * Cluster mode as main.ts wires it (mqemitter-redis, aedes-persistence-redis,
   * the Redis session directory) on the store's Redis and prefix. Needs a RedisStore.
   */
  cluster?: boolean;
  /** Aedes heartbeat (ms); its will sweeper runs every 4 heartbeats. */
  heartbeatInterval?: number;
  /** TCP_NODELAY on the MQTT listeners (default off). */
  tcpNoDelay?: boolean;
  /** Send buffer cap per WebSocket client, bytes (default WS_SEND_BUFFER_CAP). */
  wsSendBufferCap?: number;
  /** PEM cert and key: MQTTS and WSS listeners too, on ephemeral ports. */
  tls?: { cert: Buffer; key: Buffer };
  /** Serve the console at `GET /` (SPEC §9); `wsUrl` stands for CONSOLE_WS_URL. */
  console?: boolean | { wsUrl?: string };
}

export function uniquePrefix(): string {
  return `test:${randomBytes(6).toString('hex')}:`;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const log = opts.log ?? pino({ level: opts.logLevel ?? process.env.TEST_LOG_LEVEL ?? 'silent' });
  let store: TokenStore;
  if (opts.store === 'redis') {
    const url = process.env.REDIS_URL;
    if (!url) throw new Error('REDIS_URL is not set (jest global setup starts redis-server)');
    const { RedisStore } = await import('../../src/store/redis-store.js');
    store = new RedisStore({ url, prefix: uniquePrefix(), logger: log });
  } else if (opts.store && typeof opts.store === 'object') {
    store = opts.store;
  } else {
    store = new MemoryStore();
  }
  const limiter = new AuthLimiter(opts.authFailLimit ?? 0, opts.authFailWindow ?? 10);
  const nodeId = `test-${randomBytes(3).toString('hex')}`;
  let cluster: ClusterParts | undefined;
  let directory: Parameters<typeof createTokenBroker>[0]['directory'];
  if (opts.cluster) {
    const redisUrl = process.env.REDIS_URL;
    const prefix = (store as { prefix?: unknown }).prefix;
    if (!redisUrl || typeof prefix !== 'string') throw new Error('cluster: true needs a RedisStore and REDIS_URL');
    cluster = createClusterParts({ redisUrl, prefix, log });
    directory = (registry, localKick) => new RedisSessionDirectory({ redisUrl, prefix, nodeId, registry, localKick, log });
  }
  const broker = await createTokenBroker({
    store, log, limiter, nodeId, maxPacketSize: opts.maxPacketSize,
    mq: cluster?.mq, persistence: cluster?.persistence, directory, heartbeatInterval: opts.heartbeatInterval,
  });
  const ports = await broker.listen({
    host: '127.0.0.1', mqttPort: 0, wsPort: 0, proxyProtocol: opts.proxyProtocol ?? false, trustProxy: opts.trustProxy,
    proxyHeaderTimeoutMs: opts.proxyHeaderTimeoutMs,
    tcpNoDelay: opts.tcpNoDelay, wsSendBufferCap: opts.wsSendBufferCap,
    tls: opts.tls ? { ...opts.tls, mqttsPort: 0, wssPort: 0 } : undefined,
  });
  const api = await buildApi({
    store, broker, limiter, log, trustProxy: opts.trustProxy,
    metrics: opts.metrics === false ? undefined : createMetrics({ broker, store }),
    tokenCacheMs: opts.tokenCacheMs,
    console: opts.console ? { wsPort: ports.ws, ...(typeof opts.console === 'object' ? opts.console : {}) } : undefined,
  });
  await api.listen({ port: 0, host: '127.0.0.1' });
  const http = (api.server.address() as { port: number }).port;
  return {
    store,
    nodeId,
    broker,
    limiter,
    ports: { ...ports, http },
    mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
    wsUrl: `ws://127.0.0.1:${ports.ws}/mqtt`,
    wssUrl: ports.wss ? `wss://127.0.0.1:${ports.wss}/mqtt` : undefined,
    httpUrl: `http://127.0.0.1:${http}`,
    async token(input = { ttl: 3600 }) {
      const [created] = await store.create([{ ttl: 3600, ...input }], Math.floor(Date.now() / 1000));
      return created!;
    },
    async close() {
      await api.close();
      await broker.close();
      await cluster?.close();
      await store.close();
    },
  };
}

/**
 * Every stored token without `accessed`: authenticated REST requests move it
 * through a batched touch that may land at any moment, so tests asserting that
 * a refused request changed nothing compare the rest.
 */
export async function storedTokens(store: TokenStore, ids: number[] | 'all' = 'all'): Promise<Omit<Token, 'accessed'>[]> {
  return (await store.get(ids)).map(({ accessed: _accessed, ...rest }) => rest);
}
