// The CONNECT step (SPEC §4): key → token → checks, each refusal with its
// CONNACK code and a logged reason (never the key).
import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import { topicError, type Rights, type Token } from '../tokens/index.js';
import { ACCESS_MASTER } from '../tokens/types.js';
import { StoreDataError, type AdmitRequest, type AdmitResult, type TokenStore } from '../store/types.js';
import type { AccessCheck, AccessGate, Decision, Grant } from '../access/gate.js';
import { CONNACK, CONNACK_BY_CAUSE, LOG_REASON } from '../access/causes.js';
import type { CompiledToken, Enforcement, LookupWatch } from './enforcement.js';
import { connectionOf, setConnectMeta, takeConnect } from './client-slots.js';
import { connectWill } from './aedes-internals.js';
import { Session, type SessionRegistry } from './sessions.js';
import type { BrokerStats, ConnectResult } from './stats.js';
import type { BrokerEvents } from './events.js';
import type { Admission, Claim, ClientOwnership } from './client-ownership.js';

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

export function createAuthenticate(deps: AuthDeps) {
  const { store, registry, gate, enforcement, stats, log, ownership } = deps;

  return function authenticate(
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    const started = performance.now();
    // Read once: from here the session (or nothing, once refused) holds the connection's info.
    const { conn, meta: connect } = takeConnect(client);
    const ip = conn?.ip ?? '';
    let answered = false;
    const finish = (result: ConnectResult, code: number, reason: string, tokenId?: number): void => {
      if (answered) return;
      answered = true;
      stats.connects[result]++;
      stats.onAuthDuration((performance.now() - started) / 1000);
      if (code === 0) return done(null, true);
      log.info({ clientId: client.id, ip, tokenId, code, reason: result }, `connect refused: ${reason}`);
      deps.events?.refused({ clientId: client.id, ip, transport: conn?.transport, tokenId, code, reason: result });
      done(refusal(code, reason), false);
    };

    if (!conn) return finish('store_unavailable', CONNACK.SERVER_UNAVAILABLE, 'connection not registered by a listener');
    // The parser keeps the CONNECT packet as long as the connection lives; it needs only its
    // protocol fields, not the key (nor a copy per session).
    // Only fields it has: assigning one it lacks would grow every session's packet (issue 9).
    if (connect) {
      if (connect.packet.username !== undefined) connect.packet.username = undefined;
      if (connect.packet.password !== undefined) connect.packet.password = undefined;
    }
    if (connect?.emptyIdPersistent) {
      return finish('client_id_rejected', CONNACK.IDENTIFIER_REJECTED, 'empty client id needs clean session (MQTT-3.1.3-8)');
    }
    const key = keyFromCredentials(username, password);

    // SPEC §4 "no window": watch the change feed from before the read until the session
    // exists, and read again when this token changed meanwhile.
    const watch = enforcement.watchLookup();
    const will = connectWill(client);
    // The session's rights: the shared ones unless this client id cannot fill a placeholder in (Rights.forSession).
    let sessionRights: Rights | undefined;
    const rightsOf = (grant: Grant): Rights => (sessionRights ??= grant.compiled.rights.forSession({ clientId: client.id, tokenId: grant.token.id }));
    // The compiled access judged with: enforcement's, which adds this token's `clientids` matcher.
    let compiledToken: CompiledToken | undefined;
    // What the ownership check claimed in the store: the session's once it exists, else given back.
    let claim: Claim | undefined;
    // What the store's find-and-admit answered for this CONNECT (Redis mode: the claim made in
    // the lookup's round trip), until the ownership check takes it over; given back if never taken.
    let found: { req: AdmitRequest; tokenId: number; result: AdmitResult } | undefined;
    /** Resolves once the store answered every undo (never rejects). */
    const giveBack = (): Promise<void> => {
      if (claim === undefined && !found?.result.ok) {
        found = undefined;
        return DONE; // the usual CONNECT: nothing to give back
      }
      const undone: Promise<void>[] = [];
      if (claim !== undefined) undone.push(ownership.abandon(claim));
      claim = undefined;
      if (found?.result.ok) undone.push(ownership.abandon(ownership.claimOf(found.req, [found.tokenId], found.result)));
      found = undefined;
      return Promise.all(undone).then(() => {});
    };
    const findAndAdmit = store.findByKeyAndAdmit?.bind(store);
    const firstRead = findAndAdmit === undefined ? undefined : async (k: string): Promise<Token | null> => {
      const req = ownership.request(client.id, client.clean);
      const { token, admission } = await findAndAdmit(k, req);
      if (token !== null && admission !== null) found = { req, tokenId: token.id, result: admission };
      return token;
    };
    // MQTT's checks after the gate's common ones (gate.ts, step 8), in order. SPEC §2 order:
    // `clientids` and client id ownership (CONNACK 2) before `limits.sessions` (CONNACK 5).
    // The claim goes last, so that no CONNECT refused for another reason holds one; it
    // judges ownership before the session slot (client-ownership.ts).
    const checks: AccessCheck[] = [
      () => (compiledToken === undefined || compiledToken.clientIds.allows(client.id) ? null : 'client_id_rejected'),
      (grant) => (rightsOf(grant).hasMqtt ? null : 'no_mqtt_rights'),
      (grant) => (will && !rightsOf(grant).canPublish(will.topic, { clientId: client.id, tokenIdText: grant.compiled.tokenIdText })
        ? 'will_denied' : null),
      async (grant) => {
        const { token } = grant;
        let admission: Admission;
        if (found !== undefined && found.tokenId === token.id) {
          // Claimed in the lookup's own round trip (Redis mode): its answer, as judged there.
          const { req, result } = found;
          found = undefined;
          admission = await ownership.admitted(req, [token.id], result);
        } else {
          // SPEC §2 parent: a child's session counts toward its own limits.sessions and each ancestor's.
          const counts = [token, ...(grant.ancestors ?? [])].map((t) => ({ tokenId: t.id, limit: t.limits.sessions }));
          admission = await ownership.admit(client.id, token.id, client.clean, token.access.type === ACCESS_MASTER, counts);
        }
        if (!admission.ok) return admission.reason;
        claim = admission.claim;
        return null;
      },
    ];

    const admit = (decision: Decision | null): void => {
      if (decision === null || client.closed) {
        void giveBack(); // gone while we waited: nothing to register, a claim made for it is given back
        return;
      }
      if (!decision.ok) {
        // Answered once the claim the lookup made (Redis mode) is given back: a refused CONNECT
        // holds no client id, so the next one for it sees the record as before.
        void giveBack().then(() => {
          if (decision.cause === 'token_unreadable') return unreadable(decision.tokenId, decision.error);
          const reason = decision.key === 'malformed' || decision.key === 'missing' ? 'malformed token' : LOG_REASON[decision.cause];
          return finish(decision.cause, CONNACK_BY_CAUSE[decision.cause], reason, decision.tokenId);
        }).catch((err: unknown) => log.error({ err, clientId: client.id }, 'connect refusal failed'));
        return;
      }
      const { token } = decision;
      const compiled = compiledToken ?? enforcement.compile(token);
      const now = Math.floor(Date.now() / 1000);
      // Shared with the token's other sessions (and tokens with the same access): nothing per session
      // unless this client id cannot fill a placeholder entry in (Rights.forSession).
      const session = new Session(
        client, client.id, token.id, compiled.tokenIdText, rightsOf(decision), compiled.ipMatcher,
        conn, now, client.clean, connect?.keepalive ?? 0, Boolean(will),
      );
      session.publishRate = token.limits.publish_rate;
      // Still changed after the re-reads: admit on this reading and let the store decide right away.
      const unsettled = watch.changed(token.id);
      registry.add(session);
      if (claim !== undefined) ownership.bind(session, claim);
      claim = undefined;
      void giveBack(); // a find-and-admit claim the ownership check never took (none when it ran)
      enforcement.tokenInUse(token, compiled);
      if (unsettled) enforcement.refresh(token.id);
      finish('ok', 0, 'ok', token.id);
    };

    // SPEC §2: a stored token this node cannot read never stops it: CONNACK 5, an error naming the id.
    const unreadable = (tokenId: number | undefined, err: unknown): void => {
      if (!(err instanceof StoreDataError)) stats.storeErrors++; // the gate counted the store's own
      log.error({ tokenId, clientId: client.id, ip, reason: err instanceof Error ? err.message : String(err) }, 'stored token cannot be read');
      finish('token_unreadable', CONNACK.NOT_AUTHORIZED, LOG_REASON.token_unreadable, tokenId);
    };

    gate.authorize(key, ip, {
      lookup: (k) => readToken(store, k, watch, client, firstRead),
      // The rights and matcher this token's live sessions hold, when unchanged (enforcement.ts).
      compile: (token) => (compiledToken = enforcement.compile(token)),
      checks,
      // SPEC §2 parent: each ancestor's `clientids` must admit this client id too.
      clientId: client.id,
      stillWanted: () => !client.closed,
    })
      .then(admit)
      // `.catch` last: a throw while admitting is handled here, never an unhandled rejection (PITFALLS).
      .catch((err: unknown) => {
        void giveBack();
        if (client.closed) return;
        log.error({ err, clientId: client.id, ip }, 'token lookup failed');
        finish('store_unavailable', CONNACK.SERVER_UNAVAILABLE, LOG_REASON.store_unavailable);
      })
      .catch((err: unknown) => log.error({ err, clientId: client.id }, 'connect handling failed'))
      .finally(() => watch.end());
  };
}

/**
 * The token for a CONNECT, read again while a change of it reached this node
 * during the read (SPEC §4 "no window"): a change that committed after the
 * store answered would otherwise be applied to nothing.
 */
async function readToken(
  store: TokenStore, key: string, watch: LookupWatch, client: Client, firstRead?: (key: string) => Promise<Token | null>,
): Promise<Token | null> {
  let token = await (firstRead ?? ((k: string) => store.findByKey(k)))(key);
  for (let reads = 1; token !== null && reads < MAX_READS && watch.changed(token.id) && !client.closed; reads++) {
    watch.restart();
    token = await store.findByKey(key);
  }
  return token;
}
