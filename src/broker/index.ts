// The broker: Aedes with tokenmq's hooks, the session registry and live
// enforcement. main.ts gives it a store and a logger; tests do the same.
import { Aedes, type AedesOptions, type Client } from 'aedes';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { TokenStore } from '../store/types.js';
import type { AccessGate } from '../access/gate.js';
import type { BrokerHealth, PublishPort, RetainedPort, SubscriptionsPort } from '../access/ports.js';
import { createPublishPort, createRetainedPort, createSubscriptionsPort } from './api-ports.js';
import { createAuthenticate, createPreConnect } from './authenticate.js';
import { connectionOf, setConnection } from './client-slots.js';
import { createAuthorizeForward, createAuthorizePublish, createAuthorizeSubscribe } from './authorize.js';
import { createMemoryPersistence, guardDollarTopics } from './dollar-guard.js';
import { DeliveryFixes, fixMemoryPersistence, fixPersistence, recordSubscribeDecisions, type SubscribeDecisions } from './aedes-fixes.js';
import { Enforcement } from './enforcement.js';
import { ClientOwnership } from './client-ownership.js';
import { SessionRegistry, type ConnectionInfo, type Session } from './sessions.js';
import { LocalSessionDirectory, type SessionDirectory } from './session-directory.js';
import { BrokerStats } from './stats.js';
import { startListeners, type ListenOptions, type Listeners } from './transports.js';
import { createPacketLimit } from './packet-limit.js';
import { guardClientTable } from './client-table.js';
import { clientTableOf } from './aedes-internals.js';
import type { BrokerLog } from '../events/types.js';
import { BrokerEvents, eventReason } from './events.js';
import { EventListeners } from './event-listeners.js';
import { lightQueues, skipEmptyQueues, type Probes } from './offline-queue.js';

export { BrokerStats, CONNECT_RESULTS } from './stats.js';
export type { Session, SessionRegistry, SessionView, Transport } from './sessions.js';
export type { ListenOptions } from './transports.js';
export { LocalSessionDirectory, RedisSessionDirectory, type SessionDirectory } from './session-directory.js';
export { createClusterParts, type ClusterParts } from './cluster.js';
export { BrokerEvents } from './events.js';

export interface BrokerDeps {
  store: TokenStore;
  log: Logger;
  /** The access gate, shared with the REST API (guard, compiled rights, `accessed` batcher). */
  gate: AccessGate;
  nodeId: string;
  /** Largest MQTT packet accepted (bytes); a larger one closes the connection. Default 1 MiB. */
  maxPacketSize?: number;
  /** Cluster mode: mqemitter-redis and aedes-persistence-redis instances. */
  mq?: AedesOptions['mq'];
  persistence?: AedesOptions['persistence'];
  /** Cluster mode: `persistence`'s keys of a client id's queue, subscriptions and will (ClusterParts.probeKeys). */
  probeKeys?: (clientId: string, brokerId: string) => string[];
  /** Aedes' heartbeat (ms, default 60 s); its will sweeper for dead nodes runs every 4 heartbeats. */
  heartbeatInterval?: number;
  /** Cluster mode: a directory over every node's sessions (default: this node's registry). */
  directory?: (registry: SessionRegistry, localKick: (clientId: string, reason: string, by?: number) => number) => SessionDirectory;
  /** SPEC §8 broker log (memory ring or Redis stream); none: events are only published. */
  brokerLog?: BrokerLog;
  /** False switches events and the log off (bench: their cost on the MQTT path). Default true. */
  events?: boolean;
}

export interface TokenBroker {
  aedes: Aedes;
  registry: SessionRegistry;
  /** Sessions on every node (REST listings and kicks). */
  sessions: SessionDirectory;
  enforcement: Enforcement;
  stats: BrokerStats;
  /** `GET /health`'s view of this broker (a port: the API sees nothing else of it). */
  health: BrokerHealth;
  /** SPEC §5 ports of the REST API: publish, the retained store, subscription removal. */
  publisher: PublishPort;
  retained: RetainedPort;
  subscriptions: SubscriptionsPort;
  /** SPEC §8 events of this node (the REST API emits token events through it). */
  events: BrokerEvents;
  /** Hands a connected stream to Aedes (listeners call this; tests may too). */
  handle(stream: Duplex, info: ConnectionInfo, req?: IncomingMessage): void;
  listen(opts: ListenOptions): Promise<Listeners['ports']>;
  /** Closes the session(s) with this client id on this node; returns how many. `by`: the kicking token (SPEC §8). */
  kick(clientId: string, reason: string, by?: number): number;
  /** Stops listeners, flushes `accessed`, closes sessions and Aedes (SPEC §1 shutdown). */
  close(): Promise<void>;
}

export const DEFAULT_MAX_PACKET_SIZE = 1024 * 1024;

/** Aedes' own refusals of a PUBLISH topic name (lib/handlers/publish.js): empty, `#`, `+`. */
const AEDES_PUBLISH_TOPIC_ERROR = /^(empty topic|[#+] is) not allowed in PUBLISH$/;

export async function createTokenBroker(deps: BrokerDeps): Promise<TokenBroker> {
  const log = deps.log;
  const maxPacketSize = deps.maxPacketSize ?? DEFAULT_MAX_PACKET_SIZE;
  const registry = new SessionRegistry(deps.nodeId);
  const stats = new BrokerStats();
  const enforcement = new Enforcement({ store: deps.store, gate: deps.gate, registry, stats, log });
  const authDeps = { registry, stats, log };
  // SPEC §8 events are published only while some node has a subscriber for them (the log takes every one).
  const eventListeners = new EventListeners(deps.nodeId, log, deps.mq !== undefined);
  const events = new BrokerEvents({ nodeId: deps.nodeId, log, brokerLog: deps.brokerLog, enabled: deps.events, listeners: eventListeners });
  const ownership = new ClientOwnership({ store: deps.store, nodeId: deps.nodeId, log });
  // Aedes 1.2 defects that tokenmq works around (aedes-fixes.ts).
  const deliveries = new DeliveryFixes();
  const decisions: SubscribeDecisions = new WeakMap();
  /** What clean CONNECTs found stored for their client id (offline-queue.ts). */
  const probes: Probes = {
    results: new WeakMap(),
    othersOnNode: (clientId) => registry.byClientId(clientId).length > 1,
  };

  const aedes = await Aedes.createBroker({
    id: deps.nodeId,
    mq: deps.mq,
    // [MQTT-4.7.2-1] on the retained and offline-queue paths too, whichever persistence (dollar-guard.ts);
    // then one offline copy per client, SUBSCRIBE stored once as granted (aedes-fixes.ts).
    // Offline queues reach Aedes in a form its CONNECT drains cheaply (offline-queue.ts).
    persistence: fixPersistence(guardDollarTopics(deps.persistence
      ? lightQueues(deps.persistence, probes)
      : skipEmptyQueues(fixMemoryPersistence(createMemoryPersistence()))), deliveries, decisions),
    ...(deps.heartbeatInterval ? { heartbeatInterval: deps.heartbeatInterval } : {}),
    preConnect: createPreConnect({ log, events }),
    authenticate: createAuthenticate({
      store: deps.store, registry, gate: deps.gate, enforcement, stats, log, events, ownership,
      probes: deps.probeKeys ? { keys: (clientId) => deps.probeKeys!(clientId, deps.nodeId), results: probes.results } : undefined,
    }),
    authorizePublish: createAuthorizePublish(authDeps),
    authorizeSubscribe: createAuthorizeSubscribe(authDeps),
    authorizeForward: createAuthorizeForward(authDeps),
  });
  // A client closed mid-connect leaves no stored will behind (SPEC §4).
  guardRegistration(aedes, log, (old) => events.cause(old, 'takeover'));
  // Publishing, `connected`, and the causes Aedes reports (keepalive, client errors, remote takeovers).
  events.attach(aedes, registry);
  eventListeners.attach(aedes);
  // A client closing while its successor registers must not drop the successor's entry (MQTT-3.1.4-2).
  guardClientTable(aedes);
  recordSubscribeDecisions(aedes, decisions);
  aedes.on('clientReady', (client) => {
    // Restored subscriptions of a persistent session skip authorizeSubscribe; apply this token's rights.
    const session = registry.get(client);
    if (session && !client.clean) enforcement.trimSubscriptions(session);
  });
  // SPEC §5: subscriptions are listed by every node (the cluster directory rewrites the entry
  // at once, not at the next heartbeat), so a REST removal right after a SUBSCRIBE finds it.
  const subscriptionsChanged = (_subs: unknown, client: Client): void => {
    const session = registry.get(client);
    if (session) registry.changed(session);
  };
  aedes.on('subscribe', subscriptionsChanged);
  aedes.on('unsubscribe', subscriptionsChanged);
  // Aedes emits 'error' for background failures (will sweeper, persistence): never let one kill the process.
  aedes.on('error' as 'clientError', (err: unknown) => log.warn({ err }, 'broker background error'));
  aedes.on('clientError', (client, err) => {
    // Aedes closes on an empty or wildcard PUBLISH topic before authorizePublish: log it as ours (authorize.ts).
    if (AEDES_PUBLISH_TOPIC_ERROR.test(err.message)) {
      const session = registry.get(client);
      log.info({ clientId: client.id, tokenId: session?.tokenId, ip: session?.conn.ip, reason: 'protocol_error' }, `connection closed: ${err.message}`);
    } else {
      log.debug({ clientId: client.id, err: err.message }, 'client error');
    }
  });
  aedes.on('connectionError', (_client, err) => log.debug({ err: err.message }, 'connection error'));
  enforcement.start();
  // SPEC §8 `token_expired`, from the node whose store swept the token.
  const stopExpired = deps.store.onExpired?.((ids) => events.tokensExpired(ids));
  ownership.start(aedes);

  let listeners: Listeners | null = null;
  const kick = (clientId: string, reason: string, by?: number): number => {
    const found = registry.byClientId(clientId);
    const kicked = eventReason(reason) === 'kicked';
    for (const s of found) {
      // SPEC §8: `kicked` filed under the kicked session's token, then its `disconnected`.
      if (kicked && s.dropReason === null) events.kicked(s, by);
      enforcement.close(s, reason);
    }
    return found.length;
  };
  const sessions: SessionDirectory = deps.directory ? deps.directory(registry, kick) : new LocalSessionDirectory(registry, kick);
  // SPEC §8: sessions of a dead node get `disconnected` with `node_down` from the node that notices.
  sessions.onNodeDown?.((node, views) => {
    eventListeners.forget(node);
    events.nodeDown(views);
  });

  // Per connection, only what must be: shared functions, no closures (issue 9: memory per session).
  const limitPacketSize = createPacketLimit(maxPacketSize, (client, announced) => {
    const ip = client ? (registry.get(client)?.conn ?? connectionOf(client))?.ip : undefined;
    events.cause(client, 'packet_too_large');
    log.info({ clientId: client?.id, ip, announced, max: maxPacketSize }, 'connection closed: packet too large');
  });
  // The one 'close' listener tokenmq adds per connection (a third one would cost 150 B: see transports.ts).
  function streamClosed(this: Duplex & { client?: Client }): void {
    const client = this.client;
    if (client === undefined) return;
    deliveries.closed(client);
    const session: Session | undefined = registry.remove(client);
    if (session) {
      enforcement.sessionEnded(session);
      ownership.sessionEnded(session);
      events.disconnected(session);
    }
  }

  function handle(stream: Duplex, info: ConnectionInfo, req?: IncomingMessage): void {
    // Aedes sets `stream.client` to the client it creates here.
    const client = aedes.handle(stream, req);
    setConnection(client, info);
    // [MQTT-3.2.0-1]: nothing reaches the client before its CONNACK; [MQTT-3.3.5-1] QoS.
    deliveries.attach(client);
    limitPacketSize(client);
    // 'close' comes once; `on` spares the wrapper `once` would add per connection.
    stream.on('close', streamClosed);
  }

  const subscriptions: SubscriptionsPort = createSubscriptionsPort(aedes, registry, log, sessions.removeSubscription?.bind(sessions));

  const health: BrokerHealth = {
    node: registry.node,
    get up() { return !aedes.closed; },
    get sessionCount() { return registry.size; },
  };

  return {
    aedes,
    registry,
    sessions,
    enforcement,
    stats,
    health,
    publisher: createPublishPort(aedes),
    retained: createRetainedPort(aedes),
    subscriptions,
    events,
    handle,
    async listen(opts) {
      // A WebSocket message carries one MQTT packet (sometimes a few): bound it alike.
      listeners = await startListeners(handle, {
        wsMaxPayload: maxPacketSize > 0 ? Math.max(2 * maxPacketSize, 64 * 1024) : 2 ** 28,
        onWsDrop: (count) => { stats.wsDropped += count; },
        ...opts,
      }, log);
      return listeners.ports;
    },
    kick,
    async close() {
      events.shutdown();
      eventListeners.stop();
      stopExpired?.();
      const stopped = listeners?.close();
      await enforcement.stop();
      ownership.stop();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      listeners?.destroyConnections();
      await stopped;
      await sessions.close();
    },
  };
}

/**
 * A client closed between authenticate and Aedes' registerClient (socket gone,
 * kicked, token revoked mid-connect) must leave nothing behind. Aedes' CONNECT
 * series runs on regardless: it would register the closed client (a ghost in
 * `aedes.clients` that also takes its client id over from a live session) and
 * its storeWill step can persist the will after close() has published and
 * deleted it, so a later sweep of this node's wills would publish it again.
 * The series has stored the will by the time it registers, so this is where
 * it is undone.
 */
function guardRegistration(aedes: Aedes, log: Logger, onTakeover: (old: Client) => void): void {
  const internals = clientTableOf(aedes);
  const register = internals.registerClient.bind(aedes);
  internals.registerClient = (client: Client): void => {
    if (!client.closed) {
      // [MQTT-3.1.4-2]: Aedes closes the session this one takes over (SPEC §8 reason `takeover`).
      const old = internals.clients[client.id];
      if (old !== undefined && old !== client && !old.closed) onTakeover(old as unknown as Client);
      return register(client);
    }
    log.debug({ clientId: client.id }, 'connection closed before its session was registered');
    const live = internals.clients[client.id];
    // storeWill deleted the will stored under this client id on this node, a live takeover's included:
    // put a live session's will back, else drop what the closed one stored.
    const write = live && !live.closed
      ? (live.will ? internals.persistence.putWill(live, live.will) : Promise.resolve())
      : internals.persistence.delWill({ id: client.id, brokerId: aedes.id });
    write.catch((err: unknown) => log.warn({ err, clientId: client.id }, 'could not clean the will of a connection closed mid-connect'));
  };
}
