// The live sessions of this node (SPEC §5 session object) and what each holds:
// its token's compiled rights, refreshed by enforcement, so that no PUBLISH or
// delivery asks the store (SPEC §4).
import type { Client } from 'aedes';
import type { Socket } from 'node:net';
import type { IpMatcher, Rights } from '../tokens/index.js';

export type Transport = 'tcp' | 'ws' | 'tls' | 'wss';

/** What a listener learned about a connection before MQTT starts. */
export interface ConnectionInfo {
  ip: string;
  transport: Transport;
  /** The TCP socket under the stream, for byte counters. */
  socket: Socket;
}

export class Session {
  msgsIn = 0;
  msgsOut = 0;
  /** Set when the broker itself ends the session (kick, revocation): its will still goes out. */
  dropReason: string | null = null;

  constructor(
    readonly client: Client,
    readonly clientId: string,
    readonly tokenId: number,
    public rights: Rights,
    public ipMatcher: IpMatcher,
    readonly conn: ConnectionInfo,
    readonly connected: number,
    readonly clean: boolean,
    readonly keepalive: number,
    /** True when the will (if any) was authorised at CONNECT (SPEC §4). */
    readonly willAuthorized: boolean,
  ) {}
}

/** SPEC §5 session object. */
export interface SessionView {
  client_id: string;
  token_id: number;
  ip: string;
  transport: Transport;
  node: string;
  connected: number;
  clean: boolean;
  keepalive: number;
  subscriptions: { topic: string; qos: number }[];
  msgs_in: number;
  msgs_out: number;
  bytes_in: number;
  bytes_out: number;
}

interface AedesClientInternals {
  subscriptions?: Record<string, { qos?: number }>;
}

export type RegistryListener = (kind: 'added' | 'removed', session: Session) => void;

export class SessionRegistry {
  private readonly listeners: RegistryListener[] = [];
  private readonly byClient = new Map<Client, Session>();
  private readonly byToken = new Map<number, Set<Session>>();
  private readonly byId = new Map<string, Set<Session>>();
  // Outlives remove(): Aedes authorises a will after the connection has gone.
  private readonly attached = new WeakMap<Client, Session>();

  constructor(readonly node: string) {}

  add(session: Session): void {
    this.byClient.set(session.client, session);
    this.attached.set(session.client, session);
    addTo(this.byToken, session.tokenId, session);
    addTo(this.byId, session.clientId, session);
    for (const l of this.listeners) l('added', session);
  }

  /** Called after each add and remove (the cluster directory mirrors them to Redis). */
  onChange(listener: RegistryListener): void {
    this.listeners.push(listener);
  }

  /** Returns the removed session, if it was registered. */
  remove(client: Client): Session | undefined {
    const session = this.byClient.get(client);
    if (!session) return undefined;
    this.byClient.delete(client);
    removeFrom(this.byToken, session.tokenId, session);
    removeFrom(this.byId, session.clientId, session);
    for (const l of this.listeners) l('removed', session);
    return session;
  }

  get(client: Client): Session | undefined {
    return this.attached.get(client);
  }

  /** Live sessions with this client id (one per node, unless a takeover is in progress). */
  byClientId(clientId: string): Session[] {
    const set = this.byId.get(clientId);
    return set ? [...set] : [];
  }

  forToken(tokenId: number): Session[] {
    const set = this.byToken.get(tokenId);
    return set ? [...set] : [];
  }

  tokenIds(): number[] {
    return [...this.byToken.keys()];
  }

  all(): Session[] {
    return [...this.byClient.values()];
  }

  get size(): number {
    return this.byClient.size;
  }

  countByTransport(): Record<Transport, number> {
    const out: Record<Transport, number> = { tcp: 0, ws: 0, tls: 0, wss: 0 };
    for (const s of this.byClient.values()) out[s.conn.transport]++;
    return out;
  }

  view(session: Session): SessionView {
    const subs = (session.client as unknown as AedesClientInternals).subscriptions ?? {};
    return {
      client_id: session.clientId,
      token_id: session.tokenId,
      ip: session.conn.ip,
      transport: session.conn.transport,
      node: this.node,
      connected: session.connected,
      clean: session.clean,
      keepalive: session.keepalive,
      subscriptions: Object.keys(subs).map((topic) => ({ topic, qos: subs[topic]?.qos ?? 0 })),
      msgs_in: session.msgsIn,
      msgs_out: session.msgsOut,
      bytes_in: session.conn.socket.bytesRead ?? 0,
      bytes_out: session.conn.socket.bytesWritten ?? 0,
    };
  }
}

function addTo<K>(index: Map<K, Set<Session>>, key: K, session: Session): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(session);
}

function removeFrom<K>(index: Map<K, Set<Session>>, key: K, session: Session): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(session);
  if (set.size === 0) index.delete(key);
}
