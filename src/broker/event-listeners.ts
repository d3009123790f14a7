// Whether anyone listens to SPEC §8 events, so that a node publishes them only
// then (issue 11 cost: an event nobody reads is a JSON encoding and, in cluster
// mode, a Redis PUBLISH per CONNECT and per disconnect). The broker log records
// every event whatever this says.
//
// This node's listeners are counted where Aedes adds and removes the emitter
// listener of a client's subscription (`aedes.subscribe`/`unsubscribe`: SUBSCRIBE,
// UNSUBSCRIBE, restored sessions, close), so the count moves with delivery
// itself. Other nodes learn it through the emitter: a node announces on
// LISTENERS_TOPIC when it starts and stops listening, repeats it while it
// listens (a node that died listening is forgotten after LISTENER_TTL_MS, or at
// once when the session directory reports it down), and asks once at start
// (publishing everything for its first STARTUP_GRACE_MS while answers come). A
// SUBSCRIBE that makes this node start listening gets its SUBACK only after
// the announcement went through the emitter (Redis has handed it to every
// node), so an event another node emits after the SUBACK is published.
import type { Aedes } from 'aedes';
import type { Logger } from 'pino';

/** Control topic between nodes (a `$SYS` topic: no client may publish there, SPEC §4). */
export const LISTENERS_TOPIC = '$SYS/tokenmq/event-listeners';
/** A listening node repeats its announcement this often. */
export const ANNOUNCE_MS = 30_000;
/** A node not heard from for this long is taken as not listening. */
export const LISTENER_TTL_MS = 3 * ANNOUNCE_MS;
/** A starting node publishes this long whatever it knows: the answers to its question are on their way. */
export const STARTUP_GRACE_MS = 2_000;
/** Stands for "any node" during the startup grace. */
const UNKNOWN_NODES = '\0starting';

/** The first level of every event topic (events.ts EVENTS_TOPIC_PREFIX); `+` and `#` there never match a `$` topic [MQTT-4.7.2-1]. */
const EVENTS_ROOT = '$tokenmq/';

type Done = (err?: Error | null) => void;
type Deliver = (...args: never[]) => unknown;
interface Announcement { node: string; listening?: boolean; ask?: boolean }
interface Emitter {
  on(topic: string, fn: (packet: { topic: string; payload: Buffer | string }, cb: () => void) => void, done?: () => void): void;
  emit(packet: Record<string, unknown>, cb?: (err?: Error | null) => void): void;
}

/** Whether a subscription with this filter can receive an event. */
export function canMatchEvents(filter: string): boolean {
  return filter.startsWith(EVENTS_ROOT);
}

export class EventListeners {
  /** This node's subscriptions that can match events: their emitter listeners (one per client and filter). */
  private readonly local = new Set<Deliver>();
  /** Other nodes that listen → when their announcement lapses (epoch ms). */
  private readonly remote = new Map<string, number>();
  private mq: Emitter | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** `cluster`: other nodes share the emitter (else only this node's subscribers count). */
  constructor(private readonly nodeId: string, private readonly log: Logger, private readonly cluster: boolean) {}

  /** True when some node (this one included) has a subscription that can receive an event. */
  get any(): boolean {
    if (this.local.size > 0) return true;
    if (this.remote.size === 0) return false;
    const now = Date.now();
    for (const [node, until] of this.remote) if (until <= now) this.remote.delete(node);
    return this.remote.size > 0;
  }

  attach(aedes: Aedes): void {
    const mq = (aedes as unknown as { mq: Emitter }).mq;
    this.mq = mq;
    if (this.cluster) this.remote.set(UNKNOWN_NODES, Date.now() + STARTUP_GRACE_MS);
    const broker = aedes as unknown as {
      subscribe(topic: string, func: Deliver, done?: Done): void;
      unsubscribe(topic: string, func: Deliver, done?: Done): void;
    };
    const subscribe = broker.subscribe.bind(aedes);
    const unsubscribe = broker.unsubscribe.bind(aedes);
    broker.subscribe = (topic, func, done) => {
      if (!canMatchEvents(topic) || this.local.has(func)) return subscribe(topic, func, done);
      this.local.add(func);
      if (this.local.size > 1) return subscribe(topic, func, done);
      // This node starts listening: the SUBACK waits until every node has been told.
      subscribe(topic, func, (err) => this.announce(true, () => done?.(err)));
    };
    broker.unsubscribe = (topic, func, done) => {
      if (this.local.delete(func) && this.local.size === 0) this.announce(false);
      unsubscribe(topic, func, done);
    };
    mq.on(LISTENERS_TOPIC, (packet, cb) => {
      this.heard(packet.payload);
      cb();
    }, () => this.send({ node: this.nodeId, ask: true }));
    this.timer = setInterval(() => {
      if (this.local.size > 0) this.announce(true);
    }, ANNOUNCE_MS);
    this.timer.unref();
  }

  /** The session directory reports this node down: it listens no more. */
  forget(node: string): void {
    this.remote.delete(node);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private announce(listening: boolean, then?: () => void): void {
    this.send({ node: this.nodeId, listening }, then);
  }

  private send(message: Announcement, then?: () => void): void {
    const mq = this.mq;
    if (mq === null) return then?.();
    mq.emit({ topic: LISTENERS_TOPIC, payload: Buffer.from(JSON.stringify(message)), qos: 0, retain: false }, (err) => {
      if (err) this.log.warn({ err: err.message }, 'could not tell other nodes about event listeners');
      then?.();
    });
  }

  private heard(payload: Buffer | string): void {
    let message: Announcement;
    try {
      message = JSON.parse(payload.toString()) as Announcement;
    } catch {
      return;
    }
    if (typeof message.node !== 'string' || message.node === this.nodeId) return;
    if (message.ask === true) {
      if (this.local.size > 0) this.announce(true);
      return;
    }
    if (message.listening === true) this.remote.set(message.node, Date.now() + LISTENER_TTL_MS);
    else this.remote.delete(message.node);
  }
}
