// MQTT traffic on Redis pub/sub in a namespace of its own (SPEC §6).
//
// mqemitter-redis publishes each message on a channel named after its raw topic
// and turns a filter into a PSUBSCRIBE pattern by replacing `+` and `#` with `*`.
// So, left alone: a `#` subscriber pattern-subscribes to every channel of the
// Redis (tokenmq's change feed and kicks, other deployments' traffic), an MQTT
// PUBLISH to `tokenmq:changes` lands on the change feed, and a topic holding a
// glob character (`a[1]/x`) is missed by its own filter (`a[1]/+` becomes the
// class `[1]`, matching `a1/x` only).
//
// Design: topic T travels on channel `${prefix}mqtt/${T}`; a filter becomes a
// pattern that starts with that base and has every literal character escaped, so
// it can only ever match channels under the base. tokenmq's own channels
// (`${prefix}changes`, `${prefix}kicks`) do not start with `${prefix}mqtt/`, so no
// topic, however spelled, can name one; and two deployments with different
// prefixes on one Redis never see each other's traffic.
//
// The local side is untouched: mqemitter-redis still matches decoded messages
// against the MQTT filters with its own qlobber (the Redis pattern only has to
// select a superset of the channels), still dedups by message id, and the
// message's own `topic` field stays the plain MQTT topic (no copy per delivery).
// mqemitter-redis' MQEmitterRedisPrefix was not used: it escapes nothing, keys
// its subscription counts by the unescaped pattern (an exact `x/*` and a filter
// `x/+` then share one Redis subscription, and the filter never gets `x/y`), and
// copies every packet for every listener to strip the prefix.
import type { Redis } from 'ioredis';
import { escapeGlob } from './redis-glob.js';

/** The channel prefix of this deployment's MQTT traffic. Never a prefix of tokenmq's own channels. */
export function mqttChannelBase(prefix: string): string {
  return `${prefix}mqtt/`;
}

export interface RedisSubscription {
  /** PSUBSCRIBE (true) or SUBSCRIBE (false). */
  pattern: boolean;
  /** The pattern (escaped) or the exact channel name (raw). */
  name: string;
}

/**
 * The Redis subscription that brings this node every message a filter can match.
 * Only a whole level `+` or `#` is a wildcard (as in qlobber and MQTT; a level
 * like `a+` is literal). The pattern is a superset: `+` becomes `*` (which also
 * crosses `/`) and a final `/#` becomes `*` so that `a/#` also gets `a`
 * [MQTT-4.7.1-2]; the local matcher then keeps exactly the matching topics.
 */
export function redisSubscription(base: string, filter: string): RedisSubscription {
  const levels = filter.split('/');
  if (!levels.some((level) => level === '+' || level === '#')) return { pattern: false, name: base + filter };
  let name = escapeGlob(base);
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level === '#' && i === levels.length - 1) {
      name += '*';
      break;
    }
    if (i > 0) name += '/';
    name += level === '+' || level === '#' ? '*' : escapeGlob(level);
  }
  return { pattern: true, name };
}

type Done = () => void;
type Listener = (packet: unknown, cb: Done) => void;

/** The parts of an mqemitter-redis instance this module replaces or calls. */
export interface NamespacedEmitter {
  on(topic: string, listener: Listener, done?: Done): unknown;
  removeListener(topic: string, listener: Listener, done?: Done): unknown;
  /** mqemitter's local (qlobber) registration, which mqemitter-redis keeps under these names. */
  _on(topic: string, listener: Listener): unknown;
  _removeListener(topic: string, listener: Listener): unknown;
}

interface Entry {
  target: RedisSubscription;
  /** Local listeners that need this subscription. */
  count: number;
  /** Settles once Redis delivers this subscription's messages to the node. */
  ready: Promise<void>;
}

const settled = (p: Promise<unknown>): Promise<void> => p.then(() => {}, () => {});

/**
 * Confines an mqemitter-redis instance to the channels under `base`. `sub` and
 * `pub` must be the connections given to it and used by nothing else: every
 * PUBLISH on `pub` is moved under the base, and `sub` only ever subscribes there.
 * On failure (Redis away) ioredis subscribes again once it reconnects.
 */
export function confineToNamespace(mq: NamespacedEmitter, sub: Redis, pub: Redis, base: string): void {
  const publish = pub.publish.bind(pub) as (channel: string, message: Buffer) => Promise<number>;
  // mqemitter-redis' emit() is `pubConn.publish(msg.topic, encoded)`.
  (pub as { publish: unknown }).publish = (topic: string, message: Buffer): Promise<number> => publish(base + topic, message);

  // One Redis subscription per distinct pattern or channel, counted; keyed with
  // its kind so that an exact channel never shares an entry with a pattern.
  const entries = new Map<string, Entry>();
  const keyOf = (t: RedisSubscription): string => (t.pattern ? 'p' : 's') + t.name;

  mq.on = (topic, listener, done) => {
    mq._on(topic, listener);
    const target = redisSubscription(base, topic);
    const key = keyOf(target);
    let entry = entries.get(key);
    if (entry) {
      entry.count++;
    } else {
      entry = { target, count: 1, ready: settled(target.pattern ? sub.psubscribe(target.name) : sub.subscribe(target.name)) };
      entries.set(key, entry);
    }
    // SUBACK must not go out before Redis delivers what the filter matches.
    if (done) void entry.ready.then(done);
    return mq;
  };

  mq.removeListener = (topic, listener, done) => {
    mq._removeListener(topic, listener);
    const target = redisSubscription(base, topic);
    const key = keyOf(target);
    const entry = entries.get(key);
    let finished: Promise<void> = Promise.resolve();
    if (entry && --entry.count === 0) {
      entries.delete(key);
      finished = settled(target.pattern ? sub.punsubscribe(target.name) : sub.unsubscribe(target.name));
    }
    if (done) void finished.then(() => setImmediate(done));
    return mq;
  };
}
