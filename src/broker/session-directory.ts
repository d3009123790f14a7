// Where the REST API finds live sessions and sends kicks (SPEC §5, §6). One
// node: the local registry. Cluster: each node mirrors its sessions into a Redis
// hash that expires unless the node's heartbeat renews it, so a dead node's
// sessions leave listings by themselves; kicks travel on a pub/sub channel and
// every node closes the matching sessions it holds.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { NodeDownListener, SessionDirectory, SessionView } from '../access/ports.js';
import type { Session, SessionRegistry } from './sessions.js';
import { removeLocalSubscription } from './api-ports.js';

export type { NodeDownListener, SessionDirectory } from '../access/ports.js';


type LocalKick = (clientId: string, reason: string, by?: number) => number;

export class LocalSessionDirectory implements SessionDirectory {
  constructor(private readonly registry: SessionRegistry, private readonly localKick: LocalKick) {}

  async list(): Promise<SessionView[]> {
    return this.registry.all().map((s) => this.registry.view(s));
  }

  async kick(clientIds: string[], reason: string, by?: number): Promise<void> {
    for (const id of clientIds) this.localKick(id, reason, by);
  }

  async close(): Promise<void> {}
}

export interface RedisDirectoryOptions {
  redisUrl: string;
  prefix: string;
  nodeId: string;
  registry: SessionRegistry;
  localKick: LocalKick;
  log: Logger;
  /** Heartbeat and counter refresh period (ms). */
  heartbeatMs?: number;
  /** A node whose hash was not renewed for this long drops out (ms); SPEC §6 asks ≤ 30 s. */
  expireMs?: number;
  /** How long connects and disconnects gather before they are written (ms, default FLUSH_DELAY_MS). */
  flushDelayMs?: number;
}

/**
 * Connects and disconnects gather this long before they are written (issue 9,
 * Redis mode's connect rate): a session that comes and goes within it is never
 * written, and one write carries the rest. Other nodes list a new session up to
 * about twice this later (listingDelayMs: the REST API waits that long before it
 * answers that a named client id is not connected); a listing on this node
 * writes what is pending first.
 */
export const FLUSH_DELAY_MS = 25;

interface KickMessage { clientIds: string[]; reason: string; from: string; by?: number }

export class RedisSessionDirectory implements SessionDirectory {
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly nodesKey: string;
  private readonly nodeKey: string;
  private readonly kickChannel: string;
  /** SPEC §5 subscription removals: a channel of their own, so a node that knows only kicks never reads one as a kick. */
  private readonly unsubscribeChannel: string;
  private readonly heartbeatMs: number;
  private readonly expireMs: number;
  private readonly timer: NodeJS.Timeout;
  private readonly log: Logger;
  /** Client ids whose entry is to be rewritten from the registry at the next flush. */
  private dirty = new Set<string>();
  private flushQueued: NodeJS.Timeout | null = null;
  private readonly flushDelayMs: number;
  /** A batch waits flushDelayMs, and the one after a batch in flight as long again after it. */
  readonly listingDelayMs: number;
  private flushing: Promise<void> | null = null;
  /** The next heartbeat rewrites the whole snapshot (at start, after Redis came back or a write failed). */
  private fullSnapshot = true;
  private readonly nodeDown: NodeDownListener[] = [];

  constructor(private readonly opts: RedisDirectoryOptions) {
    this.log = opts.log;
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    this.flushDelayMs = opts.flushDelayMs ?? FLUSH_DELAY_MS;
    this.listingDelayMs = 2 * this.flushDelayMs + 10;
    this.expireMs = opts.expireMs ?? 15_000;
    this.nodesKey = `${opts.prefix}nodes`;
    this.nodeKey = `${opts.prefix}node:${opts.nodeId}`;
    this.kickChannel = `${opts.prefix}kicks`;
    this.unsubscribeChannel = `${opts.prefix}unsubscribes`;
    const common = { retryStrategy: (n: number) => Math.min(n * 200, 2000) };
    // Fail fast while Redis is down: listings answer 503, the heartbeat tries again.
    this.cmd = new Redis(opts.redisUrl, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    this.sub = new Redis(opts.redisUrl, { ...common, maxRetriesPerRequest: null });
    this.cmd.on('error', (err) => this.log.debug({ err: err.message }, 'session directory redis error'));
    this.sub.on('error', (err) => this.log.debug({ err: err.message }, 'session directory subscriber error'));
    // A fresh snapshot as soon as Redis is back (SPEC §7: recovers by itself).
    this.cmd.on('ready', () => { this.fullSnapshot = true; void this.heartbeat(); });
    this.sub.on('message', (channel: string, text: string) => {
      if (channel === this.kickChannel) this.onKick(text);
      else if (channel === this.unsubscribeChannel) this.onUnsubscribe(text);
    });
    void this.sub.subscribe(this.kickChannel, this.unsubscribeChannel).catch((err: unknown) => this.log.warn({ err }, 'kick channel subscribe failed'));
    opts.registry.onChange((_kind, session) => this.changed(session.clientId));
    this.timer = setInterval(() => { void this.heartbeat(); }, this.heartbeatMs);
    this.timer.unref();
  }

  /**
   * Connects and disconnects are written in batches (issue 9: Redis commands per
   * CONNECT): every change within FLUSH_DELAY_MS, and all those that come while a
   * write is in flight, go in one pipeline. Each entry is written from what the registry holds
   * at flush time, not from the event, so the order of events within a batch
   * cannot matter: a session that came and went lists nothing, and a takeover
   * on this node (the new session added, then the old one removed, same client
   * id) lists the new one.
   */
  private changed(clientId: string): void {
    this.dirty.add(clientId);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushQueued !== null || this.flushing) return;
    this.flushQueued = setTimeout(() => {
      this.flushQueued = null;
      void this.flush();
    }, this.flushDelayMs);
  }

  /** Writes the pending entries; resolves once they are written (or failed: the heartbeat repairs). */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.dirty.size === 0) return Promise.resolve();
    const ids = this.dirty;
    this.dirty = new Set();
    const { registry } = this.opts;
    const fields: string[] = [];
    const gone: string[] = [];
    for (const id of ids) {
      const live = registry.byClientId(id);
      const newest = live[live.length - 1];
      if (newest === undefined) gone.push(id);
      else fields.push(id, this.entry(newest));
    }
    // A pipeline, not a transaction: each command stands alone (PEXPIRE only renews the hash).
    const batch = this.cmd.pipeline();
    if (fields.length) batch.hset(this.nodeKey, ...fields).pexpire(this.nodeKey, this.expireMs);
    if (gone.length) batch.hdel(this.nodeKey, ...gone);
    this.flushing = batch.exec().then(() => {}, () => { this.fullSnapshot = true; }).finally(() => {
      this.flushing = null;
      // Changes that came meanwhile: the next batch, after the same wait.
      if (this.dirty.size > 0) this.schedule();
    });
    return this.flushing;
  }

  private onKick(text: string): void {
    let msg: KickMessage;
    try {
      msg = JSON.parse(text) as KickMessage;
      if (!Array.isArray(msg.clientIds)) return;
    } catch {
      return;
    }
    const by = typeof msg.by === 'number' ? msg.by : undefined;
    for (const id of msg.clientIds) if (typeof id === 'string') this.opts.localKick(id, msg.reason ?? 'kicked', by);
  }

  private onUnsubscribe(text: string): void {
    let msg: { clientIds?: unknown; filter?: unknown };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      return;
    }
    if (!Array.isArray(msg.clientIds) || typeof msg.filter !== 'string') return;
    const ids = msg.clientIds.filter((id): id is string => typeof id === 'string');
    removeLocalSubscription(this.opts.registry, ids, msg.filter, this.log);
  }

  async removeSubscription(clientIds: readonly string[], filter: string): Promise<void> {
    await this.cmd.publish(this.unsubscribeChannel, JSON.stringify({ clientIds, filter, from: this.opts.nodeId }));
  }

  onNodeDown(listener: NodeDownListener): void {
    this.nodeDown.push(listener);
  }

  /**
   * SPEC §8 `node_down`: a node whose heartbeat stopped for `expireMs - heartbeatMs`
   * (its snapshot still there: it lives `expireMs`) is claimed by the one node whose
   * ZREM removes it; that node reports the dead node's sessions and drops its snapshot.
   */
  private async sweepDeadNodes(): Promise<void> {
    if (this.nodeDown.length === 0) return;
    const cutoff = Date.now() - (this.expireMs - this.heartbeatMs);
    const dead = await this.cmd.zrangebyscore(this.nodesKey, '-inf', cutoff);
    for (const node of dead) {
      if (node === this.opts.nodeId) continue;
      const nodeKey = `${this.opts.prefix}node:${node}`;
      const replies = await this.cmd.multi().zrem(this.nodesKey, node).hvals(nodeKey).del(nodeKey).exec();
      const [claimed, values] = [replies?.[0]?.[1], replies?.[1]?.[1]];
      if (claimed !== 1 || !Array.isArray(values)) continue;
      const sessions: SessionView[] = [];
      for (const v of values as string[]) {
        try {
          sessions.push(JSON.parse(v) as SessionView);
        } catch {
          // undecodable entry: nothing to report for it
        }
      }
      this.log.warn({ node, sessions: sessions.length }, 'node down: its sessions are gone');
      for (const listener of this.nodeDown) listener(node, sessions);
    }
  }

  /** A session's listing entry; remembers the traffic it shows (see heartbeat). */
  private entry(session: Session): string {
    const view = this.opts.registry.view(session);
    // activity(session) from the view's counters: the socket's byte getters copy its write queue on each call.
    session.listedActivity = view.bytes_in + view.bytes_out;
    return JSON.stringify(view);
  }

  /**
   * Renews this node's snapshot: its expiry, and fresh counters for the sessions
   * that had traffic since their entry was written (bytes move with every packet,
   * SUBSCRIBE included). Idle sessions are not rewritten: at 20,000 sessions a
   * full rewrite every 5 s cost the event loop tens of milliseconds and Redis
   * megabytes (issue 9, scale). The whole snapshot is rewritten at start, when
   * Redis comes back and after a failed write. A change with no traffic (none today)
   * must go through the registry's onChange to be listed.
   */
  private async heartbeat(): Promise<void> {
    const full = this.fullSnapshot;
    this.fullSnapshot = false;
    const fields: string[] = [];
    for (const s of this.opts.registry.all()) {
      if (full || s.listedActivity !== activity(s)) fields.push(s.clientId, this.entry(s));
    }
    const tx = this.cmd.multi();
    if (full) tx.del(this.nodeKey);
    if (fields.length) tx.hset(this.nodeKey, ...fields);
    tx.pexpire(this.nodeKey, this.expireMs);
    tx.zadd(this.nodesKey, Date.now(), this.opts.nodeId);
    try {
      await tx.exec();
      await this.sweepDeadNodes();
    } catch (err) {
      this.fullSnapshot = true;
      this.log.debug({ err: (err as Error).message }, 'session heartbeat failed');
    }
  }

  async list(): Promise<SessionView[]> {
    // This node's pending connects and disconnects first: its own listing is never behind.
    await this.flush();
    const since = Date.now() - this.expireMs;
    // Forget nodes gone for good, then read the live ones' snapshots in one round trip.
    const [, nodes] = (await this.cmd.multi()
      .zremrangebyscore(this.nodesKey, '-inf', since)
      .zrangebyscore(this.nodesKey, since, '+inf')
      .exec()) as [[Error | null, unknown], [Error | null, string[]]];
    const ids = nodes[1] ?? [];
    if (ids.length === 0) return [];
    const pipe = this.cmd.pipeline();
    for (const id of ids) pipe.hvals(`${this.opts.prefix}node:${id}`);
    const out: SessionView[] = [];
    for (const [err, values] of (await pipe.exec()) ?? []) {
      if (err) throw err;
      for (const v of values as string[]) {
        try {
          out.push(JSON.parse(v) as SessionView);
        } catch {
          this.log.warn('skipped an undecodable session entry');
        }
      }
    }
    return out;
  }

  async kick(clientIds: string[], reason: string, by?: number): Promise<void> {
    const msg: KickMessage = { clientIds, reason, from: this.opts.nodeId, ...(by === undefined ? {} : { by }) };
    await this.cmd.publish(this.kickChannel, JSON.stringify(msg));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.flushQueued !== null) clearTimeout(this.flushQueued);
    this.flushQueued = null;
    this.dirty.clear();
    await this.flushing;
    // Leave the listing at once on a clean stop.
    await this.cmd.multi().del(this.nodeKey).zrem(this.nodesKey, this.opts.nodeId).exec().catch(() => {});
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}

/** Bytes both ways: changes with every packet the session sends or receives. */
function activity(session: Session): number {
  const socket = session.conn.socket;
  return (socket.bytesRead ?? 0) + (socket.bytesWritten ?? 0);
}
