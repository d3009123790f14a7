// The one access gate (SPEC §3, §4, §5): a key and a client IP in, a grant or
// a refusal cause out, for MQTT CONNECT (broker/authenticate.ts) and REST
// (api/auth.ts) alike. Protocol-specific answers come from causes.ts; what
// differs between the two is only how the token is read (`lookup`) and which
// checks follow the common ones (`checks`).
//
// Order (each step may refuse; the first refusal wins):
//   1. brute-force guard: an address over the limit is refused before the store is asked
//   2. key shape (malformed: counted by the guard)
//   3. lookup (store errors: `token_unreadable` / `store_unavailable`)
//   4. unknown or expired (counted by the guard), then disabled
//   5. compile the token's access and `ips` (data that does not compile: `token_unreadable`)
//   6. client IP in `ips`
//   7. a child token's ancestors (SPEC §2 `parent`): each one's `enabled`, validity,
//      `ips` and (MQTT: `ctx.clientId`) `clientids`, read from the store uncached
//      (store/ancestors.ts); a parent gone or expired refuses as an expired token (its
//      children go with it). The grant carries them (`ancestors`) for the checks.
//   8. the caller's `checks`, in the order given. MQTT: rights, will. This is where
//      client id ownership and `clientids` (CONNACK 2) and `limits.sessions`
//      (CONNACK 5) plug in: each returns a cause or null.
import { compileIpMasks, compileSharedRights, isExpired, isKeyShaped, type IpMatcher, type Rights, type Token } from '../tokens/index.js';
import { checkAncestors } from '../store/ancestors.js';
import { StoreDataError, StoreUnavailableError, type TokenStore } from '../store/types.js';
import type { AuthLimiter } from './auth-limiter.js';
import type { RefusalCause } from './causes.js';
import { Interned } from './interned.js';
import type { TouchBatcher } from './touch-batcher.js';

/** A token's access and `ips`, compiled once and shared by every user of the same values. */
export interface CompiledAccess {
  /** Shared rights (placeholders kept): ask with a context naming the session (`forSession`). */
  rights: Rights;
  ipMatcher: IpMatcher;
  /** `${token_id}` as compared, one string per token. */
  tokenIdText: string;
}

export interface Grant {
  ok: true;
  token: Token;
  compiled: CompiledAccess;
  /** A child token's ancestors as step 7 read them, parent first (absent: no parent). */
  ancestors?: readonly Token[];
}

/** How a key failed before a token was found, for the protocol's own wording. */
export type KeyProblem = 'missing' | 'malformed' | 'unknown';

export interface Refusal {
  ok: false;
  cause: RefusalCause;
  tokenId?: number;
  /** For `bad_key`: what was wrong with it. */
  key?: KeyProblem;
  /** For `token_unreadable` and `store_unavailable`: the error, to log (never holds the key). */
  error?: unknown;
}

export type Decision = Grant | Refusal;

/**
 * A check after the common ones: a refusal cause, or null to let the next check run (sync when it
 * can: no promise per CONNECT). It is given the context it runs for, so that one list serves every call.
 */
export type AccessCheck = (grant: Grant, ctx: AuthorizeContext) => RefusalCause | null | Promise<RefusalCause | null>;

/** An answer given at once when it can be (memory store), else later: no promise per CONNECT when none is needed (issue 9). */
export type Maybe<T> = T | Promise<T>;

export interface AuthorizeContext {
  /** Reads the token of a well-formed key (MQTT: the store with its re-reads; REST: the key cache). */
  lookup(key: string): Maybe<Token | null>;
  /** The compiled access to judge with (MQTT: the ones its sessions hold); default `gate.compile`. */
  compile?(token: Token): CompiledAccess;
  /** Run in order after the common checks (see the header). */
  checks?: readonly AccessCheck[];
  /** MQTT: the CONNECT's client id, which each ancestor's `clientids` must admit (step 7). */
  clientId?: string;
  /** Whether to go on after the lookup (MQTT: false once the client is gone); the answer is then `null`. */
  stillWanted?(): boolean;
}

export interface AccessGateOptions {
  limiter: AuthLimiter;
  /** The `accessed` batcher, shared by enforcement and REST. */
  touch: TouchBatcher;
  /** Counts a failed store read (broker stats). */
  onStoreError?(): void;
  /** Where a child token's ancestors are read (step 7); without it tokens are judged alone. */
  ancestors?: Pick<TokenStore, 'get'>;
}

const NO_CONTEXT: AuthorizeContext = { lookup: () => Promise.resolve(null) };

export function refusal(cause: RefusalCause, tokenId?: number, key?: KeyProblem): Refusal {
  return { ok: false, cause, tokenId, key };
}

export class AccessGate {
  readonly limiter: AuthLimiter;
  readonly touch: TouchBatcher;
  private readonly rightsByAccess = new Interned<Rights>();
  /** Weakly, as rightsByAccess: compiled rights live only while sessions hold them. */
  private readonly rightsByObject = new WeakMap<object, WeakRef<Rights>>();
  private readonly ipMatchers = new Interned<IpMatcher>();
  private readonly onStoreError: () => void;
  private readonly ancestors: Pick<TokenStore, 'get'> | undefined;

  constructor(options: AccessGateOptions) {
    this.ancestors = options.ancestors;
    this.limiter = options.limiter;
    this.touch = options.touch;
    this.onStoreError = options.onStoreError ?? (() => {});
  }

  /**
   * Key (undefined: none presented) from `ip` → grant or refusal; `null` only
   * when `ctx.stillWanted()` said no after the lookup. Store errors other than
   * unavailable/unreadable reject, or throw when answered at once (REST: 500;
   * MQTT: CONNACK 3). Answered at once when the lookup and every check are
   * (memory store), else as a promise.
   */
  authorize(key: string | undefined, ip: string, ctx: AuthorizeContext): Maybe<Decision | null> {
    // SPEC §4 brute-force guard: an address over the limit is refused without asking the store.
    if (this.limiter.blocked(ip, Date.now())) return refusal('rate_limited');
    // No credentials at all (REST: no Authorization header) is not a guess; an empty MQTT username and password is.
    if (key === undefined) return this.badKey(ip, 'missing');
    if (!isKeyShaped(key)) return this.badKey(ip, 'malformed');
    let token: Maybe<Token | null>;
    try {
      token = ctx.lookup(key);
    } catch (err) {
      return this.lookupFailed(err, ctx);
    }
    if (token instanceof Promise) return token.then((t) => this.found(t, ip, ctx), (err: unknown) => this.lookupFailed(err, ctx));
    return this.found(token, ip, ctx);
  }

  private lookupFailed(err: unknown, ctx: AuthorizeContext): Decision | null {
    if (ctx.stillWanted && !ctx.stillWanted()) return null;
    this.onStoreError();
    // SPEC §2: a stored token this node cannot read is refused, logged by its id.
    if (err instanceof StoreDataError) return { ok: false, cause: 'token_unreadable', tokenId: err.tokenId, error: err };
    if (err instanceof StoreUnavailableError) return { ok: false, cause: 'store_unavailable', error: err };
    throw err;
  }

  /** Steps 4–8 once the token is read. */
  private found(token: Token | null, ip: string, ctx: AuthorizeContext): Maybe<Decision | null> {
    if (ctx.stillWanted && !ctx.stillWanted()) return null;
    const decision = this.judge(token, ip, ctx);
    if (decision.ok && decision.token.parent !== 0 && this.ancestors !== undefined) return this.withAncestors(decision, ip, ctx);
    return this.checked(decision, ctx);
  }

  private async withAncestors(grant: Grant, ip: string, ctx: AuthorizeContext): Promise<Decision | null> {
    const chain: Token[] = [];
    let decision = await this.check(grant, [(g) => this.ancestorCause(g.token, ip, ctx.clientId, chain)]);
    if (decision.ok) decision = { ...decision, ancestors: chain };
    return this.checked(decision, ctx);
  }

  /** Step 8, then whether the caller still wants the answer. */
  private checked(decision: Decision, ctx: AuthorizeContext): Maybe<Decision | null> {
    if (!decision.ok || !ctx.checks?.length) return decision;
    const checked = this.check(decision, ctx.checks, ctx);
    if (checked instanceof Promise) return checked.then((d) => (ctx.stillWanted && !ctx.stillWanted() ? null : d));
    return ctx.stillWanted && !ctx.stillWanted() ? null : checked;
  }

  /** Steps 4–6 on a token already read (or null: unknown). */
  judge(token: Token | null, ip: string, ctx: Pick<AuthorizeContext, 'compile'> = {}): Decision {
    if (token === null) return this.badKey(ip, 'unknown');
    // Counted like an unknown key: an expired token is about to be deleted (SPEC §2).
    if (isExpired(token, Math.floor(Date.now() / 1000))) {
      this.limiter.fail(ip, Date.now());
      return refusal('expired', token.id);
    }
    // Refusals for other causes are not counted by the guard (SPEC §4).
    if (!token.enabled) return refusal('disabled', token.id);
    let compiled: CompiledAccess;
    try {
      compiled = ctx.compile ? ctx.compile(token) : this.compile(token);
    } catch (err) {
      return { ok: false, cause: 'token_unreadable', tokenId: token.id, error: err };
    }
    if (!compiled.ipMatcher.allows(ip)) return refusal('ip_denied', token.id);
    return { ok: true, token, compiled };
  }

  /** Step 7: the first ancestor that does not admit this child from `ip`, as a refusal cause. */
  private async ancestorCause(token: Token, ip: string, clientId: string | undefined, chain: Token[]): Promise<RefusalCause | null> {
    const refused = await checkAncestors(this.ancestors as Pick<TokenStore, 'get'>, token, ip, Math.floor(Date.now() / 1000), { clientId, chain });
    if (refused === null) return null;
    if (refused.kind === 'client_id') return 'client_id_rejected';
    return refused.kind === 'gone' || refused.kind === 'expired' ? 'expired' : refused.kind;
  }

  /**
   * Step 8: the caller's checks in order; the first cause wins. A check may be
   * async (a store read: ancestors, live session counts); a store error it
   * throws refuses like the lookup's (unavailable / unreadable). Answered at
   * once while every check is.
   */
  check(grant: Grant, checks: readonly AccessCheck[] | undefined, ctx: AuthorizeContext = NO_CONTEXT, from = 0): Maybe<Decision> {
    if (checks === undefined) return grant;
    for (let i = from; i < checks.length; i++) {
      let answer: Maybe<RefusalCause | null>;
      try {
        answer = (checks[i] as AccessCheck)(grant, ctx);
      } catch (err) {
        return this.checkFailed(grant, err);
      }
      if (answer instanceof Promise) {
        return answer.then(
          (cause) => (cause !== null ? refusal(cause, grant.token.id) : this.check(grant, checks, ctx, i + 1)),
          (err: unknown) => this.checkFailed(grant, err),
        );
      }
      if (answer !== null) return refusal(answer, grant.token.id);
    }
    return grant;
  }

  private checkFailed(grant: Grant, err: unknown): Refusal {
    if (err instanceof StoreUnavailableError) {
      this.onStoreError();
      return { ok: false, cause: 'store_unavailable', tokenId: grant.token.id, error: err };
    }
    // A check reads the token's data (its ACL for the session, its ancestors): data it cannot use is unreadable.
    return { ok: false, cause: 'token_unreadable', tokenId: grant.token.id, error: err };
  }

  /**
   * A token's shared rights and IP matcher: one compiled object per distinct
   * access and `ips` among the tokens in use (issue 9). Throws when stored
   * data does not compile (SPEC §2: unreadable).
   */
  compile(token: Token): CompiledAccess {
    return { rights: this.sharedRights(token), ipMatcher: this.ipMatcher(token.ips), tokenIdText: String(token.id) };
  }

  sharedRights(token: Token): Rights {
    const { access } = token;
    // A frozen access (the stores' key lookups share one per stored text) is looked up by identity: no JSON per CONNECT.
    const frozen = Object.isFrozen(access);
    const known = frozen ? this.rightsByObject.get(access)?.deref() : undefined;
    if (known !== undefined) return known;
    const rights = this.rightsByAccess.get(JSON.stringify(access), () => compileSharedRights(access));
    if (frozen) this.rightsByObject.set(access, new WeakRef(rights));
    return rights;
  }

  ipMatcher(ips: string): IpMatcher {
    return this.ipMatchers.get(ips, () => compileIpMasks(ips));
  }

  /** Distinct compiled rights and IP matchers alive on this node (tests). */
  get compiledCount(): { rights: number; ips: number } {
    return { rights: this.rightsByAccess.size, ips: this.ipMatchers.size };
  }

  private badKey(ip: string, problem: KeyProblem): Refusal {
    // A request without credentials is not a guess: not counted.
    if (problem !== 'missing') this.limiter.fail(ip, Date.now());
    return refusal('bad_key', undefined, problem);
  }
}
