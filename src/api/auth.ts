// REST authentication and authorisation (SPEC §5): the key in the
// Authorization header → token → validity, `ips`, then the access type or ACL
// for this method and path. Runs as an onRequest hook, before the body is read,
// so a caller without a usable token never gets a body parsed.
import type { BlockList } from 'node:net';
import type { FastifyBaseLogger, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { AuthLimiter, BrokerStats } from '../broker/index.js';
import { clientIpFrom } from '../broker/client-ip.js';
import { compileIpMasks, compileRights, isExpired, isKeyShaped, type IpMatcher, type Rights, type Token } from '../tokens/index.js';
import { StoreDataError, type TokenStore } from '../store/types.js';
import { checkAncestors } from '../store/ancestors.js';
import { ApiError } from './errors.js';
import type { TokenCache } from './token-cache.js';

/** What a request learned about its caller; `null` on routes without auth. */
export interface AuthContext {
  token: Token;
  rights: Rights;
  /** The client IP the token was judged by (SPEC §4 "Client IP"). */
  ip: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext | null;
  }
}

/** `FlespiToken <key>` or `Bearer <key>` (scheme names are case-insensitive, RFC 9110 §11.1). */
const AUTH_HEADER = /^(?:FlespiToken|Bearer)[ \t]+([^ \t]+)[ \t]*$/i;
const CHALLENGE = { 'www-authenticate': 'FlespiToken realm="tokenmq", Bearer realm="tokenmq"' };
/** SPEC §5 reason for an IP outside the token's `ips`. */
export const UNAUTHORIZED_LOCATION = 'using token from unauthorized location';
const UNREADABLE = 'stored token cannot be read';

export interface AuthenticatorDeps {
  /** Key → token lookups go through it (see token-cache.ts). */
  cache: TokenCache;
  /** Ancestors of child tokens are read from it, uncached (SPEC §2 `parent`). */
  store: Pick<TokenStore, 'get'>;
  limiter: AuthLimiter;
  /** The broker's counters: REST store failures count as store errors too. */
  stats: BrokerStats;
  trustProxy?: BlockList;
  log: FastifyBaseLogger;
  /** Called once per authentication attempt with its duration in seconds. */
  onAuthDuration?: (seconds: number) => void;
  /** Marks a token used: the broker's batched `accessed` write (Enforcement.touchSoon). */
  touch: (tokenId: number) => void;
}

export interface Authenticator {
  /** The onRequest hook that route groups needing a token add. */
  hook: onRequestAsyncHookHandler;
}

export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const { cache, limiter, stats, trustProxy, onAuthDuration } = deps;
  const ipMatchers = new IpMatcherCache();

  function refuse(request: FastifyRequest, status: number, reason: string, ip: string, tokenId?: number): ApiError {
    request.log.info({ ip, tokenId, status, reason }, 'request refused');
    return new ApiError(status, reason, status === 401 ? CHALLENGE : undefined);
  }

  async function check(request: FastifyRequest): Promise<void> {
    const ip = clientIpFrom(request.socket.remoteAddress, request.headers['x-forwarded-for'], trustProxy);
    const nowMs = Date.now();
    // SPEC §4: an address over the limit is refused without asking the store.
    if (limiter.blocked(ip, nowMs)) throw refuse(request, 429, 'too many failed authentication attempts from this address, try again later', ip);
    const header = request.headers.authorization;
    if (header === undefined || header === '') {
      throw refuse(request, 401, 'missing Authorization header (expected FlespiToken <key>)', ip);
    }
    const key = AUTH_HEADER.exec(header)?.[1];
    if (key === undefined || !isKeyShaped(key)) {
      limiter.fail(ip, nowMs);
      throw refuse(request, 401, 'malformed token (expected Authorization: FlespiToken <key>)', ip);
    }
    let token: Token | null;
    let now: number;
    try {
      token = await cache.find(key, nowMs);
      now = Math.floor(Date.now() / 1000);
      // A cached token's `accessed` may be behind the store's (touched since): ask the store before refusing.
      if (token !== null && isExpired(token, now)) token = await cache.find(key, Date.now(), true);
    } catch (err) {
      stats.storeErrors++;
      // SPEC §2: a stored token this node cannot read is a 401, logged by its id (never the key).
      if (err instanceof StoreDataError) {
        request.log.error({ tokenId: err.tokenId, reason: err.message }, 'stored token cannot be read');
        throw refuse(request, 401, UNREADABLE, ip, err.tokenId);
      }
      throw err; // StoreUnavailableError → 503; anything else → 500, logged by the error handler
    }
    if (token === null) {
      limiter.fail(ip, Date.now());
      throw refuse(request, 401, 'unknown token', ip);
    }
    // Counted like an unknown key, as the broker does: an expired token is about to be deleted.
    if (isExpired(token, now)) {
      limiter.fail(ip, Date.now());
      throw refuse(request, 401, 'token expired', ip, token.id);
    }
    if (!token.enabled) throw refuse(request, 401, 'token disabled', ip, token.id);
    if (!ipMatchers.get(token.ips).allows(ip)) throw refuse(request, 401, UNAUTHORIZED_LOCATION, ip, token.id);
    if (token.parent !== 0) {
      // SPEC §2 `parent`: each ancestor's enabled, validity and ips apply to a child too.
      let ancestor;
      try {
        ancestor = await checkAncestors(deps.store, token, ip, now);
      } catch (err) {
        stats.storeErrors++;
        if (err instanceof StoreDataError) {
          request.log.error({ tokenId: err.tokenId, reason: err.message }, 'stored token cannot be read');
          throw refuse(request, 401, UNREADABLE, ip, token.id);
        }
        throw err;
      }
      if (ancestor !== null) throw refuse(request, 401, ancestor.kind === 'ip_denied' ? UNAUTHORIZED_LOCATION : ancestor.reason, ip, token.id);
    }
    // Authenticated: SPEC §2, every authenticated request refreshes `accessed`.
    deps.touch(token.id);
    let rights: Rights;
    try {
      rights = rightsOf(token);
    } catch (err) {
      request.log.error({ tokenId: token.id, reason: err instanceof Error ? err.message : String(err) }, 'stored token cannot be read');
      throw refuse(request, 401, UNREADABLE, ip, token.id);
    }
    if (!rights.canRest(request.method, request.url)) {
      const path = request.url.split('?')[0] ?? '';
      const shown = path.length > 128 ? `${path.slice(0, 128)}...` : path;
      throw refuse(request, 403, `token access does not allow ${request.method} ${shown}`, ip, token.id);
    }
    request.auth = { token, rights, ip };
  }

  return {
    async hook(request) {
      if (!onAuthDuration) return check(request);
      const started = process.hrtime.bigint();
      try {
        await check(request);
      } finally {
        onAuthDuration(Number(process.hrtime.bigint() - started) / 1e9);
      }
    },
  };
}

/**
 * REST rights of a token, compiled once per token object: cached tokens
 * (token-cache.ts) are the same object from request to request.
 */
const compiled = new WeakMap<Token, Rights>();
function rightsOf(token: Token): Rights {
  let rights = compiled.get(token);
  if (!rights) {
    rights = compileRights(token.access, { clientId: '', tokenId: token.id });
    compiled.set(token, rights);
  }
  return rights;
}

/** Compiled `ips` masks by their text: compiling (minimatch) is far dearer than matching. */
class IpMatcherCache {
  private static readonly MAX = 1024;
  private readonly cache = new Map<string, IpMatcher>();

  get(ips: string): IpMatcher {
    let matcher = this.cache.get(ips);
    if (matcher) return matcher;
    try {
      matcher = compileIpMasks(ips);
    } catch {
      // Stored masks were validated on write; an unreadable one admits nobody.
      matcher = { any: false, allows: () => false };
    }
    if (this.cache.size >= IpMatcherCache.MAX) this.cache.clear();
    this.cache.set(ips, matcher);
    return matcher;
  }
}
