// The CONNECT step (SPEC §4): key → token → checks, each refusal with its
// CONNACK code and a logged reason (never the key).
import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import { compileIpMasks, compileRights, isKeyShaped, isValid, topicError } from '../tokens/index.js';
import { StoreUnavailableError, type TokenStore } from '../store/types.js';
import type { AuthLimiter } from './auth-limiter.js';
import type { Enforcement } from './enforcement.js';
import { Session, type ConnectionInfo, type SessionRegistry } from './sessions.js';
import type { BrokerStats, ConnectResult } from './stats.js';

const CONNACK_IDENTIFIER_REJECTED = 2;
const CONNACK_SERVER_UNAVAILABLE = 3;
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_NOT_AUTHORIZED = 5;

const PREFIX = 'FlespiToken ';

export interface AuthDeps {
  store: TokenStore;
  registry: SessionRegistry;
  limiter: AuthLimiter;
  enforcement: Enforcement;
  connections: WeakMap<object, ConnectionInfo>;
  stats: BrokerStats;
  log: Logger;
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

/** What only preConnect sees of the CONNECT packet, kept for authenticate. */
export interface ConnectMeta {
  keepalive: number;
  /** MQTT-3.1.3-8: empty client id with clean session 0 (Aedes would invent an id). */
  emptyIdPersistent: boolean;
}

export function createPreConnect(meta: WeakMap<Client, ConnectMeta>, deps: Pick<AuthDeps, 'connections' | 'log'>) {
  return function preConnect(client: Client, packet: ConnectPacket, done: (err: Error | null, ok: boolean) => void): void {
    // SPEC §4, [MQTT-3.3.2-2]: a will topic must be a topic name (no wildcards, not empty, no NUL); Aedes
    // would publish it as is. A protocol violation: the connection closes without CONNACK.
    const willError = packet.will ? topicError(packet.will.topic) : null;
    if (willError !== null) {
      const ip = deps.connections.get(client.conn)?.ip ?? '';
      deps.log.info({ clientId: packet.clientId, ip, reason: 'protocol_error' }, `connection closed: will topic ${willError}`);
      return done(new Error(`invalid will topic: ${willError}`), false);
    }
    meta.set(client, { keepalive: packet.keepalive ?? 0, emptyIdPersistent: !packet.clientId && packet.clean === false });
    done(null, true);
  };
}

export function createAuthenticate(deps: AuthDeps, meta: WeakMap<Client, ConnectMeta>) {
  const { store, registry, limiter, enforcement, connections, stats, log } = deps;

  return function authenticate(
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void {
    const started = process.hrtime.bigint();
    const conn = connections.get(client.conn);
    const ip = conn?.ip ?? '';
    const finish = (result: ConnectResult, code: number, reason: string, tokenId?: number): void => {
      stats.connects[result]++;
      stats.onAuthDuration(Number(process.hrtime.bigint() - started) / 1e9);
      if (code === 0) return done(null, true);
      log.info({ clientId: client.id, ip, tokenId, code, reason: result }, `connect refused: ${reason}`);
      done(refusal(code, reason), false);
    };

    if (!conn) return finish('store_unavailable', CONNACK_SERVER_UNAVAILABLE, 'connection not registered by a listener');
    const connect = meta.get(client);
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

    store.findByKey(key).then((token) => {
      if (client.closed) return;
      const now = Math.floor(Date.now() / 1000);
      if (!token) {
        limiter.fail(ip, Date.now());
        return finish('bad_key', CONNACK_BAD_CREDENTIALS, 'unknown token');
      }
      if (!isValid({ ...token, enabled: true }, now)) {
        limiter.fail(ip, Date.now());
        return finish('expired', CONNACK_BAD_CREDENTIALS, 'token expired', token.id);
      }
      if (!token.enabled) return finish('disabled', CONNACK_NOT_AUTHORIZED, 'token disabled', token.id);
      const ipMatcher = compileIpMasks(token.ips);
      if (!ipMatcher.allows(ip)) return finish('ip_denied', CONNACK_NOT_AUTHORIZED, 'address not in token ips', token.id);
      const rights = compileRights(token.access, { clientId: client.id, tokenId: token.id });
      if (!rights.hasMqtt) return finish('no_mqtt_rights', CONNACK_NOT_AUTHORIZED, 'token has no MQTT rights', token.id);
      const will = (client as unknown as ClientInternals)._will;
      if (will && !rights.canPublish(will.topic)) {
        return finish('will_denied', CONNACK_NOT_AUTHORIZED, 'will topic not allowed', token.id);
      }
      const keepalive = connect?.keepalive ?? 0;
      const session = new Session(client, client.id, token.id, rights, ipMatcher, conn, now, client.clean, keepalive, Boolean(will));
      registry.add(session);
      enforcement.tokenInUse(token);
      finish('ok', 0, 'ok', token.id);
    }, (err: unknown) => {
      stats.storeErrors++;
      if (!(err instanceof StoreUnavailableError)) log.error({ err, clientId: client.id, ip }, 'token lookup failed');
      finish('store_unavailable', CONNACK_SERVER_UNAVAILABLE, 'token store unavailable');
    });
  };
}
