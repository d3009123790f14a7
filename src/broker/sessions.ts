// The live sessions of this node (SPEC §5 session object) and what each holds:
// its token's compiled rights, refreshed by enforcement, so that no PUBLISH or
// delivery asks the store (SPEC §4).
import type { Client } from 'aedes';
import type { Socket } from 'node:net';
import type { IpMatcher, Rights, RightsContext } from '../tokens/index.js';

import type { SessionView, Transport } from '../access/ports.js';
import { subscriptionsOf } from './aedes-internals.js';

export type { SessionView, Transport } from '../access/ports.js';

/** What a listener learned about a connection before MQTT starts. */
export interface ConnectionInfo {
  ip: string;
  transport: Transport;
  /** The TCP socket under the stream, for byte counters. */
  socket: Socket;
}

/**
 * One live session. It is also the context its rights are asked with
 * (`rights.canReceive(topic, session)`): rights are shared between sessions,
 * their placeholders filled in from the asking session (issue 9).
 */
export class Session implements RightsContext {
  msgsIn = 0;
  msgsOut = 0;
  /** Set when the broker itself ends the session (kick, revocation): its will still goes out. */
  dropReason: string | null = null;
  /** In the registry (SessionRegistry only). */
  registered = false;
  /** Bytes in + out when its cluster listing entry was last written (session-directory.ts); -1 never. */
  listedActivity = -1;
  /** SPEC §2 limits.publish_rate of its token (0 = unlimited), kept current by enforcement. */
  publishRate = 0;
  /**
   * Its client id and session-slot claims (client-ownership.ts): their nonce, null when none;
   * the tokens whose slots it holds beyond its own (a child's ancestors), null when none.
   * Two fields rather than a claim object: per session, issue 9.
   */
  claimNonce: string | null = null;
  claimAncestors: readonly number[] | null = null;

  constructor(
    readonly client: Client,
    readonly clientId: string,
    readonly tokenId: number,
    /** `${token_id}` as compared: one string shared by the token's sessions. */
    readonly tokenIdText: string,
    /** From `shared.forSession(this)`: ask with this session as the context. */
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

/**
 * A client's session rides on the client object itself, under a symbol no other
 * code knows: one property read per delivery (authorizeForward), where a WeakMap
 * lookup costs a hash probe, and nothing to keep per session beside it.
 */
const SESSION = Symbol('tokenmq.session');
type AttachedClient = Client & { [SESSION]?: Session };

/** `changed`: something listed changed with no traffic to show it (a subscription removed over REST). */
export type RegistryListener = (kind: 'added' | 'removed' | 'changed', session: Session) => void;

/**
 * The sessions of this node, indexed by client (the hot path: one WeakMap
 * lookup per delivery), token and client id. Per session it keeps only index
 * entries: a client id maps to its session directly (an array only while a
 * takeover holds two), and every index shares the session object.
 */
export class SessionRegistry {
  private readonly listeners: RegistryListener[] = [];
  /** A token's one session directly (the common case: no Set per token), a Set once it has more. */
  private readonly byToken = new Map<number, Session | Set<Session>>();
  private readonly byId = new Map<string, Session | Session[]>();
  private count = 0;

  constructor(readonly node: string) {}

  add(session: Session): void {
    const client = session.client as AttachedClient;
    const previous = client[SESSION];
    if (previous !== undefined && previous.registered) this.remove(session.client);
    client[SESSION] = session;
    session.registered = true;
    this.count++;
    const ofToken = this.byToken.get(session.tokenId);
    if (ofToken === undefined) this.byToken.set(session.tokenId, session);
    else if (ofToken instanceof Set) ofToken.add(session);
    else this.byToken.set(session.tokenId, new Set([ofToken, session]));
    const same = this.byId.get(session.clientId);
    if (same === undefined) this.byId.set(session.clientId, session);
    else if (Array.isArray(same)) same.push(session);
    else this.byId.set(session.clientId, [same, session]);
    for (const l of this.listeners) l('added', session);
  }

  /** Called after each add and remove (the cluster directory mirrors them to Redis). */
  onChange(listener: RegistryListener): void {
    this.listeners.push(listener);
  }

  /** A registered session's listing changed without traffic (session-directory.ts rewrites its entry). */
  changed(session: Session): void {
    if (!session.registered) return;
    for (const l of this.listeners) l('changed', session);
  }

  /** Returns the removed session, if it was registered. */
  remove(client: Client): Session | undefined {
    const session = (client as AttachedClient)[SESSION];
    if (session === undefined || !session.registered) return undefined;
    session.registered = false;
    this.count--;
    const ofToken = this.byToken.get(session.tokenId);
    if (ofToken === session) {
      this.byToken.delete(session.tokenId);
    } else if (ofToken instanceof Set) {
      ofToken.delete(session);
      if (ofToken.size === 1) this.byToken.set(session.tokenId, ofToken.values().next().value as Session);
    }
    const same = this.byId.get(session.clientId);
    if (same === session) {
      this.byId.delete(session.clientId);
    } else if (Array.isArray(same)) {
      const rest = same.filter((s) => s !== session);
      this.byId.set(session.clientId, rest.length === 1 ? rest[0]! : rest);
    }
    for (const l of this.listeners) l('removed', session);
    return session;
  }

  /** The client's session, also after remove(): Aedes authorises a will after the connection has gone. */
  get(client: Client): Session | undefined {
    return (client as AttachedClient)[SESSION];
  }

  /** Live sessions with this client id (one per node, unless a takeover is in progress). */
  byClientId(clientId: string): Session[] {
    const same = this.byId.get(clientId);
    return same === undefined ? [] : Array.isArray(same) ? [...same] : [same];
  }

  forToken(tokenId: number): Session[] {
    const ofToken = this.byToken.get(tokenId);
    return ofToken === undefined ? [] : ofToken instanceof Set ? [...ofToken] : [ofToken];
  }

  /** Whether this token has a live session here (no array built). */
  hasToken(tokenId: number): boolean {
    return this.byToken.has(tokenId);
  }

  tokenIds(): number[] {
    return [...this.byToken.keys()];
  }

  all(): Session[] {
    const out: Session[] = [];
    for (const ofToken of this.byToken.values()) {
      if (ofToken instanceof Set) for (const s of ofToken) out.push(s);
      else out.push(ofToken);
    }
    return out;
  }

  get size(): number {
    return this.count;
  }

  countByTransport(): Record<Transport, number> {
    const out: Record<Transport, number> = { tcp: 0, ws: 0, tls: 0, wss: 0 };
    for (const s of this.all()) out[s.conn.transport]++;
    return out;
  }

  view(session: Session): SessionView {
    const subs = subscriptionsOf(session.client);
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
