// Shared rights (issue 9): one compiled Rights per distinct access, placeholders
// filled in per question from the asking session. Whatever the sharing, each
// session must get exactly the answers of rights compiled for it alone (SPEC §3).
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { compileRights, compileSharedRights, type RightsContext } from '../../src/tokens/rights.js';
import { ACCESS_ACL, type AclEntry, type MqttAction, type TokenAccess } from '../../src/tokens/types.js';

function acl(...entries: AclEntry[]): TokenAccess {
  return { type: ACCESS_ACL, acl: entries };
}

function topicEntry(topic: string, ...actions: MqttAction[]): AclEntry {
  return { uri: 'mqtt', topic, actions };
}

function session(clientId: string, tokenId: number): RightsContext {
  return { clientId, tokenId, tokenIdText: String(tokenId) };
}

/** A client id that makes some filters too long for MQTT [MQTT-4.7.3-3] (and a topic level equal to it). */
const LONG = 'z'.repeat(21_000);
/** Client ids: ordinary ones, and every kind SPEC §3 refuses to put in a placeholder. */
const CLIENT_IDS = ['c1', 'c2', 'a', '7', 'x7', '', '+', '#', 'a/b', 'a+', '$SYS', '$x', '${token_id}', '${clientid}', 'é', '\uD800', 'a\u0000', LONG, 'é'.repeat(11_000)];
const TOKEN_IDS = [7, 12];
/** Levels of filters: literals that may equal a client or token id, wildcards, and placeholder levels. */
const FILTER_LEVELS = ['a', 'c1', '7', '$x', '', '${clientid}', '${token_id}', 'd-${clientid}', '${clientid}${token_id}', 'x${token_id}', '${clientid}-${clientid}', '${clientid}.s', '${clientid}+'];
/** Levels of topics: what the placeholders above turn into for the ids above. */
const TOPIC_LEVELS = ['a', 'c1', 'c2', '7', '12', 'x7', 'd-c1', 'd-a', 'c17', 'c27', 'a7', 'c1-c1', 'c1-c2', 'c1.s', 'c1.t', 'a.s', '$x', '', '$SYS', '${token_id}', 'é', LONG, `${LONG}-${LONG}`, `${LONG}.s`];

const filterArb = fc
  .tuple(fc.array(fc.oneof(fc.constantFrom(...FILTER_LEVELS), fc.constant('+')), { minLength: 0, maxLength: 4 }), fc.boolean())
  .map(([parts, hash]) => (hash || parts.length === 0 ? [...parts.slice(0, 3), '#'] : parts).join('/'))
  .filter((f) => f !== '');
const topicArb = fc.array(fc.constantFrom(...TOPIC_LEVELS), { minLength: 1, maxLength: 5 }).map((p) => p.join('/')).filter((t) => t !== '');
const entryArb = fc.tuple(filterArb, fc.subarray(['publish', 'subscribe'] as MqttAction[], { minLength: 1 }))
  .map(([topic, actions]) => topicEntry(topic, ...actions));

describe('shared rights answer like rights compiled per session (SPEC §3, issue 9)', () => {
  test('canPublish, canReceive and canSubscribe agree for every client id, placeholders anywhere in a level', () => {
    fc.assert(fc.property(
      fc.array(entryArb, { minLength: 1, maxLength: 6 }),
      fc.constantFrom(...CLIENT_IDS),
      fc.constantFrom(...TOKEN_IDS),
      fc.array(topicArb, { minLength: 1, maxLength: 8 }),
      fc.array(filterArb.filter((f) => !f.includes('${')), { minLength: 1, maxLength: 4 }),
      (entries, clientId, tokenId, topics, filters) => {
        const access = acl(...entries);
        const ctx = session(clientId, tokenId);
        const alone = compileRights(access, ctx);
        const shared = compileSharedRights(access).forSession(ctx);
        expect(shared.hasMqtt).toBe(alone.hasMqtt);
        for (const topic of topics) {
          expect([topic, shared.canPublish(topic, ctx)]).toEqual([topic, alone.canPublish(topic)]);
          expect([topic, shared.canReceive(topic, ctx)]).toEqual([topic, alone.canReceive(topic)]);
        }
        for (const filter of filters) {
          expect([filter, shared.canSubscribe(filter, ctx)]).toEqual([filter, alone.canSubscribe(filter)]);
        }
      },
    ), { numRuns: 3000 });
  });

  test('one compiled object serves every session with an ordinary client id, each with its own answers', () => {
    const shared = compileSharedRights(acl(
      topicEntry('devices/${clientid}/#', 'publish', 'subscribe'),
      topicEntry('fleet/${token_id}/status', 'publish'),
      topicEntry('broadcast/#', 'subscribe'),
    ));
    const a = session('truck-1', 7);
    const b = session('truck-2', 8);
    expect(shared.forSession(a)).toBe(shared);
    expect(shared.forSession(b)).toBe(shared);
    expect(shared.canPublish('devices/truck-1/gps', a)).toBe(true);
    expect(shared.canPublish('devices/truck-1/gps', b)).toBe(false);
    expect(shared.canPublish('devices/truck-2/gps', b)).toBe(true);
    expect(shared.canReceive('devices/truck-2/cmd', a)).toBe(false);
    expect(shared.canPublish('fleet/7/status', a)).toBe(true);
    expect(shared.canPublish('fleet/7/status', b)).toBe(false);
    expect(shared.canPublish('fleet/8/status', b)).toBe(true);
    expect(shared.canReceive('broadcast/all', a)).toBe(true);
    expect(shared.canSubscribe('devices/truck-1/#', a)).toBe(true);
    expect(shared.canSubscribe('devices/truck-1/#', b)).toBe(false);
    // Without the asking session a placeholder entry grants nothing.
    expect(shared.canPublish('devices/truck-1/gps')).toBe(false);
  });

  test.each(['a/+', '#', 'a/b', ''])('a client id %j gets rights of its own, its placeholder entries dropped, never widened (SPEC §3)', (clientId) => {
    const shared = compileSharedRights(acl(topicEntry('devices/${clientid}/#', 'publish', 'subscribe'), topicEntry('public/#', 'subscribe')));
    const ctx = session(clientId, 7);
    const own = shared.forSession(ctx);
    expect(own).not.toBe(shared);
    expect(own.base).toBe(shared);
    expect(own.canPublish('devices/a/b/c', ctx)).toBe(false);
    expect(own.canPublish('devices/x', ctx)).toBe(false);
    expect(own.canPublish('devices//x', ctx)).toBe(false);
    expect(own.canReceive('public/news', ctx)).toBe(true);
  });

  test('a client id starting with $ cannot turn a shared ${clientid}/# into a $SYS filter (SPEC §3, MQTT-4.7.2-1)', () => {
    const shared = compileSharedRights(acl(topicEntry('${clientid}/#', 'subscribe')));
    const ctx = session('$SYS', 1);
    const own = shared.forSession(ctx);
    expect(own.canReceive('$SYS/broker/clients', ctx)).toBe(false);
    expect(own.canSubscribe('$SYS/#', ctx)).toBe(false);
    expect(own.hasMqtt).toBe(false);
  });

  test('a client id that spells a placeholder stays literal text in shared rights (SPEC §3)', () => {
    const shared = compileSharedRights(acl(topicEntry('d/${clientid}/x', 'publish')));
    const ctx = session('${token_id}', 7);
    expect(shared.forSession(ctx)).toBe(shared);
    expect(shared.canPublish('d/${token_id}/x', ctx)).toBe(true);
    expect(shared.canPublish('d/7/x', ctx)).toBe(false);
  });
});
