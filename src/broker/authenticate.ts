// The CONNECT step (SPEC §4): key → token → checks, each refusal with its
// CONNACK code and a logged reason (never the key).
import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import { topicError, type Rights, type Token } from '../tokens/index.js';
import { ACCESS_MASTER } from '../tokens/types.js';
import { StoreDataError, type AdmitRequest, type AdmitResult, type TokenStore } from '../store/types.js';
import type { AccessCheck, AccessGate, AuthorizeContext, Decision, Grant, Maybe } from '../access/gate.js';
import type { RefusalCause } from '../access/causes.js';
import { CONNACK, CONNACK_BY_CAUSE, LOG_REASON } from '../access/causes.js';
import type { CompiledToken, Enforcement, LookupWatch } from './enforcement.js';
import { connectionOf, setConnectMeta, takeConnect, type ConnectMeta } from './client-slots.js';
import { connectWill } from './aedes-internals.js';
import { Session, type ConnectionInfo, type SessionRegistry } from './sessions.js';
import type { BrokerStats, ConnectResult } from './stats.js';
import type { BrokerEvents } from './events.js';
import type { Admission, Claim, ClientOwnership } from './client-ownership.js';
import type { SlotLimit } from '../store/owners.js';
import type { Probed } from './offline-queue.js';

const PREFIX = 'FlespiToken ';
/** Reads of one CONNECT's token while it keeps changing under it; then the session is refreshed once registered. */
const MAX_READS = 3;
const DONE: Promise<void> = Promise.resolve();

export interface AuthDeps {
  store: TokenStore;
  registry: SessionRegistry;
  /** The access gate shared with REST: guard, validity, `ips`, compiled rights. */
  gate: AccessGate;
  enforcement: Enforcement;
  stats: BrokerStats;
  log: Logger;
  /** SPEC §8 `refused` events. */
  events?: BrokerEvents;
  ownership: ClientOwnership;
  /**
   * Cluster mode: a clean CONNECT's find-and-admit also asks whether its client id
   * has an offline queue, stored subscriptions and a will of this node (`keys`, in
   * that order); what it found goes in `results` for Aedes' reads (offline-queue.ts).
   */
  probes?: { keys(clientId: string): string[]; results: WeakMap<object, Probed> };
}

/** SPEC §4: the username carries the key (optional `FlespiToken ` prefix); an empty username means the password does. */
export function keyFromCredentials(username: string | undefined, password: Buffer | undefined): string {
  let key = username ?? '';
  if (key === '' && password !== undefined) key = password.toString('utf8');
  if (key.startsWith(PREFIX)) key = key.slice(PREFIX.length);
  return key.trim();
}

function refusal(code: number, message: string): AuthenticateError {
  const err = new Error(message) as AuthenticateError;
  err.returnCode = code;
  return err;
}

export function createPreConnect(deps: Pick<AuthDeps, 'log' | 'events'>) {
  return function preConnect(client: Client, packet: ConnectPacket, done: (err: Error | null, ok: boolean) => void): void {
    // SPEC §4, [MQTT-3.3.2-2]: a will topic must be a topic name (no wildcards, not empty, no NUL); Aedes
    // would publish it as is. A protocol violation: the connection closes without CONNACK.
    const willError = packet.will ? topicError(packet.will.topic) : null;
    if (willError !== null) {
      const ip = connectionOf(client)?.ip ?? '';
      deps.log.info({ clientId: packet.clientId, ip, reason: 'protocol_error' }, `connection closed: will topic ${willError}`);
      deps.events?.refused({ clientId: packet.clientId, ip, transport: connectionOf(client)?.transport, reason: 'protocol_error' });
      return done(new Error(`invalid will topic: ${willError}`), false);
    }
    setConnectMeta(client, { keepalive: packet.keepalive ?? 0, emptyIdPersistent: !packet.clientId && packet.clean === false, packet });
    done(null, true);
  };
}

type Done = (err: AuthenticateError | null, ok: boolean | null) => void;

export function createAuthenticate(deps: AuthDeps) {
  return function authenticate(
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: Done,
  ): void {
    new ConnectAttempt(deps, client, done).run(username, password);
  };
}

/**
 * MQTT's checks after the gate's common ones (gate.ts, step 8), in order: one
 * list for every CONNECT, each asking the attempt it runs for. SPEC §2 order:
 * `clientids` and client id ownership (CONNACK 2) before `limits.sessions`
 * (CONNACK 5). The claim goes last, so that no CONNECT refused for another
 * reason holds one; it judges ownership before the session slot (client-ownership.ts).
 */
const MQTT_CHECKS: readonly AccessCheck[] = [
  (_grant, ctx) => ((ctx as ConnectAttempt).clientIdAllowed() ? null : 'client_id_rejected'),
  (grant, ctx) => ((ctx as ConnectAttempt).rightsOf(grant).hasMqtt ? null : 'no_mqtt_rights'),
  (grant, ctx) => ((ctx as ConnectAttempt).willAllowed(grant) ? null : 'will_denied'),
  (grant, ctx) => (ctx as ConnectAttempt).claimClientId(grant),
];

/**
 * One CONNECT from its credentials to CONNACK (SPEC §4): the gate's context
 * and the state the answer needs, on one object rather than a closure per
 * step (issue 9: the CONNECT path's allocations).
 */
class ConnectAttempt implements AuthorizeContext {
  private readonly started = performance.now();
  private readonly conn: ConnectionInfo | undefined;
  private readonly meta: ConnectMeta | undefined;
  private readonly ip: string;
  private answered = false;
  private watch: LookupWatch | undefined;
  private will: { topic: string } | undefined;
  /** The session's rights: the shared ones unless this client id cannot fill a placeholder in (Rights.forSession). */
  private sessionRights: Rights | undefined;
  /** The compiled access judged with: enforcement's, which adds this token's `clientids` matcher. */
  private compiledToken: CompiledToken | undefined;
  /** What the ownership check claimed in the store: the session's once it exists, else given back. */
  private claim: Claim | undefined;
  /**
   * What the store's find-and-admit answered for this CONNECT (Redis mode: the claim made in
   * the lookup's round trip), until the ownership check takes it over; given back if never taken.
   */
  private found: { req: AdmitRequest; tokenId: number; result: AdmitResult } | undefined;
  readonly checks = MQTT_CHECKS;
  readonly clientId: string;

  constructor(private readonly deps: AuthDeps, private readonly client: Client, private readonly done: Done) {
    // Read once: from here the session (or nothing, once refused) holds the connection's info.
    const { conn, meta } = takeConnect(client);
    this.conn = conn;
    this.meta = meta;
    this.ip = conn?.ip ?? '';
    // SPEC §2 parent: each ancestor's `clientids` must admit this client id too.
    this.clientId = client.id;
  }

  run(username: string | undefined, password: Buffer | undefined): void {
    const { conn, meta: connect } = this;
    if (!conn) return this.finish('store_unavailable', CONNACK.SERVER_UNAVAILABLE, 'connection not registered by a listener');
    // The parser keeps the CONNECT packet as long as the connection lives; it needs only its
    // protocol fields, not the key (nor a copy per session).
    // Only fields it has: assigning one it lacks would grow every session's packet (issue 9).
    if (connect) {
      if (connect.packet.username !== undefined) connect.packet.username = undefined;
      if (connect.packet.password !== undefined) connect.packet.password = undefined;
    }
    if (connect?.emptyIdPersistent) {
      return this.finish('client_id_rejected', CONNACK.IDENTIFIER_REJECTED, 'empty client id needs clean session (MQTT-3.1.3-8)');
    }
    const key = keyFromCredentials(username, password);
    // SPEC §4 "no window": watch the change feed from before the read until the session
    // exists, and read again when this token changed meanwhile.
    this.watch = this.deps.enforcement.watchLookup();
    this.will = connectWill(this.client) ?? undefined;
    let decision: Maybe<Decision | null>;
    try {
      decision = this.deps.gate.authorize(key, this.ip, this);
    } catch (err) {
      this.failSafely(err);
      this.watch.end();
      return;
    }
    if (decision instanceof Promise) {
      // Neither handler throws: never an unhandled rejection (PITFALLS).
      decision.then((d) => this.admitSafely(d), (err: unknown) => this.failSafely(err)).finally(() => this.watch?.end());
      return;
    }
    // Answered at once (memory store): the same steps without a promise (issue 9).
    this.admitSafely(decision);
    this.watch.end();
  }

  /** `admit`, then `failed` if that throws; never throws. */
  private admitSafely(decision: Decision | null): void {
    try {
      this.admit(decision);
    } catch (err) {
      this.failSafely(err);
    }
  }

  private failSafely(err: unknown): void {
    try {
      this.failed(err);
    } catch (err2) {
      this.deps.log.error({ err: err2, clientId: this.client.id }, 'connect handling failed');
    }
  }

  // ---- the gate's context (AuthorizeContext) ----

  lookup(key: string): Maybe<Token | null> {
    const { store } = this.deps;
    // Read at once: no change can land during the read itself (one landing later is the watch's: admit).
    if (store.findByKeyNow !== undefined && store.findByKeyAndAdmit === undefined) return store.findByKeyNow(key);
    return readToken(store, key, this.watch as LookupWatch, this.client, store.findByKeyAndAdmit ? this : undefined);
  }

  /** The rights and matcher this token's live sessions hold, when unchanged (enforcement.ts). */
  compile(token: Token): CompiledToken {
    return (this.compiledToken = this.deps.enforcement.compile(token));
  }

  stillWanted(): boolean {
    return !this.client.closed;
  }

  // ---- the MQTT checks (MQTT_CHECKS) ----

  clientIdAllowed(): boolean {
    return this.compiledToken === undefined || this.compiledToken.clientIds.allows(this.client.id);
  }

  rightsOf(grant: Grant): Rights {
    return (this.sessionRights ??= grant.compiled.rights.forSession({ clientId: this.client.id, tokenId: grant.token.id }));
  }

  willAllowed(grant: Grant): boolean {
    const will = this.will;
    return !will || this.rightsOf(grant).canPublish(will.topic, { clientId: this.client.id, tokenIdText: grant.compiled.tokenIdText });
  }

  /** Synchronous when the store answers at once (memory store): no promise per CONNECT. */
  claimClientId(grant: Grant): RefusalCause | null | Promise<RefusalCause | null> {
    const { token } = grant;
    const { ownership } = this.deps;
    let admission: Admission | Promise<Admission>;
    const found = this.found;
    if (found !== undefined && found.tokenId === token.id) {
      // Claimed in the lookup's own round trip (Redis mode): its answer, as judged there.
      this.found = undefined;
      admission = ownership.admitted(found.req, [token.id], found.result);
    } else {
      // SPEC §2 parent: a child's session counts toward its own limits.sessions and each ancestor's.
      const counts: SlotLimit[] = [{ tokenId: token.id, limit: token.limits.sessions }];
      for (const t of grant.ancestors ?? []) counts.push({ tokenId: t.id, limit: t.limits.sessions });
      admission = ownership.admit(this.client.id, token.id, this.client.clean, token.access.type === ACCESS_MASTER, counts);
    }
    return admission instanceof Promise ? admission.then((a) => this.claimed(a)) : this.claimed(admission);
  }

  private claimed(admission: Admission): RefusalCause | null {
    if (!admission.ok) return admission.reason;
    this.claim = admission.claim;
    return null;
  }

  /** Redis mode's first read: the token and, in the same round trip, the client id's claim (readToken). */
  async findAndAdmit(key: string): Promise<Token | null> {
    const req = this.deps.ownership.request(this.client.id, this.client.clean);
    const { probes } = this.deps;
    if (probes !== undefined && this.client.clean) req.probeKeys = probes.keys(this.client.id);
    const store = this.deps.store as Required<Pick<TokenStore, 'findByKeyAndAdmit'>>;
    const { token, admission, probed } = await store.findByKeyAndAdmit(key, req);
    // Anything not answered counts as stored: Aedes reads it as always.
    if (probed !== undefined && probes !== undefined) {
      probes.results.set(this.client, { queue: probed[0] !== false, subscriptions: probed[1] !== false, will: probed[2] !== false });
    }
    if (token !== null && admission !== null) this.found = { req, tokenId: token.id, result: admission };
    return token;
  }

  // ---- the answer ----

  private finish(result: ConnectResult, code: number, reason: string, tokenId?: number): void {
    if (this.answered) return;
    this.answered = true;
    const { stats, log, events } = this.deps;
    stats.connects[result]++;
    stats.onAuthDuration((performance.now() - this.started) / 1000);
    if (code === 0) return this.done(null, true);
    const { client, ip } = this;
    log.info({ clientId: client.id, ip, tokenId, code, reason: result }, `connect refused: ${reason}`);
    events?.refused({ clientId: client.id, ip, transport: this.conn?.transport, tokenId, code, reason: result });
    this.done(refusal(code, reason), false);
  }

  /** Resolves once the store answered every undo (never rejects). */
  private giveBack(): Promise<void> {
    const { claim, found } = this;
    this.claim = undefined;
    this.found = undefined;
    if (claim === undefined && !found?.result.ok) return DONE; // the usual CONNECT: nothing to give back
    const { ownership } = this.deps;
    const undone: Promise<void>[] = [];
    if (claim !== undefined) undone.push(ownership.abandon(claim));
    if (found?.result.ok) undone.push(ownership.abandon(ownership.claimOf(found.req, [found.tokenId], found.result)));
    return Promise.all(undone).then(() => {});
  }

  private admit(decision: Decision | null): void {
    const { client, deps } = this;
    if (decision === null || client.closed) {
      void this.giveBack(); // gone while we waited: nothing to register, a claim made for it is given back
      return;
    }
    if (!decision.ok) {
      // Answered once the claim the lookup made (Redis mode) is given back: a refused CONNECT
      // holds no client id, so the next one for it sees the record as before.
      void this.giveBack().then(() => {
        if (decision.cause === 'token_unreadable') return this.unreadable(decision.tokenId, decision.error);
        const reason = decision.key === 'malformed' || decision.key === 'missing' ? 'malformed token' : LOG_REASON[decision.cause];
        return this.finish(decision.cause, CONNACK_BY_CAUSE[decision.cause], reason, decision.tokenId);
      }).catch((err: unknown) => deps.log.error({ err, clientId: client.id }, 'connect refusal failed'));
      return;
    }
    const { token } = decision;
    const { enforcement, registry, ownership } = deps;
    const compiled = this.compiledToken ?? enforcement.compile(token);
    const now = Math.floor(Date.now() / 1000);
    // Shared with the token's other sessions (and tokens with the same access): nothing per session
    // unless this client id cannot fill a placeholder entry in (Rights.forSession).
    const session = new Session(
      client, client.id, token.id, compiled.tokenIdText, this.rightsOf(decision), compiled.ipMatcher,
      this.conn as ConnectionInfo, now, client.clean, this.meta?.keepalive ?? 0, Boolean(this.will),
    );
    session.publishRate = token.limits.publish_rate;
    // Still changed after the re-reads: admit on this reading and let the store decide right away.
    const unsettled = (this.watch as LookupWatch).changed(token.id);
    registry.add(session);
    if (this.claim !== undefined) ownership.bind(session, this.claim);
    this.claim = undefined;
    void this.giveBack(); // a find-and-admit claim the ownership check never took (none when it ran)
    enforcement.tokenInUse(token, compiled);
    if (unsettled) enforcement.refresh(token.id);
    this.finish('ok', 0, 'ok', token.id);
  }

  private failed(err: unknown): void {
    void this.giveBack();
    if (this.client.closed) return;
    this.deps.log.error({ err, clientId: this.client.id, ip: this.ip }, 'token lookup failed');
    this.finish('store_unavailable', CONNACK.SERVER_UNAVAILABLE, LOG_REASON.store_unavailable);
  }

  /** SPEC §2: a stored token this node cannot read never stops it: CONNACK 5, an error naming the id. */
  private unreadable(tokenId: number | undefined, err: unknown): void {
    if (!(err instanceof StoreDataError)) this.deps.stats.storeErrors++; // the gate counted the store's own
    this.deps.log.error({ tokenId, clientId: this.client.id, ip: this.ip, reason: err instanceof Error ? err.message : String(err) }, 'stored token cannot be read');
    this.finish('token_unreadable', CONNACK.NOT_AUTHORIZED, LOG_REASON.token_unreadable, tokenId);
  }
}

/**
 * The token for a CONNECT, read again while a change of it reached this node
 * during the read (SPEC §4 "no window"): a change that committed after the
 * store answered would otherwise be applied to nothing.
 */
async function readToken(
  store: TokenStore, key: string, watch: LookupWatch, client: Client, first?: { findAndAdmit(key: string): Promise<Token | null> },
): Promise<Token | null> {
  let token = await (first ? first.findAndAdmit(key) : store.findByKey(key));
  for (let reads = 1; token !== null && reads < MAX_READS && watch.changed(token.id) && !client.closed; reads++) {
    watch.restart();
    token = await store.findByKey(key);
  }
  return token;
}
