// Where Aedes 1.2 and its persistences (aedes-persistence 10/11, aedes-persistence-redis 11)
// break an MQTT promise off their tested path, and what tokenmq does about it.
// Everything here reaches into their internals (instance fields, call order of
// the CONNECT series, arrays passed by identity), so it lives in one module that
// an Aedes upgrade is checked against; each fix names the rule it restores.
//
// 1. [MQTT-3.2.0-1] CONNACK is the first packet the server sends. Aedes restores a
//    persistent session's subscriptions (`restoreSubs`) before CONNACK and its
//    write() lets packets through while `connecting`, so a message arriving in
//    that window went out before CONNACK (MQTT.js then stalls and never reports
//    the connection). Deliveries are held until the CONNECT series is over
//    (CONNACK written, then the offline queue), then sent in order; one the
//    offline queue has just sent is not sent twice (DeliveryFixes).
// 2. A SUBSCRIBE of several filters on a persistent session: Aedes calls
//    persistence.addSubscriptions once per granted filter, each time with the
//    whole list (refused filters included), and the subscription broadcast
//    (aedes-persistence's BroadcastPersistence, used by aedes-persistence-redis)
//    keys each wait by the client id and the list's first filter: the waits
//    overwrite each other, all but one never end and SUBACK never goes out.
//    The list is stored once, with only what authorizeSubscribe granted, and a
//    client's subscription changes run one after another (fixPersistence).
// 3. [MQTT-3.3.5-1] A message matching several subscriptions of one client goes
//    to it once, with the highest QoS. subscriptionsByTopic answers once per
//    matching filter, so the offline queue held the message once per filter:
//    duplicates at QoS 1, and at QoS 2 a queue that stalls (both copies share one
//    broker counter, the persistence updates the first one twice, the second
//    PUBREC finds no packet and closes the connection, at every reconnect).
// 4. [MQTT-4.3.3-1] The in-memory persistence (aedes-persistence) answers the
//    wrong PUBREC: it finds an outgoing QoS 2 message by broker id and counter,
//    and a PUBREL it stored has neither, so the next PUBREL "matches" it and
//    takes its place. With two QoS 2 messages in flight to a persistent session
//    the first PUBREL goes out with the second one's packet id: the first
//    message is never released to the application and stays queued for ever
//    (fixMemoryPersistence).
// 5. [MQTT-3.3.5-1], [MQTT-3.8.4-6] A message goes out at the lower of its QoS and
//    the highest QoS of the client's matching subscriptions. Aedes caps only by a
//    subscription whose filter equals the topic: a QoS 1 wildcard subscription got
//    QoS 2 messages (live, retained and queued), and of two overlapping
//    subscriptions the copy that came first set the QoS (DeliveryFixes).
// 6. Of the copies of one message (one per matching subscription), Aedes sends the
//    first and, for a persistent session, "clears" each later one from the offline
//    queue by a packet id that a live copy does not have: the in-memory
//    persistence then removed the first unsent entry, the message in flight
//    included ("no such packet" closed the connection). Later copies are dropped
//    before Aedes sees them (DeliveryFixes).
// 7. A persistent session's queued message that authorizeForward refuses live
//    (an ACL token's `#` subscription) is "cleared" the same way: in memory another
//    entry went, in Redis none, so the queue kept every refused message until the
//    next CONNECT. It is removed by broker id and counter (fixMemoryPersistence,
//    cluster.ts for Redis).
// 8. [MQTT-4.3.2-1] Aedes tells copies of a message from new messages by a per-client
//    high-water mark of each node's message counter: a message overtaken by a later
//    one of the same node was dropped as a copy. In cluster mode a QoS 1/2 message
//    that waits for an offline queue in Redis is overtaken by any message that does
//    not: it was lost for every client that had the later one first. Copies are told
//    by identity instead (DeliveryFixes).
import type { Aedes, Client, Subscription } from 'aedes';
import { matches } from '../tokens/index.js';

/** A packet as Aedes hands it to a client's deliver functions. */
interface DeliveredPacket {
  qos: number;
  topic: string;
  cmd?: string;
  retain?: boolean;
  messageId?: number | string;
  brokerId?: string | null;
  brokerCounter?: number | string;
}

type Deliver = (packet: DeliveredPacket, cb: () => void) => void;

/** The Aedes Client fields the delivery fixes use (lib/client.js). */
interface DeliveringClient {
  /** Sends at QoS 0; Aedes makes it a QoS 0 subscription's listener. */
  deliver0: Deliver;
  /** Sends at the packet's QoS (QoS 0: hands it to deliver0); a QoS 1/2 subscription's listener. */
  deliverQoS: Deliver;
  /** Per broker id, the highest broker counter delivered (Aedes' dedupe). */
  duplicates: Record<string, number>;
  subscriptions: Record<string, { qos: number }>;
  prependListener(event: 'connected', listener: (this: object) => void): unknown;
}

interface Parked {
  /** QoS subscription?, packet, QoS subscription?, packet, ... in arrival order. */
  items: (boolean | DeliveredPacket)[];
  /** Messages the offline queue sent during the CONNECT series (broker id + counter). */
  fromQueue: Set<string>;
}

const noop = (): void => {};

/** Aedes' identity of a message across nodes (what its per-client dedupe compares). */
function messageKey(packet: DeliveredPacket): string | null {
  if (packet.brokerId == null || packet.brokerCounter === undefined) return null;
  return `${packet.brokerId}\n${String(packet.brokerCounter)}`;
}

/**
 * The highest QoS among the client's subscriptions that match `topic`, -1 if
 * none does. Only asked when a delivery may need another QoS than the one of
 * the subscription that brought it: no allocation, one walk per filter.
 */
export function maxQos(subscriptions: Record<string, { qos: number }>, topic: string): number {
  let max = -1;
  for (const filter in subscriptions) {
    const qos = subscriptions[filter]!.qos;
    if (qos > max && matches(filter, topic)) {
      max = qos;
      if (max === 2) break;
    }
  }
  return max;
}

/**
 * What Aedes does to every delivery to a client, corrected (fixes 1, 5, 6, 8):
 * Aedes hands a message to a client once per matching subscription, one copy
 * after another; each copy goes through here first.
 *
 * [MQTT-3.2.0-1], [MQTT-4.6.0-6]: deliveries are held until the client's
 * CONNECT series has ended: CONNACK written and the offline queue sent (Aedes
 * emits the client's `connected` then). Held messages then go out in the order
 * they came, after the queued ones, which are older. A QoS 1/2 message of a
 * persistent session that arrived live while held is also in its offline queue
 * (Aedes enqueues before it emits); if the queue sent it, it is not sent again.
 * A held delivery is acknowledged to the emitter at once, as a socket write
 * would be: a connecting client never holds up the emitter (mqemitter runs a
 * bounded number of messages at a time) nor the publisher's PUBACK. If the
 * connection ends first, held messages are dropped: QoS 0 as on any lost
 * connection; QoS 1/2 of a persistent session stay in its offline queue and go
 * out on its next CONNECT.
 */
export class DeliveryFixes {
  /** Call right after aedes.handle(), before the client's CONNECT is read. */
  attach(client: Client): void {
    const c = client as unknown as DeliveringClient;
    // Per client, only these variables (one closure context) and the functions below
    // (issue 9: no state object beside them). Aedes reads deliver0/deliverQoS when a
    // subscription is made (restored ones included), for the retained messages of a SUBSCRIBE,
    // and in client.publish, and calls them as plain functions: each needs its own closure.
    const aedes0 = c.deliver0;
    const aedesQoS = c.deliverQoS;
    // The message last handed on (broker id, counter): Aedes hands the copies of one message
    // to a client one after another, in one emitter dispatch (and in order after a hold).
    let lastBroker: string | null = null;
    let lastCounter = 0;
    const held: Parked = { items: [], fromQueue: new Set() };
    /** Held deliveries until the CONNECT series ends; null once released. */
    let parked: Parked | null = held;

    // Released (held deliveries out, or dropped on close) by the shared listener and closed():
    // reachable from `holding` only, so it goes with the hold. Held deliveries go out through
    // the entries below (copies dropped, QoS capped), as if they arrived now.
    const hold: Hold = {
      parked: held,
      release(sendHeld: boolean): void {
        // `parked`, not `held`: a closure naming `held` would keep it for the client's life.
        const released = parked;
        if (released === null) return;
        parked = null;
        holding.delete(c);
        if (!sendHeld) return;
        const { items, fromQueue } = released;
        for (let i = 0; i < items.length; i += 2) {
          const packet = items[i + 1] as DeliveredPacket;
          if (fromQueue.size > 0) {
            const key = messageKey(packet);
            if (key !== null && fromQueue.has(key)) continue;
          }
          if (items[i] as boolean) c.deliverQoS(packet, noop);
          else c.deliver0(packet, noop);
        }
      },
    };
    holding.set(client, hold);
    // Each copy of a message Aedes hands on comes through here first. A later copy of the
    // message just handed on is dropped: Aedes would drop it too, but for a persistent session
    // it then "clears" the copy from the offline queue by a packet id that a live copy has none
    // of (fix 6). `fromQoS`: which of Aedes' two functions it came through (send() caps by it).
    const deliver = (fromQoS: boolean, packet: DeliveredPacket, cb: () => void): void => {
      if (parked === null) {
        const broker = packet.brokerId;
        if (broker != null) {
          const counter = Number(packet.brokerCounter);
          if (broker === lastBroker && counter === lastCounter) return void setImmediate(cb); // fix 6
          lastBroker = broker;
          lastCounter = counter;
        }
        return send(c, aedes0, aedesQoS, fromQoS, packet, cb);
      }
      parked.items.push(fromQoS, packet);
      setImmediate(cb);
    };
    c.deliver0 = (packet, cb) => deliver(false, packet, cb);
    c.deliverQoS = (packet, cb) => deliver(true, packet, cb);
    // Before Aedes' own listener, which handles the packets the client sent meanwhile.
    // A shared listener (`this` is the client): 'connected' comes once.
    c.prependListener('connected', releaseOnConnected);
  }

  /**
   * The client's connection closed (the broker calls this from its one 'close'
   * listener): deliveries still held are dropped; QoS 1/2 of a persistent session
   * stay in its offline queue.
   */
  closed(client: object): void {
    holding.get(client)?.release(false);
  }

  /**
   * The offline queue hands `packet` to `client` (persistence.outgoingUpdate,
   * resolved): remember it while deliveries are held, and cap its QoS as above
   * (never below 1: it waits in the queue for an acknowledgement).
   */
  fromQueue(client: unknown, packet: DeliveredPacket): void {
    if (packet.cmd !== 'publish' || typeof client !== 'object' || client === null) return;
    const hold = holding.get(client);
    if (hold !== undefined) {
      const key = messageKey(packet);
      if (key !== null) hold.parked.fromQueue.add(key);
    }
    if (packet.qos === 2) {
      const max = maxQos((client as DeliveringClient).subscriptions ?? {}, packet.topic);
      if (max === 1) packet.qos = 1;
    }
  }
}

/** A client's deliveries while held: what is held and how to let it go (once). */
interface Hold {
  readonly parked: Parked;
  release(sendHeld: boolean): void;
}

/**
 * Clients whose deliveries are held (until `connected` or the connection's close),
 * for the shared listener below, closed() and fromQueue. Keys are clients, so one map serves every broker.
 */
const holding = new WeakMap<object, Hold>();

/**
 * Hands a delivery that is not a copy on to Aedes' own deliver functions, at the right QoS
 * (fixes 5 and 8). `aedes0`/`aedesQoS`: the client's functions as Aedes made them.
 */
function send(c: DeliveringClient, aedes0: Deliver, aedesQoS: Deliver, fromQoSSubscription: boolean, packet: DeliveredPacket, cb: () => void): void {
  const broker = packet.brokerId;
  // Aedes' own dedupe drops a message whose counter is not above the last one seen from
  // its broker: a message that waited for the offline queue (Redis round trips) and was
  // overtaken by a later one of the same node was lost, QoS 1 and 2 included (fix 8).
  // Copies are dropped before this (fix 6); let every new message through.
  if (broker != null) c.duplicates[broker] = Number(packet.brokerCounter) - 1;
  // [MQTT-3.3.5-1], [MQTT-3.8.4-6]: the message goes out at the lower of its own QoS and
  // the highest QoS among the client's matching subscriptions. Aedes caps by the
  // subscription whose filter equals the topic only, so a wildcard subscription got a
  // message's full QoS, and of overlapping subscriptions the first copy's QoS won.
  // A copy from a QoS 1/2 subscription at QoS 1 is right as it is (the common case).
  let qos = packet.qos;
  if (qos > 0 && (!fromQoSSubscription || qos === 2 || packet.retain === true)) {
    const max = maxQos(c.subscriptions, packet.topic);
    // None matches any more (unsubscribed meanwhile): the subscription that brought it decides.
    if (max < 0) qos = fromQoSSubscription ? qos : 0;
    else if (max < qos) qos = max;
    packet.qos = qos;
  }
  // Aedes' deliverQoS hands QoS 0 to deliver0 itself: call Aedes' own one, not the entry above.
  return qos > 0 ? aedesQoS(packet, cb) : aedes0(packet, cb);
}

/** The client's CONNECT series ended: held deliveries go out. */
function releaseOnConnected(this: object): void {
  holding.get(this)?.release(true);
}

interface StoredSubscription {
  clientId: string;
  topic: string;
  qos: number;
}

/** The persistence methods fixPersistence wraps (both persistences have them, promise-returning). */
export interface FixablePersistence {
  addSubscriptions(client: { id: string }, subs: Subscription[]): Promise<unknown>;
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<unknown>;
  subscriptionsByTopic(topic: string): Promise<StoredSubscription[]>;
  outgoingUpdate(client: unknown, packet: DeliveredPacket): Promise<unknown>;
  outgoingClearMessageId(client: unknown, packet: DeliveredPacket): Promise<unknown>;
}

/**
 * [MQTT-3.3.5-1]: one entry per client, the one with the highest QoS. The
 * persistence answers once per matching filter; the offline queue takes one
 * copy of the message per entry.
 */
export function onePerClient<S extends StoredSubscription>(subs: S[]): S[] {
  if (subs.length < 2) return subs;
  const at = new Map<string, number>();
  const out: S[] = [];
  for (const sub of subs) {
    const i = at.get(sub.clientId);
    if (i === undefined) {
      at.set(sub.clientId, out.length);
      out.push(sub);
    } else if (sub.qos > out[i]!.qos) {
      out[i] = sub;
    }
  }
  return out;
}

/** What authorizeSubscribe answered for each subscription object Aedes handed it. */
export type SubscribeDecisions = WeakMap<object, Subscription | null>;

/**
 * Makes Aedes remember what authorizeSubscribe granted for each filter of a
 * SUBSCRIBE (the object it returned, or null for a refusal), for fixPersistence.
 */
export function recordSubscribeDecisions(aedes: Aedes, decisions: SubscribeDecisions): void {
  const internals = aedes as unknown as { authorizeSubscribe: Aedes['authorizeSubscribe'] };
  const authorize = internals.authorizeSubscribe;
  internals.authorizeSubscribe = (client, sub, done) => {
    authorize.call(aedes, client, sub, (err, granted) => {
      if (!err) decisions.set(sub, granted && typeof granted === 'object' ? granted : null);
      done(err, granted);
    });
  };
}

/**
 * Fixes 2, 3 and 5 (for queued messages) above, in place (the persistences
 * keep state in private fields: their methods stay bound to them), and tells
 * DeliveryFixes what the offline queue sends; returns the persistence.
 * `decisions` is filled by recordSubscribeDecisions once Aedes exists.
 */
export function fixPersistence<P extends FixablePersistence>(persistence: P, deliveries: DeliveryFixes, decisions: SubscribeDecisions): P {
  const add = persistence.addSubscriptions.bind(persistence);
  const remove = persistence.removeSubscriptions.bind(persistence);
  const byTopic = persistence.subscriptionsByTopic.bind(persistence);
  const update = persistence.outgoingUpdate.bind(persistence);

  // One subscription change of a client at a time: the broadcast keys its wait
  // by client id and first filter, so two at once can overwrite each other's wait.
  const tails = new Map<string, Promise<unknown>>();
  const inTurn = <T>(clientId: string, run: () => Promise<T>): Promise<T> => {
    const previous = tails.get(clientId) ?? Promise.resolve();
    const result = previous.then(run, run);
    const tail = result.then(noop, noop);
    tails.set(clientId, tail);
    void tail.then(() => {
      if (tails.get(clientId) === tail) tails.delete(clientId);
    });
    return result;
  };

  // Per SUBSCRIBE (Aedes passes the same array on each call): the filters already stored, and the last store.
  const stored = new WeakMap<object, { done: Set<object>; last: Promise<unknown> }>();
  persistence.addSubscriptions = (client, subs) => {
    let entry = stored.get(subs);
    if (entry === undefined) {
      entry = { done: new Set(), last: Promise.resolve() };
      stored.set(subs, entry);
    }
    const state = entry;
    // After the synchronous rest of this SUBSCRIBE's authorisations: one store for all its granted filters.
    state.last = state.last.then(() => {
      const known = subs.some((s) => decisions.has(s));
      const toStore: Subscription[] = [];
      for (const sub of subs) {
        if (state.done.has(sub)) continue;
        if (!known) {
          toStore.push(sub); // not a SUBSCRIBE that went through authorizeSubscribe: as asked
        } else if (decisions.has(sub)) {
          state.done.add(sub);
          const granted = decisions.get(sub);
          // A refused filter is no subscription at all [MQTT-3.9.3]; a granted one is stored as granted.
          if (granted) toStore.push(granted);
        } // else: not decided yet; its own call stores it
      }
      if (!known) for (const sub of toStore) state.done.add(sub);
      return toStore.length > 0 ? inTurn(client.id, () => add(client, toStore)) : undefined;
    });
    return state.last;
  };
  persistence.removeSubscriptions = (client, topics) => inTurn(client.id, () => remove(client, topics));
  persistence.subscriptionsByTopic = (topic) => byTopic(topic).then(onePerClient);
  persistence.outgoingUpdate = (client, packet) => update(client, packet).then((result) => {
    // Aedes writes the packet once this resolves: after the persistence stored it as it was.
    deliveries.fromQueue(client, packet);
    return result;
  });
  return persistence;
}

/** A live copy of a message, refused for its client, that Aedes asks the persistence to clear. */
export function isUnsentLiveCopy(packet: Pick<DeliveredPacket, 'messageId' | 'cmd' | 'brokerId'>): boolean {
  return packet.messageId == null && packet.cmd === 'publish' && packet.brokerId != null;
}

/**
 * Fixes 4 and 7 above, for aedes-persistence (in memory) only; cluster.ts has
 * fix 7 for aedes-persistence-redis, whose layout differs.
 *
 * Fix 4: aedes-persistence-redis finds a PUBREL's message through its packet id
 * and must see no broker id on it; here each PUBREL gets a broker id and counter
 * of its own (a NUL-led id, which no broker has), so it only ever matches
 * itself, by packet id as it should, and a PUBREL resent from the queue on
 * reconnect still finds its own record.
 *
 * Fix 7: the entry is found by broker id and counter (outgoingUpdate does that),
 * marked with a packet id no client has, and removed by it.
 */
export function fixMemoryPersistence<P extends object>(persistence: P): P {
  const fixable = persistence as unknown as Pick<FixablePersistence, 'outgoingUpdate' | 'outgoingClearMessageId'>;
  const update = fixable.outgoingUpdate.bind(persistence);
  const clear = fixable.outgoingClearMessageId.bind(persistence);
  let counter = 0;
  const next = (): number => (counter = counter >= Number.MAX_SAFE_INTEGER ? 1 : counter + 1);
  fixable.outgoingUpdate = (client, packet) => {
    if (packet.cmd === 'pubrel' && packet.brokerId == null) {
      const n = next();
      packet.brokerId = `\u0000pubrel:${n}`;
      packet.brokerCounter = n;
    }
    return update(client, packet);
  };
  fixable.outgoingClearMessageId = async (client, packet) => {
    if (!isUnsentLiveCopy(packet)) return clear(client, packet);
    const messageId = `\u0000drop:${next()}`;
    try {
      await update(client, { cmd: 'publish', topic: packet.topic, qos: packet.qos, brokerId: packet.brokerId, brokerCounter: packet.brokerCounter, messageId });
    } catch {
      return undefined; // not in this client's queue
    }
    return clear(client, { ...packet, messageId });
  };
  return persistence;
}
