// SPEC §6 "every MQTT topic is legal in a cluster", without Redis: MQTT topics
// and filters turned into Redis channels and glob patterns, and the bookkeeping
// of the node's subscriptions (against a recording stand-in). That the patterns
// select what they must on a real Redis is test/integration/redis-glob.test.ts.
import { describe, expect, test } from '@jest/globals';
import type { Redis } from 'ioredis';
import { confineToNamespace, mqttChannelBase, redisSubscription, type NamespacedEmitter } from '../../src/broker/channel-namespace.js';
import { escapeGlob, prefixPattern } from '../../src/broker/redis-glob.js';

describe('escapeGlob', () => {
  test.each([
    ['abc', 'abc'],
    ['a*b', 'a\\*b'],
    ['a?', 'a\\?'],
    ['a[1]', 'a\\[1\\]'],
    ['a\\b', 'a\\\\b'],
    ['^-!{}', '^-!{}'],
  ])('%j → %j', (text, escaped) => {
    expect(escapeGlob(text)).toBe(escaped);
  });
});

describe('prefixPattern', () => {
  test('takes the prefix literally and matches anything after it', () => {
    expect(prefixPattern('r[1]')).toBe('r\\[1\\]*');
    expect(prefixPattern('')).toBe('*');
  });

  test('drops a high surrogate left alone by a cut between 😀 and 😁 (Redis would get U+FFFD)', () => {
    expect(prefixPattern('x\uD83D')).toBe('x*');
    expect(prefixPattern('x\u{1F600}')).toBe('x\u{1F600}*');
  });
});

describe('redisSubscription (SPEC §6)', () => {
  const base = mqttChannelBase('tokenmq:');

  test('MQTT traffic lives under <prefix>mqtt/, which starts none of tokenmq\'s own channels', () => {
    expect(base).toBe('tokenmq:mqtt/');
    for (const own of ['tokenmq:changes', 'tokenmq:kicks']) expect(own.startsWith(base)).toBe(false);
  });

  test.each([
    ['a/b', false, 'tokenmq:mqtt/a/b'],
    ['a[1]/b', false, 'tokenmq:mqtt/a[1]/b'], // SUBSCRIBE takes the channel literally
    ['tokenmq:changes', false, 'tokenmq:mqtt/tokenmq:changes'],
    ['a+', false, 'tokenmq:mqtt/a+'], // only a whole level is a wildcard
    ['#', true, 'tokenmq:mqtt/*'],
    ['a/#', true, 'tokenmq:mqtt/a*'], // also `a` [MQTT-4.7.1-2]
    ['a/+/#', true, 'tokenmq:mqtt/a/**'],
    ['+/x', true, 'tokenmq:mqtt/*/x'],
    ['a[1]/+', true, 'tokenmq:mqtt/a\\[1\\]/*'],
    ['a*b/+', true, 'tokenmq:mqtt/a\\*b/*'],
    ['a?/+', true, 'tokenmq:mqtt/a\\?/*'],
    ['a\\b/#', true, 'tokenmq:mqtt/a\\\\b*'],
  ])('%j → pattern %s, %j', (filter, pattern, name) => {
    expect(redisSubscription(base, filter)).toMatchObject({ pattern, name });
  });

  test('counts the wildcards a pattern costs Redis', () => {
    expect(redisSubscription(base, 'a/b').wildcards).toBe(0);
    expect(redisSubscription(base, '+/a/+/#').wildcards).toBe(3);
    expect(redisSubscription(base, Array(100).fill('+').join('/')).wildcards).toBe(100);
  });

  test('a prefix with glob characters is escaped in patterns, kept raw in channels', () => {
    const odd = mqttChannelBase('t[1]*:');
    expect(redisSubscription(odd, '#')).toMatchObject({ pattern: true, name: 't\\[1\\]\\*:mqtt/*' });
    expect(redisSubscription(odd, 'x')).toMatchObject({ pattern: false, name: 't[1]*:mqtt/x' });
  });
});

/** A Redis stand-in that records commands in order; each reply waits for `flush()`. */
function fakeRedis() {
  const log: string[] = [];
  let pending: (() => void)[] = [];
  const command = (name: string) => (...args: unknown[]): Promise<number> => {
    log.push(`${name} ${args.filter((a) => typeof a === 'string').join(' ')}`);
    return new Promise((resolve) => pending.push(() => resolve(1)));
  };
  const redis = {
    publish: command('publish'), subscribe: command('subscribe'), psubscribe: command('psubscribe'),
    unsubscribe: command('unsubscribe'), punsubscribe: command('punsubscribe'),
  };
  return {
    redis: redis as unknown as Redis,
    log,
    async flush(): Promise<void> {
      const now = pending;
      pending = [];
      for (const reply of now) reply();
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

function fakeEmitter(): NamespacedEmitter {
  const noop = (): void => {};
  return { on: noop, removeListener: noop, _on: noop, _removeListener: noop };
}

describe('confineToNamespace (SPEC §6)', () => {
  const base = 'p:mqtt/';
  const listener = (): void => {};
  const setup = (patternBudget?: number) => {
    const sub = fakeRedis();
    const pub = fakeRedis();
    const mq = fakeEmitter();
    const modes: boolean[] = [];
    confineToNamespace(mq, sub.redis, pub.redis, base, { patternBudget, onWide: (wide) => modes.push(wide) });
    return { sub, pub, mq, modes };
  };

  test('publishes each MQTT message under the namespace', () => {
    const { pub } = setup();
    void pub.redis.publish('p:changes', Buffer.from('x'));
    expect(pub.log).toEqual(['publish p:mqtt/p:changes']);
  });

  test('a literal `x/*` and the filter `x/+` hold separate subscriptions', async () => {
    const { sub, mq } = setup();
    mq.on('x/*', listener);
    mq.on('x/+', listener);
    mq.removeListener('x/*', listener);
    expect(sub.log).toEqual(['subscribe p:mqtt/x/*', 'psubscribe p:mqtt/x/*', 'unsubscribe p:mqtt/x/*']);
  });

  test('calls `done` only once Redis has confirmed the subscription, for every listener', async () => {
    const { sub, mq } = setup();
    const done: string[] = [];
    mq.on('a/+', listener, () => done.push('first'));
    mq.on('a/+', listener, () => done.push('second'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toEqual([]);
    await sub.flush();
    expect(done).toEqual(['first', 'second']);
    expect(sub.log).toEqual(['psubscribe p:mqtt/a/*']);
  });

  test('beyond the wildcard budget it takes the whole namespace first, then drops the individual patterns; back at half, the reverse', async () => {
    const { sub, mq, modes } = setup(4);
    for (const f of ['a/+', 'b/+', 'c/+/+']) mq.on(f, listener);
    expect(modes).toEqual([]);
    sub.log.length = 0;
    const done: string[] = [];
    mq.on('d/+', listener, () => done.push('d'));
    expect(sub.log).toEqual(['psubscribe p:mqtt/*', 'punsubscribe p:mqtt/a/* p:mqtt/b/* p:mqtt/c/*/*']);
    await sub.flush();
    expect(done).toEqual(['d']);
    // While wide, new filters cost Redis nothing more.
    sub.log.length = 0;
    mq.on('e/+', listener);
    expect(sub.log).toEqual([]);
    // 6 wildcards; back to individual patterns at 2 or fewer.
    mq.removeListener('c/+/+', listener);
    mq.removeListener('d/+', listener);
    expect(sub.log).toEqual([]);
    mq.removeListener('e/+', listener);
    expect(sub.log).toEqual(['psubscribe p:mqtt/a/* p:mqtt/b/*', 'punsubscribe p:mqtt/*']);
    expect(modes).toEqual([true, false]);
  });

  test('a few filters of 100 `+` levels exceed the default budget on their own', () => {
    const { sub, mq, modes } = setup();
    const heavy = Array(99).fill('+').join('/');
    for (let i = 0; i < 3; i++) mq.on(`${heavy}/${i}`, listener);
    expect(modes).toEqual([true]);
    expect(sub.log.at(-2)).toBe('psubscribe p:mqtt/*');
  });

  test('the namespace-wide pattern of an odd prefix is escaped', () => {
    const sub = fakeRedis();
    const mq = fakeEmitter();
    confineToNamespace(mq, sub.redis, fakeRedis().redis, mqttChannelBase('t[1]:'), { patternBudget: 0 });
    mq.on('#', listener);
    expect(sub.log).toEqual(['psubscribe t\\[1\\]:mqtt/*']);
  });
});
