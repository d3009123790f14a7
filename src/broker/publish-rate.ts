// SPEC §2 `limits.publish_rate`: PUBLISH packets per second per session. A
// token bucket in front of publish authorisation holds a session's PUBLISH
// packets back, in order, until the bucket has a token: nothing is dropped,
// QoS 0 included.
//
// Holding a packet in authorizePublish also holds Aedes' read loop: Aedes
// parses a whole chunk, dispatches every packet in it at once, and reads the
// socket again only when all of them are done (client.js `_parsingBatch`).
// But a 'readable' event that arrives meanwhile counts as one of them done,
// and enough of those make Aedes read on while packets are held, so they
// would pile up here without bound. So while a session has packets held, its
// stream's 'readable' events are swallowed: the socket buffer fills, Node
// stops reading the connection, TCP pushes back on the client. Nothing is
// lost by swallowing them: a held packet keeps the batch open, and when the
// last one is done Aedes reads whatever arrived meanwhile.
import type { Client } from 'aedes';
import type { Duplex } from 'node:stream';

interface AedesClientInternals {
  conn: Duplex;
  _nextBatch: () => void;
  closed: boolean;
}

/** What the bucket asks of the session: its current rate (a PUT changes it on live sessions). */
export interface RatedSession {
  publishRate: number;
}

const BUCKET = Symbol('tokenmq.publishBucket');
type Bucketed = Client & AedesClientInternals & { [BUCKET]?: Bucket };

class Bucket {
  tokens: number;
  last: number;
  readonly queue: Array<(closed: boolean) => void> = [];
  timer: NodeJS.Timeout | null = null;
  /** The stream's 'readable' listener while packets are held (installed once). */
  gate: (() => void) | null = null;

  constructor(readonly client: Bucketed, readonly session: RatedSession, now: number) {
    // A full second's worth to start with: a client within its rate is never held.
    this.tokens = capacity(session.publishRate);
    this.last = now;
  }

  refill(now: number): void {
    const rate = this.session.publishRate;
    this.tokens = Math.min(capacity(rate), this.tokens + ((now - this.last) * rate) / 1000);
    this.last = now;
  }
}

function capacity(rate: number): number {
  return Math.max(1, rate);
}

/**
 * Runs `run` now when the session's bucket has a token and nothing is waiting,
 * else once its turn comes (FIFO). `run(true)` when the connection closed
 * meanwhile: the packet is then refused rather than published for a session
 * that is gone (it may have been closed because its token was revoked).
 */
export function throttlePublish(client: Client, session: RatedSession, run: (closed: boolean) => void): void {
  const c = client as Bucketed;
  const now = Date.now();
  let b = c[BUCKET];
  if (b === undefined) c[BUCKET] = b = new Bucket(c, session, now);
  else b.refill(now);
  if (b.queue.length === 0 && b.tokens >= 1) {
    b.tokens -= 1;
    return run(false);
  }
  b.queue.push(run);
  holdReads(b);
  arm(b);
}

function arm(b: Bucket): void {
  if (b.timer !== null) return;
  const rate = b.session.publishRate;
  const wait = rate > 0 ? Math.max(1, Math.ceil(((1 - b.tokens) * 1000) / rate)) : 0;
  b.timer = setTimeout(release, wait, b);
}

function release(b: Bucket): void {
  b.timer = null;
  const closed = b.client.closed;
  if (!closed && b.session.publishRate > 0) b.refill(Date.now());
  // The rate was lifted (0: unlimited) or the connection is gone: let every held packet through (or refuse it).
  const all = closed || b.session.publishRate <= 0;
  while (b.queue.length > 0 && (all || b.tokens >= 1)) {
    if (!all) b.tokens -= 1;
    (b.queue.shift() as (closed: boolean) => void)(closed);
  }
  if (b.queue.length > 0) arm(b);
}

/** Swallows the stream's 'readable' events while packets are held (see the top of this file). */
function holdReads(b: Bucket): void {
  if (b.gate !== null) return;
  const { conn, _nextBatch: nextBatch } = b.client;
  if (typeof nextBatch !== 'function' || !conn) return;
  // Installed once; from then on it lets 'readable' through whenever nothing is held.
  b.gate = function gatedReadable(): void {
    if (b.queue.length === 0) nextBatch();
  };
  // Add ours before removing Aedes' own: the stream never has no 'readable' listener (that would change its mode).
  conn.on('readable', b.gate);
  conn.removeListener('readable', nextBatch);
}

/** PUBLISH packets of this client held back right now (tests, diagnostics). */
export function heldPublishes(client: Client): number {
  return (client as Bucketed)[BUCKET]?.queue.length ?? 0;
}
