// REST authentication and authorisation (SPEC §5): the key in the
// Authorization header → the access gate (the same one MQTT CONNECT uses:
// guard, validity, `ips`) → the access type or ACL for this method and path.
// Runs as an onRequest hook, before the body is read, so a caller without a
// usable token never gets a body parsed.
import type { BlockList } from 'node:net';
import type { FastifyBaseLogger, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { isExpired, type Rights, type Token } from '../tokens/index.js';
import type { AccessGate, AccessCheck } from '../access/gate.js';
import { HTTP_BY_CAUSE, UNAUTHORIZED_LOCATION } from '../access/causes.js';
import { clientIpFrom } from '../access/client-ip.js';
import type { TokenCache } from '../access/token-cache.js';
import { ApiError } from './errors.js';

export { UNAUTHORIZED_LOCATION };

/** What a request learned about its caller; `null` on routes without auth. */
export interface AuthContext {
  token: Token;
  /** The token's shared rights (placeholders kept): ask MQTT questions with a context naming the client id. */
  rights: Rights;
  /** `${token_id}` as compared. */
  tokenIdText: string;
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
const MISSING = 'missing Authorization header (expected FlespiToken <key>)';
const MALFORMED = 'malformed token (expected Authorization: FlespiToken <key>)';

export interface AuthenticatorDeps {
  gate: AccessGate;
  /** Key → token lookups go through it (see access/token-cache.ts). */
  cache: TokenCache;
  trustProxy?: BlockList;
  log: FastifyBaseLogger;
  /** Called once per authentication attempt with its duration in seconds. */
  onAuthDuration?: (seconds: number) => void;
  /** REST's checks after the gate's common ones (gate.ts step 7): a child token's ancestors go here. */
  checks?: readonly AccessCheck[];
}

export interface Authenticator {
  /** The onRequest hook that route groups needing a token add. */
  hook: onRequestAsyncHookHandler;
}

export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const { gate, cache, trustProxy, onAuthDuration } = deps;

  function refuse(request: FastifyRequest, status: number, reason: string, ip: string, tokenId?: number): ApiError {
    request.log.info({ ip, tokenId, status, reason }, 'request refused');
    return new ApiError(status, reason, status === 401 ? CHALLENGE : undefined);
  }

  /** A cached token's `accessed` may be behind the store's (touched since): ask the store before calling it expired. */
  async function lookup(key: string): Promise<Token | null> {
    const token = await cache.find(key, Date.now());
    if (token !== null && isExpired(token, Math.floor(Date.now() / 1000))) return cache.find(key, Date.now(), true);
    return token;
  }
  const context = { lookup, checks: deps.checks };

  async function check(request: FastifyRequest): Promise<void> {
    const ip = clientIpFrom(request.socket.remoteAddress, request.headers['x-forwarded-for'], trustProxy);
    const header = request.headers.authorization;
    const key = header === undefined || header === '' ? undefined : AUTH_HEADER.exec(header)?.[1] ?? '\0';
    // StoreUnavailableError → 503; anything else → 500, logged by the error handler.
    const decision = (await gate.authorize(key, ip, context))!;
    if (!decision.ok) {
      if (decision.cause === 'token_unreadable') {
        // SPEC §2: a stored token this node cannot read is a 401, logged by its id (never the key).
        const reason = decision.error instanceof Error ? decision.error.message : String(decision.error);
        request.log.error({ tokenId: decision.tokenId, reason }, 'stored token cannot be read');
      }
      const { status } = HTTP_BY_CAUSE[decision.cause];
      let { reason } = HTTP_BY_CAUSE[decision.cause];
      if (decision.key === 'missing') reason = MISSING;
      else if (decision.key === 'malformed') reason = MALFORMED;
      if (decision.cause === 'store_unavailable') throw decision.error;
      throw refuse(request, status, reason, ip, decision.tokenId);
    }
    const { token, compiled } = decision;
    // Authenticated: SPEC §2, every authenticated request refreshes `accessed`.
    gate.touch.soon(token.id);
    if (!compiled.rights.canRest(request.method, request.url)) {
      const path = request.url.split('?')[0] ?? '';
      const shown = path.length > 128 ? `${path.slice(0, 128)}...` : path;
      throw refuse(request, 403, `token access does not allow ${request.method} ${shown}`, ip, token.id);
    }
    request.auth = { token, rights: compiled.rights, tokenIdText: compiled.tokenIdText, ip };
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
