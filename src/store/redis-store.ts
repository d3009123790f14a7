// The Redis token store: cluster mode (REDIS_URL, SPEC §1, §6, §7).
//
// Layout under the prefix p (default 'tokenmq:'):
//   {p}token:{id}  HASH    one field per token field + `hash`, the key's SHA-256
//   {p}key:{sha}   STRING  the token id (the key index; the key itself is never stored)
//   {p}ids         ZSET    id -> deadline in ms: the listing index and the sweeper's queue
//   {p}masters     SET     ids of master tokens (hasMaster, createMasterIfNone)
//   {p}next_id     STRING  INCR counter: ids are never reused
//   {p}children:{id} SET   ids of the children of token id (SPEC §2 `parent`); a cascade deletes them
//   channel {p}changes     {"id":N,"kind":"created|updated|deleted"}
//
// Expiry (SPEC §2): both keys of a token carry PEXPIREAT at its deadline, so
// Redis drops them by itself; the sweeper (every node, every sweepIntervalMs)
// removes what is due from `ids` and publishes `deleted`, atomically, so each
// expiry is reported once. Changes are Lua scripts (redis-scripts.ts).
//
// Unavailability (SPEC §7): the command connection has no offline queue and
// no retries per request, so while Redis is down every call fails at once
// with StoreUnavailableError instead of queueing; the connections reconnect
// by themselves and the change feed is resubscribed (ioredis autoResubscribe).

import { Redis, type RedisOptions } from 'ioredis';
import type { ChangeKind, CreatedToken, Token, TokenInput, TokenPatch } from '../tokens/types.js';
import { ACCESS_MASTER, MAX_CHILDREN } from '../tokens/types.js';
import { ChangeFeed, SILENT_LOGGER } from './change-feed.js';
import { generateKey, hashKey } from './key.js';
import { decodeForListing, decodeToken, encodePatch, encodeToken, fromRecord, fromValues, SharedDecodes, type FieldSource } from './redis-codec.js';
import { isReplyError, mapRedisError } from './redis-errors.js';
import { StoreScripts, type ChildGuard, type CreateMode } from './redis-scripts.js';
import { RedisOwners } from './redis-owners.js';
import { copyPatch, isMaster, newToken, toIdList, toSeconds } from './token-record.js';
import { StoreDataError, StoreUnavailableError, type AdmitRequest, type AdmitResult, type ChangeListener, type StoreLogger, type TokenStore } from './types.js';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL; omitted: `redis` options alone say where to connect. */
  url?: string;
  /** ioredis options for both connections. The store overrides those its failure handling depends on. */
  redis?: RedisOptions;
  /** Prefix of every key and of the change channel. Default 'tokenmq:'. */
  prefix?: string;
  /** How often this node sweeps expired tokens. Default 1000 ms. */
  sweepIntervalMs?: number;
  /** How long a call waits for a connection that is being established (start-up). Default 500 ms. */
  readyTimeoutMs?: number;
  logger?: StoreLogger;
}

const DEFAULT_PREFIX = 'tokenmq:';
const DEFAULT_SWEEP_MS = 1000;
const DEFAULT_READY_TIMEOUT_MS = 500;
/** Tokens removed per sweep script run: bounds how long one run blocks Redis. */
const SWEEP_BATCH = 500;
/** HGETALLs per pipeline when listing; ids per touch script. */
const CHUNK = 1000;
/** A connection in one of these states is on its way up: a call waits for it (bounded). */
const CONNECTING = new Set(['wait', 'connecting', 'connect']);

/** Reconnect quickly at first, then every second: SPEC §7 asks to recover by itself. */
function retryStrategy(times: number): number {
  return Math.min(50 * 2 ** Math.min(times, 5), 1000) + Math.floor(Math.random() * 100);
}

export class RedisStore implements TokenStore {
  readonly prefix: string;
  private readonly client: Redis;
  private readonly subscriber: Redis;
  private readonly scripts: StoreScripts;
  readonly owners: RedisOwners;
  private readonly feed: ChangeFeed;
  private readonly logger: StoreLogger;
  private readonly readyTimeoutMs: number;
  private readonly keys: { ids: string; masters: string; nextId: string; channel: string };
  private readonly sweepTimer: NodeJS.Timeout;
  /** Decoded `access` and `metadata` shared by key lookups (the CONNECT path): frozen, read-only. */
  private readonly shared = new SharedDecodes();
  private sweeping = false;
  private closed = false;
  /** One shared wait for the command connection, so many waiting calls add one listener. */
  private readyWait: Promise<void> | undefined;
  /** The change feed is subscribed on the current subscriber connection. */
  private feedUp = false;
  private feedWaiters: Array<() => void> = [];
  /** Set after the first subscription: a later one follows a gap (see onResync). */
  private feedWasUp = false;
  private readonly resyncListeners = new Set<() => void>();
  private readonly expiredListeners = new Set<(ids: number[]) => void>();
  /** Connection errors are logged once per outage, not at every reconnect attempt. */
  private readonly outage = { command: false, subscriber: false };

  constructor(options: RedisStoreOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    this.feed = new ChangeFeed(this.logger);
    this.keys = {
      ids: `${this.prefix}ids`,
      masters: `${this.prefix}masters`,
      nextId: `${this.prefix}next_id`,
      channel: `${this.prefix}changes`,
    };
    const base: RedisOptions = {
      retryStrategy,
      connectTimeout: 2000,
      // ioredis arms this timer on every disconnect() and clears it only on a later 'close' of the
      // socket; for a socket that is already closed (Redis down) it would hold the process 2 s.
      disconnectTimeout: 200,
      ...options.redis,
    };
    const connect = (extra: RedisOptions): Redis => {
      const merged = { ...base, ...extra };
      return options.url ? new Redis(options.url, merged) : new Redis(merged);
    };
    this.client = connect({
      connectionName: 'tokenmq-store',
      commandTimeout: base.commandTimeout ?? 2000,
      // SPEC §7: fail fast while Redis is down (CONNACK 3 / 503) rather than queue.
      enableOfflineQueue: false,
      // A command in flight when the connection drops is failed, never resent later.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    });
    this.subscriber = connect({
      connectionName: 'tokenmq-feed',
      commandTimeout: undefined,
      // SUBSCRIBE waits for the connection, and ioredis subscribes again after every reconnect.
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: true,
    });
    this.scripts = new StoreScripts(this.client);
    this.owners = new RedisOwners(this.client, this.prefix, (fn) => this.call(fn));
    this.watch(this.client, 'command');
    this.watch(this.subscriber, 'subscriber');
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.keys.channel) this.onFeedMessage(message);
    });
    this.subscriber.on('ready', () => this.confirmFeed());
    this.subscriber.on('close', () => {
      this.feedUp = false;
    });
    this.subscriber.subscribe(this.keys.channel).catch((err: unknown) => {
      if (!this.closed) this.logger.error({ err }, 'token change feed: subscribe failed');
    });
    const sweepMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_MS;
    this.sweepTimer = setInterval(() => void this.sweepInBackground(), sweepMs);
    // The sweeper must not keep the process alive on its own.
    this.sweepTimer.unref();
  }

  async create(inputs: TokenInput[], now: number): Promise<CreatedToken[]> {
    const at = toSeconds(now);
    // Checked before any id is taken: all or nothing.
    const tokens = inputs.map((input) => newToken(0, input, at));
    if (tokens.length === 0) return [];
    const created = await this.insert(tokens, tokens.map(() => generateKey()), 'strict');
    if (created === null) throw new StoreDataError('token creation was refused by the store');
    return created;
  }

  async createChildren(parent: Token, inputs: TokenInput[], now: number): Promise<CreatedToken[]> {
    const at = toSeconds(now);
    const tokens = inputs.map((input) => newToken(0, input, at, parent.id));
    if (tokens.length === 0) return [];
    // The script compares these with the stored fields, which encodeToken wrote the same way.
    const guard: ChildGuard = { parent: String(parent.id), access: JSON.stringify(parent.access), ips: parent.ips, max: String(MAX_CHILDREN) };
    const created = await this.insert(tokens, tokens.map(() => generateKey()), 'child', guard);
    if (created === null) throw new StoreDataError('token creation was refused by the store');
    return created;
  }

  async children(id: number): Promise<number[]> {
    const members = await this.call(() => this.client.smembers(`${this.prefix}children:${id}`));
    const ids = members.filter((m) => /^\d{1,15}$/.test(m)).map(Number).sort((a, b) => a - b);
    if (ids.length === 0) return [];
    // Children that expired by themselves linger in the set until the next child is made.
    const exists = await this.call(async () => {
      const pipeline = this.client.pipeline();
      for (const child of ids) pipeline.exists(this.tokenKey(child));
      return (await pipeline.exec()) ?? [];
    });
    return ids.filter((_, i) => exists[i]?.[1] === 1);
  }

  async createWithKey(input: TokenInput, key: string, now: number): Promise<CreatedToken | null> {
    const token = newToken(0, input, toSeconds(now));
    // Saves an id in the usual case (MASTER_TOKEN at every start); the script decides atomically.
    const taken = await this.call(() => this.client.exists(this.indexKey(hashKey(key))));
    if (taken === 1) return null;
    const created = await this.insert([token], [key], 'nx');
    return created?.[0] ?? null;
  }

  async createMasterIfNone(input: Omit<TokenInput, 'access'>, now: number): Promise<CreatedToken | null> {
    const token = newToken(0, { ...input, access: { type: ACCESS_MASTER } }, toSeconds(now));
    if (await this.hasMaster()) return null;
    const created = await this.insert([token], [generateKey()], 'nomaster');
    return created?.[0] ?? null;
  }

  async hasMaster(): Promise<boolean> {
    return this.call(() => this.scripts.hasMaster(this.keys.masters, this.prefix));
  }

  async get(ids: number[] | 'all'): Promise<Token[]> {
    if (ids === 'all') return this.listAll(false);
    return this.getMany(ids, (id, fields) => decodeToken(id, fields).token);
  }

  /** SPEC §2: as `get`, but a token that cannot be decoded is listed with what could be read (`unreadable`). */
  async list(ids: number[] | 'all'): Promise<Token[]> {
    if (ids === 'all') return this.listAll(true);
    return this.getMany(ids, decodeForListing);
  }

  private async getMany(ids: number[], decode: (id: number, fields: FieldSource) => Token): Promise<Token[]> {
    const list = toIdList(ids);
    if (list.length === 0) return [];
    const replies = await this.hgetallMany(list);
    const out: Token[] = [];
    list.forEach((id, i) => {
      const [err, fields] = replies[i] as HashReply;
      if (err) throw new StoreDataError(`token ${id}: the stored key holds something other than a hash`, id);
      if (fields && Object.keys(fields).length > 0) out.push(decode(id, fromRecord(fields)));
    });
    return out;
  }

  async findByKey(key: string): Promise<Token | null> {
    const hash = hashKey(key);
    const reply = await this.call(() => this.scripts.find(this.indexKey(hash), this.prefix));
    if (reply === null) return null;
    const id = Number(reply[0]);
    const decoded = decodeToken(id, fromValues(reply[1]), this.shared);
    // The index and the token must agree, or a stale index entry could authenticate the wrong token.
    if (decoded.hash !== hash) throw new StoreDataError(`token ${id}: the key index names a token with another key`, id);
    return decoded.token;
  }

  async findByKeyAndAdmit(key: string, req: AdmitRequest): Promise<{ token: Token | null; admission: AdmitResult | null; probed?: boolean[] }> {
    const hash = hashKey(key);
    const found = await this.owners.findAndAdmit(this.indexKey(hash), req);
    if (found === null) return { token: null, admission: null };
    const id = Number(found.id);
    try {
      const decoded = decodeToken(id, fromValues(found.fields), this.shared);
      if (decoded.hash !== hash) throw new StoreDataError(`token ${id}: the key index names a token with another key`, id);
      return { token: decoded.token, admission: found.admission, probed: found.probed };
    } catch (err) {
      // Claimed, then unreadable: the claim is given back before the refusal is answered (SPEC §4: a
      // refused CONNECT holds no client id, on any node), best effort like any undo.
      const a = found.admission;
      if (a?.ok) {
        await Promise.all([
          this.owners.undo(req.clientId, req.nonce, a.ownerPrevious).catch(() => {}),
          this.owners.undoSlot({ tokenId: id, clientId: req.clientId, nonce: req.nonce, node: req.node }, a.slotPrevious[0] ?? null).catch(() => {}),
        ]);
      }
      throw err;
    }
  }

  async update(ids: number[], patch: TokenPatch, now: number): Promise<Token[]> {
    const list = toIdList(ids);
    if (list.length === 0) return [];
    const changes = copyPatch(patch);
    const masterFlag = changes.access === undefined ? '' : isMaster(changes.access) ? '1' : '0';
    const reply = await this.call(() =>
      this.scripts.update(
        { ids: this.keys.ids, masters: this.keys.masters, tokens: list.map((id) => this.tokenKey(id)) },
        toSeconds(now),
        this.prefix,
        this.keys.channel,
        masterFlag,
        encodePatch(changes),
        list.map(String),
      ),
    );
    const out: Token[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const id = Number(reply[i]);
      out.push(decodeToken(id, fromValues(reply[i + 1])).token);
    }
    return out;
  }

  async delete(ids: number[]): Promise<number[]> {
    const list = toIdList(ids);
    if (list.length === 0) return [];
    const deleted = await this.call(() =>
      this.scripts.delete(
        { ids: this.keys.ids, masters: this.keys.masters, tokens: list.map((id) => this.tokenKey(id)) },
        this.prefix,
        this.keys.channel,
        list.map(String),
      ),
    );
    return deleted.map(Number);
  }

  async touch(ids: number[], now: number): Promise<number[]> {
    const list = toIdList(ids);
    if (list.length === 0) return [];
    const at = toSeconds(now);
    const chunks: number[][] = [];
    for (let i = 0; i < list.length; i += CHUNK) chunks.push(list.slice(i, i + CHUNK));
    // Sent together: one round trip however many chunks.
    const gone = await this.call(() =>
      Promise.all(
        chunks.map((chunk) =>
          this.scripts.touch({ ids: this.keys.ids, tokens: chunk.map((id) => this.tokenKey(id)) }, at, this.prefix, chunk.map(String)),
        ),
      ),
    );
    return gone.flat();
  }

  onChange(listener: ChangeListener): () => void {
    return this.feed.add(listener);
  }

  async count(): Promise<number> {
    return this.call(() => this.scripts.count(this.keys.ids));
  }

  async ping(): Promise<void> {
    await this.call(() => this.client.ping());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.owners.close();
    this.feed.clear();
    for (const resolve of this.feedWaiters.splice(0)) resolve();
    // Releases of sessions that ended just before the close are still to be sent (TurnBatch).
    await this.owners.drain();
    await Promise.all([quit(this.client), quit(this.subscriber)]);
  }

  /**
   * Deletes the tokens whose deadline passed and publishes `deleted` for each;
   * resolves to how many. Runs by itself every sweepIntervalMs; exposed for
   * tests and operations.
   */
  async sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      const swept = await this.call(() =>
        this.scripts.sweep(this.keys.ids, this.keys.masters, this.prefix, this.keys.channel, SWEEP_BATCH),
      );
      total += swept.length;
      // The script is atomic: only the node that swept a token reports it (SPEC §8 `token_expired`).
      const ids = swept.filter((id) => /^\d+$/.test(id)).map(Number);
      if (ids.length > 0) {
        for (const listener of [...this.expiredListeners]) {
          try {
            listener(ids);
          } catch (err) {
            this.logger.error({ err }, 'token expiry listener threw');
          }
        }
      }
      if (swept.length < SWEEP_BATCH) return total;
    }
  }

  onExpired(listener: (ids: number[]) => void): () => void {
    this.expiredListeners.add(listener);
    return () => { this.expiredListeners.delete(listener); };
  }

  /**
   * Resolves once the change feed is subscribed on the current connection:
   * after start-up, and again after a reconnect. Events published before
   * that are not seen by this node (pub/sub keeps no history).
   */
  onResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => { this.resyncListeners.delete(listener); };
  }

  feedReady(): Promise<void> {
    if (this.feedUp || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.feedWaiters.push(resolve));
  }

  // ---- internals ----

  private tokenKey(id: number): string {
    return `${this.prefix}token:${id}`;
  }

  private indexKey(sha: string): string {
    return `${this.prefix}key:${sha}`;
  }

  /** Runs Redis calls: waits (bounded) for a connection being set up, maps failures (redis-errors.ts). */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    await this.connected();
    try {
      return await fn();
    } catch (err) {
      throw mapRedisError(err);
    }
  }

  private async connected(): Promise<void> {
    if (this.closed) throw new StoreUnavailableError('token store is closed');
    const status = this.client.status;
    if (status === 'ready') return;
    // Down (reconnecting between attempts, or ended): fail at once (SPEC §7).
    if (!CONNECTING.has(status)) throw new StoreUnavailableError(`token store unavailable: redis connection is ${status}`);
    this.readyWait ??= new Promise<void>((resolve, reject) => {
      const client = this.client;
      const done = (err?: Error): void => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('close', onClose);
        this.readyWait = undefined;
        if (err) reject(err);
        else resolve();
      };
      const onReady = (): void => done();
      const onClose = (): void => done(new StoreUnavailableError('token store unavailable: redis connection failed'));
      const timer = setTimeout(
        () => done(new StoreUnavailableError(`token store unavailable: redis not ready within ${this.readyTimeoutMs} ms`)),
        this.readyTimeoutMs,
      );
      client.on('ready', onReady);
      client.on('close', onClose);
    });
    return this.readyWait;
  }

  /** Writes tokens with the create script (ids from next_id first, so every key is named in KEYS). */
  private async insert(tokens: Token[], keys: string[], mode: CreateMode, child?: ChildGuard): Promise<CreatedToken[] | null> {
    const last = await this.call(() => this.client.incrby(this.keys.nextId, tokens.length));
    const first = last - tokens.length + 1;
    const rows: string[][] = [];
    const created: CreatedToken[] = tokens.map((token, i) => {
      const id = first + i;
      const key = keys[i] as string;
      const hash = hashKey(key);
      const stored: Token = { ...token, id };
      rows.push([this.tokenKey(id), this.indexKey(hash), String(id), ...encodeToken(stored, hash), isMaster(stored.access) ? '1' : '0']);
      return { ...stored, key };
    });
    const count = await this.call(() => this.scripts.create(this.keys.ids, this.keys.masters, mode, this.prefix, this.keys.channel, rows, child));
    return count === tokens.length ? created : null;
  }

  /** HGETALL of many tokens in one pipeline; per-token errors (a non-hash key) are returned, connection errors thrown. */
  private async hgetallMany(ids: number[]): Promise<HashReply[]> {
    const results = await this.call(async () => {
      const pipeline = this.client.pipeline();
      for (const id of ids) pipeline.hgetall(this.tokenKey(id));
      return (await pipeline.exec()) ?? [];
    });
    return ids.map((_, i) => {
      const [err, value] = results[i] ?? [new StoreUnavailableError('token store unavailable: no reply'), null];
      if (err && !isReplyError(err)) throw mapRedisError(err);
      return [err ?? null, (value ?? null) as Record<string, string> | null];
    });
  }

  /**
   * Every token. One that cannot be decoded is never fatal: `lenient` (listings, SPEC §2)
   * lists it with what could be read, else it is skipped and logged.
   */
  private async listAll(lenient: boolean): Promise<Token[]> {
    const members = await this.call(() => this.client.zrange(this.keys.ids, 0, '-1'));
    const ids: number[] = [];
    for (const member of members) {
      const id = /^\d{1,15}$/.test(member) ? Number(member) : 0;
      if (id > 0) ids.push(id);
      else this.logger.warn({ member }, 'token store: skipping a foreign member of the id index');
    }
    ids.sort((a, b) => a - b);
    const out: Token[] = [];
    for (let i = 0; i < ids.length; i += CHUNK) {
      const chunk = ids.slice(i, i + CHUNK);
      const replies = await this.hgetallMany(chunk);
      chunk.forEach((id, j) => {
        const [err, fields] = replies[j] as HashReply;
        if (err) {
          this.logger.warn({ tokenId: id, reason: err.message }, 'token store: skipping a token whose key is not a hash');
          return;
        }
        // Empty: expired by itself and not swept yet.
        if (!fields || Object.keys(fields).length === 0) return;
        try {
          out.push(lenient ? decodeForListing(id, fromRecord(fields)) : decodeToken(id, fromRecord(fields)).token);
        } catch (decodeErr) {
          if (!(decodeErr instanceof StoreDataError)) throw decodeErr;
          this.logger.warn({ tokenId: id, reason: decodeErr.message }, 'token store: skipping a token that cannot be decoded');
        }
      });
    }
    return out;
  }

  private onFeedMessage(message: string): void {
    const change = parseChange(message);
    if (change === null) {
      this.logger.warn({ channel: this.keys.channel, message: message.slice(0, 200) }, 'token change feed: ignoring a malformed message');
      return;
    }
    // Already outside any store call: we are in a socket data event.
    this.feed.dispatch(change.id, change.kind);
  }

  /**
   * ioredis resubscribes on 'ready' (the status event comes a tick after the
   * SUBSCRIBE is written), so a PING answered after that proves the
   * subscription is in place.
   */
  private confirmFeed(): void {
    this.subscriber.ping().then(
      () => {
        if (this.subscriber.status !== 'ready') return;
        this.feedUp = true;
        for (const resolve of this.feedWaiters.splice(0)) resolve();
        if (this.feedWasUp) for (const listener of [...this.resyncListeners]) listener();
        this.feedWasUp = true;
      },
      () => {
        // The connection dropped again; the next 'ready' tries again.
      },
    );
  }

  /** Every connection gets an error listener: an unhandled 'error' event would kill the process. */
  private watch(connection: Redis, role: 'command' | 'subscriber'): void {
    connection.on('error', (err: Error) => {
      if (this.closed || this.outage[role]) return;
      this.outage[role] = true;
      this.logger.error({ err, role }, 'token store: redis connection error (repeats are not logged until it recovers)');
    });
    connection.on('ready', () => {
      if (!this.outage[role]) return;
      this.outage[role] = false;
      this.logger.warn({ role }, 'token store: redis connection restored');
    });
  }

  private async sweepInBackground(): Promise<void> {
    // While Redis is down there is nothing to sweep, and failing calls would only add noise.
    if (this.sweeping || this.closed || this.client.status !== 'ready') return;
    this.sweeping = true;
    try {
      await this.sweep();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) this.logger.error({ err }, 'token store: expiry sweep failed');
    } finally {
      this.sweeping = false;
    }
  }
}

type HashReply = [Error | null, Record<string, string> | null];

const KINDS: readonly ChangeKind[] = ['created', 'updated', 'deleted'];

/** A change feed message, or null when it is not one of ours. */
function parseChange(message: string): { id: number; kind: ChangeKind } | null {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { id, kind } = value as { id?: unknown; kind?: unknown };
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) return null;
  const known = KINDS.find((k) => k === kind);
  return known === undefined ? null : { id, kind: known };
}

/** Closes a connection: QUIT when it is up (lets replies drain), else stop reconnecting at once. */
async function quit(connection: Redis): Promise<void> {
  if (connection.status === 'ready') {
    try {
      await connection.quit();
      return;
    } catch {
      // Lost meanwhile: disconnect below stops the reconnection.
    }
  }
  if (connection.status !== 'end') connection.disconnect();
}
