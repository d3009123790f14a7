// The wills that Aedes' sweeper publishes for dead nodes (SPEC §4, §6), read
// from aedes-persistence-redis's layout: a list `will` of keys
// `will:<brokerId>:<clientId>`, each holding a msgpack'd packet.
//
// Aedes publishes them in batches under one Promise.all and gives up the whole
// sweep on the first failure, to retry every interval: one stored will that
// cannot be published (an entry that does not decode, a topic Aedes refuses)
// would block every will behind it, forever. The library's own stream also
// throws on an undecodable entry. This one yields only wills that can go out
// and removes the others, logged.
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { topicError } from '../tokens/index.js';

const require = createRequire(import.meta.url);
// The codec aedes-persistence-redis writes with, resolved from that package (not a dependency of ours).
const msgpack = createRequire(require.resolve('aedes-persistence-redis'))('msgpack-lite') as { decode(buf: Buffer): unknown };

/** aedes-persistence-redis's names (asyncPersistence.js WILLSKEY, maxWills). */
const WILLS_KEY = 'will';
const MAX_WILLS = 10_000;
/** Aedes' default maxTopicLevels: publish() refuses a deeper topic. */
const MAX_TOPIC_LEVELS = 100;

export interface StoredWill {
  topic: string;
  payload: Buffer;
  clientId: string;
  brokerId: string;
}

/** Why a stored will cannot be published, or null when it can. */
export function willProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'does not decode to a packet';
  const will = value as Partial<Record<keyof StoredWill, unknown>>;
  if (typeof will.clientId !== 'string' || typeof will.brokerId !== 'string') return 'carries no client or broker id';
  if (typeof will.topic !== 'string') return 'has no topic';
  const bad = topicError(will.topic);
  if (bad !== null) return `topic ${bad}`;
  if (will.topic.split('/').length > MAX_TOPIC_LEVELS) return `topic has more than ${MAX_TOPIC_LEVELS} levels`;
  if (will.payload !== undefined && !Buffer.isBuffer(will.payload) && typeof will.payload !== 'string') return 'has a payload that is not bytes';
  return null;
}

/**
 * `streamWill(brokers)` for Aedes: the stored wills of nodes not in `brokers`
 * (the live ones), publishable ones only. `db` is a connection with the
 * persistence's key prefix.
 */
export async function* sweepableWills(db: Redis, brokers: Record<string, unknown> | undefined, log: Logger): AsyncGenerator<StoredWill> {
  for (const key of await db.lrange(WILLS_KEY, 0, MAX_WILLS)) {
    const brokerId = key.split(':')[1] ?? '';
    if (brokers?.[brokerId]) continue; // a live node's own will
    const raw = await db.getBuffer(key);
    if (raw === null) {
      // Listed but gone (deleted meanwhile): what the library does too.
      await db.lrem(WILLS_KEY, 0, key);
      continue;
    }
    let will: unknown;
    try {
      will = msgpack.decode(raw);
    } catch {
      will = undefined;
    }
    const problem = willProblem(will);
    if (problem === null) {
      yield will as StoredWill;
      continue;
    }
    log.warn({ entry: key, reason: problem }, 'dropped a stored will that cannot be published');
    await db.multi().lrem(WILLS_KEY, 0, key).del(key).exec();
  }
}
