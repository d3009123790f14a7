// The in-memory token store: single node, no REDIS_URL (SPEC §1). Data lives
// in two maps and dies with the process. Every call does its work in one
// synchronous step, so each is atomic with respect to the others.

import type { ChangeKind, CreatedToken, Token, TokenInput, TokenPatch } from '../tokens/types.js';
import { ACCESS_MASTER, MAX_CHILDREN } from '../tokens/types.js';
import { clockProblem, deadline, isExpired } from '../tokens/validity.js';
import { ChangeFeed, SILENT_LOGGER } from './change-feed.js';
import { DeadlineQueue } from './deadline-queue.js';
import { generateKey, hashKey } from './key.js';
import { cloneToken, copyPatch, frozenToken, isMaster, newToken, noClockError, toIdList, toSeconds } from './token-record.js';
import { ChildRefusedError, StoreUnavailableError, type ChangeListener, type StoreLogger, type TokenStore } from './types.js';
import { MemoryOwners, type ClientOwners } from './owners.js';

/** setTimeout takes at most 2^31-1 ms (~24.8 days); a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Stale heap entries (left by touch, update, delete) allowed beyond the live ones before a rebuild. */
const HEAP_SLACK = 1024;

interface Entry {
  token: Token;
  /** SHA-256 of the key (SPEC §2: never the key itself). */
  hash: string;
}

export interface MemoryStoreOptions {
  logger?: StoreLogger;
}

export class MemoryStore implements TokenStore {
  private readonly byId = new Map<number, Entry>();
  private readonly idByHash = new Map<string, number>();
  private readonly masters = new Set<number>();
  /** SPEC §2 `parent`: the ids of each token's children; a cascade deletes them with it. */
  private readonly childrenOf = new Map<number, Set<number>>();
  /** Ids come from a counter and are never reused, not even after a delete (SPEC §2). */
  private lastId = 0;
  private readonly deadlines = new DeadlineQueue();
  /** The one expiry timer, armed at the earliest deadline (ms since epoch in `timerAt`). */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private readonly feed: ChangeFeed;
  private readonly expiredListeners = new Set<(ids: number[]) => void>();
  private closed = false;
  readonly owners: ClientOwners = new MemoryOwners((id) => this.byId.has(id));

  constructor(options: MemoryStoreOptions = {}) {
    this.feed = new ChangeFeed(options.logger ?? SILENT_LOGGER);
  }

  async create(inputs: TokenInput[], now: number): Promise<CreatedToken[]> {
    this.assertOpen();
    // All or nothing: every token is checked before any is stored.
    const at = toSeconds(now);
    const tokens = inputs.map((input) => newToken(0, input, at));
    return tokens.map((token) => this.insert(token, this.freshKey()));
  }

  async createChildren(parent: Token, inputs: TokenInput[], now: number): Promise<CreatedToken[]> {
    this.assertOpen();
    const at = toSeconds(now);
    const tokens = inputs.map((input) => newToken(0, input, at, parent.id));
    const stored = this.byId.get(parent.id)?.token;
    // What the caller checked the children against must still be what is stored: a change
    // committed since deleted the children it knew of, and must not miss these.
    if (!stored || !stored.enabled || isExpired(stored, at)) throw new ChildRefusedError('the parent token is gone or disabled', 'parent');
    if (JSON.stringify(stored.access) !== JSON.stringify(parent.access) || stored.ips !== parent.ips) {
      throw new ChildRefusedError('the parent token changed meanwhile, try again', 'parent');
    }
    const count = this.childrenOf.get(parent.id)?.size ?? 0;
    if (count + tokens.length > MAX_CHILDREN) {
      throw new ChildRefusedError(`the token already has ${count} children (at most ${MAX_CHILDREN})`, 'limit');
    }
    return tokens.map((token) => this.insert(token, this.freshKey()));
  }

  async children(id: number): Promise<number[]> {
    this.assertOpen();
    return [...(this.childrenOf.get(id) ?? [])].sort((a, b) => a - b);
  }

  async createWithKey(input: TokenInput, key: string, now: number): Promise<CreatedToken | null> {
    this.assertOpen();
    const token = newToken(0, input, toSeconds(now));
    const hash = hashKey(key);
    if (this.idByHash.has(hash)) return null;
    return this.insert(token, [key, hash]);
  }

  async createMasterIfNone(input: Omit<TokenInput, 'access'>, now: number): Promise<CreatedToken | null> {
    this.assertOpen();
    const token = newToken(0, { ...input, access: { type: ACCESS_MASTER } }, toSeconds(now));
    if (this.masters.size > 0) return null;
    return this.insert(token, this.freshKey());
  }

  async hasMaster(): Promise<boolean> {
    this.assertOpen();
    return this.masters.size > 0;
  }

  async get(ids: number[] | 'all'): Promise<Token[]> {
    this.assertOpen();
    if (ids === 'all') {
      return [...this.byId.values()].sort((a, b) => a.token.id - b.token.id).map((entry) => cloneToken(entry.token));
    }
    const out: Token[] = [];
    for (const id of toIdList(ids)) {
      const entry = this.byId.get(id);
      if (entry) out.push(cloneToken(entry.token));
    }
    return out;
  }

  async findByKey(key: string): Promise<Token | null> {
    return this.findByKeyNow(key);
  }

  findByKeyNow(key: string): Token | null {
    this.assertOpen();
    const id = this.idByHash.get(hashKey(key));
    const entry = id === undefined ? undefined : this.byId.get(id);
    // Frozen and replaced on every change (frozenToken): shared without a copy.
    return entry ? entry.token : null;
  }

  async update(ids: number[], patch: TokenPatch, now: number): Promise<Token[]> {
    this.assertOpen();
    const at = toSeconds(now);
    const changes = copyPatch(patch);
    const merged: Token[] = [];
    const cascade = new Map<number, boolean>();
    for (const id of toIdList(ids)) {
      const entry = this.byId.get(id);
      if (!entry) continue;
      const token: Token = frozenToken({ ...entry.token, ...copyPatch(changes) });
      // SPEC §2: disabling a token, or changing its access or ips, deletes its children.
      cascade.set(id, changes.enabled === false
        || (changes.access !== undefined && JSON.stringify(changes.access) !== JSON.stringify(entry.token.access))
        || (changes.ips !== undefined && changes.ips !== entry.token.ips));
      // Checked for every token before any changes: all or nothing.
      if (clockProblem(token, at) === 'no_clock') throw noClockError();
      merged.push(token);
    }
    const out: Token[] = [];
    for (const token of merged) {
      if (isExpired(token, at)) {
        // SPEC §2: invalid by time means deleted.
        this.remove(token.id);
        continue;
      }
      const entry = this.byId.get(token.id) as Entry;
      entry.token = token;
      this.indexMaster(token);
      this.deadlines.push(deadline(token), token.id);
      this.emit(token.id, 'updated');
      if (cascade.get(token.id) === true) this.removeDescendants(token.id);
      out.push(cloneToken(token));
    }
    this.schedule();
    return out;
  }

  async delete(ids: number[]): Promise<number[]> {
    this.assertOpen();
    // Read first: a token asked for may be a descendant of an earlier one, deleted by its cascade.
    const out = toIdList(ids).filter((id) => this.byId.has(id));
    for (const id of out) this.remove(id);
    return out;
  }

  async touch(ids: number[], now: number): Promise<number[]> {
    this.assertOpen();
    const at = toSeconds(now);
    const gone: number[] = [];
    for (const id of toIdList(ids)) {
      const token = this.byId.get(id)?.token;
      // A token already invalid by time stays so: touch must not revive it.
      if (!token || isExpired(token, at)) {
        gone.push(id);
        continue;
      }
      if (token.accessed >= at) continue;
      const before = deadline(token);
      const touched = Object.freeze({ ...token, accessed: at });
      (this.byId.get(id) as Entry).token = touched;
      const after = deadline(touched);
      if (after !== before) this.deadlines.push(after, id);
    }
    this.schedule();
    return gone;
  }

  onChange(listener: ChangeListener): () => void {
    return this.feed.add(listener);
  }

  onExpired(listener: (ids: number[]) => void): () => void {
    this.expiredListeners.add(listener);
    return () => { this.expiredListeners.delete(listener); };
  }

  /** In one process the feed never has a gap. */
  onResync(_listener: () => void): () => void {
    return () => {};
  }

  async count(): Promise<number> {
    this.assertOpen();
    return this.byId.size;
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.feed.clear();
    this.deadlines.clear();
    this.byId.clear();
    this.idByHash.clear();
    this.masters.clear();
    this.childrenOf.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('token store is closed');
  }

  /** A random key whose hash is not taken (a collision is astronomically unlikely, but cheap to rule out). */
  private freshKey(): [string, string] {
    for (;;) {
      const key = generateKey();
      const hash = hashKey(key);
      if (!this.idByHash.has(hash)) return [key, hash];
    }
  }

  private insert(token: Token, [key, hash]: [string, string]): CreatedToken {
    const id = ++this.lastId;
    const stored: Token = frozenToken({ ...token, id });
    this.byId.set(id, { token: stored, hash });
    this.idByHash.set(hash, id);
    this.indexMaster(stored);
    if (stored.parent !== 0) {
      let siblings = this.childrenOf.get(stored.parent);
      if (!siblings) this.childrenOf.set(stored.parent, (siblings = new Set()));
      siblings.add(id);
    }
    this.deadlines.push(deadline(stored), id);
    this.schedule();
    this.emit(id, 'created');
    return { ...cloneToken(stored), key };
  }

  /** Deletes a token and its descendants (SPEC §2), each with a `deleted` change. */
  private remove(id: number): boolean {
    if (!this.removeOne(id)) return false;
    this.removeDescendants(id);
    return true;
  }

  private removeOne(id: number): boolean {
    const entry = this.byId.get(id);
    if (!entry) return false;
    this.byId.delete(id);
    this.idByHash.delete(entry.hash);
    this.masters.delete(id);
    this.childrenOf.get(entry.token.parent)?.delete(id);
    this.emit(id, 'deleted');
    return true;
  }

  /** The children of `id`, theirs and so on (not `id`); iterative, as a chain may be deep. */
  private removeDescendants(id: number): void {
    const stack = [id];
    for (let current = stack.pop(); current !== undefined; current = stack.pop()) {
      const kids = this.childrenOf.get(current);
      this.childrenOf.delete(current);
      for (const kid of kids ?? []) {
        if (this.removeOne(kid)) stack.push(kid);
      }
    }
  }

  private indexMaster(token: Token): void {
    if (isMaster(token.access)) this.masters.add(token.id);
    else this.masters.delete(token.id);
  }

  /** Listeners never run inside a store call: they may call the store themselves. */
  private emit(id: number, kind: ChangeKind): void {
    this.feed.dispatchLater(id, kind);
  }

  /** (Re)arms the one timer at the earliest deadline in the heap. */
  private schedule(): void {
    if (this.closed) return;
    if (this.deadlines.size > 2 * this.byId.size + HEAP_SLACK) {
      this.deadlines.rebuild([...this.byId.values()].map(({ token }) => ({ at: deadline(token), id: token.id })));
    }
    const head = this.deadlines.peek();
    if (!head) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    const at = head.at * 1000;
    if (this.timer !== undefined && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.expireDue(), Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS));
    // Expiry must not keep the process alive on its own.
    this.timer.unref();
  }

  /** SPEC §2: a token invalid only because of time is deleted automatically, with a `deleted` change. */
  private expireDue(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const nowSec = Date.now() / 1000;
    const expired: number[] = [];
    for (let head = this.deadlines.peek(); head !== undefined && head.at <= nowSec; head = this.deadlines.peek()) {
      this.deadlines.pop();
      const entry = this.byId.get(head.id);
      // A stale entry: the token was deleted or its deadline moved since.
      if (entry && deadline(entry.token) === head.at && this.remove(head.id)) expired.push(head.id);
    }
    this.schedule();
    if (expired.length > 0) {
      // As the change feed: never inside a store call, a throwing listener stops no other.
      queueMicrotask(() => {
        for (const listener of [...this.expiredListeners]) {
          try {
            listener(expired);
          } catch {
            // the listener's own problem
          }
        }
      });
    }
  }
}
