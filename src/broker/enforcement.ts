// Live enforcement (SPEC §4): sessions follow their token. Change-feed events
// and a timer at each token's deadline make this node re-read the token and
// close or trim its sessions; a batched `touch` keeps `accessed` fresh while
// sessions live (SPEC §2). The held rights are the cache; this is the one
// place that refreshes them.
//
// No window (SPEC §4): a CONNECT reads its token before its session exists,
// and a change event that arrives in between finds nothing held here. So
// every CONNECT watches the feed while it looks its token up (`watchLookup`)
// and reads again when its token changed meanwhile; and a touch that finds
// the token gone re-reads it instead of moving the local deadline.
//
// Compiled rights and IP matchers are shared (issue 9: memory per session):
// one per distinct access and `ips` (interned.ts), placeholders filled in per
// question from the asking session (Rights.forSession). A session holds the
// shared objects; a change compiles once per token and hands the result to
// every session of the token.
import type { Logger } from 'pino';
import {
  compileClientIdMasks, deadline, isValid, touchInterval, type ClientIdMatcher, type IpMatcher, type Rights, type Token, type TokenAccess,
} from '../tokens/index.js';
import { StoreUnavailableError, type TokenStore } from '../store/types.js';
import { DeadlineQueue } from '../store/deadline-queue.js';
import type { AccessGate, CompiledAccess } from '../access/gate.js';
import type { TouchBatcher } from '../access/touch-batcher.js';
import type { Session, SessionRegistry } from './sessions.js';
import type { BrokerStats } from './stats.js';
import { clientInternals } from './aedes-internals.js';

const RETRY_MS = 1000;
const TICK_MS = 250;
/** Released tokens whose compiled rights stay at hand for a reconnect (a few KB at most). */
const RELEASED_KEPT = 1024;
/** Token ids remembered as changed while lookups are in flight; beyond, every lookup re-reads. */
const MAX_TRACKED_CHANGES = 100_000;

/** Disconnect reason for a token this node cannot read (SPEC §2). */
export const REASON_UNREADABLE = 'stored token cannot be read';

/** A token's access, `ips` and `clientids`, compiled for all its sessions (the gate's CompiledAccess, plus MQTT's client ids). */
export interface CompiledToken extends CompiledAccess {
  /** SPEC §2 `clientids`, with this token's id filled in. */
  clientIds: ClientIdMatcher;
}

/**
 * One record per token with live sessions on this node: the owner of what they
 * share, and the token's clocks and `ips` as last read (not its ACL, info or
 * metadata: the compiled rights stand for the access).
 */
class Held implements CompiledToken {
  // Set by read(), from the constructor on.
  enabled!: boolean;
  expire!: number;
  ttl!: number;
  created!: number;
  accessed!: number;
  ips!: string;
  clientids!: string;
  /** The reading's `access` object: a CONNECT reading the same object (memory store) skips the comparison. */
  access!: TokenAccess;
  /** Next periodic touch, epoch ms. */
  nextTouch = 0;
  /** When to re-read the token (its deadline, or a retry), epoch ms. */
  dueAt = Infinity;
  /** The time of this token's entry in `due` (≤ dueAt), Infinity when none. */
  queuedAt = Infinity;

  constructor(
    token: Token,
    public rights: Rights,
    public ipMatcher: IpMatcher,
    public clientIds: ClientIdMatcher,
    readonly tokenIdText: string,
  ) {
    this.read(token);
  }

  /** Takes a new reading of the token's clocks and `ips`. */
  read(token: Token): void {
    this.enabled = token.enabled;
    this.expire = token.expire;
    this.ttl = token.ttl;
    this.created = token.created;
    this.accessed = token.accessed;
    this.ips = token.ips;
    this.clientids = token.clientids;
    this.access = token.access;
  }
}

/**
 * What a CONNECT holds while it reads its token (SPEC §4 "no window"): whether
 * a change of that token reached this node since the read was sent.
 */
export interface LookupWatch {
  /** True when a change of this token, or a gap in the change feed, was seen since the watch (re)started. */
  changed(tokenId: number): boolean;
  /** Watch afresh, just before the token is read again. */
  restart(): void;
  /** The CONNECT is decided (admitted, refused or gone). Idempotent. */
  end(): void;
}

export interface EnforcementDeps {
  store: TokenStore;
  /** Shared compiled rights and IP matchers, and the `accessed` batcher. */
  gate: AccessGate;
  registry: SessionRegistry;
  stats: BrokerStats;
  log: Logger;
}

export class Enforcement {
  private readonly held = new Map<number, Held>();
  /** Tokens to touch at the next tick (connect, disconnect). */
  private tickTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private unsubscribeResync: (() => void) | null = null;
  /** Serialises refreshes per token so two events never apply out of order. */
  private readonly refreshing = new Map<number, Promise<void>>();
  private readonly again = new Set<number>();
  /** Bumped by every change event and every feed resync. */
  private epoch = 0;
  /** CONNECT lookups in flight (see LookupWatch). */
  private lookups = 0;
  /** Token id → epoch of its last change; kept only while lookups are in flight. */
  private readonly changedAt = new Map<number, number>();
  /** A watch that started before this epoch counts every token as changed (feed gap, or too many changes to track). */
  private floor = 0;
  /**
   * Deadlines and retries of held tokens, checked at every tick (≤ 250 ms late, within
   * SPEC §4's 1 s): one heap entry per token instead of a timer each (see schedule).
   */
  private readonly due = new DeadlineQueue();
  /** Rights of tokens whose last session ended lately (reconnects), oldest first; bounded. */
  private readonly released = new Map<number, Held>();
  private readonly touch: TouchBatcher;

  constructor(private readonly deps: EnforcementDeps) {
    this.touch = deps.gate.touch;
  }

  start(): void {
    this.unsubscribe = this.deps.store.onChange((id, kind) => {
      this.noteChange(id);
      if (!this.held.has(id)) return;
      if (kind === 'deleted') this.closeAll(id, this.goneReason(id));
      else if (kind === 'updated') this.refresh(id);
    });
    // Events lost while the feed was down (SPEC §7): re-read every token this node holds,
    // and make every lookup in flight read again.
    this.unsubscribeResync = this.deps.store.onResync(() => {
      this.floor = ++this.epoch;
      this.changedAt.clear();
      for (const id of this.held.keys()) this.refresh(id);
    });
    // The batcher asks for the held tokens due and reports what the store did not write.
    this.touch.attach({
      collectDue: (ids, now, all) => { for (const [id, h] of this.held) if (all || h.nextTouch <= now) ids.add(id); },
      written: (list, missing, now) => this.touched(list, missing, now),
    });
    this.touch.start(); // idempotent: whoever composes the node may have started it already
    this.tickTimer = setInterval(() => this.refreshDue(Date.now()), TICK_MS);
    this.tickTimer.unref();
  }

  /** Stops timers and writes pending `accessed` updates (SPEC §1 shutdown). */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribeResync?.();
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.due.clear();
    await this.touch.flush(true);
    this.touch.attach(null);
  }

  /**
   * Starts watching the change feed for a CONNECT that is about to read its
   * token; the CONNECT reads again when `changed(id)` says its token moved.
   */
  watchLookup(): LookupWatch {
    this.lookups++;
    return new Watch(this, this.epoch);
  }

  /** Watch: whether `tokenId` changed (or the feed had a gap) after `since`. */
  changedSince(tokenId: number, since: number): boolean {
    return since < this.floor || (this.changedAt.get(tokenId) ?? 0) > since;
  }

  /** Watch: the current epoch. */
  get currentEpoch(): number {
    return this.epoch;
  }

  /** Watch: one lookup fewer in flight. */
  lookupEnded(): void {
    if (--this.lookups === 0) this.changedAt.clear();
  }

  private noteChange(id: number): void {
    this.epoch++;
    if (this.lookups === 0) return;
    if (this.changedAt.size >= MAX_TRACKED_CHANGES && !this.changedAt.has(id)) {
      // Bounded memory: forget the details, every lookup in flight reads again.
      this.changedAt.clear();
      this.floor = this.epoch;
      return;
    }
    this.changedAt.set(id, this.epoch);
  }

  /**
   * A token's rights and IP matcher for a CONNECT: the held ones when this
   * reading has the same access and `ips`, else the shared compiled ones.
   * Throws when the stored data does not compile (SPEC §2: unreadable).
   */
  compile(token: Token): CompiledToken {
    const h = this.held.get(token.id);
    // The usual CONNECT: a token held (or lately released), unchanged. Else equal access, equal rights: the JSON is the key.
    const prior = h ?? this.released.get(token.id);
    const rights = prior !== undefined && (prior.access === token.access || sameData(prior.rights.access, token.access))
      ? prior.rights
      : this.deps.gate.sharedRights(token);
    const ipMatcher = h !== undefined && h.ips === token.ips ? h.ipMatcher : this.deps.gate.ipMatcher(token.ips);
    const clientIds = h !== undefined && h.clientids === token.clientids ? h.clientIds : compileClientIdMasks(token.clientids, token.id);
    return { rights, ipMatcher, clientIds, tokenIdText: h?.tokenIdText ?? String(token.id) };
  }

  /** Distinct compiled rights and IP matchers alive on this node (tests). */
  get compiledCount(): { rights: number; ips: number } {
    return this.deps.gate.compiledCount;
  }

  /** A session of `token` was registered: hold the token, arm its deadline, touch it. */
  tokenInUse(token: Token, compiled: CompiledToken): void {
    const id = token.id;
    let h = this.held.get(id);
    if (!h) {
      h = new Held(token, compiled.rights, compiled.ipMatcher, compiled.clientIds, compiled.tokenIdText);
      this.held.set(id, h);
    } else if (differs(h, token, compiled.rights)) {
      // The new session was admitted on another reading than the ones already held:
      // let the store decide for all of them.
      this.refresh(id);
    }
    h.nextTouch = Date.now() + touchInterval(token) * 1000;
    this.touch.soon(id);
    this.arm(id, h);
  }

  sessionEnded(session: Session): void {
    const id = session.tokenId;
    this.touch.soon(id);
    if (!this.deps.registry.hasToken(id)) {
      const h = this.held.get(id);
      this.held.delete(id); // its entry in `due`, if any, is skipped when popped
      if (h !== undefined) {
        this.released.delete(id);
        this.released.set(id, h);
        if (this.released.size > RELEASED_KEPT) this.released.delete(this.released.keys().next().value as number);
      }
    }
  }

  /**
   * Writes `accessed = now` for this token at the next tick (≤ 250 ms), batched with
   * every other token due, retried while the store is away. REST requests use it too.
   */
  touchSoon(tokenId: number): void {
    this.touch.soon(tokenId);
  }

  /** Writes the `accessed` updates due now (all: every held token too). */
  flushTouches(all: boolean): Promise<void> {
    return this.touch.flush(all);
  }

  /** Closes a session for an enforcement reason; its will still goes out (SPEC §4). */
  close(session: Session, reason: string): void {
    if (session.dropReason !== null) return;
    session.dropReason = reason;
    this.deps.stats.dropped++;
    this.deps.log.info({ clientId: session.clientId, tokenId: session.tokenId, ip: session.conn.ip, reason }, 'session closed');
    session.client.close();
  }

  /**
   * A held token that is gone: deleted, or expired and swept by the store (SPEC §2), which
   * sends the same change. Its deadline as last read tells them apart (SPEC §8 reasons).
   */
  private goneReason(id: number): string {
    const h = this.held.get(id);
    return h !== undefined && deadline(h) * 1000 <= Date.now() ? 'token expired' : 'token deleted';
  }

  private closeAll(id: number, reason: string): void {
    for (const s of this.deps.registry.forToken(id)) this.close(s, reason);
  }

  /** Re-reads a token and applies it to its sessions, one refresh at a time per token. */
  refresh(id: number): void {
    if (this.refreshing.has(id)) {
      this.again.add(id);
      return;
    }
    // `.catch` last: a throw while applying must not become an unhandled rejection (PITFALLS).
    const run = this.deps.store.get([id])
      .then(([token]) => this.apply(id, token ?? null))
      .catch((err: unknown) => this.refreshFailed(id, err))
      .finally(() => {
        this.refreshing.delete(id);
        if (this.again.delete(id)) this.refresh(id);
      });
    this.refreshing.set(id, run);
  }

  private refreshFailed(id: number, err: unknown): void {
    if (err instanceof StoreUnavailableError) {
      this.deps.stats.storeErrors++;
      this.retryLater(id);
      return;
    }
    // SPEC §2: a token this node cannot read (StoreDataError, or data that does not compile)
    // closes its sessions; the error names the token, never the key.
    this.unreadable(id, err);
  }

  private unreadable(id: number, err: unknown): void {
    this.deps.log.error({ tokenId: id, reason: err instanceof Error ? err.message : String(err) }, REASON_UNREADABLE);
    this.closeAll(id, REASON_UNREADABLE);
  }

  private apply(id: number, token: Token | null): void {
    const h = this.held.get(id);
    if (!h) return;
    const now = Math.floor(Date.now() / 1000);
    if (token === null) return this.closeAll(id, this.goneReason(id));
    if (!token.enabled) return this.closeAll(id, 'token disabled');
    if (!isValid(token, now)) return this.closeAll(id, 'token expired');
    let compiled: CompiledToken;
    try {
      compiled = this.compile(token);
    } catch (err) {
      return this.unreadable(id, err);
    }
    h.read(token);
    h.rights = compiled.rights;
    h.ipMatcher = compiled.ipMatcher;
    h.clientIds = compiled.clientIds;
    for (const s of this.deps.registry.forToken(id)) {
      s.ipMatcher = compiled.ipMatcher;
      // SPEC §5 PUT takes effect on live sessions: the next held PUBLISH goes at the new rate.
      s.publishRate = token.limits.publish_rate;
      if (!s.ipMatcher.allows(s.conn.ip)) {
        this.close(s, 'address no longer in token ips');
        continue;
      }
      // SPEC §4: a session whose client id `clientids` no longer admits is closed.
      if (!compiled.clientIds.allows(s.clientId)) {
        this.close(s, 'client id no longer in token clientids');
        continue;
      }
      // Same compiled access already: nothing to do (also catches a session admitted
      // on an older reading than the one held, whatever `accessKey` said before).
      if (s.rights.base === compiled.rights) continue;
      let rights: Rights;
      try {
        rights = compiled.rights.forSession(s);
      } catch (err) {
        return this.unreadable(id, err);
      }
      if (!rights.hasMqtt) {
        this.close(s, 'token lost its MQTT rights');
        continue;
      }
      s.rights = rights;
      this.trimSubscriptions(s);
    }
    this.arm(id, h);
  }

  /**
   * SPEC §4: subscriptions that no longer intersect a subscribe entry are removed,
   * live ones and those stored for a persistent session. A stored one that
   * Aedes refused when it restored the session is not live but still stored:
   * it would queue messages that can never be delivered, and come back with
   * the token's rights.
   */
  trimSubscriptions(session: Session): void {
    const client = clientInternals(session.client);
    const topics = Object.keys(client.subscriptions ?? {}).filter((t) => !session.rights.canSubscribe(t, session));
    if (topics.length > 0) {
      this.deps.log.info({ clientId: session.clientId, tokenId: session.tokenId, topics }, 'subscriptions removed by access change');
      // Aedes calls the callback unconditionally: it must be given.
      client.unsubscribe({ unsubscriptions: topics }, (err) => {
        if (err) this.deps.log.warn({ err, clientId: session.clientId }, 'could not remove subscriptions');
      });
    }
    const persistence = client.broker?.persistence;
    if (client.clean || !persistence?.subscriptionsByClient || !persistence.removeSubscriptions) return;
    const remove = persistence.removeSubscriptions.bind(persistence);
    persistence.subscriptionsByClient({ id: session.clientId })
      .then((stored) => {
        const stale = stored.map((s) => s.topic).filter((t) => !session.rights.canSubscribe(t, session));
        return stale.length > 0 ? remove(session.client, stale) : undefined;
      })
      .catch((err: unknown) => {
        this.deps.log.warn({ err, clientId: session.clientId }, 'could not remove persisted subscriptions');
      });
  }

  /** Re-read at the token's deadline; then the store decides (another node may have refreshed `accessed`). */
  private arm(id: number, h: Held): void {
    this.schedule(id, h, deadline(h) * 1000);
  }

  /**
   * Re-read the token at `at`. A token has one entry in `due` at a time: a later
   * time (a touch moved the deadline) only updates `dueAt`, and the entry, when
   * it comes up, goes back in for the new time; an earlier one adds an entry
   * (the later one is then skipped as stale).
   */
  private schedule(id: number, h: Held, at: number): void {
    h.dueAt = at;
    if (h.queuedAt <= at) return;
    h.queuedAt = at;
    this.due.push(at, id);
    // Stale entries (superseded, or of released tokens) never outnumber the live ones by much.
    if (this.due.size > 2 * this.held.size + 1024) {
      const live: { at: number; id: number }[] = [];
      for (const [heldId, held] of this.held) if (held.queuedAt !== Infinity) live.push({ at: held.queuedAt, id: heldId });
      this.due.rebuild(live);
    }
  }

  /** Refreshes the held tokens whose time has come. */
  private refreshDue(now: number): void {
    for (let next = this.due.peek(); next !== undefined && next.at <= now; next = this.due.peek()) {
      this.due.pop();
      const h = this.held.get(next.id);
      if (h === undefined || h.queuedAt !== next.at) continue; // stale
      h.queuedAt = Infinity;
      if (h.dueAt > now) {
        if (h.dueAt !== Infinity) {
          h.queuedAt = h.dueAt;
          this.due.push(h.dueAt, next.id);
        }
        continue;
      }
      h.dueAt = Infinity;
      this.refresh(next.id);
    }
  }

  private retryLater(id: number): void {
    const h = this.held.get(id);
    if (!h) return;
    // Store unreachable: sessions go on with what they were last told (SPEC §7),
    // except that an expire-only token past its expire is invalid whatever the store says.
    if (h.ttl === 0 && h.expire > 0 && Date.now() >= h.expire * 1000) {
      this.closeAll(id, 'token expired');
      return;
    }
    this.schedule(id, h, Date.now() + RETRY_MS);
  }

  /**
   * The batched `touch` answered (touch-batcher.ts). Local `accessed` moves only
   * for the tokens the store found live; the others are re-read, which closes
   * their sessions (SPEC §4: a touch that finds the token gone).
   */
  private touched(list: readonly number[], gone: ReadonlySet<number>, now: number): void {
    const nowSec = Math.floor(now / 1000);
    for (const id of list) {
      const h = this.held.get(id);
      if (!h) continue;
      if (gone.has(id)) {
        // Not written: the token is gone, unreadable or expired. Never extend its deadline here.
        h.nextTouch = now + RETRY_MS;
        this.refresh(id);
        continue;
      }
      h.accessed = Math.max(h.accessed, nowSec);
      h.nextTouch = now + touchInterval(h) * 1000;
      this.arm(id, h);
    }
  }
}

/** A LookupWatch: one small object per CONNECT, no closures. */
class Watch implements LookupWatch {
  private open = true;

  constructor(private readonly owner: Enforcement, private since: number) {}

  changed(tokenId: number): boolean {
    return this.owner.changedSince(tokenId, this.since);
  }

  restart(): void {
    this.since = this.owner.currentEpoch;
  }

  end(): void {
    if (!this.open) return;
    this.open = false;
    this.owner.lookupEnded();
  }
}

/** Deep equality of JSON data (a token's `access`), without serialising it. */
function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let keys = 0;
  for (const k in x) {
    if (!Object.hasOwn(x, k)) continue;
    keys++;
    if (!Object.hasOwn(y, k) || !sameData(x[k], y[k])) return false;
  }
  for (const k in y) if (Object.hasOwn(y, k)) keys--;
  return keys === 0;
}

/** Whether a reading of a token differs from the held one in anything its sessions depend on (`accessed` aside). */
function differs(a: Held, b: Token, rights: Rights): boolean {
  return a.enabled !== b.enabled || a.expire !== b.expire || a.ttl !== b.ttl || a.ips !== b.ips || a.clientids !== b.clientids
    || a.rights !== rights;
}
