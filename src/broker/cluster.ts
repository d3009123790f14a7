// Cluster mode (SPEC §6): message fan-out through mqemitter-redis, sessions,
// retained messages and QoS state through aedes-persistence-redis. We build
// their Redis connections ourselves so that each has an error listener and a
// reconnect strategy (an unhandled `error` would kill the process) and so that
// the emitter stays on its own channels (channel-namespace.ts; see PITFALLS: a
// `#` subscriber would otherwise pattern-subscribe to every channel).
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { sweepableWills } from './will-sweep.js';
import { confineToNamespace, mqttChannelBase, type NamespacedEmitter } from './channel-namespace.js';
import { prefixPattern } from './redis-glob.js';
import { isUnsentLiveCopy } from './aedes-fixes.js';

const require = createRequire(import.meta.url);
// Both are CommonJS factories without ESM entry points.
const mqemitterRedis = require('mqemitter-redis') as (opts: Record<string, unknown>) => ClusterEmitter;
const AsyncRedisPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: Record<string, unknown>) => RetainedSource;

interface RetainedSource {
  createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown> | Readable;
  streamWill(brokers?: Record<string, unknown>): AsyncIterable<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: QueuedCopy): Promise<unknown>;
}

interface QueuedCopy {
  cmd?: string;
  messageId?: number | string;
  brokerId?: string | null;
  brokerCounter?: number | string;
}

/** Removes one client's entry of a queued packet (aedes-persistence-redis layout), and the packet with its last entry. */
const DROP_QUEUED = `
local removed = redis.call('LREM', KEYS[1], 0, ARGV[1])
if removed > 0 and redis.call('DECRBY', KEYS[3], removed) <= 0 then
  redis.call('DEL', KEYS[2], KEYS[3])
end
return removed`;

type DropQueued = (list: string, packet: string, count: string, entry: string) => Promise<number>;

/**
 * aedes-fixes.ts fix 7 for aedes-persistence-redis: a live copy of a queued
 * message that Aedes refused for a persistent session (authorizeForward) is to
 * be cleared from its queue, but the library clears by packet id, which the copy
 * has none of: it did nothing, and the session's queue kept every refused
 * message until its next CONNECT (a dashboard subscribed to `#` with an ACL
 * token queued the whole broker's traffic in Redis). The entry is removed by
 * what identifies it, as the library lays it out: the list
 * `outgoing:<client>` holds `packet:<broker>:<counter>`, counted down in
 * `packet:<broker>:<counter>:offlineCount` (asyncPersistence.js).
 */
function dropRefusedCopies(persistence: RetainedSource, conn: Redis): void {
  conn.defineCommand('tokenmqDropQueued', { numberOfKeys: 3, lua: DROP_QUEUED });
  const drop = (conn as unknown as { tokenmqDropQueued: DropQueued }).tokenmqDropQueued.bind(conn);
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingClearMessageId = async (client, packet) => {
    if (!isUnsentLiveCopy(packet)) return clear(client, packet);
    const entry = `packet:${String(packet.brokerId)}:${String(packet.brokerCounter)}`;
    await drop(`outgoing:${encodeURIComponent(client.id)}`, entry, `${entry}:offlineCount`, entry);
    return undefined;
  };
}

interface ClusterEmitter extends NamespacedEmitter {
  state: { on(event: 'error', listener: (err: Error) => void): void };
  close(cb: () => void): void;
  /** mqemitter's own close, which mqemitter-redis calls once its connections have ended. */
  _close(cb: () => void): void;
  closing?: boolean;
}

export interface ClusterParts {
  mq: ClusterEmitter;
  persistence: unknown;
  /**
   * The persistence's keys of a client id's offline queue, stored subscriptions
   * and will stored by node `brokerId` (aedes-persistence-redis' layout, under our
   * prefix), in that order: what a clean CONNECT probes (offline-queue.ts).
   */
  probeKeys(clientId: string, brokerId: string): string[];
  /** Closes what the broker does not close itself (the persistence connection). */
  close(): Promise<void>;
}

function connection(url: string, log: Logger, role: string, extra: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    // Keep retrying while Redis is away; the broker goes on with what it was last told (SPEC §7).
    retryStrategy: (times) => Math.min(times * 200, 2000),
    maxRetriesPerRequest: null,
    ...extra,
  });
  let down = false;
  redis.on('error', (err) => {
    if (!down) log.warn({ role, err: err.message }, 'redis connection error');
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info({ role }, 'redis connection restored');
    down = false;
  });
  return redis;
}

/**
 * Emitter subscriber connection whose message events carry only this
 * deployment's MQTT channels (under `base`, see channel-namespace.ts) and never
 * throw: mqemitter-redis decodes every message it is handed, and a throw inside
 * an ioredis event handler would kill the process. Only a Redis client writing
 * into our namespace by hand can send something undecodable; no MQTT PUBLISH can.
 */
function guardedSubscriber(url: string, base: string, log: Logger): Redis {
  const sub = connection(url, log, 'mq-sub');
  const baseBytes = Buffer.from(base);
  const ours = (channel: unknown): boolean => Buffer.isBuffer(channel)
    && channel.length >= baseBytes.length
    && baseBytes.compare(channel, 0, baseBytes.length) === 0;
  const emit = sub.emit.bind(sub);
  sub.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event === 'pmessageBuffer' || event === 'messageBuffer') {
      const channel = event === 'pmessageBuffer' ? args[1] : args[0];
      if (!ours(channel)) return false;
      try {
        return emit(event, ...args);
      } catch (err) {
        log.warn({ channel: String(channel).slice(0, 200), err: (err as Error).message }, 'ignored an undecodable message on the MQTT channels');
        return false;
      }
    }
    return emit(event, ...args);
  }) as Redis['emit'];
  return sub;
}

/**
 * aedes-persistence-redis 11 finds the retained messages of wildcard filters
 * with `HSCAN retained MATCH <common prefix of the filters>*`, the prefix taken
 * raw: `r[1]/+` scans `r[1]*` (the class `[1]`, so `r1/...` only) and misses
 * `r[1]/b`; `r\b/#` misses `r\b`. Its HSCAN is the only caller of
 * hscanBufferStream on this connection, and its MATCH always ends with the one
 * `*` it appends: take what precedes it literally (SPEC §6: every topic is legal).
 */
function literalRetainedScan(conn: Redis): void {
  const scan = conn.hscanBufferStream.bind(conn);
  conn.hscanBufferStream = ((key: string, options: { match?: unknown } = {}) => {
    const { match } = options;
    const literal = typeof match === 'string' && match.endsWith('*') ? prefixPattern(match.slice(0, -1)) : match;
    return scan(key, { ...options, match: literal } as Parameters<Redis['hscanBufferStream']>[1]);
  }) as Redis['hscanBufferStream'];
}

export interface ClusterOptions {
  redisUrl: string;
  prefix: string;
  log: Logger;
  /** Wildcards a node holds in individual Redis patterns (channel-namespace.ts); tests lower it. */
  patternBudget?: number;
}

export function createClusterParts(opts: ClusterOptions): ClusterParts {
  const { redisUrl, prefix, log } = opts;
  // SPEC §6: MQTT traffic in a namespace of its own, away from tokenmq's channels.
  const base = mqttChannelBase(prefix);
  const subConn = guardedSubscriber(redisUrl, base, log);
  const pubConn = connection(redisUrl, log, 'mq-pub', { enableAutoPipelining: true });
  const mq = mqemitterRedis({
    subConn,
    pubConn,
    matchEmptyLevels: true, // [MQTT-4.7.1-3], as Aedes' default emitter
  });
  confineToNamespace(mq, subConn, pubConn, base, {
    patternBudget: opts.patternBudget,
    onWide: (wide, wildcards) => log.info({ wildcards }, wide
      ? 'many wildcard filters on this node: it now takes all MQTT traffic from Redis with one pattern'
      : 'back to one Redis pattern per wildcard filter'),
  });
  // mqemitter-redis closes with QUIT and waits for both connections to end: with
  // Redis away that wait never ends and SIGTERM would miss its 10 s (SPEC §1).
  const closeEmitter = mq.close.bind(mq);
  mq.close = (cb: () => void): void => {
    if (subConn.status === 'ready' && pubConn.status === 'ready') return closeEmitter(cb);
    mq.closing = true;
    subConn.disconnect();
    pubConn.disconnect();
    mq._close(cb);
  };
  mq.state.on('error', (err) => log.debug({ err: err.message }, 'mqemitter-redis error'));
  // Persistence keys live under our prefix so that several deployments can share one Redis.
  const persistenceConn = connection(redisUrl, log, 'persistence', { keyPrefix: `${prefix}aedes:`, enableAutoPipelining: true }); // probeKeys below: the same prefix
  literalRetainedScan(persistenceConn);
  const persistence = new AsyncRedisPersistence({ conn: persistenceConn });
  // aedes-persistence-redis 11 returns an async generator here, but Aedes 1.2 calls
  // `.pipe()` on it (a TypeError that kills the process on the first SUBSCRIBE).
  const retained = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.createRetainedStreamCombi = (patterns) => {
    const source = retained(patterns);
    return source instanceof Readable ? source : Readable.from(source);
  };
  // Aedes' will sweeper stops at the first will it cannot publish, every time (will-sweep.ts).
  persistence.streamWill = (brokers) => sweepableWills(persistenceConn, brokers, log);
  dropRefusedCopies(persistence, persistenceConn);
  const aedesPrefix = `${prefix}aedes:`;
  return {
    mq,
    persistence,
    probeKeys: (clientId, brokerId) => {
      const id = encodeURIComponent(clientId);
      return [`${aedesPrefix}outgoing:${id}`, `${aedesPrefix}client:${id}`, `${aedesPrefix}will:${brokerId}:${id}`];
    },
    async close() {
      persistenceConn.disconnect();
    },
  };
}
