import type { ChangeKind, CreatedToken, Token, TokenInput, TokenPatch } from '../tokens/types.js';
import type { AdmitRequest, AdmitResult, ClientOwners } from './owners.js';

export type { AdmitRequest, AdmitResult, ClaimResult, ClientOwners, OwnerClaim, SessionSlot } from './owners.js';

export type ChangeListener = (id: number, kind: ChangeKind) => void;

/** Raised when the backend cannot be reached (Redis down): MQTT answers CONNACK 3, REST 503. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

/**
 * A child token was not created (SPEC §2 `parent`): the parent already has
 * MAX_CHILDREN children (`limit`), or it is gone, disabled, or its access or
 * ips changed since the caller read it (`parent`).
 */
export class ChildRefusedError extends Error {
  override name = 'ChildRefusedError';
  constructor(message: string, readonly reason: 'limit' | 'parent') {
    super(message);
  }
}

/** Raised when stored data under our prefix cannot be decoded (foreign or corrupted). */
export class StoreDataError extends Error {
  override name = 'StoreDataError';
  constructor(message: string, readonly tokenId?: number) {
    super(message);
  }
}

/**
 * The one backend interface (memory, Redis), checked by one contract suite
 * (test/integration/store-contract.test.ts). Inputs are already validated by
 * src/tokens/validate.ts; stores only persist.
 *
 * Time is passed in (`now`, UNIX seconds) so that tests and callers control it;
 * automatic expiry uses the real clock.
 */
export interface TokenStore {
  /**
   * Creates tokens (ids assigned, keys generated); keys are returned only here.
   * All or nothing. Missing fields get the defaults of `validateCreate`; a
   * token with neither expire nor ttl, or already invalid by time at `now`, is
   * refused with a TokenValidationError (SPEC §2).
   */
  create(inputs: TokenInput[], now: number): Promise<CreatedToken[]>;
  /**
   * Creates one token with a key chosen by the caller (`MASTER_TOKEN`, SPEC §1).
   * Null when a token with this key already exists. Atomic on the key index:
   * two nodes starting together create at most one token.
   */
  createWithKey(input: TokenInput, key: string, now: number): Promise<CreatedToken | null>;
  /**
   * Creates a master token (access type 1) unless one is stored (SPEC §1: the
   * first start creates one). Null when a master exists. Atomic: two nodes
   * starting together on an empty store create one master, not two.
   */
  createMasterIfNone(input: Omit<TokenInput, 'access'>, now: number): Promise<CreatedToken | null>;
  /** Whether a master token (access type 1, enabled or not) is stored. */
  hasMaster(): Promise<boolean>;
  /**
   * Creates children of `parent` (SPEC §2 `parent`, §5 POST /auth/tokens): like
   * `create`, with `parent` set to its id, all or nothing, and only while the
   * stored parent is still enabled with the `access` and `ips` of the given
   * object (what the caller checked the children against) and keeps at most
   * MAX_CHILDREN children; ChildRefusedError otherwise. Containment and the
   * validity cap are the caller's (src/tokens/containment.ts, api).
   */
  createChildren(parent: Token, inputs: TokenInput[], now: number): Promise<CreatedToken[]>;
  /** Ids of the stored children of a token (direct ones only), ascending. */
  children(id: number): Promise<number[]>;
  /**
   * Tokens by id, in the order asked, each once; missing ids are skipped.
   * `'all'` lists every stored token by ascending id; a token whose stored data
   * cannot be decoded is then skipped (and logged) rather than failing the
   * listing, whereas asking for it by id raises StoreDataError.
   */
  get(ids: number[] | 'all'): Promise<Token[]>;
  /**
   * For listings (SPEC §2): as `get`, but a stored token that cannot be decoded is
   * listed with what could be read, `unreadable` naming the rest. Without it, `get`.
   */
  list?(ids: number[] | 'all'): Promise<Token[]>;
  /**
   * The token with this key (looked up by its SHA-256), or null. Does not check validity.
   * Read-only: it runs at every CONNECT and REST call, so a store may hand out a shared, frozen object.
   */
  findByKey(key: string): Promise<Token | null>;
  /**
   * In-process stores: findByKey answered at once (no promise per CONNECT: issue 9,
   * the CONNECT path's cost). A store that must wait for its answer leaves it out.
   */
  findByKeyNow?(key: string): Token | null;
  /**
   * findByKey and, for an enabled token with no parent, `owners.admit` of this
   * CONNECT's client id and session slot (its limit and master override read
   * from the stored token) in one round trip: Redis mode's CONNECT path.
   * `admission` null: not attempted (a child, or no such store method): admit
   * the two-step way. A claim made here is the caller's to bind or undo.
   */
  findByKeyAndAdmit?(key: string, req: AdmitRequest): Promise<{ token: Token | null; admission: AdmitResult | null; probed?: boolean[] }>;
  /**
   * Partial, atomic update: only the fields in `patch` change (each replaced
   * whole), all tokens or none. Returns the updated tokens (missing ids
   * skipped). Refused with a TokenValidationError, changing nothing, when a
   * token would be left with neither expire nor ttl. A token that the change
   * makes invalid by time at `now` is deleted (change `deleted`, not returned).
   */
  update(ids: number[], patch: TokenPatch, now: number): Promise<Token[]>;
  /**
   * Deletes; returns the ids that existed. Their children (and theirs) are
   * deleted with them, each with its own `deleted` change (SPEC §2). So are
   * the children of a token that `update` disables or whose `access` or `ips`
   * it changes, and those of a token that expires.
   */
  delete(ids: number[]): Promise<number[]>;
  /**
   * Sets `accessed = max(accessed, now)` for many tokens in one round trip,
   * moving their ttl deadline. No change event (touch is frequent). Tokens
   * already invalid by time at `now` are left to expire.
   *
   * Resolves to the ids that are not live tokens: not stored, unreadable, or
   * already invalid by time at `now`; nothing was written for them. A caller
   * holding such a token must re-read it instead of assuming it was refreshed
   * (SPEC §4: a periodic `accessed` write that finds the token gone closes
   * its sessions).
   */
  touch(ids: number[], now: number): Promise<number[]>;
  /**
   * SPEC §8 `token_expired`: tokens this process deleted because their time ran out,
   * once across all nodes (the one whose sweep removed them). Returns an unsubscribe.
   */
  onExpired?(listener: (ids: number[]) => void): () => void;
  /** Token created/updated/deleted (including automatic expiry), on every node. Returns an unsubscribe. */
  onChange(listener: ChangeListener): () => void;
  /**
   * Called when the change feed is back after a gap (Redis reconnect): events of
   * the gap are lost, so consumers re-read what they hold. Returns an unsubscribe.
   */
  onResync(listener: () => void): () => void;
  /** Number of stored tokens (not yet expired). */
  count(): Promise<number>;
  /** SPEC §4 client id ownership records, shared by every node of this store (owners.ts). */
  readonly owners: ClientOwners;
  /** Resolves when the backend answers; rejects with StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  /** Stops timers and connections; later calls reject with StoreUnavailableError. */
  close(): Promise<void>;
}

/** The pino methods the stores use, so that any pino-like logger fits. */
export interface StoreLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}
