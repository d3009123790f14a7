// Aedes runs every CONNECT's offline queue through `stream.pipeline` (connect.js
// `emptyQueue`), queue or no queue. For the usual CONNECT, a clean session with
// nothing queued, that pipeline (an AbortController aborted with a DOMException
// and its stack trace, end-of-stream listeners on three streams, an async
// iterator) was the largest single cost of a CONNECT: measured on the 2-core VM,
// memory store, CONNECT/DISCONNECT cycles over TCP, broker CPU per cycle
// ~300 µs with it and ~200 µs without (issue 9: connect rate).
//
// tokenmq knows, for the in-memory persistence, which client ids can have
// anything queued: a queue only grows through `outgoingEnqueue` /
// `outgoingEnqueueCombi`. For any other client id `outgoingStream` answers an
// EmptyQueue: a real, empty Readable (so whatever consumes it, Node's own
// pipeline or `for await`, works as before), which the pipeline below finishes
// at once (the callback on the next tick, as pipeline's own would come later).
//
// `stream.pipeline` is wrapped once per process: every other call goes to Node's
// own function untouched. Aedes imports it as an ES module binding, which
// `syncBuiltinESMExports` updates; where a loader keeps its own copy of the
// binding (Jest's module registry may), the EmptyQueue goes through Node's
// pipeline like any empty stream: slower, never wrong.
import stream, { Readable } from 'node:stream';
import { syncBuiltinESMExports } from 'node:module';

/** An outgoing queue known to be empty. */
class EmptyQueue extends Readable {
  override _read(): void {
    this.push(null);
  }
}

let original: typeof stream.pipeline | null = null;

function installPipelineShortcut(): void {
  if (original !== null) return;
  const node = stream.pipeline;
  original = node;
  function pipeline(this: unknown, ...args: unknown[]): unknown {
    const callback = args[args.length - 1];
    // Aedes' shape: pipeline(queue, transform, done). Nothing to read: done, and the transform is dropped unused.
    if (args[0] instanceof EmptyQueue && args.length === 3 && typeof callback === 'function') {
      process.nextTick(callback as () => void);
      return args[1];
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
  outgoingStream(client: { id: string }): Readable;
}

/**
 * Wraps the in-memory persistence (it must see every enqueue: apply it to the
 * store itself, under any other wrapper) so that `outgoingStream` of a client
 * id that cannot have anything queued is an EmptyQueue.
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
   * nothing was enqueued since; until then it takes Aedes' own path.
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
  p.outgoingStream = (client) => {
    const marked = mayHold.get(client.id);
    if (marked === undefined) return new EmptyQueue();
    // The store copies the queue now: when that copy turns out empty and nothing was enqueued since, it is empty.
    const queued = outgoingStream(client);
    queued.once('end', () => {
      if (!queued.readableDidRead && mayHold.get(client.id) === marked) mayHold.delete(client.id);
    });
    return queued;
  };
  return persistence;
}

/** Whether `outgoingStream` answered the empty queue (tests). */
export function isEmptyQueue(value: unknown): boolean {
  return value instanceof EmptyQueue;
}
