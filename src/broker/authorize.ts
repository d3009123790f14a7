// PUBLISH, SUBSCRIBE and delivery checks (SPEC §3, §4). They read the rights
// held by the session; nothing here does I/O, and authorizeForward (per
// delivery, retained messages too) is a Map lookup plus a trie walk.
import type { AedesPublishPacket, Client, PublishPacket, Subscription } from 'aedes';
import type { Logger } from 'pino';
import { topicError } from '../tokens/index.js';
import type { Session, SessionRegistry } from './sessions.js';
import { throttlePublish } from './publish-rate.js';
import type { BrokerStats } from './stats.js';
import { isClientWill } from './aedes-internals.js';

export interface AuthorizeDeps {
  registry: SessionRegistry;
  stats: BrokerStats;
  log: Logger;
}

/** Aedes' persistence stamps a stored will with these; PUBLISH packets off the wire never carry them. */
interface StoredWill {
  brokerId?: unknown;
}

export function createAuthorizePublish({ registry, stats, log }: AuthorizeDeps) {
  return function authorizePublish(client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    // Wills of clients of a dead node (Aedes' will sweeper): authorised at CONNECT there (SPEC §4).
    // The sweeper passes whatever session now has that client id on this node: its rights are
    // not the will's, and a refusal would stall the whole sweep.
    if (client === null || (!isClientWill(client, packet) && (packet as StoredWill).brokerId !== undefined)) {
      return done(null);
    }
    const session = registry.get(client);
    if (session === undefined) return done(new Error('no session'));
    // SPEC §4: a will authorised at CONNECT goes out even after the token is revoked or expired.
    if (isClientWill(client, packet)) {
      return done(session.willAuthorized ? null : new Error('will not authorised'));
    }
    // SPEC §2 limits.publish_rate: a token bucket in front of authorisation holds the packet back, in order.
    if (session.publishRate > 0) {
      return throttlePublish(client, session, (closed) => (closed ? done(new Error('connection closed')) : decide(session, packet, done)));
    }
    decide(session, packet, done);
  };

  function decide(session: Session, packet: PublishPacket, done: (err?: Error | null) => void): void {
    // [MQTT-4.7.3-2], [MQTT-3.3.2-2], [MQTT-4.7.3-1]: a topic name has no NUL, no wildcard and
    // is not empty. Aedes refuses the last two itself before this hook (logged in index.ts),
    // but passes NUL on to every subscriber. A protocol violation: the connection closes.
    const invalid = topicError(packet.topic);
    if (invalid !== null) {
      stats.refusedPublishes++;
      log.info({ clientId: session.clientId, tokenId: session.tokenId, ip: session.conn.ip, topic: packet.topic.slice(0, 256), reason: 'protocol_error' },
        `connection closed: publish topic ${invalid}`);
      return done(new Error(`invalid topic name: ${invalid}`));
    }
    if (session.rights.canPublish(packet.topic, session)) {
      session.msgsIn++;
      stats.publishes++;
      return done(null);
    }
    // [MQTT-3.3.5-2]: the error makes Aedes close the connection.
    stats.refusedPublishes++;
    log.info({ clientId: session.clientId, tokenId: session.tokenId, ip: session.conn.ip, topic: packet.topic }, 'publish refused: topic not allowed');
    done(new Error('publish not authorised'));
  }
}

export function createAuthorizeSubscribe({ registry, stats, log }: AuthorizeDeps) {
  return function authorizeSubscribe(
    client: Client,
    sub: Subscription,
    done: (err: Error | null, sub?: Subscription | null) => void,
  ): void {
    const session = registry.get(client);
    if (session !== undefined && session.rights.canSubscribe(sub.topic, session)) return done(null, sub);
    // SUBACK 0x80 for this filter only; the connection stays (SPEC §4).
    stats.refusedSubscribes++;
    // ACL: no subscribe entry intersects it; standard: `$SYS`/`$tokenmq` (SPEC §3).
    log.info({ clientId: client.id, tokenId: session?.tokenId, topic: sub.topic }, 'subscribe refused: filter not allowed');
    done(null, null);
  };
}

/**
 * Per delivery, whatever brought the message (live, retained, offline queue):
 * the receiver's current rights decide (SPEC §4). It cannot apply [MQTT-4.7.2-1]
 * (Aedes does not say which subscription matched): live delivery does that in
 * Aedes, the retained and queued paths in dollar-guard.ts.
 */
export function createAuthorizeForward({ registry, stats }: AuthorizeDeps) {
  return function authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const session = registry.get(client);
    if (session !== undefined && session.rights.canReceive(packet.topic, session)) {
      session.msgsOut++;
      stats.deliveries++;
      return packet;
    }
    stats.filteredDeliveries++;
    return null;
  };
}
