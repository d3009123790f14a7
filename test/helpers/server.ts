// An in-process tokenmq (store + broker + REST API) on ephemeral loopback ports,
// composed by startTokenmq exactly as main.ts does, for integration tests.
import { randomBytes } from 'node:crypto';
import type { BlockList } from 'node:net';
import { pino, type Logger } from 'pino';
import type { TokenBroker } from '../../src/broker/index.js';
import type { AuthLimiter } from '../../src/access/auth-limiter.js';
import type { AccessGate } from '../../src/access/gate.js';
import type { Config } from '../../src/config.js';
import { startTokenmq } from '../../src/start.js';
import { within } from './wait.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/store/types.js';
import type { CreatedToken, Token, TokenInput } from '../../src/tokens/types.js';
import type { BrokerLog } from '../../src/events/types.js';

export interface TestServer {
  store: TokenStore;
  nodeId: string;
  broker: TokenBroker;
  gate: AccessGate;
  limiter: AuthLimiter;
  /** SPEC §8 broker log (memory ring, or the Redis stream with a Redis store). */
  brokerLog: BrokerLog;
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
  /** LOG_RETENTION (default 100,000). */
  logRetention?: number;
  /** Records the Redis log holds while Redis is away (RedisLog default when unset). */
  logBufferLimit?: number;
  /** false: events and the log off (bench). */
  events?: boolean;
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
  const nodeId = `test-${randomBytes(3).toString('hex')}`;
  // A Redis store (ours or the caller's): its Redis and prefix, for the cluster parts and the
  // broker log's shared stream (SPEC §8), as main.ts wires them; `cluster` is passed on its own.
  let redisUrl = '';
  let redisPrefix = '';
  const prefix = (store as { prefix?: unknown }).prefix;
  if (typeof prefix === 'string' && process.env.REDIS_URL) {
    redisUrl = process.env.REDIS_URL;
    redisPrefix = prefix;
  } else if (opts.cluster) {
    throw new Error('cluster: true needs a RedisStore and REDIS_URL');
  }
  const config: Config = {
    host: '127.0.0.1', mqttPort: 0, wsPort: 0, httpPort: 0, mqttsPort: 0, wssPort: 0, tlsCert: '', tlsKey: '',
    redisUrl, redisPrefix, masterToken: '', trustProxy: [], proxyProtocol: opts.proxyProtocol ?? false,
    tcpNoDelay: opts.tcpNoDelay ?? false, authFailLimit: opts.authFailLimit ?? 0, authFailWindow: opts.authFailWindow ?? 10,
    maxPacketSize: opts.maxPacketSize ?? 1024 * 1024, logLevel: 'silent', metrics: opts.metrics !== false, nodeId,
    logRetention: opts.logRetention ?? 100_000, consoleWsUrl: '',
  };
  const node = await startTokenmq({
    config, log, store, cluster: Boolean(opts.cluster), tls: opts.tls, trustProxy: opts.trustProxy,
    heartbeatInterval: opts.heartbeatInterval, proxyHeaderTimeoutMs: opts.proxyHeaderTimeoutMs,
    wsSendBufferCap: opts.wsSendBufferCap, tokenCacheMs: opts.tokenCacheMs,
    logBufferLimit: opts.logBufferLimit, events: opts.events,
    console: opts.console ? (typeof opts.console === 'object' ? opts.console : {}) : false,
  });
  const { broker, ports } = node;
  const http = ports.http as number;
  return {
    store,
    nodeId,
    broker,
    gate: node.gate,
    limiter: node.limiter,
    ports: { mqtt: ports.mqtt, ws: ports.ws, mqtts: ports.mqtts, wss: ports.wss, http },
    brokerLog: node.brokerLog,
    mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
    wsUrl: `ws://127.0.0.1:${ports.ws}/mqtt`,
    wssUrl: ports.wss ? `wss://127.0.0.1:${ports.wss}/mqtt` : undefined,
    httpUrl: `http://127.0.0.1:${http}`,
    async token(input = { ttl: 3600 }) {
      const [created] = await store.create([{ ttl: 3600, ...input }], Math.floor(Date.now() / 1000));
      return created!;
    },
    close: () => node.close(),
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

/** A second node of `srv`'s cluster (SPEC §6): its own store connections and broker, same Redis and prefix. */
export async function secondNode(srv: TestServer): Promise<TestServer> {
  const log = pino({ level: 'silent' });
  const { RedisStore } = await import('../../src/store/redis-store.js');
  const prefix = (srv.store as { prefix?: unknown }).prefix;
  if (typeof prefix !== 'string' || !process.env.REDIS_URL) throw new Error('secondNode needs a node on a RedisStore');
  const store = new RedisStore({ url: process.env.REDIS_URL, prefix, logger: log });
  return startTestServer({ store, cluster: true, log });
}

/** Where a node-level guarantee must hold: in memory, on Redis with one node, on two cluster nodes. */
export const NODE_MODES = [
  ['in memory', async (): Promise<TestServer[]> => [await startTestServer()]],
  ['on Redis, one node', async (): Promise<TestServer[]> => [await startTestServer({ store: 'redis' })]],
  ['on two cluster nodes', async (): Promise<TestServer[]> => {
    const a = await startTestServer({ store: 'redis', cluster: true });
    return [a, await secondNode(a)];
  }],
] as const;

/** A store of its own (Redis: a fresh prefix), answering and with its change feed subscribed: for tests that wrap it. */
export async function openStore(kind: 'memory' | 'redis'): Promise<TokenStore> {
  if (kind === 'memory') return new MemoryStore();
  const { RedisStore } = await import('../../src/store/redis-store.js');
  const store = new RedisStore({ url: process.env.REDIS_URL!, prefix: uniquePrefix(), logger: pino({ level: 'silent' }), readyTimeoutMs: 5000 });
  await store.ping();
  await within(store.feedReady(), 5000, 'change feed subscription');
  return store;
}
