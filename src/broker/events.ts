// SPEC §8 events, from the node where they happen: each one is published as
// a QoS 0, non-retained MQTT message on `$tokenmq/events/<event>/<token_id>`
// through Aedes (so it crosses nodes through the emitter and reaches only
// subscribers whose rights name `$tokenmq`: rights.ts isBrokerTopic,
// dollar-guard.ts) and appended to the broker log. Events are per CONNECT and
// disconnect, never per PUBLISH: the message path pays nothing for them.
import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import type { BrokerEvent, BrokerLog, EventInput, EventSink } from '../events/types.js';
import { REASON_UNREADABLE } from './enforcement.js';
import type { Session, SessionRegistry, SessionView } from './sessions.js';

export const EVENTS_TOPIC_PREFIX = '$tokenmq/events/';

/** Enforcement's logged reasons (enforcement.ts, sessions REST) → SPEC §8 `reason` values. */
const REASONS: Readonly<Record<string, string>> = {
  'token deleted': 'token_deleted',
  'token disabled': 'token_disabled',
  'token expired': 'token_expired',
  'address no longer in token ips': 'ip_denied',
  'token lost its MQTT rights': 'rights_changed',
  'closed via REST API': 'kicked',
  [REASON_UNREADABLE]: 'token_unreadable',
};

/** A reason as an event names it: known ones mapped, others made a `snake_case` word. */
export function eventReason(reason: string): string {
  return REASONS[reason] ?? (reason.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '') || 'unknown');
}

/** Why Aedes closed a client, from its `clientError`. */
function errorReason(err: Error & { code?: unknown }): string {
  const m = err.message;
  if (m === 'keep alive timeout') return 'keepalive';
  if (m === 'publish not authorised') return 'publish_denied';
  if (m.startsWith('packet of ') && m.includes('exceeds the limit')) return 'packet_too_large';
  if (m === 'Client queue limit reached') return 'queue_full';
  // Socket errors (ECONNRESET, EPIPE, ...): the client went away.
  if (typeof err.code === 'string') return 'client';
  return 'protocol_error';
}

interface AedesEmitter {
  mq: { on(topic: string, fn: (packet: { topic: string; payload: Buffer }, cb: () => void) => void): void };
}

export interface BrokerEventsOptions {
  nodeId: string;
  log: Logger;
  brokerLog?: BrokerLog;
  /** False: nothing is published or logged (bench: cost of events). */
  enabled?: boolean;
  /** Whether any node has a subscriber that can receive an event (event-listeners.ts); none given: always publish. */
  listeners?: { readonly any: boolean };
}

export class BrokerEvents implements EventSink {
  private aedes: Aedes | null = null;
  /** First cause seen for a client being closed (error, keepalive, takeover); per disconnect, not per message. */
  private readonly causes = new WeakMap<Client, string>();
  private shuttingDown = false;
  readonly enabled: boolean;

  constructor(private readonly opts: BrokerEventsOptions) {
    this.enabled = opts.enabled ?? true;
  }

  /**
   * Publishing starts once the broker exists. `connected` once the session is
   * ready (SPEC §8); causes Aedes reports before it closes a client are noted
   * for its `disconnected`.
   */
  attach(aedes: Aedes, registry: SessionRegistry): void {
    this.aedes = aedes;
    aedes.on('clientReady', (client) => {
      const session = registry.get(client);
      if (session) this.connected(session);
    });
    aedes.on('keepaliveTimeout', (client) => this.cause(client, 'keepalive'));
    aedes.on('clientError', (client, err) => this.cause(client, errorReason(err)));
    // Aedes closes a local client whose id connected on another node: its `$SYS/<node>/new/clients`
    // listener, registered first, has closed and unregistered it by the time this one runs (the
    // emitter calls both in one go), but the session is still in the registry until its socket's
    // close: the closed one is the one taken over. Per CONNECT in the cluster, not per message.
    const own = `$SYS/${aedes.id}/new/clients`;
    (aedes as unknown as AedesEmitter).mq.on('$SYS/+/new/clients', (packet, cb) => {
      if (packet.topic !== own) {
        for (const s of registry.byClientId(packet.payload.toString())) if (s.client.closed) this.cause(s.client, 'takeover');
      }
      cb();
    });
  }

  /** SPEC §8 `token_expired`, by the node whose store swept the tokens. */
  tokensExpired(ids: readonly number[]): void {
    for (const id of ids) this.emit({ event: 'token_expired', token_id: id });
  }

  /** SPEC §8: the sessions of a dead node, reported by the node that noticed. */
  nodeDown(views: readonly SessionView[]): void {
    for (const v of views) {
      this.emit({ event: 'disconnected', client_id: v.client_id, token_id: v.token_id, ip: v.ip, transport: v.transport, reason: 'node_down' });
    }
  }

  emit(input: EventInput): void {
    if (!this.enabled) return;
    const record: BrokerEvent = { time: Date.now() / 1000, node: this.opts.nodeId, ...input };
    this.opts.brokerLog?.append(record);
    const aedes = this.aedes;
    if (aedes === null || aedes.closed || this.opts.listeners?.any === false) return;
    const topic = `${EVENTS_TOPIC_PREFIX}${record.event}/${record.token_id ?? 0}`;
    aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(record)), qos: 0, retain: false, dup: false }, (err) => {
      if (err) this.opts.log.debug({ err: err.message, topic }, 'event not published');
    });
  }

  /** Remembers why a client is being closed, unless a cause is already known. */
  cause(client: Client | undefined, reason: string): void {
    if (client !== undefined && !this.causes.has(client)) this.causes.set(client, reason);
  }

  /** The broker is stopping: sessions closed from now on end with `shutdown`. */
  shutdown(): void {
    this.shuttingDown = true;
  }

  connected(s: Session): void {
    this.emit({ event: 'connected', client_id: s.clientId, token_id: s.tokenId, ip: s.conn.ip, transport: s.conn.transport });
  }

  /** SPEC §8: every disconnect has a reason. */
  disconnected(s: Session): void {
    const reason = s.dropReason !== null
      ? eventReason(s.dropReason)
      : this.causes.get(s.client) ?? (this.shuttingDown ? 'shutdown' : 'client');
    this.emit({ event: 'disconnected', client_id: s.clientId, token_id: s.tokenId, ip: s.conn.ip, transport: s.conn.transport, reason });
  }

  kicked(s: Session, by: number | undefined): void {
    this.emit({ event: 'kicked', client_id: s.clientId, token_id: s.tokenId, ip: s.conn.ip, transport: s.conn.transport, ...(by === undefined ? {} : { by }) });
  }

  refused(input: { clientId: string; ip: string; transport?: string; tokenId?: number; code?: number; reason: string }): void {
    const e: EventInput = { event: 'refused', client_id: input.clientId, token_id: input.tokenId ?? 0, ip: input.ip, reason: input.reason };
    if (input.transport !== undefined) e.transport = input.transport;
    if (input.code !== undefined) e.code = input.code;
    this.emit(e);
  }

}
