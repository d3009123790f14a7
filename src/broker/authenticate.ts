// The CONNECT step (SPEC §4): key → token → checks, each refusal with its
// CONNACK code and a logged reason (never the key).
import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import { isExpired, isKeyShaped, topicError, type Token } from '../tokens/index.js';
import { ACCESS_MASTER } from '../tokens/types.js';
import { StoreDataError, StoreUnavailableError, type TokenStore } from '../store/types.js';
import type { AuthLimiter } from './auth-limiter.js';
import type { CompiledToken, Enforcement, LookupWatch } from './enforcement.js';
import { connectionOf, setConnectMeta, takeConnect } from './client-slots.js';
import { Session, type SessionRegistry } from './sessions.js';
import type { BrokerStats, ConnectResult } from './stats.js';
import type { ClientOwnership } from './client-ownership.js';

const CONNACK_IDENTIFIER_REJECTED = 2;
const CONNACK_SERVER_UNAVAILABLE = 3;
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_NOT_AUTHORIZED = 5;

const PREFIX = 'FlespiToken ';
/** Reads of one CONNECT's token while it keeps changing under it; then the session is refreshed once registered. */
const MAX_READS = 3;

export interface AuthDeps {
  store: TokenStore;
  registry: SessionRegistry;
  limiter: AuthLimiter;
  enforcement: Enforcement;
  stats: BrokerStats;
  log: Logger;
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

interface ClientInternals {
  _will?: { topic: string } | null;
}

export function createPreConnect(deps: Pick<AuthDeps, 'log'>) {
  return function preConnect(client: Client, packet: ConnectPacket, done: (err: Error | null, ok: boolean) => void): void {
    // SPEC §4, [MQTT-3.3.2-2]: a will topic must be a topic name (no wildcards, not empty, no NUL); Aedes
    // would publish it as is. A protocol violation: the connection closes without CONNACK.
    const willError = packet.will ? topicError(packet.will.topic) : null;
    if (willError !== null) {
      const ip = connectionOf(client)?.ip ?? '';
      deps.log.info({ clientId: packet.clientId, ip, reason: 'protocol_error' }, `connection closed: will topic ${willError}`);
      return done(new Error(`invalid will topic: ${willError}`), false);
    }
    setConnectMeta(client, { keepalive: packet.keepalive ?? 0, emptyIdPersistent: !packet.clientId && packet.clean === false, packet });
    done(null, true);
  };
}

export function createAuthenticate(deps: AuthDeps) {
  const { store, registry, limiter, enforcement, stats, log, ownership } = deps;

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
    const finish = (result: ConnectResult, code: number, reason: string, tokenId?: number): void => {
      stats.connects[result]++;
      stats.onAuthDuration((performance.now() - started) / 1000);
      if (code === 0) return done(null, true);
      log.info({ clientId: client.id, ip, tokenId, code, reason: result }, `connect refused: ${reason}`);
      done(refusal(code, reason), false);
    };

    if (!conn) return finish('store_unavailable', CONNACK_SERVER_UNAVAILABLE, 'connection not registered by a listener');
    // The parser keeps the CONNECT packet as long as the connection lives; it needs only its
    // protocol fields, not the key (nor a copy per session).
    if (connect) {
      connect.packet.username = undefined;
      connect.packet.password = undefined;
    }
    if (connect?.emptyIdPersistent) {
      return finish('client_id_rejected', CONNACK_IDENTIFIER_REJECTED, 'empty client id needs clean session (MQTT-3.1.3-8)');
    }
    const nowMs = Date.now();
    if (limiter.blocked(ip, nowMs)) {
      return finish('rate_limited', CONNACK_NOT_AUTHORIZED, 'too many failed attempts from this address');
    }
    const key = keyFromCredentials(username, password);
    if (!isKeyShaped(key)) {
      limiter.fail(ip, nowMs);
      return finish('bad_key', CONNACK_BAD_CREDENTIALS, 'malformed token');
    }

    // SPEC §4 "no window": watch the change feed from before the read until the session
    // exists, and read again when this token changed meanwhile.
    const watch = enforcement.watchLookup();
    let answered = false;
    const answer = (result: ConnectResult, code: number, reason: string, tokenId?: number): void => {
      if (answered) return;
      answered = true;
      finish(result, code, reason, tokenId);
    };

    const admit = (token: Token | null): Promise<void> | void => {
      if (client.closed) return; // gone while we waited: nothing to register
      const now = Math.floor(Date.now() / 1000);
      if (!token) {
        limiter.fail(ip, Date.now());
        return answer('bad_key', CONNACK_BAD_CREDENTIALS, 'unknown token');
      }
      if (isExpired(token, now)) {
        limiter.fail(ip, Date.now());
        return answer('expired', CONNACK_BAD_CREDENTIALS, 'token expired', token.id);
      }
      if (!token.enabled) return answer('disabled', CONNACK_NOT_AUTHORIZED, 'token disabled', token.id);
      // Shared with the token's other sessions (and tokens with the same access): nothing per session
      // unless this client id cannot fill a placeholder entry in (Rights.forSession).
      let compiled: CompiledToken;
      let session: Session;
      const will = (client as unknown as ClientInternals)._will;
      try {
        compiled = enforcement.compile(token);
        const ctx = { clientId: client.id, tokenId: token.id };
        session = new Session(
          client, client.id, token.id, compiled.tokenIdText, compiled.rights.forSession(ctx), compiled.ipMatcher,
          conn, now, client.clean, connect?.keepalive ?? 0, Boolean(will),
        );
        session.publishRate = token.limits.publish_rate;
      } catch (err) {
        return unreadable(token.id, err);
      }
      // SPEC §2: client id checks (CONNACK 2) come before limits (CONNACK 5).
      if (!compiled.clientIds.allows(client.id)) {
        return answer('client_id_rejected', CONNACK_IDENTIFIER_REJECTED, 'client id not in token clientids', token.id);
      }
      if (!session.ipMatcher.allows(ip)) return answer('ip_denied', CONNACK_NOT_AUTHORIZED, 'address not in token ips', token.id);
      if (!session.rights.hasMqtt) return answer('no_mqtt_rights', CONNACK_NOT_AUTHORIZED, 'token has no MQTT rights', token.id);
      if (will && !session.rights.canPublish(will.topic, session)) {
        return answer('will_denied', CONNACK_NOT_AUTHORIZED, 'will topic not allowed', token.id);
      }
      // SPEC §2 limits.sessions and §4 client id ownership: the last checks, so that no CONNECT refused
      // for another reason holds a claim. Master takes over any client id.
      return ownership.admit(client.id, token.id, client.clean, token.access.type === ACCESS_MASTER, token.limits.sessions).then((admission) => {
        if (!admission.ok) return answer(admission.reason, admission.code, admission.message, token.id);
        if (client.closed) return ownership.abandon(admission.claim);
        // Still changed after the re-reads: admit on this reading and let the store decide right away.
        const unsettled = watch.changed(token.id);
        registry.add(session);
        ownership.bind(session, admission.claim);
        enforcement.tokenInUse(token, compiled);
        if (unsettled) enforcement.refresh(token.id);
        answer('ok', 0, 'ok', token.id);
      });
    };

    // SPEC §2: a stored token this node cannot read never stops it: CONNACK 5, an error naming the id.
    const unreadable = (tokenId: number | undefined, err: unknown): void => {
      stats.storeErrors++;
      log.error({ tokenId, clientId: client.id, ip, reason: err instanceof Error ? err.message : String(err) }, 'stored token cannot be read');
      answer('token_unreadable', CONNACK_NOT_AUTHORIZED, 'stored token cannot be read', tokenId);
    };

    readToken(store, key, watch, client)
      .then(admit)
      // `.catch` last: a throw while admitting is handled here, never an unhandled rejection (PITFALLS).
      .catch((err: unknown) => {
        if (client.closed) return;
        if (err instanceof StoreDataError) return unreadable(err.tokenId, err);
        stats.storeErrors++;
        if (!(err instanceof StoreUnavailableError)) log.error({ err, clientId: client.id, ip }, 'token lookup failed');
        answer('store_unavailable', CONNACK_SERVER_UNAVAILABLE, 'token store unavailable');
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
async function readToken(store: TokenStore, key: string, watch: LookupWatch, client: Client): Promise<Token | null> {
  let token = await store.findByKey(key);
  for (let reads = 1; token !== null && reads < MAX_READS && watch.changed(token.id) && !client.closed; reads++) {
    watch.restart();
    token = await store.findByKey(key);
  }
  return token;
}
