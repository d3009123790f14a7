// Composition root: the one place that reads configuration, creates the store,
// the broker and the REST API, and handles signals (SPEC §1).
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { ConfigError, cidrBlockList, loadConfig, type Config } from './config.js';
import { StoreUnavailableError, createStore, ensureMasterToken } from './store/index.js';
import { AuthLimiter, RedisSessionDirectory, createClusterParts, createTokenBroker, type ClusterParts } from './broker/index.js';
import { buildApi } from './api/index.js';
import { createMetrics } from './metrics.js';

const SHUTDOWN_LIMIT_MS = 10_000;

function createLogger(config: Config): Logger {
  return pino({
    level: config.logLevel,
    base: { node: config.nodeId },
    // A second fence: no code path logs a key, but if one ever does it is censored.
    redact: {
      paths: ['key', '*.key', 'token.key', 'password', 'username', 'req.headers.authorization', 'headers.authorization'],
      censor: '[redacted]',
    },
  });
}

function printMasterBanner(key: string, httpPort: number): void {
  const line = '='.repeat(78);
  process.stderr.write([
    line,
    ' tokenmq created the first master token. Its key is shown here ONCE and will not',
    ' be shown again (only its SHA-256 is stored). Keep it safe:',
    '',
    `   ${key}`,
    '',
    ' Use it as the MQTT username, or in REST calls:',
    `   curl -H 'Authorization: FlespiToken <key>' http://127.0.0.1:${httpPort}/platform/tokens/all`,
    ' Set MASTER_TOKEN to choose the key yourself instead.',
    line,
    '',
  ].join('\n'));
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

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tokenmq: configuration error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  if (!config.nodeId) config.nodeId = `node-${randomBytes(4).toString('hex')}`;
  const log = createLogger(config);

  const store = createStore({ redisUrl: config.redisUrl || undefined, prefix: config.redisPrefix, logger: log.child({ module: 'store' }) });
  // Until the full shutdown below is in place, a signal just ends the process.
  const early = (): void => process.exit(0);
  process.once('SIGTERM', early);
  process.once('SIGINT', early);
  const boot = await untilStoreAnswers(log, 'master token bootstrap',
    () => ensureMasterToken(store, { masterKey: config.masterToken || undefined, now: Math.floor(Date.now() / 1000) }));
  if (boot.warning) log.warn(boot.warning);
  if (boot.created) log.info({ tokenId: boot.id, fromEnv: Boolean(config.masterToken) }, 'master token created');

  const limiter = new AuthLimiter(config.authFailLimit, config.authFailWindow);
  const brokerLog = log.child({ module: 'broker' });
  // SPEC §6: with Redis, every process is a node of one broker.
  let cluster: ClusterParts | undefined;
  if (config.redisUrl) cluster = createClusterParts({ redisUrl: config.redisUrl, prefix: config.redisPrefix, log: brokerLog });
  const redisUrl = config.redisUrl;
  const broker = await createTokenBroker({
    store,
    log: brokerLog,
    limiter,
    nodeId: config.nodeId,
    maxPacketSize: config.maxPacketSize,
    mq: cluster?.mq,
    persistence: cluster?.persistence,
    directory: cluster
      ? (registry, localKick) => new RedisSessionDirectory({
        redisUrl, prefix: config.redisPrefix, nodeId: config.nodeId, registry, localKick, log: brokerLog,
      })
      : undefined,
  });
  const trustProxy = config.trustProxy.length ? cidrBlockList(config.trustProxy) : undefined;
  const tls = config.tlsCert && config.tlsKey
    ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey), mqttsPort: config.mqttsPort, wssPort: config.wssPort }
    : undefined;
  const ports = await broker.listen({
    host: config.host, mqttPort: config.mqttPort, wsPort: config.wsPort, tls, proxyProtocol: config.proxyProtocol, trustProxy,
    tcpNoDelay: config.tcpNoDelay,
  });
  const metrics = config.metrics ? createMetrics({ broker, store }) : undefined;
  const api = await buildApi({
    store, broker, limiter, log: log.child({ module: 'api' }), trustProxy, metrics,
    console: { wsUrl: config.consoleWsUrl, wsPort: ports.ws },
  });
  await api.listen({ port: config.httpPort, host: config.host });
  const httpPort = (api.server.address() as { port: number }).port;
  log.info({ ...ports, http: httpPort, store: config.redisUrl ? 'redis' : 'memory' }, 'listening');
  if (boot.created && boot.key && !config.masterToken) printMasterBanner(boot.key, httpPort);

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS).unref();
    (async () => {
      await api.close();
      await broker.close();
      await cluster?.close();
      await store.close();
    })().then(() => {
      log.info('stopped');
      process.exit(0);
    }, (err: unknown) => {
      log.error({ err }, 'error during shutdown');
      process.exit(1);
    });
  };
  process.off('SIGTERM', early);
  process.off('SIGINT', early);
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`tokenmq: fatal: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
