// [MQTT-4.7.2-1], SPEC §4: a topic beginning with `$` is never delivered through
// a filter whose first level is `+` or `#`, for every token type and on every
// path. Aedes applies the rule to live delivery only (blockDollarSignTopics in
// lib/handlers/subscribe.js). Two paths ask the persistence instead, and both
// persistences match with plain qlobber:
//  - the retained messages sent on SUBSCRIBE (`createRetainedStreamCombi`), and
//  - the offline queue of persistent sessions (`subscriptionsByTopic` →
//    `outgoingEnqueueCombi`; Aedes drops wildcard subscriptions for `$SYS/` only),
//    which also holds QoS 1/2 messages for online persistent sessions and hands
//    them out on their next CONNECT.
// authorizeForward cannot help: it is not told which subscription matched. So
// the rule is applied where the matching happens, around the persistence, for
// aedes-persistence (memory) and aedes-persistence-redis alike.
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { matches } from '../tokens/index.js';

const DOLLAR = 0x24;
const PLUS = 0x2b;
const HASH = 0x23;

interface TopicPacket {
  topic: string;
}

interface StoredSubscription {
  clientId: string;
  topic: string;
}

type RetainedSource = Readable | AsyncIterable<TopicPacket>;

/** The persistence methods the guard wraps (both persistences have them; Aedes 1.2 calls them without callbacks). */
export interface GuardablePersistence {
  createRetainedStreamCombi(patterns: string[]): RetainedSource;
  createRetainedStream(pattern: string): RetainedSource;
  subscriptionsByTopic(topic: string): Promise<StoredSubscription[]>;
}

/** A filter whose first level is `+` or `#`: it never matches a `$` topic [MQTT-4.7.2-1]. */
function isWide(filter: string): boolean {
  const c = filter.charCodeAt(0);
  return c === PLUS || c === HASH;
}

function isNarrow(filter: string): boolean {
  return !isWide(filter);
}

function isDollar(topic: string): boolean {
  return topic.charCodeAt(0) === DOLLAR;
}

function notWide(sub: StoredSubscription): boolean {
  return !isWide(sub.topic);
}

/**
 * The retained packets of `source` (matched against `patterns` by the
 * persistence) less the `$` topics that only a wide pattern matched. A `$`
 * topic goes out once even if several patterns match it (the memory
 * persistence yields a packet once per matching pattern, the Redis one once);
 * other topics pass as the persistence gives them.
 */
async function* withoutWideDollar(source: RetainedSource, narrow: readonly string[]): AsyncGenerator<TopicPacket> {
  const sent = new Set<string>();
  for await (const packet of source as AsyncIterable<TopicPacket>) {
    const topic = packet.topic;
    if (isDollar(topic)) {
      if (sent.has(topic) || !narrow.some((filter) => matches(filter, topic))) continue;
      sent.add(topic);
    }
    yield packet;
  }
}

function guardRetained(source: RetainedSource, patterns: readonly string[]): Readable {
  return Readable.from(withoutWideDollar(source, patterns.filter(isNarrow)));
}

/**
 * Applies [MQTT-4.7.2-1] to the persistence's retained and offline paths, in
 * place (the persistences keep state in private fields, so their methods stay
 * bound to them), and returns it. Topics without `$` and `$` topics under a
 * filter naming their `$` level pass unchanged.
 */
export function guardDollarTopics<P extends GuardablePersistence>(persistence: P): P {
  const combi = persistence.createRetainedStreamCombi.bind(persistence);
  const single = persistence.createRetainedStream.bind(persistence);
  const byTopic = persistence.subscriptionsByTopic.bind(persistence);
  persistence.createRetainedStreamCombi = (patterns) => guardRetained(combi(patterns), patterns);
  persistence.createRetainedStream = (pattern) => guardRetained(single(pattern), [pattern]);
  persistence.subscriptionsByTopic = (topic) => {
    const subs = byTopic(topic);
    // Per PUBLISH at QoS > 0: topics without `$` take the persistence's promise as is.
    return isDollar(topic) ? subs.then((found) => found.filter(notWide)) : subs;
  };
  return persistence;
}

const require = createRequire(import.meta.url);

/**
 * Aedes' default persistence (what `Aedes.createBroker` builds when given
 * none: aedes-persistence's in-memory one), built here so that it can be guarded.
 */
export function createMemoryPersistence(): GuardablePersistence {
  const memory = require('aedes-persistence') as () => GuardablePersistence;
  return memory();
}
