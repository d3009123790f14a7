// SPEC §6 on a real Redis: the pattern a node PSUBSCRIBEs for an MQTT filter
// selects every channel of a topic the filter matches (else a message is lost),
// and never a channel outside this deployment's MQTT namespace (else another
// deployment's traffic or tokenmq's own channels would reach the MQTT path).
// HSCAN MATCH runs the same matcher as PSUBSCRIBE (stringmatchlen).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import qlobber from 'qlobber';
import { mqttChannelBase, redisSubscription } from '../../src/broker/channel-namespace.js';
import { prefixPattern } from '../../src/broker/redis-glob.js';

// Levels rich in what Redis patterns treat specially.
const LEVELS = ['a', '', '[1]', '*', '?', '\\', 'a\\', '[', ']', '[a-z]', '^', '\u{1F600}'];
const topicArb = fc.array(fc.constantFrom(...LEVELS), { minLength: 1, maxLength: 4 }).map((l) => l.join('/')).filter((t) => t !== '');
const filterArb = fc
  .tuple(fc.array(fc.oneof(fc.constantFrom(...LEVELS), fc.constant('+')), { minLength: 0, maxLength: 3 }), fc.boolean())
  .map(([parts, hash]) => (hash || parts.length === 0 ? [...parts, '#'] : parts).join('/'));

describe('Redis patterns for MQTT filters (SPEC §6)', () => {
  let redis: Redis;
  const key = `redis-glob-test:${randomBytes(6).toString('hex')}`;
  beforeAll(() => { redis = new Redis(process.env.REDIS_URL!); });
  afterAll(async () => {
    await redis.del(key);
    redis.disconnect();
  });

  async function scan(match: string): Promise<Set<string>> {
    const found = new Set<string>();
    for await (const batch of redis.hscanStream(key, { match, count: 1000 }) as AsyncIterable<string[]>) {
      for (let i = 0; i < batch.length; i += 2) found.add(batch[i]!);
    }
    return found;
  }

  test('a filter\'s pattern selects the channel of every topic it matches, and nothing outside the namespace', async () => {
    const prefix = 't[1]*:';
    const base = mqttChannelBase(prefix);
    const outside = (topic: string): string[] => [`${prefix}changes`, `${prefix}kicks`, `x${base}${topic}`, `tokenmq:mqtt/${topic}`, topic];
    await fc.assert(fc.asyncProperty(fc.uniqueArray(topicArb, { minLength: 1, maxLength: 12 }), filterArb, async (topics, filter) => {
      await redis.del(key);
      const fields: string[] = [];
      for (const topic of topics) fields.push(base + topic, '1', ...outside(topic).flatMap((c) => [c, '1']));
      await redis.hset(key, ...fields);
      const matcher = new qlobber.QlobberTrue({ separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true });
      matcher.add(filter);
      const target = redisSubscription(base, filter);
      const selected = target.pattern ? await scan(target.name) : new Set([target.name]);
      for (const topic of topics) {
        if (matcher.test(topic)) expect(selected.has(base + topic)).toBe(true);
      }
      for (const channel of selected) expect(channel.startsWith(base)).toBe(true);
    }), { numRuns: 150 });
  });

  test('prefixPattern selects every field that starts with the prefix', async () => {
    await fc.assert(fc.asyncProperty(fc.uniqueArray(topicArb, { minLength: 1, maxLength: 8 }), fc.nat(), async (topics, cut) => {
      await redis.del(key);
      await redis.hset(key, ...topics.flatMap((t) => [t, '1']));
      const first = topics[0]!;
      const prefix = first.slice(0, cut % (first.length + 1));
      const selected = await scan(prefixPattern(prefix));
      for (const topic of topics) if (topic.startsWith(prefix)) expect(selected.has(topic)).toBe(true);
    }), { numRuns: 150 });
  });
});
