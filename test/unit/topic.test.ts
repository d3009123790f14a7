import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import qlobber from 'qlobber';
import { filterError, intersects, isValidFilter, isValidTopic, matches, topicError } from '../../src/tokens/topic.js';
import { LEVELS, allTopics, filterArb, topicArb } from './arbitraries.js';

describe('matches (MQTT 3.1.1 §4.7, SPEC §3)', () => {
  test.each([
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['a/+', 'a', false],
    ['a/+', 'a/', true], // `+` matches the empty level
    ['+/+', '/', true],
    ['+', '/', false],
    ['a/#', 'a', true], // `#` includes the parent [MQTT-4.7.1-2]
    ['a/#', 'a/', true],
    ['a/#', 'a/b/c', true],
    ['a/#', 'ab', false],
    ['#', 'a/b', true],
    ['#', '/', true],
    ['+/#', 'a', true],
    ['a//b', 'a//b', true], // empty levels are real levels
    ['a//b', 'a/b', false],
    ['a/+/b', 'a//b', true],
    ['/a', 'a', false],
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/+', 'sport', false],
  ])('%j matches %j: %s', (filter, topic, expected) => {
    expect(matches(filter, topic)).toBe(expected);
  });

  test.each([
    ['#', '$SYS/broker'],
    ['+/broker', '$SYS/broker'],
    ['+/#', '$SYS'],
    ['#', '$x'],
  ])('a topic starting with $ is not matched by %j, a filter starting with a wildcard [MQTT-4.7.2-1]', (filter, topic) => {
    expect(matches(filter, topic)).toBe(false);
  });

  test.each([
    ['$SYS/#', '$SYS/broker'],
    ['$SYS/+', '$SYS/broker'],
    ['$SYS/#', '$SYS'],
    ['a/#', 'a/$x'],
    ['a/+', 'a/$x'],
  ])('%j matches %j: $ only matters in the first level of the topic [MQTT-4.7.2-1]', (filter, topic) => {
    expect(matches(filter, topic)).toBe(true);
  });

  test('agrees with qlobber, a reference matcher, plus the $ rule (property)', () => {
    const options = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true };
    fc.assert(
      fc.property(filterArb, topicArb, (filter, topic) => {
        const reference = new qlobber.QlobberTrue(options).add(filter);
        // qlobber knows nothing of [MQTT-4.7.2-1]: apply it on top.
        const dollarRule = topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'));
        return matches(filter, topic) === (reference.test(topic) && !dollarRule);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('intersects (SPEC §3: a SUBSCRIBE is granted when some topic could match both)', () => {
  test.each([
    ['devices/42/#', '#', true], // the dashboard example
    ['devices/42/#', 'devices/+/x', true],
    ['devices/42/#', 'devices/43/#', false],
    ['devices/42/#', 'test/x', false],
    ['devices/42/#', 'devices/42', true], // `#` includes the parent
    ['devices/42/#', 'devices', false],
    ['+', '/#', false], // only the empty topic, which is no topic name [MQTT-4.7.3-1]
    ['+/#', '/', true],
    ['devices/42', 'devices/42/#', true],
    ['devices/+', '+/42', true],
    ['a/+', 'a/+/+', false],
    ['a/b', 'a/b/#', true],
    ['a/b', 'a/b/+', false],
    ['+', '/', false],
    ['+/+', '/', true],
    ['#', '#', true],
    ['#', '$SYS/#', false], // [MQTT-4.7.2-1]
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '#', false],
    ['$SYS/#', '$SYS/+', true],
    ['$SYS/#', '$OTHER/#', false],
    ['a/$x', 'a/+', true], // `$` only matters in the first level
  ])('%j and %j: %s', (acl, requested, expected) => {
    expect(intersects(acl, requested)).toBe(expected);
    expect(intersects(requested, acl)).toBe(expected); // symmetric
  });

  const witnesses = allTopics(LEVELS, 4);

  test('holds iff some topic matches both filters, checked by enumerating every topic (property)', () => {
    fc.assert(
      fc.property(filterArb, filterArb, (a, b) => {
        const bruteForce = witnesses.some((topic) => matches(a, topic) && matches(b, topic));
        return intersects(a, b) === bruteForce;
      }),
      { numRuns: 2000 },
    );
  });

  test('a filter intersects itself and every filter it matches a topic of (property)', () => {
    fc.assert(
      fc.property(filterArb, topicArb, (filter, topic) => {
        return intersects(filter, filter) && (!matches(filter, topic) || intersects(filter, topic));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('filter and topic validity (MQTT 3.1.1 §4.7.1, §4.7.3)', () => {
  test.each(['#', '+', 'a/#', '+/+/#', 'a//b', '/', '$SYS/#', 'devices/${clientid}/#', 'ü/日本'])('%j is a valid filter', (filter) => {
    expect(isValidFilter(filter)).toBe(true);
  });

  test.each([
    ['', 'must not be empty'], // [MQTT-4.7.3-1]
    ['a/#/b', "'#' must be the last level"], // [MQTT-4.7.1-2]
    ['#/', "'#' must be the last level"],
    ['a#', "'#' must occupy a whole level"],
    ['a/b#', "'#' must occupy a whole level"],
    ['a+/b', "'+' must occupy a whole level"], // [MQTT-4.7.1-3]
    ['a/+b', "'+' must occupy a whole level"],
    ['a\u0000b', 'must not contain the NUL character'], // [MQTT-4.7.3-2]
    ['a/\ud800', 'must be valid UTF-8 (it contains a lone surrogate)'],
    ['x'.repeat(65536), 'longer than 65535 bytes'], // [MQTT-4.7.3-3]
    ['é'.repeat(32768), 'longer than 65535 bytes'], // bytes, not characters
  ])('%j is refused: %s', (filter, reason) => {
    expect(filterError(filter)).toBe(reason);
    expect(isValidFilter(filter)).toBe(false);
  });

  test('a filter of exactly 65535 bytes is valid [MQTT-4.7.3-3]', () => {
    expect(isValidFilter('x'.repeat(65535))).toBe(true);
    expect(isValidFilter('😀'.repeat(16383) + 'abc')).toBe(true); // 4-byte characters: 65532 + 3
  });

  test.each(['a', 'a/b', '/', 'a//b', '$SYS/x'])('%j is a valid topic name', (topic) => {
    expect(isValidTopic(topic)).toBe(true);
  });

  test.each([
    ['', 'must not be empty'],
    ['a/+', "must not contain the wildcards '+' or '#'"], // [MQTT-3.3.2-2]
    ['#', "must not contain the wildcards '+' or '#'"],
    ['a\u0000', 'must not contain the NUL character'],
  ])('%j is not a topic name: %s', (topic, reason) => {
    expect(topicError(topic)).toBe(reason);
    expect(isValidTopic(topic)).toBe(false);
  });
});
