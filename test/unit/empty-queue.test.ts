// The empty-queue shortcut (broker/empty-queue.ts): which client ids get the
// EmptyQueue, that a queued message is never hidden by it (also when it is
// enqueued while a read of the queue is under way), and that the wrapped
// `stream.pipeline` finishes an EmptyQueue at once and leaves every other call
// to Node's own function.
import { describe, expect, test } from '@jest/globals';
import stream, { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { createMemoryPersistence } from '../../src/broker/dollar-guard.js';
import { isEmptyQueue, skipEmptyQueues } from '../../src/broker/empty-queue.js';

interface Persistence {
  outgoingEnqueueCombi(subs: { clientId: string; topic: string; qos: number }[], packet: object): Promise<void>;
  outgoingEnqueue(sub: { clientId: string; topic: string; qos: number }, packet: object): Promise<void>;
  outgoingUpdate(client: { id: string }, packet: object): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: object): Promise<unknown>;
  outgoingStream(client: { id: string }): Readable;
}

function persistence(): Persistence {
  return skipEmptyQueues(createMemoryPersistence()) as unknown as Persistence;
}

let counter = 0;
function packet(topic = 't'): { cmd: 'publish'; topic: string; payload: Buffer; qos: 1; retain: false; brokerId: string; brokerCounter: number } {
  return { cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, retain: false, brokerId: 'b', brokerCounter: ++counter };
}

async function readAll(s: Readable): Promise<{ messageId?: number; brokerCounter: number }[]> {
  const out: { messageId?: number; brokerCounter: number }[] = [];
  for await (const p of s) out.push(p as { messageId?: number; brokerCounter: number });
  return out;
}

describe('skipEmptyQueues', () => {
  test('a client id nothing was ever queued for reads the EmptyQueue, which iterates as empty', async () => {
    const p = persistence();
    const s = p.outgoingStream({ id: 'never' });
    expect(isEmptyQueue(s)).toBe(true);
    expect(await readAll(s)).toEqual([]);
  });

  test('a queued message is read through the store, by either enqueue, until its queue was read empty', async () => {
    const p = persistence();
    await p.outgoingEnqueue({ clientId: 'a', topic: 't', qos: 1 }, packet());
    await p.outgoingEnqueueCombi([{ clientId: 'b', topic: 't', qos: 1 }], packet());
    for (const id of ['a', 'b']) {
      const s = p.outgoingStream({ id });
      expect(isEmptyQueue(s)).toBe(false);
      const [queued] = await readAll(s);
      expect(queued).toBeDefined();
      // Delivered and acknowledged, as Aedes does: the queue is empty now, but only a read shows it.
      const sent = { ...queued, messageId: 7 };
      await p.outgoingUpdate({ id }, sent);
      await p.outgoingClearMessageId({ id }, sent);
      expect(isEmptyQueue(p.outgoingStream({ id }))).toBe(false);
      expect(await readAll(p.outgoingStream({ id }))).toEqual([]);
      expect(isEmptyQueue(p.outgoingStream({ id }))).toBe(true);
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
    expect(isEmptyQueue(next)).toBe(false);
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

describe('stream.pipeline with the shortcut installed', () => {
  test('pipeline(EmptyQueue, transform, done) calls done with no error on a later tick, and returns the transform', async () => {
    const p = persistence();
    const through = new Transform({ objectMode: true, transform: (_chunk, _enc, next) => next() });
    let sync = true;
    const done = new Promise<unknown>((resolve) => {
      const ret = stream.pipeline(p.outgoingStream({ id: 'fresh' }), through, (err) => resolve(err));
      expect(ret).toBe(through);
    });
    sync = false;
    expect(await done).toBeUndefined();
    expect(sync).toBe(false);
  });

  test('every other pipeline is Node\'s own: data flows, errors reach the callback, promisify works', async () => {
    const got: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, next) { got.push(chunk.toString()); next(); } });
    await promisify(stream.pipeline)(Readable.from(['a', 'b']), new PassThrough(), sink);
    expect(got).toEqual(['a', 'b']);
    const failing = new Readable({ read() { this.destroy(new Error('boom')); } });
    const err = await new Promise<Error | null | undefined>((resolve) => stream.pipeline(failing, new PassThrough(), (e) => resolve(e)));
    expect(err?.message).toBe('boom');
    // A store stream (not the EmptyQueue) goes through Node's pipeline too.
    const p = persistence();
    await p.outgoingEnqueue({ clientId: 'q', topic: 't', qos: 1 }, packet());
    const seen: unknown[] = [];
    await promisify(stream.pipeline)(p.outgoingStream({ id: 'q' }), new Writable({ objectMode: true, write(c, _e, next) { seen.push(c); next(); } }));
    expect(seen).toHaveLength(1);
  });
});
