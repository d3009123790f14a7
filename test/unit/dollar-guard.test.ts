// The persistence guard for [MQTT-4.7.2-1] (SPEC §4) on Aedes' in-memory
// persistence (no I/O): retained messages on SUBSCRIBE and the subscriptions
// an offline message is queued for. broker-dollar.test.ts covers both
// persistences end to end.
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import type { Readable } from 'node:stream';
import { createMemoryPersistence, guardDollarTopics, type GuardablePersistence } from '../../src/broker/dollar-guard.js';
import { matches } from '../../src/tokens/topic.js';
import { filterOver, topicOver } from './arbitraries.js';

interface MemoryPersistence extends GuardablePersistence {
  storeRetained(packet: object): Promise<void>;
  addSubscriptions(client: { id: string }, subs: { topic: string; qos: number }[]): Promise<void>;
}

function persistence(): MemoryPersistence {
  return createMemoryPersistence() as MemoryPersistence;
}

async function retain(p: MemoryPersistence, topics: string[]): Promise<void> {
  let qos = 0;
  for (const topic of topics) {
    await p.storeRetained({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: qos++ % 3, retain: true });
  }
}

async function topicsOf(stream: Readable | AsyncIterable<{ topic: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const packet of stream as AsyncIterable<{ topic: string }>) out.push(packet.topic);
  return out;
}

const STORED = ['$app/status', '$app/q2', 'app/status', '$SYS/x', 'a/b'];

describe('retained messages on SUBSCRIBE [MQTT-4.7.2-1]', () => {
  test.each([[['#']], [['+/status']], [['+/+']], [['#', '+/status', 'a/b']]])('%j yields no $ topic', async (patterns) => {
    const p = guardDollarTopics(persistence());
    await retain(p, STORED);
    const got = await topicsOf(p.createRetainedStreamCombi(patterns));
    expect(got.filter((t) => t.startsWith('$'))).toEqual([]);
    expect(got.length).toBeGreaterThan(0);
  });

  test('a filter naming the $ level yields them, once beside # and an overlapping $ filter', async () => {
    const p = guardDollarTopics(persistence());
    await retain(p, STORED);
    const got = await topicsOf(p.createRetainedStreamCombi(['#', '$app/#', '$app/+']));
    expect(got.filter((t) => t.startsWith('$')).sort()).toEqual(['$app/q2', '$app/status']);
    expect(got.filter((t) => !t.startsWith('$')).sort()).toEqual(['a/b', 'app/status']);
  });

  test('createRetainedStream applies the rule too', async () => {
    const p = guardDollarTopics(persistence());
    await retain(p, STORED);
    expect((await topicsOf(p.createRetainedStream('#'))).sort()).toEqual(['a/b', 'app/status']);
    expect((await topicsOf(p.createRetainedStream('$SYS/#')))).toEqual(['$SYS/x']);
  });

  // The in-memory persistence matches without empty levels (its qlobber has no
  // match_empty_levels), so the alphabet here has no empty level.
  const levels = ['a', 'b', '$x', '$SYS'];
  test('property: $ topics = those some pattern matches under MQTT rules, once; others as the persistence gives them', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(topicOver(levels), { minLength: 1, maxLength: 12 }),
        fc.array(filterOver(levels), { minLength: 1, maxLength: 4 }),
        async (stored, patterns) => {
          const plain = persistence();
          const guarded = guardDollarTopics(persistence());
          await retain(plain, stored);
          await retain(guarded, stored);
          const got = await topicsOf(guarded.createRetainedStreamCombi([...patterns]));
          const unguarded = await topicsOf(plain.createRetainedStreamCombi([...patterns]));
          const dollar = stored.filter((t) => t.startsWith('$') && patterns.some((f) => matches(f, t))).sort();
          expect(got.filter((t) => t.startsWith('$')).sort()).toEqual(dollar);
          expect(got.filter((t) => !t.startsWith('$'))).toEqual(unguarded.filter((t) => !t.startsWith('$')));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('the offline queue of persistent sessions [MQTT-4.7.2-1]', () => {
  async function withSubscriptions(): Promise<MemoryPersistence> {
    const p = guardDollarTopics(persistence());
    await p.addSubscriptions({ id: 'wide' }, [{ topic: '#', qos: 1 }, { topic: '+/x', qos: 2 }]);
    await p.addSubscriptions({ id: 'both' }, [{ topic: '#', qos: 1 }, { topic: '$app/#', qos: 1 }]);
    return p;
  }

  test('a $ topic is queued only for subscriptions naming its $ level', async () => {
    const p = await withSubscriptions();
    const subs = await p.subscriptionsByTopic('$app/x');
    expect(subs.map((s) => `${s.clientId} ${s.topic}`).sort()).toEqual(['both $app/#']);
    expect(await p.subscriptionsByTopic('$SYS/x')).toEqual([]);
  });

  test('other topics are queued for every matching subscription, as before', async () => {
    const p = await withSubscriptions();
    const subs = await p.subscriptionsByTopic('app/x');
    expect(subs.map((s) => `${s.clientId} ${s.topic}`).sort()).toEqual(['both #', 'wide #', 'wide +/x']);
  });
});
