// The brokers the issue 9 benches compare, each started in the process that
// calls this (benches fork one child per broker). Bare Aedes exactly as
// shipped: `net.createServer(aedes.handle)`, nothing tuned; in Redis mode with
// aedes-persistence-redis and mqemitter-redis configured as their READMEs say.
// tokenmq as main.ts wires it (memory store, or Redis store + cluster parts +
// the Redis session directory), listening on loopback.
import { Aedes } from 'aedes';
import { createRequire } from 'node:module';
import { Socket, createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { TokenBroker } from '../src/broker/index.js';
import { localConfig, startTokenmq } from '../src/start.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { RedisStore } from '../src/store/redis-store.js';
import type { TokenStore } from '../src/store/types.js';
import type { AclEntry, TokenInput } from '../src/tokens/types.js';

const require = createRequire(import.meta.url);

/** Ten entries: what a device fleet's token typically grants. */
export function benchAcl(): AclEntry[] {
  return [
    { uri: 'mqtt', topic: 'devices/${clientid}/#', actions: ['publish', 'subscribe'] },
    { uri: 'mqtt', topic: 'commands/${clientid}/+', actions: ['subscribe'] },
    { uri: 'mqtt', topic: 'fleet/${token_id}/status', actions: ['publish'] },
    { uri: 'mqtt', topic: 'broadcast/#', actions: ['subscribe'] },
    { uri: 'mqtt', topic: 'firmware/+/manifest', actions: ['subscribe'] },
    { uri: 'mqtt', topic: 'telemetry/site/+/temperature', actions: ['publish'] },
    { uri: 'mqtt', topic: 'telemetry/site/+/humidity', actions: ['publish'] },
    { uri: 'mqtt', topic: 'alerts/+/raised', actions: ['publish', 'subscribe'] },
    { uri: 'mqtt', topic: 'config/global', actions: ['subscribe'] },
    { uri: 'mqtt', topic: 'time/sync', actions: ['subscribe'] },
  ];
}

/** `bare_mq`: bare Aedes with mqemitter-redis only (a cluster of bare nodes, persistence in memory). */
export type BrokerKind = 'bare' | 'bare_redis' | 'bare_mq' | 'tokenmq' | 'tokenmq_redis';

export interface StartedBroker {
  port: number;
  /** Live sessions (tokenmq) or clients (Aedes) on this broker. */
  sessions(): number;
  /** tokenmq only. */
  tokenmq?: TokenBroker;
  store?: TokenStore;
  /** Whether the broker turned Nagle off on its MQTT sockets (bare Aedes never does). */
  noDelay(): boolean;
  close(): Promise<void>;
}

export interface BrokerOptions {
  redisUrl?: string;
  /** Tokens to create (tokenmq), their keys returned by `start`. */
  tokens?: TokenInput[];
  nodeId?: string;
  /** Redis key prefix shared by the tokenmq nodes of one run (cluster bench). */
  prefix?: string;
}

let sawNoDelay = false;
/** Records whether anything in this process sets TCP_NODELAY (the bench child hosts one broker). */
function watchNoDelay(): void {
  const original = Socket.prototype.setNoDelay;
  Socket.prototype.setNoDelay = function setNoDelay(this: Socket, noDelay?: boolean) {
    // Accepted sockets only (they have a server): ioredis sets it on its own connections.
    if (noDelay !== false && (this as Socket & { server?: unknown }).server) sawNoDelay = true;
    return original.call(this, noDelay);
  };
}

const sent = new Map<string, number>();
let counting = false;

/**
 * Counts the commands this process sends to Redis, by name, whichever of the
 * installed ioredis copies sends them (tokenmq's, aedes-persistence-redis's and
 * mqemitter-redis's own). INFO commandstats on the server also counts what Lua
 * scripts run inside one EVALSHA; this counts round trips' worth of commands.
 */
function countSentCommands(): void {
  if (counting) return;
  counting = true;
  const copies = [require('ioredis')];
  for (const owner of ['aedes-persistence-redis', 'mqemitter-redis']) {
    try {
      copies.push(createRequire(require.resolve(owner))('ioredis'));
    } catch {
      // not installed separately
    }
  }
  for (const copy of copies) {
    const proto = (copy.Redis ?? copy.default ?? copy).prototype as { sendCommand(command: { name: string }, ...rest: unknown[]): unknown; counted?: boolean };
    if (proto.counted) continue;
    proto.counted = true;
    const original = proto.sendCommand;
    proto.sendCommand = function sendCommand(this: unknown, command: { name: string }, ...rest: unknown[]) {
      sent.set(command.name, (sent.get(command.name) ?? 0) + 1);
      return original.call(this, command, ...rest);
    };
  }
}

/** Commands sent to Redis so far by this process (see countSentCommands). */
export function sentCommands(): Map<string, number> {
  return new Map(sent);
}

function redisHostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

export async function startBroker(kind: BrokerKind, opts: BrokerOptions = {}): Promise<{ broker: StartedBroker; keys: string[] }> {
  watchNoDelay();
  countSentCommands();
  if (kind === 'bare' || kind === 'bare_redis' || kind === 'bare_mq') {
    let aedesOpts = {};
    const closers: (() => void)[] = [];
    if (kind !== 'bare') {
      if (!opts.redisUrl) throw new Error(`${kind} needs a Redis URL`);
      const mq = require('mqemitter-redis')({ connectionString: opts.redisUrl });
      const persistence = kind === 'bare_redis' ? require('aedes-persistence-redis')(redisHostPort(opts.redisUrl)) : undefined;
      aedesOpts = { mq, persistence };
      closers.push(() => { mq.close(() => {}); });
    }
    const aedes = await Aedes.createBroker(aedesOpts);
    const server = createServer(aedes.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      keys: (opts.tokens ?? []).map(() => 'anything'),
      broker: {
        port: (server.address() as AddressInfo).port,
        sessions: () => Object.keys((aedes as unknown as { clients: object }).clients).length,
        noDelay: () => sawNoDelay,
        async close() {
          server.close();
          await new Promise<void>((resolve) => aedes.close(() => resolve()));
          for (const c of closers) c();
        },
      },
    };
  }
  const log = pino({ level: 'silent' });
  const nodeId = opts.nodeId ?? `bench-${randomBytes(3).toString('hex')}`;
  let store: TokenStore;
  let redisUrl = '';
  let prefix = '';
  if (kind === 'tokenmq_redis') {
    if (!opts.redisUrl) throw new Error('tokenmq_redis needs a Redis URL');
    redisUrl = opts.redisUrl;
    prefix = opts.prefix ?? `bench${randomBytes(3).toString('hex')}:`;
    store = new RedisStore({ url: redisUrl, prefix, logger: log, readyTimeoutMs: 5000 });
  } else {
    store = new MemoryStore();
  }
  const keys: string[] = [];
  const tokens = opts.tokens ?? [];
  for (let i = 0; i < tokens.length; i += 1000) {
    const created = await store.create(tokens.slice(i, i + 1000), Math.floor(Date.now() / 1000));
    for (const t of created) keys.push(t.key);
  }
  // Cluster mode when on Redis, as main.ts runs it.
  const node = await startTokenmq({
    config: localConfig({ nodeId, redisUrl, redisPrefix: prefix }), log, store, cluster: redisUrl !== '', api: false,
    // BENCH_EVENTS=off: SPEC §8 events and the broker log off, to see what they cost.
    events: process.env.BENCH_EVENTS !== 'off',
  });
  const { broker, ports } = node;
  return {
    keys,
    broker: {
      port: ports.mqtt,
      sessions: () => broker.registry.size,
      tokenmq: broker,
      store,
      noDelay: () => sawNoDelay,
      close: () => node.close(),
    },
  };
}
