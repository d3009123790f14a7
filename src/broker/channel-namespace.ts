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
  /** How many `*` the pattern holds (0 for a channel): what it costs Redis on every PUBLISH. */
  wildcards: number;
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
  if (!levels.some((level) => level === '+' || level === '#')) return { pattern: false, name: base + filter, wildcards: 0 };
  let name = escapeGlob(base);
  let wildcards = 0;
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level === '#' && i === levels.length - 1) {
      name += '*';
      wildcards++;
      break;
    }
    if (i > 0) name += '/';
    if (level === '+' || level === '#') {
      name += '*';
      wildcards++;
    } else {
      name += escapeGlob(level);
    }
  }
  return { pattern: true, name, wildcards };
}

/**
 * Redis matches every PUBLISH (MQTT or tokenmq's own, from every node and
 * deployment on that Redis) against every pattern any connection holds, at a
 * cost that grows with the patterns' wildcards and the channel's length: 10,000
 * patterns made PUBLISH six times slower here, fifty 100-level `+/+/...` patterns
 * a 60 KB topic fifty times slower. Clients choose their filters, so a node
 * holds individual patterns only up to this many wildcards in all; beyond it, it
 * takes its whole namespace with one pattern (`<base>*`) and lets the local
 * matcher sort messages out, until the total falls to half of it again.
 */
export const DEFAULT_PATTERN_BUDGET = 256;

export interface NamespaceOptions {
  patternBudget?: number;
  /** Told when the node switches between individual patterns and its whole namespace. */
  onWide?: (wide: boolean, wildcards: number) => void;
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
 * Commands on `sub` run in order, so a switch that subscribes the new
 * pattern(s) before it drops the old one(s) leaves no gap; a message that both
 * match comes twice and mqemitter-redis drops the copy (it dedups by message id).
 * On failure (Redis away) ioredis subscribes again once it reconnects.
 */
export function confineToNamespace(mq: NamespacedEmitter, sub: Redis, pub: Redis, base: string, opts: NamespaceOptions = {}): void {
  const budget = opts.patternBudget ?? DEFAULT_PATTERN_BUDGET;
  const publish = pub.publish.bind(pub) as (channel: string, message: Buffer) => Promise<number>;
  // mqemitter-redis' emit() is `pubConn.publish(msg.topic, encoded)`.
  (pub as { publish: unknown }).publish = (topic: string, message: Buffer): Promise<number> => publish(base + topic, message);

  // One Redis subscription per distinct pattern or channel, counted; keyed with
  // its kind so that an exact channel never shares an entry with a pattern.
  const entries = new Map<string, Entry>();
  const keyOf = (t: RedisSubscription): string => (t.pattern ? 'p' : 's') + t.name;
  const everything = `${escapeGlob(base)}*`;
  let wildcards = 0;
  /** While the node takes its whole namespace: that subscription's readiness. */
  let wide: Promise<void> | null = null;
  const held = (): string[] => [...entries.values()].filter((e) => e.target.pattern).map((e) => e.target.name);

  const goWide = (): Promise<void> => {
    const ready = settled(sub.psubscribe(everything));
    const names = held();
    if (names.length) void settled(sub.punsubscribe(...names));
    opts.onWide?.(true, wildcards);
    return ready;
  };
  const goNarrow = (): Promise<void> => {
    const names = held();
    const ready = names.length ? settled(sub.psubscribe(...names)) : Promise.resolve();
    void settled(sub.punsubscribe(everything));
    opts.onWide?.(false, wildcards);
    return ready;
  };

  mq.on = (topic, listener, done) => {
    mq._on(topic, listener);
    const target = redisSubscription(base, topic);
    const key = keyOf(target);
    let entry = entries.get(key);
    if (entry) {
      entry.count++;
    } else if (!target.pattern) {
      entry = { target, count: 1, ready: settled(sub.subscribe(target.name)) };
      entries.set(key, entry);
    } else {
      wildcards += target.wildcards;
      if (!wide && wildcards > budget) wide = goWide();
      entry = { target, count: 1, ready: wide ?? settled(sub.psubscribe(target.name)) };
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
      if (!target.pattern) {
        finished = settled(sub.unsubscribe(target.name));
      } else {
        wildcards -= target.wildcards;
        if (!wide) finished = settled(sub.punsubscribe(target.name));
        else if (wildcards <= budget / 2) {
          wide = null;
          finished = goNarrow();
        }
      }
    }
    if (done) void finished.then(() => setImmediate(done));
    return mq;
  };
}
