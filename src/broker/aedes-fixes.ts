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
//    the connection). Deliveries are parked until the CONNECT series is over
//    (CONNACK written, then the offline queue), then sent in order; one the
//    offline queue has just sent is not sent twice (ConnackGate).
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
//    (fixMemoryPubrel).
import type { Aedes, Client, Subscription } from 'aedes';
import type { Duplex } from 'node:stream';

/** A packet as Aedes hands it to a client's deliver functions. */
interface DeliveredPacket {
  qos: number;
  topic: string;
  cmd?: string;
  brokerId?: string | null;
  brokerCounter?: number | string;
}

type Deliver = (packet: DeliveredPacket, cb: () => void) => void;

/** The Aedes Client fields the gate uses (lib/client.js). */
interface DeliveringClient {
  deliver0: Deliver;
  deliverQoS: Deliver;
  prependOnceListener(event: 'connected', listener: () => void): unknown;
}

interface Parked {
  /** Deliver function, packet, deliver function, packet, ... in arrival order. */
  items: (Deliver | DeliveredPacket)[];
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
 * [MQTT-3.2.0-1], [MQTT-4.6.0-6]: holds what Aedes delivers to a client until
 * its CONNECT series has ended: CONNACK written and the offline queue sent
 * (Aedes emits the client's `connected` then). Parked messages then go out in
 * the order they came, after the queued ones, which are older. A QoS 1/2
 * message of a persistent session that arrived live while parked is also in
 * its offline queue (Aedes enqueues before it emits); if the queue sent it, it
 * is not sent again. A parked delivery is acknowledged to the emitter at once,
 * as a socket write would be: a connecting client never holds up the emitter
 * (mqemitter runs a bounded number of messages at a time) nor the publisher's
 * PUBACK. If the connection ends first, parked messages are dropped: QoS 0 as
 * on any lost connection; QoS 1/2 for a persistent session stay in its offline
 * queue and go out on its next CONNECT.
 */
export class ConnackGate {
  private readonly parked = new WeakMap<object, Parked>();

  /** Call right after aedes.handle(), before the client's CONNECT is read. */
  attach(client: Client, conn: Duplex): void {
    const c = client as unknown as DeliveringClient;
    let parked: Parked | null = { items: [], fromQueue: new Set() };
    this.parked.set(client, parked);
    const gate = (deliver: Deliver): Deliver => (packet, cb) => {
      if (parked === null) return deliver(packet, cb);
      parked.items.push(deliver, packet);
      setImmediate(cb);
    };
    // Aedes reads these when a subscription is made (restored ones included) and in client.publish.
    c.deliver0 = gate(c.deliver0);
    c.deliverQoS = gate(c.deliverQoS);
    const release = (send: boolean): void => {
      if (parked === null) return;
      const { items, fromQueue } = parked;
      parked = null;
      this.parked.delete(client);
      if (!send) return;
      for (let i = 0; i < items.length; i += 2) {
        const deliver = items[i] as Deliver;
        const packet = items[i + 1] as DeliveredPacket;
        if (fromQueue.size > 0) {
          const key = messageKey(packet);
          if (key !== null && fromQueue.has(key)) continue;
        }
        deliver(packet, noop);
      }
    };
    // Before Aedes' own listener, which handles the packets the client sent meanwhile.
    c.prependOnceListener('connected', () => release(true));
    conn.once('close', () => release(false));
  }

  /** The offline queue hands `packet` to `client` (persistence.outgoingUpdate while parked). */
  sentFromQueue(client: unknown, packet: DeliveredPacket): void {
    if (packet.cmd !== 'publish' || typeof client !== 'object' || client === null) return;
    const parked = this.parked.get(client);
    if (parked === undefined) return;
    const key = messageKey(packet);
    if (key !== null) parked.fromQueue.add(key);
  }
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
 * Fixes 2 and 3 above and feeds the gate, in place (the persistences keep
 * state in private fields: their methods stay bound to them); returns it.
 * `decisions` is filled by recordSubscribeDecisions once Aedes exists.
 */
export function fixPersistence<P extends FixablePersistence>(persistence: P, gate: ConnackGate, decisions: SubscribeDecisions): P {
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
  persistence.outgoingUpdate = (client, packet) => {
    gate.sentFromQueue(client, packet);
    return update(client, packet);
  };
  return persistence;
}

/**
 * Fix 4 above, for aedes-persistence (in memory) only: aedes-persistence-redis
 * finds a PUBREL's message through its packet id and must see no broker id on it.
 * Each PUBREL gets a broker id and counter of its own (a NUL-led id, which no
 * broker has), so it only ever matches itself, by packet id as it should, and a
 * PUBREL resent from the queue on reconnect still finds its own record.
 */
export function fixMemoryPubrel<P extends object>(persistence: P): P {
  const fixable = persistence as unknown as Pick<FixablePersistence, 'outgoingUpdate'>;
  const update = fixable.outgoingUpdate.bind(persistence);
  let counter = 0;
  fixable.outgoingUpdate = (client, packet) => {
    if (packet.cmd === 'pubrel' && packet.brokerId == null) {
      counter = counter >= Number.MAX_SAFE_INTEGER ? 1 : counter + 1;
      packet.brokerId = `\u0000pubrel:${counter}`;
      packet.brokerCounter = counter;
    }
    return update(client, packet);
  };
  return persistence;
}
