// The broker's side of the REST ports (access/ports.ts, SPEC §5): publish over
// REST, the retained store, and subscription removal. The API decides who may
// do what (tokens/rights.ts); this module only knows how Aedes does it.
import type { Aedes } from 'aedes';
import type { Logger } from 'pino';
import type { OutgoingMessage, PublishPort, RetainedMessage, RetainedPort, SubscriptionsPort } from '../access/ports.js';
import { matches } from '../tokens/index.js';
import { clientInternals } from './aedes-internals.js';
import type { SessionRegistry } from './sessions.js';

/** At most this many retained messages are read for one request (a bound on memory, not a page size). */
export const MAX_RETAINED_READ = 100_000;

interface RetainedPersistence {
  createRetainedStream(pattern: string): AsyncIterable<{ topic: string; payload: Buffer | string; qos?: number }>;
  storeRetained(packet: unknown): Promise<void>;
}

function persistenceOf(aedes: Aedes): RetainedPersistence {
  return (aedes as unknown as { persistence: RetainedPersistence }).persistence;
}

/**
 * `aedes.publish` with no client: the same path a client's PUBLISH takes after
 * authorizePublish (retained store, mqemitter: every node in cluster mode,
 * offline queues), deliveries filtered by authorizeForward.
 */
export function createPublishPort(aedes: Aedes): PublishPort {
  return {
    publish(message: OutgoingMessage): Promise<void> {
      return new Promise((resolve, reject) => {
        aedes.publish({
          cmd: 'publish', topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, dup: false,
        }, (err?: Error | null) => (err ? reject(err) : resolve()));
      });
    },
  };
}

/** The broker's persistence (the shared aedes-persistence-redis in cluster mode), behind the `$` guard. */
export function createRetainedPort(aedes: Aedes): RetainedPort {
  return {
    async list(filter: string): Promise<RetainedMessage[]> {
      const out: RetainedMessage[] = [];
      for await (const packet of persistenceOf(aedes).createRetainedStream(filter)) {
        // [MQTT-4.7.2-1] again here, whatever the persistence matched.
        if (!matches(filter, packet.topic)) continue;
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        out.push({ topic: packet.topic, payload, qos: packet.qos ?? 0 });
        if (out.length >= MAX_RETAINED_READ) break;
      }
      return out;
    },
    async clear(topics: readonly string[]): Promise<void> {
      // An empty retained payload deletes the entry (MQTT-3.3.1-10) in every aedes
      // persistence; stored, not published: nothing is delivered (SPEC §5).
      const persistence = persistenceOf(aedes);
      for (const topic of topics) {
        await persistence.storeRetained({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false });
      }
    },
  };
}

/**
 * Removes `filter` from the sessions with these client ids held by this node:
 * live subscriptions (Aedes' own UNSUBSCRIBE path, with no UNSUBACK as there is
 * no message id) and, for a persistent session, the stored one. Then marks the
 * sessions changed so the cluster listing is rewritten (no traffic follows).
 */
export function removeLocalSubscription(registry: SessionRegistry, clientIds: readonly string[], filter: string, log: Logger): number {
  let removed = 0;
  for (const id of clientIds) {
    for (const session of registry.byClientId(id)) {
      const client = clientInternals(session.client);
      if (!Object.hasOwn(client.subscriptions ?? {}, filter)) continue;
      removed++;
      // Aedes calls the callback unconditionally: it must be given (PITFALLS).
      client.unsubscribe({ unsubscriptions: [filter] }, (err) => {
        if (err) log.warn({ err, clientId: id }, 'could not remove a subscription');
        registry.changed(session);
      });
    }
  }
  return removed;
}

interface StoredSubscriptions {
  subscriptionsByClient(client: { id: string }): Promise<{ topic: string; qos?: number }[] | null>;
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<unknown>;
}

/**
 * SPEC §5: subscriptions of live sessions (`remove`: this node's, or the cluster
 * directory's channel when given) and of offline persistent sessions, read and
 * removed in the broker's persistence (aedes-persistence-redis in cluster mode).
 */
export function createSubscriptionsPort(
  aedes: Aedes, registry: SessionRegistry, log: Logger,
  clusterRemove?: (clientIds: readonly string[], filter: string) => Promise<void>,
): SubscriptionsPort {
  const persistence = () => (aedes as unknown as { persistence: StoredSubscriptions }).persistence;
  return {
    async remove(clientIds, filter) {
      if (clusterRemove) await clusterRemove(clientIds, filter);
      else removeLocalSubscription(registry, clientIds, filter, log);
    },
    async stored(clientId) {
      const subs = (await persistence().subscriptionsByClient({ id: clientId })) ?? [];
      return subs.map((s) => ({ topic: s.topic, qos: s.qos ?? 0 }));
    },
    async removeStored(clientId, filter) {
      await persistence().removeSubscriptions({ id: clientId }, [filter]);
    },
  };
}
