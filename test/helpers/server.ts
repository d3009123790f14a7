// An in-process tokenmq (store + broker + REST API) on ephemeral loopback ports,
// as main.ts wires it, for integration tests.
import { randomBytes } from 'node:crypto';
import type { BlockList } from 'node:net';
import { pino, type Logger } from 'pino';
import { AuthLimiter, createTokenBroker, type TokenBroker } from '../../src/broker/index.js';
import { buildApi } from '../../src/api/index.js';
import { createMetrics } from '../../src/metrics.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/store/types.js';
import type { CreatedToken, TokenInput } from '../../src/tokens/types.js';

export interface TestServer {
  store: TokenStore;
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
  logLevel?: string;
  maxPacketSize?: number;
  /** A logger of the caller's (e.g. writing to a capture stream); overrides logLevel. */
  log?: Logger;
  /** false: no metrics, `/metrics` answers 404 (METRICS=false). */
  metrics?: boolean;
  /** REST key → token cache lifetime, ms (buildApi's default when unset; 0 disables). */
  tokenCacheMs?: number;
  /** TCP_NODELAY on the MQTT listeners (default off). */
  tcpNoDelay?: boolean;
  /** Send buffer cap per WebSocket client, bytes (default WS_SEND_BUFFER_CAP). */
  wsSendBufferCap?: number;
  /** PEM cert and key: MQTTS and WSS listeners too, on ephemeral ports. */
  tls?: { cert: Buffer; key: Buffer };
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
  const broker = await createTokenBroker({
    store, log, limiter, nodeId: `test-${randomBytes(3).toString('hex')}`, maxPacketSize: opts.maxPacketSize,
  });
  const ports = await broker.listen({
    host: '127.0.0.1', mqttPort: 0, wsPort: 0, proxyProtocol: opts.proxyProtocol ?? false, trustProxy: opts.trustProxy,
    tcpNoDelay: opts.tcpNoDelay, wsSendBufferCap: opts.wsSendBufferCap,
    tls: opts.tls ? { ...opts.tls, mqttsPort: 0, wssPort: 0 } : undefined,
  });
  const api = await buildApi({
    store, broker, limiter, log, trustProxy: opts.trustProxy,
    metrics: opts.metrics === false ? undefined : createMetrics({ broker, store }),
    tokenCacheMs: opts.tokenCacheMs,
  });
  await api.listen({ port: 0, host: '127.0.0.1' });
  const http = (api.server.address() as { port: number }).port;
  return {
    store,
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
      await store.close();
    },
  };
}
