// REST authentication and authorisation (SPEC §5): the key in the
// Authorization header → token → validity, `ips`, then the access type or ACL
// for this method and path. Runs as an onRequest hook, before the body is read,
// so a caller without a usable token never gets a body parsed.
import type { BlockList } from 'node:net';
import type { FastifyBaseLogger, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { AuthLimiter, BrokerStats } from '../broker/index.js';
import { clientIpFrom } from '../broker/client-ip.js';
import { StoreUnavailableError, type TokenStore } from '../store/types.js';
import { compileIpMasks, compileRights, isExpired, isKeyShaped, type IpMatcher, type Rights, type Token } from '../tokens/index.js';
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

export interface AuthenticatorDeps {
  store: TokenStore;
  /** Key → token lookups go through it (see token-cache.ts). */
  cache: TokenCache;
  limiter: AuthLimiter;
  /** The broker's counters: REST store failures count as store errors too. */
  stats: BrokerStats;
  trustProxy?: BlockList;
  log: FastifyBaseLogger;
  /** Called once per authentication attempt with its duration in seconds. */
  onAuthDuration?: (seconds: number) => void;
  /** How often one token's `accessed` is written at most, ms (default 1000). */
  touchIntervalMs?: number;
}

export interface Authenticator {
  /** The onRequest hook that route groups needing a token add. */
  hook: onRequestAsyncHookHandler;
  /** Writes pending `accessed` updates and stops the timer (SPEC §1 shutdown). */
  close(): Promise<void>;
}

export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const { store, cache, limiter, stats, trustProxy, onAuthDuration } = deps;
  const ipMatchers = new IpMatcherCache();
  const toucher = new AccessToucher(store, deps.touchIntervalMs ?? 1000, (err) => {
    stats.storeErrors++;
    if (err instanceof StoreUnavailableError) deps.log.debug({ err: err.message }, 'accessed update skipped: store unavailable');
    else deps.log.warn({ err }, 'accessed update failed');
  });

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
    // Authenticated: SPEC §2, every authenticated request refreshes `accessed`.
    toucher.note(token.id, Date.now());
    const rights = rightsOf(token);
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
    close: () => toucher.close(),
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

/**
 * Batched `accessed` refresh (SPEC §2): a token's first request in a quiet
 * interval is written at once (fire and forget); later ones within the
 * interval are written together when it ends, with the second they happened
 * (so a ttl token used just before its deadline is still extended).
 */
export class AccessToucher {
  /** Token id → when its `accessed` was last written, ms. */
  private readonly written = new Map<number, number>();
  /** Token id → the latest request second not yet written. */
  private readonly pending = new Map<number, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly store: TokenStore,
    private readonly intervalMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  note(id: number, nowMs: number): void {
    if (this.closed) return;
    const last = this.written.get(id);
    if (last === undefined || nowMs - last >= this.intervalMs) {
      this.written.set(id, nowMs);
      this.pending.delete(id);
      this.write([id], Math.floor(nowMs / 1000));
    } else {
      this.pending.set(id, Math.floor(nowMs / 1000));
    }
    this.arm();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flush();
    await Promise.all([...this.inFlight]);
  }

  private arm(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
      if (this.written.size > 0 || this.pending.size > 0) this.arm();
    }, this.intervalMs);
    this.timer.unref();
  }

  private flush(): void {
    const now = Date.now();
    const bySecond = new Map<number, number[]>();
    for (const [id, second] of this.pending) {
      let ids = bySecond.get(second);
      if (!ids) bySecond.set(second, (ids = []));
      ids.push(id);
      this.written.set(id, now);
    }
    this.pending.clear();
    for (const [id, at] of this.written) if (now - at >= this.intervalMs) this.written.delete(id);
    for (const [second, ids] of bySecond) this.write(ids, second);
  }

  private write(ids: number[], second: number): void {
    let done: Promise<void>;
    try {
      done = this.store.touch(ids, second).catch(this.onError);
    } catch (err) {
      this.onError(err);
      return;
    }
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }
}
