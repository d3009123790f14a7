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

// Session.bits (issue 9: one field rather than five): keepalive in the low 16 bits, then flags
// and the transport's index. Stays a small integer (no heap number).
const KEEPALIVE = 0xffff;
const CLEAN = 1 << 16;
const WILL_AUTHORIZED = 1 << 17;
const REGISTERED = 1 << 18;
const TRANSPORT_SHIFT = 19;
const TRANSPORTS: readonly Transport[] = ['tcp', 'ws', 'tls', 'wss'];

/**
 * What few sessions have: the broker ending the session itself, a publish rate
 * limit, ancestors' session slots. One object, made the first time one of
 * these leaves its default, instead of three fields on every session (issue 9).
 */
class SessionRare {
  dropReason: string | null = null;
  publishRate = 0;
  claimAncestors: readonly number[] | null = null;
}

/**
 * One live session. It is also the context its rights are asked with
 * (`rights.canReceive(topic, session)`): rights are shared between sessions,
 * their placeholders filled in from the asking session (issue 9).
 *
 * Issue 9, memory per idle session: every field here is paid by every session.
 * Fields that are nearly always at their default live in a `SessionRare` made
 * on first change; the small constants (clean, keepalive, will, registered,
 * transport) share one integer; the connection's info is kept in place rather
 * than as its own object. The accessors keep the fields' names and types.
 */
export class Session implements RightsContext {
  msgsIn = 0;
  msgsOut = 0;
  /** Bytes in + out when its cluster listing entry was last written (session-directory.ts); -1 never. */
  listedActivity = -1;
  /**
   * Its client id and session-slot claims (client-ownership.ts): their nonce, null when none.
   * The tokens whose slots it holds beyond its own are `claimAncestors`.
   */
  claimNonce: string | null = null;
  /** The client's IP (SPEC §4), as the listener derived it. */
  readonly ip: string;
  /** The TCP socket under the stream, for byte counters. */
  readonly socket: Socket;
  /** SessionRegistry's list of the token's sessions (the registry only). */
  prevOfToken: Session | null = null;
  nextOfToken: Session | null = null;
  private bits: number;
  private rare: SessionRare | null = null;

  constructor(
    readonly client: Client,
    readonly clientId: string,
    readonly tokenId: number,
    /** `${token_id}` as compared: one string shared by the token's sessions. */
    readonly tokenIdText: string,
    /** From `shared.forSession(this)`: ask with this session as the context. */
    public rights: Rights,
    public ipMatcher: IpMatcher,
    conn: ConnectionInfo,
    readonly connected: number,
    clean: boolean,
    keepalive: number,
    /** True when the will (if any) was authorised at CONNECT (SPEC §4). */
    willAuthorized: boolean,
  ) {
    this.ip = conn.ip;
    this.socket = conn.socket;
    // MQTT keepalive is a 16-bit field; the transport is one of TRANSPORTS (typed).
    const transport = Math.max(0, TRANSPORTS.indexOf(conn.transport));
    this.bits = (keepalive & KEEPALIVE) | (clean ? CLEAN : 0) | (willAuthorized ? WILL_AUTHORIZED : 0) | (transport << TRANSPORT_SHIFT);
  }

  get clean(): boolean {
    return (this.bits & CLEAN) !== 0;
  }

  /** Seconds, from the CONNECT packet. */
  get keepalive(): number {
    return this.bits & KEEPALIVE;
  }

  /** True when the will (if any) was authorised at CONNECT (SPEC §4). */
  get willAuthorized(): boolean {
    return (this.bits & WILL_AUTHORIZED) !== 0;
  }

  get transport(): Transport {
    return TRANSPORTS[this.bits >>> TRANSPORT_SHIFT]!;
  }

  /** The connection's info: the session itself has its fields (no object of its own). */
  get conn(): ConnectionInfo {
    return this;
  }

  /** In the registry (SessionRegistry only). */
  get registered(): boolean {
    return (this.bits & REGISTERED) !== 0;
  }

  set registered(on: boolean) {
    this.bits = on ? this.bits | REGISTERED : this.bits & ~REGISTERED;
  }

  /** Set when the broker itself ends the session (kick, revocation): its will still goes out. */
  get dropReason(): string | null {
    return this.rare === null ? null : this.rare.dropReason;
  }

  set dropReason(reason: string | null) {
    if (reason !== null || this.rare !== null) this.rareFields().dropReason = reason;
  }

  /** SPEC §2 limits.publish_rate of its token (0 = unlimited), kept current by enforcement. */
  get publishRate(): number {
    return this.rare === null ? 0 : this.rare.publishRate;
  }

  set publishRate(rate: number) {
    if (rate !== 0 || this.rare !== null) this.rareFields().publishRate = rate;
  }

  /** The tokens whose session slots it holds beyond its own (a child's ancestors), null when none. */
  get claimAncestors(): readonly number[] | null {
    return this.rare === null ? null : this.rare.claimAncestors;
  }

  set claimAncestors(ids: readonly number[] | null) {
    if (ids !== null || this.rare !== null) this.rareFields().claimAncestors = ids;
  }

  private rareFields(): SessionRare {
    return (this.rare ??= new SessionRare());
  }
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
 * The sessions of this node, indexed by client (the hot path: one property
 * read per delivery), token and client id. Per session it keeps only index
 * entries: a client id maps to its session directly (an array only while a
 * takeover holds two); a token maps to its newest session, which links to the
 * token's others through their own fields (no Set per token: issue 9).
 */
export class SessionRegistry {
  private readonly listeners: RegistryListener[] = [];
  /** A token's newest session; `nextOfToken` leads to the older ones. */
  private readonly byToken = new Map<number, Session>();
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
    const newest = this.byToken.get(session.tokenId);
    session.prevOfToken = null;
    session.nextOfToken = newest ?? null;
    if (newest !== undefined) newest.prevOfToken = session;
    this.byToken.set(session.tokenId, session);
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
    const { prevOfToken: prev, nextOfToken: next } = session;
    if (prev !== null) prev.nextOfToken = next;
    else if (next !== null) this.byToken.set(session.tokenId, next);
    else this.byToken.delete(session.tokenId);
    if (next !== null) next.prevOfToken = prev;
    session.prevOfToken = null;
    session.nextOfToken = null;
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

  /** Oldest first. */
  forToken(tokenId: number): Session[] {
    const out: Session[] = [];
    this.pushToken(this.byToken.get(tokenId), out);
    return out;
  }

  /** Appends the list from `newest` on, oldest first. */
  private pushToken(newest: Session | undefined, out: Session[]): void {
    const start = out.length;
    for (let s = newest ?? null; s !== null; s = s.nextOfToken) out.push(s);
    if (out.length - start > 1) {
      for (let i = start, j = out.length - 1; i < j; i++, j--) [out[i], out[j]] = [out[j]!, out[i]!];
    }
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
    for (const newest of this.byToken.values()) this.pushToken(newest, out);
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
    // Through `conn`, as every reader outside this module (and tests' stand-in sessions) does.
    const conn = session.conn;
    return {
      client_id: session.clientId,
      token_id: session.tokenId,
      ip: conn.ip,
      transport: conn.transport,
      node: this.node,
      connected: session.connected,
      clean: session.clean,
      keepalive: session.keepalive,
      subscriptions: Object.keys(subs).map((topic) => ({ topic, qos: subs[topic]?.qos ?? 0 })),
      msgs_in: session.msgsIn,
      msgs_out: session.msgsOut,
      bytes_in: conn.socket.bytesRead ?? 0,
      bytes_out: conn.socket.bytesWritten ?? 0,
    };
  }
}
