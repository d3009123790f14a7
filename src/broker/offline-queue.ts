// Aedes hands every CONNECT's offline queue to `stream.pipeline` (connect.js
// `emptyQueue`: pipeline(persistence.outgoingStream(client), through(fn), done)),
// queue or no queue. Node's pipeline is general and costly for this: an
// AbortController aborted with a DOMException and its stack trace at the end,
// end-of-stream listeners on every stream, a Readable wrapped around an async
// iterable. For the usual CONNECT, a clean session with nothing queued, that
// was the largest single cost of a CONNECT: on the 2-core VM, broker CPU per
// CONNECT+DISCONNECT ~300 µs with it and ~190 µs without (memory persistence),
// ~50 µs of ~550 µs in Redis mode (issue 9: connect rate).
//
// So the queue Aedes gets from `outgoingStream` is a QueuedPackets: an async
// iterable over the store's own answer, which any consumer can read as before
// (Node's pipeline, `for await`). A wrapper of `stream.pipeline`, installed once
// per process, recognises it in Aedes' three-argument call and drains it into
// the transform itself: each packet written in order, waiting for 'drain' when
// the transform is full, `done` on the transform's 'finish' or on the first
// error (both streams then destroyed), as Node's pipeline does. Every other
// pipeline call goes to Node's own function untouched.
//
// With the in-memory persistence tokenmq also knows which client ids can have
// anything queued (a queue grows only through `outgoingEnqueue` /
// `outgoingEnqueueCombi`); the queue of any other client id is known empty and
// `done` comes on the next tick without asking the store. Redis mode always asks
// (another node may have queued for a client id).
//
// Aedes imports `pipeline` as an ES module binding, which
// `syncBuiltinESMExports` updates; where a loader keeps its own copy of the
// binding (Jest's module registry may), QueuedPackets go through Node's
// pipeline like any async iterable: slower, never wrong.
import stream, { type Writable } from 'node:stream';
import { once } from 'node:events';
import { syncBuiltinESMExports } from 'node:module';

const DONE: IteratorResult<unknown> = { done: true, value: undefined };
const NOTHING: AsyncIterator<unknown> = { next: () => Promise.resolve(DONE) };

/** A client's offline queue as Aedes gets it from the wrapped persistence. `source` null: known empty. */
class QueuedPackets implements AsyncIterable<unknown> {
  constructor(readonly source: AsyncIterable<unknown> | null) {}

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return this.source === null ? NOTHING : this.source[Symbol.asyncIterator]();
  }
}

/** pipeline(queue, into, done) for Aedes' queues: see the header. */
function drain(queue: QueuedPackets, into: Writable, done: (err?: Error) => void): Writable {
  if (queue.source === null) {
    process.nextTick(done);
    return into;
  }
  let finished = false;
  const finish = (err?: Error): void => {
    if (finished) return;
    finished = true;
    if (err) into.destroy();
    done(err);
  };
  into.on('error', finish);
  into.once('finish', () => finish());
  const pump = async (): Promise<void> => {
    for await (const packet of queue) {
      if (finished) return; // the iterator's `return` runs: the store's read is closed
      if (!into.write(packet)) await once(into, 'drain'); // rejects on 'error'
    }
    if (!finished) into.end();
  };
  pump().catch((err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
  return into;
}

let installed = false;

function installPipelineShortcut(): void {
  if (installed) return;
  installed = true;
  const node = stream.pipeline;
  function pipeline(this: unknown, ...args: unknown[]): unknown {
    const [queue, into, done] = args;
    if (args.length === 3 && queue instanceof QueuedPackets && typeof done === 'function' && into instanceof stream.Writable) {
      return drain(queue, into, done as (err?: Error) => void);
    }
    return Reflect.apply(node, this, args);
  }
  // util.promisify.custom and the rest of pipeline's own properties.
  for (const key of Reflect.ownKeys(node)) {
    if (key === 'length' || key === 'name' || key === 'prototype') continue;
    Object.defineProperty(pipeline, key, Object.getOwnPropertyDescriptor(node, key) as PropertyDescriptor);
  }
  stream.pipeline = pipeline as typeof stream.pipeline;
  syncBuiltinESMExports();
}

interface QueuePersistence {
  outgoingEnqueue(sub: { clientId: string }, ...rest: unknown[]): unknown;
  outgoingEnqueueCombi(subs: readonly { clientId: string }[], ...rest: unknown[]): unknown;
  outgoingStream(client: { id: string }): AsyncIterable<unknown>;
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  delWill(client: { id: string }): Promise<unknown>;
}

/**
 * What a clean CONNECT's find-and-admit found stored for its client id in
 * aedes-persistence-redis (authenticate.ts; the keys: ClusterParts.probeKeys),
 * in the same round trip as its token and claim.
 */
export interface Probed {
  queue: boolean;
  subscriptions: boolean;
  /** This node's stored will for the client id. */
  will: boolean;
}

/** Per client object (Aedes' Client), until its CONNECT has used it. */
export interface Probes {
  results: WeakMap<object, Probed>;
  /** Whether this node holds another session of the client id than the connecting one (registry). */
  othersOnNode(clientId: string): boolean;
}

/**
 * Any persistence (Redis mode): its queues reach Aedes as QueuedPackets, read
 * from the store. A clean CONNECT that `probes` found without stored data skips
 * the reads Aedes makes of it, in the order Aedes makes them:
 * - no subscriptions: `cleanSubscriptions` (a read of none) is done at once;
 * - no will of this node, and no other session of the client id on this node
 *   (only one could store a will here meanwhile): `delWill` is done at once;
 *   a will of this CONNECT is written after it as always;
 * - no subscriptions and no queue: the queue is empty (and the result used up).
 * Data stored between the probe and these steps could only come from another
 * session of the same client id (ownership: the same token) or from a publish
 * that read the subscriptions before they went; Aedes' own reads race those too.
 */
export function lightQueues<P extends object>(persistence: P, probes?: Probes): P {
  installPipelineShortcut();
  const p = persistence as unknown as QueuePersistence;
  const outgoingStream = p.outgoingStream.bind(persistence);
  const results = probes?.results;
  const clean = (client: object): boolean => (client as { clean?: unknown }).clean === true;
  p.outgoingStream = (client) => {
    const found = results?.get(client);
    if (found !== undefined) {
      (results as WeakMap<object, Probed>).delete(client);
      if (!found.queue && !found.subscriptions && clean(client)) return new QueuedPackets(null);
    }
    return new QueuedPackets(outgoingStream(client));
  };
  if (probes !== undefined) {
    const cleanSubscriptions = p.cleanSubscriptions.bind(persistence);
    const delWill = p.delWill.bind(persistence);
    p.cleanSubscriptions = (client) => {
      const found = probes.results.get(client);
      if (found !== undefined && !found.subscriptions && clean(client)) return Promise.resolve();
      return cleanSubscriptions(client);
    };
    p.delWill = (client) => {
      const found = probes.results.get(client);
      if (found !== undefined && !found.will && !probes.othersOnNode(client.id)) return Promise.resolve(null);
      return delWill(client);
    };
  }
  return persistence;
}

/**
 * The in-memory persistence (it must see every enqueue: apply it to the store
 * itself, under any other wrapper): as lightQueues, and the queue of a client
 * id that cannot have anything queued is known empty.
 */
export function skipEmptyQueues<P extends object>(persistence: P): P {
  installPipelineShortcut();
  const p = persistence as unknown as QueuePersistence;
  const enqueue = p.outgoingEnqueue.bind(persistence);
  const enqueueCombi = p.outgoingEnqueueCombi.bind(persistence);
  const outgoingStream = p.outgoingStream.bind(persistence);
  /**
   * Client ids whose queue may hold something, each with the enqueue that last
   * marked it. One is dropped when a read of its whole queue found nothing and
   * nothing was enqueued since; until then the store is asked.
   */
  const mayHold = new Map<string, number>();
  let enqueues = 0;
  const mark = (clientId: string): void => {
    mayHold.set(clientId, ++enqueues);
  };
  p.outgoingEnqueue = (sub, ...rest) => {
    mark(sub.clientId);
    return enqueue(sub, ...rest);
  };
  p.outgoingEnqueueCombi = (subs, ...rest) => {
    for (const sub of subs ?? []) mark(sub.clientId);
    return enqueueCombi(subs, ...rest);
  };
  async function* counted(id: string, marked: number, queued: AsyncIterable<unknown>): AsyncGenerator<unknown> {
    let n = 0;
    for await (const packet of queued) {
      n++;
      yield packet;
    }
    // The store copied the queue when asked: that copy was empty and nothing was enqueued since.
    if (n === 0 && mayHold.get(id) === marked) mayHold.delete(id);
  }
  p.outgoingStream = (client) => {
    const marked = mayHold.get(client.id);
    if (marked === undefined) return new QueuedPackets(null);
    // Asked now: the store takes its copy of the queue at this call, before any later enqueue.
    return new QueuedPackets(counted(client.id, marked, outgoingStream(client)));
  };
  return persistence;
}

/** Whether `outgoingStream` answered a queue known empty, without asking the store (tests). */
export function isKnownEmpty(value: unknown): boolean {
  return value instanceof QueuedPackets && value.source === null;
}
