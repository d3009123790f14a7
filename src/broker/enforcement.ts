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
import type { Logger } from 'pino';
import { compileIpMasks, compileRights, deadline, isValid, touchInterval, type IpMatcher, type Token } from '../tokens/index.js';
import { StoreUnavailableError, type TokenStore } from '../store/types.js';
import type { Session, SessionRegistry } from './sessions.js';
import type { BrokerStats } from './stats.js';

const MAX_TIMER_MS = 2 ** 31 - 1;
const RETRY_MS = 1000;
const TOUCH_TICK_MS = 250;
/** Token ids remembered as changed while lookups are in flight; beyond, every lookup re-reads. */
const MAX_TRACKED_CHANGES = 100_000;

/** Disconnect reason for a token this node cannot read (SPEC §2). */
export const REASON_UNREADABLE = 'stored token cannot be read';

interface Held {
  token: Token;
  accessKey: string;
  /** Next periodic touch, epoch ms. */
  nextTouch: number;
  timer: NodeJS.Timeout | null;
}

interface ClientInternals {
  subscriptions?: Record<string, unknown>;
  clean: boolean;
  broker?: {
    persistence?: {
      removeSubscriptions?: (client: unknown, topics: string[]) => Promise<unknown>;
      subscriptionsByClient?: (client: { id: string }) => Promise<{ topic: string }[]>;
    };
  };
  unsubscribe(packet: { unsubscriptions: string[] }, done?: (err?: Error) => void): void;
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
  registry: SessionRegistry;
  stats: BrokerStats;
  log: Logger;
}

export class Enforcement {
  private readonly held = new Map<number, Held>();
  /** Tokens to touch at the next tick (connect, disconnect). */
  private readonly touchNow = new Set<number>();
  private touchTimer: NodeJS.Timeout | null = null;
  private touching: Promise<void> | null = null;
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

  constructor(private readonly deps: EnforcementDeps) {}

  start(): void {
    this.unsubscribe = this.deps.store.onChange((id, kind) => {
      this.noteChange(id);
      if (!this.held.has(id)) return;
      if (kind === 'deleted') this.closeAll(id, 'token deleted');
      else if (kind === 'updated') this.refresh(id);
    });
    // Events lost while the feed was down (SPEC §7): re-read every token this node holds,
    // and make every lookup in flight read again.
    this.unsubscribeResync = this.deps.store.onResync(() => {
      this.floor = ++this.epoch;
      this.changedAt.clear();
      for (const id of this.held.keys()) this.refresh(id);
    });
    this.touchTimer = setInterval(() => { void this.flushTouches(false); }, TOUCH_TICK_MS);
    this.touchTimer.unref();
  }

  /** Stops timers and writes pending `accessed` updates (SPEC §1 shutdown). */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribeResync?.();
    if (this.touchTimer) clearInterval(this.touchTimer);
    for (const h of this.held.values()) if (h.timer) clearTimeout(h.timer);
    await this.flushTouches(true);
  }

  /**
   * Starts watching the change feed for a CONNECT that is about to read its
   * token; the CONNECT reads again when `changed(id)` says its token moved.
   */
  watchLookup(): LookupWatch {
    this.lookups++;
    let since = this.epoch;
    let open = true;
    return {
      changed: (tokenId) => since < this.floor || (this.changedAt.get(tokenId) ?? 0) > since,
      restart: () => { since = this.epoch; },
      end: () => {
        if (!open) return;
        open = false;
        if (--this.lookups === 0) this.changedAt.clear();
      },
    };
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

  /** A session of `token` was registered: hold the token, arm its deadline, touch it. */
  tokenInUse(token: Token): void {
    const id = token.id;
    let h = this.held.get(id);
    if (!h) {
      h = { token, accessKey: JSON.stringify(token.access), nextTouch: 0, timer: null };
      this.held.set(id, h);
    } else if (differs(h.token, token)) {
      // The new session was admitted on another reading than the ones already held:
      // let the store decide for all of them.
      this.refresh(id);
    }
    h.nextTouch = Date.now() + touchInterval(token) * 1000;
    this.touchNow.add(id);
    this.arm(id, h);
  }

  sessionEnded(session: Session): void {
    const id = session.tokenId;
    this.touchNow.add(id);
    if (this.deps.registry.forToken(id).length === 0) {
      const h = this.held.get(id);
      if (h?.timer) clearTimeout(h.timer);
      this.held.delete(id);
    }
  }

  /**
   * Writes `accessed = now` for this token at the next tick (≤ 250 ms), batched with
   * every other token due, retried while the store is away. REST requests use it too.
   */
  touchSoon(tokenId: number): void {
    this.touchNow.add(tokenId);
  }

  /** Closes a session for an enforcement reason; its will still goes out (SPEC §4). */
  close(session: Session, reason: string): void {
    if (session.dropReason !== null) return;
    session.dropReason = reason;
    this.deps.stats.dropped++;
    this.deps.log.info({ clientId: session.clientId, tokenId: session.tokenId, ip: session.conn.ip, reason }, 'session closed');
    session.client.close();
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
    if (token === null) return this.closeAll(id, 'token deleted');
    if (!token.enabled) return this.closeAll(id, 'token disabled');
    if (!isValid(token, now)) return this.closeAll(id, 'token expired');
    const accessKey = JSON.stringify(token.access);
    const accessChanged = accessKey !== h.accessKey;
    let ipMatcher: IpMatcher | null;
    try {
      ipMatcher = token.ips === h.token.ips ? null : compileIpMasks(token.ips);
    } catch (err) {
      return this.unreadable(id, err);
    }
    h.token = token;
    h.accessKey = accessKey;
    for (const s of this.deps.registry.forToken(id)) {
      if (ipMatcher) s.ipMatcher = ipMatcher;
      if (!s.ipMatcher.allows(s.conn.ip)) {
        this.close(s, 'address no longer in token ips');
        continue;
      }
      if (!accessChanged) continue;
      let rights;
      try {
        rights = compileRights(token.access, { clientId: s.clientId, tokenId: id });
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
    const client = session.client as unknown as ClientInternals;
    const topics = Object.keys(client.subscriptions ?? {}).filter((t) => !session.rights.canSubscribe(t));
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
        const stale = stored.map((s) => s.topic).filter((t) => !session.rights.canSubscribe(t));
        return stale.length > 0 ? remove(session.client, stale) : undefined;
      })
      .catch((err: unknown) => {
        this.deps.log.warn({ err, clientId: session.clientId }, 'could not remove persisted subscriptions');
      });
  }

  /** Timer at the token's deadline; then the store decides (another node may have refreshed `accessed`). */
  private arm(id: number, h: Held): void {
    if (h.timer) clearTimeout(h.timer);
    const end = deadline(h.token);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, end * 1000 - Date.now()));
    h.timer = setTimeout(() => {
      h.timer = null;
      this.refresh(id);
    }, delay);
    h.timer.unref();
  }

  private retryLater(id: number): void {
    const h = this.held.get(id);
    if (!h) return;
    // Store unreachable: sessions go on with what they were last told (SPEC §7),
    // except that an expire-only token past its expire is invalid whatever the store says.
    if (h.token.ttl === 0 && h.token.expire > 0 && Date.now() >= h.token.expire * 1000) {
      this.closeAll(id, 'token expired');
      return;
    }
    if (h.timer) clearTimeout(h.timer);
    h.timer = setTimeout(() => { h.timer = null; this.refresh(id); }, RETRY_MS);
    h.timer.unref();
  }

  /**
   * One batched `touch` for the tokens due (SPEC §2); failed ids are kept for
   * the next tick. Local `accessed` moves only for the tokens the store found
   * live; the others are re-read, which closes their sessions (SPEC §4).
   */
  flushTouches(all: boolean): Promise<void> {
    if (this.touching) return all ? this.touching.then(() => this.flushTouches(true)) : this.touching;
    const now = Date.now();
    const ids = new Set(this.touchNow);
    for (const [id, h] of this.held) if (all || h.nextTouch <= now) ids.add(id);
    if (ids.size === 0) return Promise.resolve();
    this.touchNow.clear();
    const list = [...ids];
    const nowSec = Math.floor(now / 1000);
    this.touching = this.deps.store.touch(list, nowSec).then((missing) => {
      const gone = new Set(missing);
      for (const id of list) {
        const h = this.held.get(id);
        if (!h) continue;
        if (gone.has(id)) {
          // Not written: the token is gone, unreadable or expired. Never extend its deadline here.
          h.nextTouch = now + RETRY_MS;
          this.refresh(id);
          continue;
        }
        h.token = { ...h.token, accessed: Math.max(h.token.accessed, nowSec) };
        h.nextTouch = now + touchInterval(h.token) * 1000;
        this.arm(id, h);
      }
    }, (err: unknown) => {
      this.deps.stats.storeErrors++;
      for (const id of list) this.touchNow.add(id);
      if (!(err instanceof StoreUnavailableError)) this.deps.log.warn({ err }, 'touch failed');
    }).catch((err: unknown) => {
      this.deps.log.error({ err }, 'touch bookkeeping failed');
    }).finally(() => { this.touching = null; });
    return this.touching;
  }
}

/** Whether two readings of a token differ in anything its sessions depend on (`accessed` aside). */
function differs(a: Token, b: Token): boolean {
  return a.enabled !== b.enabled || a.expire !== b.expire || a.ttl !== b.ttl || a.ips !== b.ips
    || JSON.stringify(a.access) !== JSON.stringify(b.access);
}
