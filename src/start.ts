// The one composition of a tokenmq node: store, access gate, broker (cluster
// parts included), REST API and metrics. main.ts (config, signals, banner),
// the test helpers and the benches all start a node through here, so that what
// is tested is what runs.
import { readFileSync } from 'node:fs';
import type { BlockList } from 'node:net';
import type { Logger } from 'pino';
import { cidrBlockList, loadConfig, type Config } from './config.js';
import { StoreUnavailableError, createStore, ensureMasterToken } from './store/index.js';
import type { TokenStore } from './store/types.js';
import { AuthLimiter } from './access/auth-limiter.js';
import { AccessGate } from './access/gate.js';
import type { ApiPorts } from './access/ports.js';
import { TouchBatcher } from './access/touch-batcher.js';
import { RedisSessionDirectory, createClusterParts, createTokenBroker, type ClusterParts, type TokenBroker } from './broker/index.js';
import { buildApi } from './api/index.js';
import { createMetrics } from './metrics.js';
import type { BrokerLog } from './events/types.js';
import { MemoryLog } from './events/memory-log.js';
import { RedisLog } from './events/redis-log.js';

type BootResult = Awaited<ReturnType<typeof ensureMasterToken>>;

export interface StartOptions {
  config: Config;
  log: Logger;
  /** An existing store (tests); default: the one `config.redisUrl` names (memory when empty). */
  store?: TokenStore;
  /** Close the store with the node (default true; false when the caller reuses it). */
  closeStore?: boolean;
  /** SPEC §6 cluster mode (mqemitter-redis, aedes-persistence-redis, Redis session directory). Default: `config.redisUrl` set. */
  cluster?: boolean;
  /** Create the first master token (SPEC §1), waiting for the store. main.ts: true. */
  bootstrap?: boolean;
  /** Default true; false: broker only (benches). */
  api?: boolean;
  /** PEM cert and key given directly (tests); default: read from `config.tlsCert`/`tlsKey`. */
  tls?: { cert: Buffer; key: Buffer };
  /** Default: `cidrBlockList(config.trustProxy)`. */
  trustProxy?: BlockList;
  heartbeatInterval?: number;
  proxyHeaderTimeoutMs?: number;
  wsSendBufferCap?: number;
  tokenCacheMs?: number;
  /** Records the Redis log keeps while Redis is away (RedisLog's default when unset). */
  logBufferLimit?: number;
  /** False: SPEC §8 events and the broker log off (bench: their cost). Default true. */
  events?: boolean;
  /** A broker log of the caller's (bench), left open at close; default: made from the config. */
  brokerLog?: BrokerLog;
  /** The console at `GET /` (SPEC §9), default on with `config.consoleWsUrl`; false: none. */
  console?: false | { wsUrl?: string };
}

export interface TokenmqNode {
  store: TokenStore;
  gate: AccessGate;
  limiter: AuthLimiter;
  broker: TokenBroker;
  /** SPEC §8 broker log: a memory ring, or the Redis stream the nodes share. */
  brokerLog: BrokerLog;
  /** What the REST API was given (access/ports.ts). */
  apiPorts: ApiPorts;
  ports: { mqtt: number; ws: number; mqtts?: number; wss?: number; http?: number };
  /** Set with `bootstrap`. */
  boot?: BootResult;
  /** API, broker (flushes `accessed`), cluster parts, store: in that order (SPEC §1 shutdown). */
  close(): Promise<void>;
}

/** Start-up waits for Redis instead of failing (SPEC §7: recovers by itself). */
async function untilStoreAnswers<T>(log: Logger, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      if (attempt === 1 || attempt % 30 === 0) log.warn({ attempt, err: err.message }, `${what}: token store unavailable, retrying every second`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/** The defaults file's settings on loopback ephemeral ports, no guard, with `overrides` (benches, tools). */
export function localConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({}),
    host: '127.0.0.1', mqttPort: 0, wsPort: 0, httpPort: 0, mqttsPort: 0, wssPort: 0, authFailLimit: 0, ...overrides,
  };
}

export async function startTokenmq(opts: StartOptions): Promise<TokenmqNode> {
  const { config, log } = opts;
  const store = opts.store
    ?? createStore({ redisUrl: config.redisUrl || undefined, prefix: config.redisPrefix, logger: log.child({ module: 'store' }) });
  let boot: BootResult | undefined;
  if (opts.bootstrap) {
    boot = await untilStoreAnswers(log, 'master token bootstrap',
      () => ensureMasterToken(store, { masterKey: config.masterToken || undefined, now: Math.floor(Date.now() / 1000) }));
    if (boot.warning) log.warn(boot.warning);
    if (boot.created) log.info({ tokenId: boot.id, fromEnv: Boolean(config.masterToken) }, 'master token created');
  }

  const brokerLog = log.child({ module: 'broker' });
  let storeErrors = (): void => {};
  const touch = new TouchBatcher(store, {
    onStoreError: () => storeErrors(),
    onError: (err, what) => brokerLog.warn({ err }, what),
  });
  const limiter = new AuthLimiter(config.authFailLimit, config.authFailWindow);
  const gate = new AccessGate({ limiter, touch, onStoreError: () => storeErrors(), ancestors: store });

  // SPEC §6: with Redis, every process is a node of one broker.
  const clustered = opts.cluster ?? Boolean(config.redisUrl);
  let cluster: ClusterParts | undefined;
  if (clustered) {
    if (!config.redisUrl) throw new Error('cluster mode needs a Redis URL');
    cluster = createClusterParts({ redisUrl: config.redisUrl, prefix: config.redisPrefix, log: brokerLog });
  }
  const redisUrl = config.redisUrl;
  // SPEC §8: the broker log, shared by the nodes through Redis.
  const eventLog: BrokerLog = opts.brokerLog ?? (redisUrl
    ? new RedisLog({ redisUrl, prefix: config.redisPrefix, retention: config.logRetention, log: brokerLog, bufferLimit: opts.logBufferLimit })
    : new MemoryLog(config.logRetention));
  const broker = await createTokenBroker({
    store,
    log: brokerLog,
    gate,
    brokerLog: eventLog,
    events: opts.events,
    nodeId: config.nodeId,
    maxPacketSize: config.maxPacketSize,
    heartbeatInterval: opts.heartbeatInterval,
    mq: cluster?.mq,
    persistence: cluster?.persistence,
    probeKeys: cluster?.probeKeys,
    directory: cluster
      ? (registry, localKick) => new RedisSessionDirectory({
        redisUrl, prefix: config.redisPrefix, nodeId: config.nodeId, registry, localKick, log: brokerLog,
      })
      : undefined,
  });
  storeErrors = () => { broker.stats.storeErrors++; };
  touch.start();

  const trustProxy = opts.trustProxy ?? (config.trustProxy.length ? cidrBlockList(config.trustProxy) : undefined);
  const pem = opts.tls ?? (config.tlsCert && config.tlsKey ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) } : undefined);
  const listening = await broker.listen({
    host: config.host, mqttPort: config.mqttPort, wsPort: config.wsPort,
    tls: pem ? { ...pem, mqttsPort: config.mqttsPort, wssPort: config.wssPort } : undefined,
    proxyProtocol: config.proxyProtocol, trustProxy, proxyHeaderTimeoutMs: opts.proxyHeaderTimeoutMs,
    tcpNoDelay: config.tcpNoDelay, wsSendBufferCap: opts.wsSendBufferCap,
  });
  const apiPorts: ApiPorts = {
    sessions: broker.sessions,
    health: broker.health,
    publish: broker.publisher,
    retained: broker.retained,
    subscriptions: broker.subscriptions,
    metrics: config.metrics ? createMetrics({ broker, store, brokerLog: eventLog }) : undefined,
  };
  const api = opts.api === false ? undefined : await buildApi({
    store, gate, ports: apiPorts, log: log.child({ module: 'api' }), trustProxy, tokenCacheMs: opts.tokenCacheMs,
    brokerLog: eventLog, events: broker.events,
    console: opts.console === false ? undefined : { wsUrl: opts.console?.wsUrl ?? config.consoleWsUrl, wsPort: listening.ws },
  });
  let http: number | undefined;
  if (api) {
    await api.listen({ port: config.httpPort, host: config.host });
    http = (api.server.address() as { port: number }).port;
  }

  return {
    store, gate, limiter, broker, brokerLog: eventLog, apiPorts, boot,
    ports: { ...listening, ...(http !== undefined ? { http } : {}) },
    async close() {
      await api?.close();
      await broker.close();
      await touch.stop();
      // After the broker: its sessions' `disconnected` records are written too (best effort).
      if (!opts.brokerLog) await eventLog.close();
      await cluster?.close();
      if (opts.closeStore !== false) await store.close();
    },
  };
}
