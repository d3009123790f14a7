// The process: reads configuration, starts a node (start.ts composes it),
// prints the first master key once, and handles signals (SPEC §1).
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { ConfigError, loadConfig, type Config } from './config.js';
import { startTokenmq } from './start.js';

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

  // Until the full shutdown below is in place, a signal just ends the process.
  const early = (): void => process.exit(0);
  process.once('SIGTERM', early);
  process.once('SIGINT', early);
  const node = await startTokenmq({ config, log, bootstrap: true });
  const { boot } = node;
  const httpPort = node.ports.http ?? config.httpPort;
  log.info({ ...node.ports, store: config.redisUrl ? 'redis' : 'memory' }, 'listening');
  if (boot?.created && boot.key && !config.masterToken) printMasterBanner(boot.key, httpPort);

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS).unref();
    node.close().then(() => {
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
