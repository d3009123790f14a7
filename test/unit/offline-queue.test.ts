// Offline queues as Aedes gets them (broker/offline-queue.ts): which client ids
// are known empty, that a queued message is never hidden (also when it is
// enqueued while a read of the queue is under way), that the wrapped
// `stream.pipeline` drains a queue as Node's would (order, backpressure, errors)
// and leaves every other call to Node's own function.
import { describe, expect, test } from '@jest/globals';
import stream, { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { createMemoryPersistence } from '../../src/broker/dollar-guard.js';
import { isKnownEmpty, lightQueues, skipEmptyQueues, type Probed } from '../../src/broker/offline-queue.js';

interface Persistence {
  outgoingEnqueueCombi(subs: { clientId: string; topic: string; qos: number }[], packet: object): Promise<void>;
  outgoingEnqueue(sub: { clientId: string; topic: string; qos: number }, packet: object): Promise<void>;
  outgoingUpdate(client: { id: string }, packet: object): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: object): Promise<unknown>;
  outgoingStream(client: { id: string }): AsyncIterable<unknown>;
}

function persistence(): Persistence {
  return skipEmptyQueues(createMemoryPersistence()) as unknown as Persistence;
}

let counter = 0;
function packet(topic = 't'): { cmd: 'publish'; topic: string; payload: Buffer; qos: 1; retain: false; brokerId: string; brokerCounter: number } {
  return { cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, retain: false, brokerId: 'b', brokerCounter: ++counter };
}

async function readAll(s: AsyncIterable<unknown>): Promise<{ messageId?: number; brokerCounter: number }[]> {
  const out: { messageId?: number; brokerCounter: number }[] = [];
  for await (const p of s) out.push(p as { messageId?: number; brokerCounter: number });
  return out;
}

describe('skipEmptyQueues', () => {
  test('a client id nothing was ever queued for is known empty, and iterates as empty', async () => {
    const p = persistence();
    const s = p.outgoingStream({ id: 'never' });
    expect(isKnownEmpty(s)).toBe(true);
    expect(await readAll(s)).toEqual([]);
  });

  test('a queued message is read from the store, by either enqueue, until its queue was read empty', async () => {
    const p = persistence();
    await p.outgoingEnqueue({ clientId: 'a', topic: 't', qos: 1 }, packet());
    await p.outgoingEnqueueCombi([{ clientId: 'b', topic: 't', qos: 1 }], packet());
    for (const id of ['a', 'b']) {
      const s = p.outgoingStream({ id });
      expect(isKnownEmpty(s)).toBe(false);
      const [queued] = await readAll(s);
      expect(queued).toBeDefined();
      // Delivered and acknowledged, as Aedes does: the queue is empty now, but only a read shows it.
      const sent = { ...queued, messageId: 7 };
      await p.outgoingUpdate({ id }, sent);
      await p.outgoingClearMessageId({ id }, sent);
      expect(isKnownEmpty(p.outgoingStream({ id }))).toBe(false);
      expect(await readAll(p.outgoingStream({ id }))).toEqual([]);
      expect(isKnownEmpty(p.outgoingStream({ id }))).toBe(true);
    }
  });

  test('a message enqueued while an empty read is under way keeps the client id on the store path', async () => {
    const p = persistence();
    await p.outgoingEnqueue({ clientId: 'a', topic: 't', qos: 1 }, packet());
    const [first] = await readAll(p.outgoingStream({ id: 'a' }));
    const sent = { ...first, messageId: 1 };
    await p.outgoingUpdate({ id: 'a' }, sent);
    await p.outgoingClearMessageId({ id: 'a' }, sent);
    // The read copies the (empty) queue now; the enqueue lands before the copy is read to its end.
    const reading = p.outgoingStream({ id: 'a' });
    await p.outgoingEnqueue({ clientId: 'a', topic: 't', qos: 1 }, packet());
    expect(await readAll(reading)).toEqual([]);
    const next = p.outgoingStream({ id: 'a' });
    expect(isKnownEmpty(next)).toBe(false);
    expect(await readAll(next)).toHaveLength(1);
  });

  test('randomized: whatever the order of enqueues, acks and reads, a read never misses a queued message', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ op: fc.constantFrom('enqueue', 'ack', 'read', 'readDuringEnqueue'), id: fc.constantFrom('x', 'y', 'z') }), { maxLength: 40 }),
      async (ops) => {
        const p = persistence();
        const model = new Map<string, number>(); // client id → messages queued
        let messageId = 0;
        for (const { op, id } of ops) {
          if (op === 'enqueue') {
            await p.outgoingEnqueueCombi([{ clientId: id, topic: 't', qos: 1 }], packet());
            model.set(id, (model.get(id) ?? 0) + 1);
          } else if (op === 'ack') {
            const queued = await readAll(p.outgoingStream({ id }));
            expect(queued).toHaveLength(model.get(id) ?? 0);
            const head = queued[0];
            if (head === undefined) continue;
            const sent = { ...head, messageId: ++messageId };
            await p.outgoingUpdate({ id }, sent);
            await p.outgoingClearMessageId({ id }, sent);
            model.set(id, (model.get(id) ?? 0) - 1);
          } else if (op === 'read') {
            expect(await readAll(p.outgoingStream({ id }))).toHaveLength(model.get(id) ?? 0);
          } else {
            const reading = p.outgoingStream({ id });
            const before = model.get(id) ?? 0;
            await p.outgoingEnqueue({ clientId: id, topic: 't', qos: 1 }, packet());
            model.set(id, before + 1);
            expect(await readAll(reading)).toHaveLength(before);
          }
        }
        for (const id of ['x', 'y', 'z']) expect(await readAll(p.outgoingStream({ id }))).toHaveLength(model.get(id) ?? 0);
      },
    ), { numRuns: 200 });
  });
});

/** Aedes' transform (connect.js emptyQueue): objectMode, passes nothing on. */
function through(fn: (packet: unknown) => Promise<void> | void, highWaterMark = 16): Transform {
  return new Transform({
    objectMode: true,
    highWaterMark,
    transform(packet, _enc, next) {
      Promise.resolve(fn(packet)).then(() => next(), next);
    },
  });
}

function run(queue: unknown, into: Transform): Promise<Error | null | undefined> {
  return new Promise((resolve) => {
    expect(stream.pipeline(queue as Readable, into, (err) => resolve(err))).toBe(into);
  });
}

/** A store's queue as an async generator (aedes-persistence-redis' shape), recording whether it was closed early. */
function storeQueue(packets: number, fail?: number): { persistence: Persistence; closed: () => boolean } {
  let closed = false;
  const persistence = lightQueues({
    outgoingStream: () => (async function* gen() {
      try {
        for (let i = 0; i < packets; i++) {
          if (i === fail) throw new Error('store read failed');
          await Promise.resolve();
          yield { n: i };
        }
      } finally {
        closed = true;
      }
    })(),
  }) as unknown as Persistence;
  return { persistence, closed: () => closed };
}

describe('lightQueues with the CONNECT\'s probe (Redis mode)', () => {
  /** A store whose reads are counted by name; each answers something stored. */
  function probedStore(others = false) {
    const reads: string[] = [];
    const results = new WeakMap<object, Probed>();
    const p = lightQueues({
      outgoingStream: () => {
        reads.push('queue');
        return (async function* gen() { yield { n: 1 }; })();
      },
      cleanSubscriptions: async () => { reads.push('subscriptions'); },
      delWill: async () => { reads.push('will'); return null; },
    }, { results, othersOnNode: () => others }) as unknown as Persistence & { cleanSubscriptions(c: object): Promise<unknown>; delWill(c: object): Promise<unknown> };
    /** Aedes' CONNECT steps in its order: fetchSubs, storeWill, emptyQueue. */
    const connect = async (client: object): Promise<unknown[]> => {
      await p.cleanSubscriptions(client);
      await p.delWill(client);
      return readAll(p.outgoingStream(client as { id: string }));
    };
    return { reads, results, connect };
  }

  test('a clean client found with nothing stored: no reads at all, its queue empty; once only', async () => {
    const { reads, results, connect } = probedStore();
    const client = { id: 'c', clean: true };
    results.set(client, { queue: false, subscriptions: false, will: false });
    expect(await connect(client)).toEqual([]);
    expect(reads).toEqual([]);
    // Used up: the same client object's next reads ask the store.
    expect(await connect(client)).toEqual([{ n: 1 }]);
    expect(reads).toEqual(['subscriptions', 'will', 'queue']);
  });

  test('each stored thing is read as always: queue, subscriptions (and then the queue too), will', async () => {
    for (const [found, want] of [
      [{ queue: true, subscriptions: false, will: false }, ['queue']],
      [{ queue: false, subscriptions: true, will: false }, ['subscriptions', 'queue']],
      [{ queue: false, subscriptions: false, will: true }, ['will']],
    ] as const) {
      const { reads, results, connect } = probedStore();
      const client = { id: 'c', clean: true };
      results.set(client, found);
      await connect(client);
      expect(reads).toEqual(want);
    }
  });

  test('another session of the client id on this node: its will is deleted as always; a persistent client reads its subscriptions and queue', async () => {
    const others = probedStore(true);
    const client = { id: 'c', clean: true };
    others.results.set(client, { queue: false, subscriptions: false, will: false });
    await others.connect(client);
    expect(others.reads).toEqual(['will']);
    const persistent = probedStore();
    const p = { id: 'p', clean: false };
    persistent.results.set(p, { queue: false, subscriptions: false, will: false });
    await persistent.connect(p);
    expect(persistent.reads).toEqual(['subscriptions', 'queue']);
  });
});

describe('stream.pipeline with the shortcut installed', () => {
  test('a queue known empty: done with no error on a later tick, the transform returned', async () => {
    const p = persistence();
    let inCall = true;
    let calledInCall: boolean | undefined;
    const into = through(() => {});
    const done = new Promise<Error | null | undefined>((resolve) => {
      expect(stream.pipeline(p.outgoingStream({ id: 'fresh' }) as unknown as Readable, into, (err) => {
        calledInCall = inCall;
        resolve(err);
      })).toBe(into);
    });
    inCall = false;
    expect(await done).toBeUndefined();
    expect(calledInCall).toBe(false);
  });

  test('a queue read from the store: every packet, in order, through a full transform; done after the last', async () => {
    const { persistence: p, closed } = storeQueue(200);
    const seen: number[] = [];
    // highWaterMark 1 and a slow transform: the drain waits for 'drain' again and again.
    const err = await run(p.outgoingStream({ id: 'q' }), through(async (packet) => {
      await new Promise((r) => setImmediate(r));
      seen.push((packet as { n: number }).n);
    }, 1));
    expect(err).toBeUndefined();
    expect(seen).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(closed()).toBe(true);
  });

  test('the transform fails: done with its error once, the store read closed, nothing written after', async () => {
    const { persistence: p, closed } = storeQueue(100);
    const seen: number[] = [];
    const into = through((packet) => {
      const n = (packet as { n: number }).n;
      seen.push(n);
      if (n === 5) throw new Error('client gone');
    }, 1);
    let calls = 0;
    const err = await new Promise<Error | null | undefined>((resolve) => {
      stream.pipeline(p.outgoingStream({ id: 'q' }) as unknown as Readable, into, (e) => {
        calls++;
        resolve(e);
      });
    });
    expect(err?.message).toBe('client gone');
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(1);
    expect(Math.max(...seen)).toBe(5);
    expect(closed()).toBe(true);
    expect(into.destroyed).toBe(true);
  });

  test('the store read fails: done with its error, the transform destroyed', async () => {
    const { persistence: p } = storeQueue(10, 3);
    const into = through(() => {});
    const err = await run(p.outgoingStream({ id: 'q' }), into);
    expect(err?.message).toBe('store read failed');
    expect(into.destroyed).toBe(true);
  });

  test('for await reads a queue as before (the wipe of a deleted token\'s sessions)', async () => {
    const { persistence: p } = storeQueue(3);
    expect(await readAll(p.outgoingStream({ id: 'q' }))).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
  });

  test('every other pipeline is Node\'s own: data flows, errors reach the callback, promisify works', async () => {
    const got: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, next) { got.push(chunk.toString()); next(); } });
    await promisify(stream.pipeline)(Readable.from(['a', 'b']), new PassThrough(), sink);
    expect(got).toEqual(['a', 'b']);
    const failing = new Readable({ read() { this.destroy(new Error('boom')); } });
    const err = await new Promise<Error | null | undefined>((resolve) => stream.pipeline(failing, new PassThrough(), (e) => resolve(e)));
    expect(err?.message).toBe('boom');
    // A queue in a call of another shape (two streams) goes through Node's pipeline too.
    const { persistence: p } = storeQueue(2);
    const seen: unknown[] = [];
    await promisify(stream.pipeline)(p.outgoingStream({ id: 'q' }) as unknown as Readable, new Writable({ objectMode: true, write(c, _e, next) { seen.push(c); next(); } }));
    expect(seen).toHaveLength(2);
  });
});
